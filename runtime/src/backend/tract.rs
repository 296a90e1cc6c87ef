//! tract backend: pure Rust, no platform-specific code, so it cross-compiles to aarch64 (Raspberry
//! Pi, Jetson CPU). The input shape is fixed up front with `with_input_fact` and the graph
//! optimised for it; one optimised plan per batch size is built on first use and cached, which is
//! correct for any `N` and keeps tract's fastest kernels (no symbolic shapes at run time).

use super::{Engine, Outputs};
use crate::error::{FerError, Result};
use crate::metadata::{outputs as names, ModelInfo};
use ndarray::ArrayView4;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::transform::ModelTransform;

/// aarch64 (Raspberry Pi 5, Jetson) has float16 arithmetic; elsewhere float16 graphs run in float32.
const NATIVE_F16: bool = cfg!(target_arch = "aarch64");

/// Plans kept at once; a caller cycling through more batch sizes than this recompiles.
const MAX_PLANS: usize = 16;

pub(crate) struct TractEngine {
    model: InferenceModel,
    /// `(C, H, W)` of the input.
    chw: (usize, usize, usize),
    output_names: Vec<String>,
    plans: Mutex<HashMap<usize, Arc<TypedRunnableModel>>>,
}

impl TractEngine {
    pub(crate) fn new(
        proto: &tract_onnx::pb::ModelProto,
        path: &Path,
        info: &ModelInfo,
    ) -> Result<Self> {
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(|e| FerError::Contract {
                path: path.to_path_buf(),
                reason: format!("tract cannot load it: {e:#}"),
            })?;
        let output_names: Vec<String> =
            [names::LOGITS, names::PROBS, names::CAM, names::CONFIDENCE]
                .into_iter()
                .filter(|n| info.outputs.iter().any(|o| o.name == *n))
                .map(String::from)
                .collect();
        // Only the contract's outputs, in a known order: extra outputs are never computed.
        model.select_outputs_by_name(&output_names)?;
        let (h, w) = info.metadata.input_size;
        let engine = TractEngine {
            model,
            chw: (info.channels, h, w),
            output_names,
            plans: Mutex::new(HashMap::new()),
        };
        // Build the batch-1 plan now, so an unsupported op fails at load time, not on the first image.
        engine.plan(1).map_err(|e| FerError::Contract {
            path: path.to_path_buf(),
            reason: format!("tract cannot optimise it: {e}"),
        })?;
        Ok(engine)
    }

    fn plan(&self, n: usize) -> Result<Arc<TypedRunnableModel>> {
        let mut plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = plans.get(&n) {
            return Ok(p.clone());
        }
        let (c, h, w) = self.chw;
        let mut typed = self.model.clone().with_input_fact(0, f32::fact([n, c, h, w]).into())?.into_typed()?;
        if !NATIVE_F16 {
            // Without half-precision arithmetic in hardware tract emulates float16, which is both
            // slower and less exact than computing in float32 on the upcast float16 weights; an
            // `--fp16` file then only saves disk and memory on this target.
            FloatPrecisionTranslator::new(f16::datum_type(), f32::datum_type()).transform(&mut typed)?;
        }
        let plan = typed.into_optimized()?.into_runnable()?;
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(n, plan.clone());
        Ok(plan)
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
        let plan = self.plan(n)?;
        let input: Tensor = x.to_owned().into_dyn().into();
        let out = plan.run(tvec!(input.into()))?;
        let named = self
            .output_names
            .iter()
            .zip(out.iter())
            .map(|(name, v)| Ok((name.clone(), v.to_plain_array_view::<f32>()?.to_owned())))
            .collect::<Result<Vec<_>>>()?;
        Outputs::from_named(named, n)
    }

    fn name(&self) -> String {
        "tract".to_string()
    }
}
