//! The crate's one error type. Variants are structured and name the file, key or tensor at fault,
//! so a CLI line or a log entry says what to fix without a backtrace.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model, reading an image or running inference.
#[derive(Debug, thiserror::Error)]
pub enum FerError {
    /// A file that cannot be opened or read (missing, permissions, ...).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model file is not an ONNX protobuf at all.
    #[error("{}: not an ONNX model: {reason}", path.display())]
    NotOnnx { path: PathBuf, reason: String },
    /// An ONNX model that does not follow the fer contract (input `[N, C, H, W]`, outputs
    /// `logits` and `probs`, ...).
    #[error("{}: breaks the fer ONNX contract: {reason}", path.display())]
    Contract { path: PathBuf, reason: String },
    /// A `fer.*` metadata entry that is present but unusable.
    #[error("metadata `{key}` = {value:?}: {reason}")]
    Metadata {
        key: String,
        value: String,
        reason: String,
    },
    /// An image whose header claims more pixels than the configured limit; refused before decoding.
    #[error(
        "{}: image is {width}x{height} ({:.1} megapixels), over the limit of {:.1} megapixels",
        path.display(),
        (*width as f64) * (*height as f64) / 1e6,
        *max_pixels as f64 / 1e6
    )]
    ImageTooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// A file whose first bytes match none of the supported image formats.
    #[error("{}: not a supported image ({})", path.display(), crate::inputs::image_formats())]
    NotAnImage { path: PathBuf },
    /// A recognised image that fails to decode (truncated, corrupt).
    #[error("{}: cannot decode image: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// An image error with no file attached (encoding a CAM overlay, in-memory images).
    #[error("image: {0}")]
    Image(#[from] image::ImageError),
    /// A tensor handed to the model whose shape does not fit its input.
    #[error("input tensor has shape {got:?}; the model takes {expected}")]
    InputShape { expected: String, got: Vec<usize> },
    /// A model output whose shape breaks the contract at run time.
    #[error("output `{name}`: {reason}")]
    Output { name: String, reason: String },
    /// `predict_batch` with no images.
    #[error("empty batch: at least one image is needed")]
    EmptyBatch,
    /// ONNX Runtime was asked for but cannot be used (library missing, or built without `ort`).
    #[error("ONNX Runtime is not available: {0} (set ORT_DYLIB_PATH to libonnxruntime.so.1.31.1 — scripts/setup.sh installs it under .venv/lib/python3*/site-packages/onnxruntime/capi/ — or use --backend tract)")]
    OrtUnavailable(String),
    #[cfg(feature = "ort")]
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("tract: {0:#}")]
    Tract(#[from] tract_onnx::prelude::TractError),
    #[error("array shape: {0}")]
    Shape(#[from] ndarray::ShapeError),
    /// A Haar cascade file that cannot be used.
    #[error("face cascade {}: {reason}", path.display())]
    Cascade { path: PathBuf, reason: String },
    #[error("face cascade {}: {source}", path.display())]
    Xml {
        path: PathBuf,
        #[source]
        source: roxmltree::Error,
    },
    /// A command-line style option (backend, device, detector) that cannot be parsed.
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A glob pattern that is malformed or matches nothing.
    #[error("{pattern}: {reason}")]
    Glob { pattern: String, reason: String },
    /// A frame of an image stream (`fer-run -`, [`crate::stream::FrameStream`]) that cannot be
    /// cut out: the stream ended inside it, or its bytes are no image. `name` is `stdin:<i>`.
    #[error("{name}: {reason}")]
    Stream { name: String, reason: String },
}

/// `Result` with [`FerError`] as the default error.
pub type Result<T, E = FerError> = std::result::Result<T, E>;

impl FerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Creates the folder a file is about to be written into; the error names the folder.
pub(crate) fn create_parent(path: &std::path::Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| FerError::io(dir, e)),
        None => Ok(()),
    }
}
