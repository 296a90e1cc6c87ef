//! `fer-export`: writes ONNX graphs for fer models without libtorch.
//!
//! The trainer's blocks call [`GraphBuilder`] from their `emit` methods (beside their tch `forward`,
//! in the same file), so the exported graph is built from the very parameters the model trains.
//! [`Metadata`] carries the ONNX contract of `docs/onnx-contract.md`: labels, input size, colour mode,
//! normalisation, method, backbone, data and validation accuracy travel inside the file.
//!
//! ```
//! use fer_export::{GraphBuilder, Dim, Attr};
//! let mut g = GraphBuilder::new("tiny");
//! let x = g.input("input", &[Dim::batch(), Dim::Fixed(4)]);
//! let w = g.initializer("fc.weight", &[2, 4], &[0.5; 8]).unwrap();
//! let y = g.op("Gemm", &[&x, &w], &[Attr::int("transB", 1)], "fc");
//! g.output("logits", &y, &[Dim::batch(), Dim::Fixed(2)]);
//! let model = g.finish(&fer_export::Metadata::default()).unwrap();
//! assert_eq!(model.graph.unwrap().node.len(), 2); // Gemm, then Identity naming the output
//! ```

mod error;
mod graph;
mod metadata;
pub mod check;
pub mod ensemble;
pub mod fp16;
pub mod int8;
pub mod weights;

pub use error::{ExportError, Result};
pub use graph::{flush_subnormal, flush_subnormals, initializer_f32, Attr, Dim, GraphBuilder, IR_VERSION, OPSET};
pub use metadata::{ColorMode, Metadata, keys};
pub use tract_onnx::pb;

use prost::Message;
use std::path::Path;

/// Serialises a model to bytes.
pub fn to_bytes(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Writes a model atomically: to `<path>.tmp`, then renamed, so a crash never leaves half a file.
pub fn save(model: &pb::ModelProto, path: &Path) -> Result<()> {
    let tmp = path.with_extension("onnx.tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ExportError::Io(dir.to_path_buf(), e))?;
    }
    std::fs::write(&tmp, to_bytes(model)).map_err(|e| ExportError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| ExportError::Io(path.to_path_buf(), e))?;
    Ok(())
}

/// Reads a model file (for inspection and tests).
pub fn load(path: &Path) -> Result<pb::ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| ExportError::Io(path.to_path_buf(), e))?;
    pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| ExportError::Invalid(format!("{}: not an ONNX model: {e}", path.display())))
}
