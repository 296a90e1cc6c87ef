//! bf16 autocast (`train.bf16`, `fer-train bench --bf16`): inside [`bf16`], libtorch runs the ops on
//! its autocast lists in bfloat16 (convolutions, linear layers, matrix products) and the
//! precision-sensitive ones (losses, softmax, reductions) in float32, as PyTorch's
//! `torch.autocast(device, dtype=torch.bfloat16)` does. The weights and the optimiser stay
//! float32; bf16 has float32's range, so no loss scaling is needed. tch 0.24 only exposes the
//! legacy CUDA switch (float16), so the switch comes from a small C++ shim (csrc/autocast.cpp).

use anyhow::{bail, Result};
use tch::Device;

#[cfg(fer_autocast)]
mod ffi {
    extern "C" {
        pub fn fer_autocast_bf16_enter(cuda: bool, prev_enabled: *mut bool, prev_dtype: *mut i8) -> bool;
        pub fn fer_autocast_exit(cuda: bool, prev_enabled: bool, prev_dtype: i8) -> bool;
        pub fn fer_autocast_bf16_active(cuda: bool) -> bool;
    }
}

/// Whether this build can autocast (the shim is compiled wherever torch-sys found libtorch's
/// headers, which is every Linux and macOS build).
pub const AVAILABLE: bool = cfg!(fer_autocast);

/// Checks that bf16 autocast can run on `device`, before any work depends on it.
pub fn check(device: Device) -> Result<()> {
    if !AVAILABLE {
        bail!("train.bf16: this build of fer-train has no autocast shim (libtorch's headers were not found when it was compiled); set it to false");
    }
    if !matches!(device, Device::Cpu | Device::Cuda(_)) {
        bail!("train.bf16: autocast runs on CPU or CUDA, not {device:?}");
    }
    if device == Device::Cpu && !cpu_has_bf16() {
        // Correct but slow: the MobileNetV2 EAC step at 48 px ran ~10x slower than float32 on an
        // AVX2-only EPYC (94.6 vs 9.5 img/s), PyTorch's CPU autocast likewise (docs/RESULTS.md).
        tracing::warn!("bf16 autocast on a CPU without bf16 instructions is several times slower than float32; it is meant for GPUs (and CPUs with AVX512-BF16 / AMX or Arm BF16)");
    }
    Ok(())
}

/// Whether this CPU has bf16 arithmetic that libtorch's kernels use.
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("bf16")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Runs `f` with bf16 autocast on `device` when `enabled` (else just runs it). The previous
/// autocast state comes back when `f` returns or panics. Autocast is per thread, as in PyTorch:
/// run the forward pass and the loss inside, `backward` outside.
pub fn bf16<T>(device: Device, enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    let _scope = Scope::enter(device);
    f()
}

/// Whether bf16 autocast is on for `device` on this thread.
pub fn active(device: Device) -> bool {
    #[cfg(fer_autocast)]
    {
        // SAFETY: reads libtorch's thread-local autocast state; the shim catches every exception.
        unsafe { ffi::fer_autocast_bf16_active(device.is_cuda()) }
    }
    #[cfg(not(fer_autocast))]
    {
        let _ = device;
        false
    }
}

/// One autocast level; dropping it restores the state from before.
struct Scope {
    #[cfg(fer_autocast)]
    cuda: bool,
    #[cfg(fer_autocast)]
    prev_enabled: bool,
    #[cfg(fer_autocast)]
    prev_dtype: i8,
}

impl Scope {
    fn enter(device: Device) -> Scope {
        #[cfg(fer_autocast)]
        {
            let cuda = device.is_cuda();
            let (mut prev_enabled, mut prev_dtype) = (false, 0i8);
            // SAFETY: the shim writes both out-parameters and catches every exception.
            let ok = unsafe { ffi::fer_autocast_bf16_enter(cuda, &mut prev_enabled, &mut prev_dtype) };
            assert!(ok, "libtorch refused to enable bf16 autocast on {device:?}");
            Scope { cuda, prev_enabled, prev_dtype }
        }
        #[cfg(not(fer_autocast))]
        {
            panic!("bf16 autocast on {device:?} in a build without the autocast shim (autocast::check refuses this earlier)")
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        #[cfg(fer_autocast)]
        // SAFETY: restores what `enter` read; the shim catches every exception. A failure here is
        // not turned into a panic, which could abort while already unwinding.
        unsafe {
            ffi::fer_autocast_exit(self.cuda, self.prev_enabled, self.prev_dtype);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Kind, Tensor};

    /// Inside the scope a convolution computes in bf16 and a loss in float32, as under PyTorch's
    /// CPU autocast; outside it, and after it, everything is float32 again; nesting restores the
    /// outer level; the bf16 result is the float32 one to bf16 precision; gradients reach the
    /// float32 weights as float32.
    #[test]
    fn autocast_casts_inside_and_restores_after() {
        assert!(AVAILABLE, "the shim must be built in this (Linux) test build");
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::conv2d(vs.root(), 3, 8, 3, Default::default());
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let fp32 = conv.forward(&x);
        assert_eq!(fp32.kind(), Kind::Float);
        assert!(!active(Device::Cpu));
        let (mixed, loss_kind, inner_active) = bf16(Device::Cpu, true, || {
            let y = conv.forward(&x);
            let nested = bf16(Device::Cpu, true, || active(Device::Cpu));
            assert!(nested);
            let loss = y.mse_loss(&fp32.detach(), tch::Reduction::Mean);
            (y, loss.kind(), active(Device::Cpu))
        });
        assert!(inner_active, "still on after a nested level closed");
        assert!(!active(Device::Cpu), "off again after the scope");
        assert_eq!(mixed.kind(), Kind::BFloat16, "the conv ran in bf16 inside the scope");
        assert_eq!(loss_kind, Kind::Float, "losses run in float32 under autocast");
        assert_eq!(conv.forward(&x).kind(), Kind::Float, "float32 after the scope");
        let err = (mixed.to_kind(Kind::Float) - &fp32).abs().max().double_value(&[]);
        let scale = fp32.abs().max().double_value(&[]);
        assert!(err <= 2e-2 * scale && err > 0.0, "bf16 vs fp32: max |diff| {err}, max |y| {scale}");
        // Gradients flow back through the casts to the float32 weights.
        let g = bf16(Device::Cpu, true, || conv.forward(&x).sum(Kind::Float));
        g.backward();
        assert_eq!(conv.ws.grad().kind(), Kind::Float);
        assert!(conv.ws.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        // Disabled: the closure runs untouched.
        assert_eq!(bf16(Device::Cpu, false, || conv.forward(&x)).kind(), Kind::Float);
    }

    #[test]
    fn the_state_comes_back_after_a_panic() {
        let r = std::panic::catch_unwind(|| bf16(Device::Cpu, true, || panic!("inside")));
        assert!(r.is_err());
        assert!(!active(Device::Cpu));
    }
}
