//! Checks run after writing: the graph must load, type-check and optimise in tract for the declared
//! input shape. (The ONNX checker and ONNX Runtime run in the workspace tests, through Python and
//! `fer-runtime`.)

use crate::error::{ExportError, Result};
use tract_onnx::prelude::*;

/// Loads `bytes` in tract with the input fixed to `input_shape` and optimises it: this catches
/// unknown ops, wrong attributes and shape errors, naming the node tract complains about.
pub fn load_in_tract(bytes: &[u8], input_shape: &[usize]) -> Result<()> {
    let mut reader = bytes;
    let model = tract_onnx::onnx()
        .model_for_read(&mut reader)
        .and_then(|m| m.with_input_fact(0, f32::fact(input_shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable());
    model.map(|_| ()).map_err(|e| ExportError::Tract(format!("{e:?}")))
}
