//! tract backend: pure Rust, no platform-specific code, so it cross-compiles to aarch64 (Raspberry
//! Pi, Jetson CPU). The input shape is fixed to batch 1 with `with_input_fact` and the graph
//! optimised for it once, at load (tract's fastest kernels, no symbolic shapes at run time); a
//! batch runs as batch-1 calls in parallel, which on these convnets was faster than a batch-N
//! plan (`bench/runtime_vs_python.py`, docs/RESULTS.md).

use super::{Engine, Outputs};
use crate::error::{FerError, Result};
use crate::intra_op::IntraOp;
use crate::metadata::{outputs as names, ModelInfo};
use ndarray::{ArrayD, ArrayView4, Axis};
use rayon::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::transform::ModelTransform;

/// aarch64 (Raspberry Pi 5, Jetson) has float16 arithmetic; elsewhere float16 graphs run in float32.
const NATIVE_F16: bool = cfg!(target_arch = "aarch64");

pub(crate) struct TractEngine {
    /// The optimised batch-1 plan.
    plan: Arc<TypedRunnableModel>,
    /// Run states of the plan, kept for the next call: `plan.run` builds a fresh one each time
    /// (every operator's state, the constants' slots), which was 2–4 % of a 48 px MobileNetV2 call
    /// (1 and 2 threads, 5 rounds of 300 interleaved calls each way, a throwaway timing loop not
    /// kept in the repo). One per concurrent caller.
    states: Mutex<Vec<TypedSimpleState>>,
    /// `(C, H, W)` of the input.
    chw: (usize, usize, usize),
    output_names: Vec<String>,
    /// tract's own thread pool for the matrix products inside one single-image call. tract is
    /// single-threaded unless given one; ONNX Runtime's default is one intra-op thread per core, so
    /// this is the like-for-like setting.
    intra_op: IntraOp,
}

impl TractEngine {
    pub(crate) fn new(
        proto: &tract_onnx::pb::ModelProto,
        path: &Path,
        info: &ModelInfo,
    ) -> Result<Self> {
        let contract = |stage: &str, e: &dyn std::fmt::Display| FerError::Contract {
            path: path.to_path_buf(),
            reason: format!("tract cannot {stage} it: {e:#}"),
        };
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(|e| contract("load", &e))?;
        let output_names: Vec<String> =
            [names::LOGITS, names::PROBS, names::CAM, names::CONFIDENCE]
                .into_iter()
                .filter(|n| info.outputs.iter().any(|o| o.name == *n))
                .map(String::from)
                .collect();
        // Only the contract's outputs, in a known order: extra outputs are never computed.
        model.select_outputs_by_name(&output_names)?;
        let (h, w) = info.metadata.input_size;
        let chw = (info.channels, h, w);
        // Optimised now, so an unsupported op fails at load time, not on the first image.
        let plan = optimise(model, chw).map_err(|e| contract("optimise", &e))?;
        Ok(TractEngine {
            plan,
            states: Mutex::new(Vec::new()),
            chw,
            output_names,
            intra_op: IntraOp::from_env(),
        })
    }
}

fn optimise(model: InferenceModel, (c, h, w): (usize, usize, usize)) -> TractResult<Arc<TypedRunnableModel>> {
    let mut typed = model.with_input_fact(0, f32::fact([1, c, h, w]).into())?.into_typed()?;
    prepare_tract_graph(&mut typed)?;
    typed.into_optimized()?.into_runnable()
}

/// The backend's own graph changes, made before tract optimises a typed model: on x86-64 CPUs
/// with AVX2 and FMA the float32 convolutions become the backend's own ops (`tract_ops`: with
/// their bias, residual add and ReLU / ReLU6 fused; `FER_TRACT_OPS=0` keeps tract's, to compare),
/// then every convolution left runs channel-last. A float16 graph (`fer-train export --fp16`) is
/// first upcast to float32 where the CPU has no half-precision arithmetic, and weights stored as
/// float16 or int8 are folded into float32 constants. `examples/tract_profile`
/// calls it too, so it profiles what the backend runs.
pub fn prepare_tract_graph(typed: &mut TypedModel) -> TractResult<()> {
    if !NATIVE_F16 {
        // Without half-precision arithmetic in hardware tract emulates float16, which is both
        // slower and less exact than computing in float32 on the upcast float16 weights; an
        // `--fp16` file then only saves disk and memory on this target.
        FloatPrecisionTranslator::new(f16::datum_type(), f32::datum_type()).transform(typed)?;
    }
    fold_constants(typed)?;
    super::tract_ops::rewrite(typed)?;
    channels_last(typed)
}

