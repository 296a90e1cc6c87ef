//! The CPU's floating-point environment for training: subnormal floats flushed to zero.
//!
//! Why: as a run anneals its learning rate, some weights, BatchNorm statistics and Adam moments
//! drift below `f32::MIN_POSITIVE` (1.2e-38) into the subnormal range, and x86 CPUs take a slow
//! microcode path for every arithmetic operation that reads or makes one. On the project's 2-core
//! box a MobileNetV2 run's epochs slowed from 215 to 73 img/s over its second half for that reason
//! (docs/RESULTS.md, "Subnormal floats"). Flushing them to zero changes values smaller than any
//! that matter to a network; PyTorch has the same switch (`torch.set_flush_denormal`), off by
//! default. `FER_KEEP_SUBNORMALS=1` keeps them (to measure the difference).

/// Whether `FER_KEEP_SUBNORMALS` asks to leave the floating-point environment alone.
pub fn keep_subnormals_requested() -> bool {
    std::env::var("FER_KEEP_SUBNORMALS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Sets flush-to-zero and denormals-are-zero for the calling thread and the threads it creates
/// afterwards (a new thread inherits its creator's floating-point environment): call it first in
/// `main`, before libtorch starts its thread pool. Returns false where the CPU has no such switch
/// here (then nothing changed).
pub fn flush_subnormals_to_zero() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // MXCSR bit 15: results that would be subnormal become zero (FTZ); bit 6: subnormal
        // inputs are read as zero (DAZ). Every x86-64 CPU has both.
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr only read and write MXCSR and the 4 bytes of `csr`.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= (1 << 15) | (1 << 6);
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
        true
    }
    #[cfg(target_arch = "aarch64")]
    {
        // FPCR bit 24 (FZ): subnormal inputs and results are zero for float32/float64.
        // SAFETY: reads and writes only the FPCR register.
        unsafe {
            let mut fpcr: u64;
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
            fpcr |= 1 << 24;
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Whether libtorch's CPU arithmetic, on this thread, reads a subnormal float as zero (what
/// `fer-train doctor` reports: the end-to-end check that `main` set the environment).
pub fn libtorch_flushes_subnormals() -> bool {
    let t = tch::Tensor::from_slice(&[f32::MIN_POSITIVE / 4.0]) * 1.0f64;
    t.double_value(&[0]) == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    const SUBNORMAL: f32 = f32::MIN_POSITIVE / 4.0;

    /// Runs in a thread of its own so the test harness's other threads keep the default.
    #[test]
    fn subnormals_become_zero_here_in_later_threads_and_in_libtorch() {
        std::thread::spawn(|| {
            assert!(black_box(SUBNORMAL) * black_box(1.0) > 0.0, "default: subnormals are kept");
            assert!(flush_subnormals_to_zero());
            // DAZ: a subnormal input reads as zero; FTZ: a subnormal result is written as zero.
            assert_eq!(black_box(SUBNORMAL) * black_box(1.0), 0.0);
            assert_eq!(black_box(f32::MIN_POSITIVE) * black_box(0.25), 0.0);
            assert_eq!(black_box(1e-300f64) * black_box(1e-10), 0.0);
            let child = std::thread::spawn(|| black_box(f32::MIN_POSITIVE) * black_box(0.25));
            assert_eq!(child.join().unwrap(), 0.0, "a thread created later inherits the setting");
            let t = tch::Tensor::from_slice(&[SUBNORMAL, 1.0]) * 1.0f64;
            assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![0.0, 1.0], "libtorch's CPU ops");
            assert!(libtorch_flushes_subnormals());
        })
        .join()
        .unwrap();
        // This thread was not touched.
        assert!(black_box(SUBNORMAL) * black_box(1.0) > 0.0);
        assert!(!libtorch_flushes_subnormals());
    }
}
