//! ONNX Runtime backend (the `ort` crate, library loaded at run time from `ORT_DYLIB_PATH` or
//! `libonnxruntime.so` on the library path).

use super::{ep, Device, Engine, Outputs};
use crate::error::{FerError, Result};
use crate::metadata::{outputs as names, ModelInfo};
use ndarray::ArrayView4;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The process-wide ONNX Runtime environment; the first call loads the library. A load failure is
/// remembered (ort's loader runs once per process) and reported as [`FerError::OrtUnavailable`].
pub(crate) fn environment() -> Result<&'static Environment> {
    static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = std::env::var_os("ORT_DYLIB_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                format!(
                    "{}onnxruntime{}",
                    std::env::consts::DLL_PREFIX,
                    std::env::consts::DLL_SUFFIX
                )
                .into()
            });
        // A missing file would make dlopen search the library path instead; say which file is absent.
        if path.components().count() > 1 && !path.exists() {
            return Err(format!("ORT_DYLIB_PATH={} does not exist", path.display()));
        }
        ort::init_from(&path)
            .map_err(|e| e.to_string())?
            .with_name("fer-runtime")
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| FerError::OrtUnavailable(e.clone()))
}

pub(crate) struct OrtEngine {
    // `Session::run` takes `&mut self`; the mutex makes the engine shareable across threads.
    session: Mutex<Session>,
    input_name: String,
    output_names: Vec<String>,
    label: String,
}

impl OrtEngine {
    pub(crate) fn new(bytes: &[u8], info: &ModelInfo, device: Device) -> Result<Self> {
        let env = environment()?;
        let mut last_err = None;
        for (label, mut builder) in ep::candidates(env, device)? {
            // ONNX Runtime's intra-op threads spin between its operators, which keeps a call fast,
            // and by default go on spinning after the call returns, waiting for the next. That
            // took the cores from what fer-run does between calls: decoding, and searching for
            // faces, which was 1.7x slower on a stream (2 cores). Stopping the spin when a call
            // returns cut a stream's time by 30 % and a folder of photos' by 14 %, with the same
            // per-call latency (docs/RESULTS.md).
            builder = builder
                .with_config_entry("session.force_spinning_stop", "1")
                .map_err(|e| FerError::Ort(e.into()))?;
            if info.int8_weights > 0 {
                // ONNX Runtime keeps every DequantizeLinear for its QDQ fusions, so int8 weights
                // would be dequantized on every call (ResNet-18 at 112 px: 23.5 against 13.1 ms
                // with this set, on a busy 2-core box); with no quantized activations there is
                // nothing to fuse, and this lets constant folding turn them into float32 once.
                builder = builder
                    .with_config_entry("session.disable_quant_qdq", "1")
                    .map_err(|e| FerError::Ort(e.into()))?;
            }
            match builder.commit_from_memory(bytes) {
                Ok(session) => {
                    let output_names = [names::LOGITS, names::PROBS, names::CAM, names::CONFIDENCE]
                        .into_iter()
                        .filter(|n| session.outputs().iter().any(|o| o.name() == *n))
                        .map(String::from)
                        .collect();
                    return Ok(OrtEngine {
                        session: Mutex::new(session),
                        input_name: info.input_name.clone(),
                        output_names,
                        label,
                    });
                }
                Err(e) => {
                    if label != "CPU" {
                        tracing::warn!(
                            "ONNX Runtime session on {label} failed ({e}); retrying on CPU"
                        );
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("the CPU candidate is always tried").into())
    }
}

impl Engine for OrtEngine {
    fn run(&self, x: ArrayView4<f32>) -> Result<Outputs> {
        let n = x.dim().0;
        let x = x.as_standard_layout();
        let input = TensorRef::from_array_view(x.view())?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let out = session.run(ort::inputs![self.input_name.as_str() => input])?;
        let mut named = Vec::with_capacity(self.output_names.len());
        for name in &self.output_names {
            let value = out.get(name.as_str()).ok_or_else(|| FerError::Output {
                name: name.clone(),
                reason: "not returned".into(),
            })?;
            named.push((name.clone(), value.try_extract_array::<f32>()?.to_owned()));
        }
        Outputs::from_named(named, n)
    }

    fn name(&self) -> String {
        format!("onnxruntime ({})", self.label)
    }
}