/// Replaces every node computed from constants alone with the constant it computes: weights
/// stored as float16 (behind the upcast's Casts) or int8 (behind a DequantizeLinear) become
/// float32 constants, which the backend's convolutions need. Unfolded, tract converted and
/// re-packed every such weight on every call (a float16 ResNet-18 at 112 px took 33.6 ms instead
/// of 14.5 single-threaded, its int8 twin 16.7 instead of 7.8 with two threads). tract's own
/// constant propagation is not enough: it will not fold a result larger than both its inputs and
/// 4 MiB, and a dequantized ResNet-18 weight of 2.4 M values is 9.4 MB.
fn fold_constants(typed: &mut TypedModel) -> TractResult<()> {
    use tract_onnx::tract_core::ops::konst::Const;
    use tract_onnx::tract_core::ops::source::TypedSource;
    // One pass in evaluation order: a folded node's successors then read a constant, so a chain
    // (Cast, Sub, Mul of a DequantizeLinear) folds link by link. Patches only append nodes, so the
    // ids of the order stay valid until the final compaction.
    for id in typed.eval_order()? {
        let node = typed.node(id);
        if node.inputs.is_empty() || node.outputs.len() != 1 || node.op_is::<Const>() || node.op_is::<TypedSource>() {
            continue;
        }
        let inputs = typed.node_input_facts(id)?.iter().map(|f| f.konst.clone().map(|k| k.into_tvalue())).collect::<Option<TVec<_>>>();
        let Some(inputs) = inputs else {
            continue;
        };
        // `None`: the op needs a plan around it (state, symbols): leave it to tract.
        let Some(mut out) = node.op.eval_out_of_plan(inputs)? else {
            continue;
        };
        let name = node.name.clone();
        let mut patch = TypedModelPatch::default();
        let wire = patch.add_const(name, out.remove(0).into_arc_tensor())?;
        patch.shunt_outside(typed, OutletId::new(id, 0), wire)?;
        patch.apply(typed)?;
    }
    typed.compact()
}

/// Runs every convolution channel-last (tract's `conv_nhwc` transform; one layout move stays at
/// the input). ONNX convolutions are channel-first, and on that layout tract's depthwise kernel
/// walks each small plane tap by tap; channel-last, it is vectorised across channels. On the
/// 48 px MobileNetV2 this took the depthwise convolutions from 1.46 to 0.22 ms and the whole
/// single-threaded run from 2.7 to 1.4 ms; ResNet-18 is unchanged (`examples/tract_profile`,
/// `TRACT_TRANSFORMS=conv_nhwc`, docs/RESULTS.md). A tract without the transform keeps the layout.
pub(crate) fn channels_last(typed: &mut TypedModel) -> TractResult<()> {
    match tract_onnx::tract_core::transform::get_transform("conv_nhwc")? {
        Some(transform) => transform.transform(typed),
        None => Ok(()),
    }
}

