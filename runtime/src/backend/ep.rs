//! Execution-provider selection for ONNX Runtime, in one place. A requested GPU provider that
//! this ONNX Runtime build lacks (the PyPI `onnxruntime` wheel is CPU-only) or that fails to
//! register falls back to CPU with a warning, never an abort: an edge box without a GPU still runs.

use super::Device;
use crate::error::Result;
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::{builder::SessionBuilder, Session};

/// Session builders to try in order, each with a label naming its providers; the last is CPU only,
/// so a commit failure on a GPU provider (missing CUDA libraries) can still fall back.
pub(super) fn candidates(
    env: &Environment,
    device: Device,
) -> Result<Vec<(String, SessionBuilder)>> {
    let wanted: Vec<(&str, ort::Result<bool>, ExecutionProviderDispatch)> = match device {
        Device::Cpu => Vec::new(),
        Device::Cuda => vec![(
            "CUDA",
            ep::CUDA::is_available(),
            ep::CUDA::default().build(),
        )],
        Device::TensorRt => vec![
            (
                "TensorRT",
                ep::TensorRT::is_available(),
                ep::TensorRT::default().build(),
            ),
            (
                "CUDA",
                ep::CUDA::is_available(),
                ep::CUDA::default().build(),
            ),
        ],
    };
    let mut out = Vec::new();
    if !wanted.is_empty() {
        let mut builder = Session::builder(env)?;
        let mut names = Vec::new();
        for (name, available, dispatch) in wanted {
            match available {
                Ok(true) => match dispatch.register(&mut builder) {
                    Ok(()) => names.push(name),
                    Err(e) => tracing::warn!("{device} requested: registering the {name} execution provider failed ({e})"),
                },
                Ok(false) => tracing::warn!(
                    "{device} requested, but this ONNX Runtime build has no {name} execution provider \
                     (the PyPI `onnxruntime` wheel is CPU-only; `onnxruntime-gpu` has CUDA and TensorRT)"
                ),
                Err(e) => tracing::warn!("{device} requested: cannot query the {name} execution provider ({e})"),
            }
        }
        if names.is_empty() {
            tracing::warn!("falling back to the CPU execution provider");
        } else {
            names.push("CPU");
            out.push((names.join("+"), builder));
        }
    }
    out.push(("CPU".to_string(), Session::builder(env)?));
    Ok(out)
}
