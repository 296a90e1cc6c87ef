//! `fer-runtime`: runs fer facial-expression ONNX models at the edge, on ONNX Runtime (CPU, CUDA,
//! TensorRT; feature `ort`, on by default) or tract (pure Rust, any CPU including aarch64).
//!
//! A model file is self-describing (the ONNX contract of `design.md`): input `input`
//! `[N, C, H, W]`, outputs `logits` and `probs` `[N, K]`, optionally `cam` `[N, K, h, w]` and
//! `confidence` `[N]`, and `fer.*` metadata (labels, input size, colour mode, mean/std, ...) that
//! drives the preprocessing. Nothing about a particular model is hard-coded here.
//!
//! ```no_run
//! use fer_runtime::{load_image, Backend, Detect, FaceFinder, ImageLimits, Model};
//!
//! let model = Model::load("eac_mbv2.onnx", Backend::Auto)?;
//! let photo = load_image("class_photo.jpg".as_ref(), &ImageLimits::default())?;
//! let finder = FaceFinder::new(&Detect::Auto, model.metadata().input_size)?;
//! let faces = finder.find(&photo);
//! let crops: Vec<_> = faces.faces.iter().map(|f| f.image.clone()).collect();
//! let predictions = model.predict_batch(&crops)?;
//! for (face, p) in faces.faces.iter().zip(&predictions) {
//!     println!("{:?}: {} ({:.2})", face.bbox, p.label, p.confidence);
//! }
//! // The photo with each face's box and expression drawn on it (what `fer-run --annotate` writes).
//! let drawn: Vec<_> = faces.faces.iter().zip(&predictions).map(|(f, p)| (f.bbox, p)).collect();
//! fer_runtime::annotate::save_annotated("class_photo_annotated.png".as_ref(), &photo, &drawn)?;
//! # Ok::<(), fer_runtime::FerError>(())
//! ```
//!
//! A camera on stdin (`rpicam-vid --codec mjpeg -o - | my_app`), frame by frame, its faces tracked
//! between full searches and its frames annotated into one Motion-JPEG file, as `fer-run -` does:
//!
//! ```no_run
//! use fer_runtime::stream::{FrameStream, MjpegWriter};
//! use fer_runtime::{annotate::annotate, decode_image, track::FaceTracker};
//! use fer_runtime::{Backend, Detect, FaceFinder, ImageLimits, Model};
//!
//! let model = Model::load("eac_mbv2.onnx", Backend::Auto)?;
//! let finder = FaceFinder::new(&Detect::Auto, model.metadata().input_size)?;
//! let mut tracker = FaceTracker::new(&finder, 10); // the whole frame every 10th frame
//! let mut video = MjpegWriter::create("annotated.mjpeg".as_ref())?;
//! for frame in FrameStream::new(std::io::stdin(), "stdin") {
//!     let frame = frame?;
//!     let img = decode_image(&frame.bytes, frame.name.as_ref(), &ImageLimits::default())?;
//!     let faces = tracker.find(&img);
//!     let crops: Vec<_> = faces.faces.iter().map(|f| f.image.clone()).collect();
//!     let predictions = model.predict_batch(&crops)?;
//!     let drawn: Vec<_> = faces.faces.iter().zip(&predictions).map(|(f, p)| (f.bbox, p)).collect();
//!     video.push(&annotate(&img, &drawn))?;
//! }
//! # Ok::<(), fer_runtime::FerError>(())
//! ```
//!
//! Modules: [`metadata`] (what a file declares), [`preprocess`] (image → tensor), `backend`
//! ([`Engine`] over ONNX Runtime and tract), [`face`] (Haar cascade detector, crops), [`cam`]
//! (activation-map overlays), [`annotate`] (boxes and labels drawn on pictures), [`output`] (JSON
//! lines, table), [`inputs`] (files, directories, globs), [`stream`] (images one after another
//! on a pipe), [`track`] (faces followed from frame to frame), [`bench`](mod@bench) (latency), [`metrics`]
//! (`fer-run eval`'s scores), [`intra_op`] (tract's thread pool).

pub mod annotate;
mod backend;
pub mod bench;
pub mod cam;
mod draw;
mod error;
pub mod face;
pub mod inputs;
pub mod intra_op;
pub mod metadata;
pub mod metrics;
mod model;
pub mod output;
mod postprocess;
pub mod preprocess;
pub mod resize;
pub mod stream;
pub mod track;
#[cfg(test)]
mod test_rng;

pub use backend::{ort_available, prefer_tile_use_kernels, prepare_tract_graph, Backend, Device, Engine, Outputs};
pub use error::{FerError, Result};
pub use face::{BBox, Detect, Face, FaceFinder, Faces, HaarCascade, HaarParams, SearchPicture};
pub use inputs::collect_inputs;
pub use metadata::{ColorMode, EvalView, Metadata, ModelInfo};
pub use model::{Model, Prediction};
pub use postprocess::entropy_confidence;
pub use preprocess::{decode_image, load_image, ImageLimits, Preprocessor, Tta};