/// Has tract pick its matrix-product kernels by tile use instead of by its Intel cost model, on
/// Intel x86-64 CPUs; elsewhere (AMD, aarch64, ...) it does nothing. It sets `TRACT_X86_KIND=other`
/// unless that variable is already set, which tract 0.23 reads when it optimises a model, so it must
/// run before [`Model::load`](crate::Model::load). `fer-run` calls it first thing.
///
/// Why: the Intel cost model counts about 4 ns per kernel call for the narrow 40x2 tile, and on
/// the small-`k` products of a small convnet those calls are what costs (each also switches the
/// floating-point control register): the 48 px MobileNetV2's 16 → 96 expansion at 24x24 took
/// 0.10 ms in 720 calls of the 40x2 kernel against 0.055 ms in 288 calls of the 16x12 one that
/// the tile-use rule picks (`TRACT_PROFILE_NODES=info` of `examples/tract_profile`). End to end,
/// `fer-run bench --backend tract`, 3 interleaved rounds on an AVX-512 Xeon: 48 px MobileNetV2
/// p50 1.30–1.36 → 1.28–1.30 ms, 112 px MobileNetV2 4.24–4.30 → 4.03–4.07 ms, 112 px ResNet-18
/// 9.30–9.47 → 8.97–9.16 ms (docs/RESULTS.md). Not measured on AMD, so AMD keeps tract's choice.
///
/// # Safety
/// It may set a process environment variable, which is only sound while no other thread reads or
/// writes the environment: call it at the start of `main`, before any thread is spawned.
pub unsafe fn prefer_tile_use_kernels() {
    if std::env::var_os("TRACT_X86_KIND").is_none() && cpu_is_intel() {
        // SAFETY: the caller guarantees no other thread touches the environment.
        unsafe { std::env::set_var("TRACT_X86_KIND", "other") };
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_is_intel() -> bool {
    // `__cpuid` is safe on newer compilers and unsafe on older ones; leaf 0 exists on every x86-64.
    #[allow(unused_unsafe)]
    let id = unsafe { std::arch::x86_64::__cpuid(0) };
    let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
    vendor == b"GenuineIntel"
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_is_intel() -> bool {
    false
}

impl TractEngine {
    /// The contract's outputs for `x` (`[1, C, H, W]`), named, run on `threads`.
    fn run_plan(&self, x: ArrayView4<f32>, threads: &IntraOp) -> Result<Vec<(String, ArrayD<f32>)>> {
        let input: Tensor = x.to_owned().into_dyn().into();
        let pooled = self.states.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut state = match pooled {
            Some(state) => state,
            None => self.plan.spawn()?,
        };
        let out = threads.run(|| state.run(tvec!(input.into())))?;
        // Only a state whose run succeeded goes back (a failed one is dropped, not reused).
        self.states.lock().unwrap_or_else(|e| e.into_inner()).push(state);
        self.output_names
            .iter()
            .zip(out.iter())
            .map(|(name, v)| Ok((name.clone(), v.to_plain_array_view::<f32>()?.to_owned())))
            .collect()
    }
}

impl Engine for TractEngine {
    fn run(&self, x: ArrayView4<f32>) -> Result<Outputs> {
        let (n, c, h, w) = x.dim();
        if (c, h, w) != self.chw {
            let (ec, eh, ew) = self.chw;
            return Err(FerError::InputShape {
                expected: format!("[N, {ec}, {eh}, {ew}]"),
                got: vec![n, c, h, w],
            });
        }
        let named = if n <= 1 {
            self.run_plan(x, &self.intra_op)?
        } else {
            // Images of a batch run as batch-1 calls on rayon's pool, one image per core, each
            // single-threaded: on these small convnets that beats one batch-N plan.
            let parts = (0..n)
                .into_par_iter()
                .map(|i| self.run_plan(x.slice_axis(Axis(0), (i..i + 1).into()), &IntraOp::single_thread()))
                .collect::<Result<Vec<_>>>()?;
            self.output_names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let views: Vec<_> = parts.iter().map(|p| p[i].1.view()).collect();
                    Ok((name.clone(), ndarray::concatenate(Axis(0), &views)?))
                })
                .collect::<Result<Vec<_>>>()?
        };
        Outputs::from_named(named, n)
    }

    fn name(&self) -> String {
        "tract".to_string()
    }
}

#[cfg(test)]
mod tests {
    /// The vendor check agrees with what the kernel reports (it decides the kernel choice).
    #[test]
    fn cpu_vendor_matches_the_kernel() {
        if cfg!(not(target_arch = "x86_64")) {
            // Not x86-64: never Intel's choice. (Under qemu-user, as CI's aarch64 check runs the
            // tests, /proc/cpuinfo is the x86 host's, which says nothing about this target.)
            assert!(!super::cpu_is_intel());
            return;
        }
        let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
            eprintln!("skipped: no /proc/cpuinfo");
            return;
        };
        let Some(vendor) = cpuinfo.lines().find_map(|l| l.strip_prefix("vendor_id")) else {
            eprintln!("skipped: /proc/cpuinfo names no vendor (not x86)");
            assert!(!super::cpu_is_intel());
            return;
        };
        assert_eq!(super::cpu_is_intel(), vendor.trim_start_matches([' ', '\t', ':']).trim() == "GenuineIntel");
    }
}
