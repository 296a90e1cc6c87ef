use std::path::PathBuf;

/// Everything that can go wrong while building or writing an ONNX graph.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A block or configuration that has no faithful ONNX form: refused rather than approximated.
    #[error("cannot export `{node}`: {reason}")]
    Unsupported { node: String, reason: String },
    /// Two values or initializers with one name: the graph would be ambiguous.
    #[error("duplicate ONNX name `{0}`")]
    DuplicateName(String),
    /// Initializer data whose length does not match its dims.
    #[error("initializer `{name}`: dims {dims:?} need {expected} values, got {got}")]
    ShapeMismatch { name: String, dims: Vec<i64>, expected: usize, got: usize },
    #[error("invalid model: {0}")]
    Invalid(String),
    #[error("the written graph does not load in tract: {0}")]
    Tract(String),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;
