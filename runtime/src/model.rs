//! [`Model`]: a fer ONNX file loaded on a backend, with the preprocessing its metadata prescribes,
//! and [`Prediction`]: one classified image or face.

use crate::backend::{self, Backend, Engine, Outputs};
use crate::error::{FerError, Result};
use crate::face::BBox;
use crate::metadata::{Metadata, ModelInfo};
use crate::postprocess::entropy_confidence;
use crate::preprocess::{Preprocessor, Tta};
use image::DynamicImage;
use ndarray::{s, Array2, Array3, ArrayView4, Axis};
use std::path::{Path, PathBuf};

/// A loaded model.
///
/// `Model` is `Send + Sync`: load it once and share it (`Arc<Model>`, or `&Model` in scoped
/// threads / rayon) across threads. Calls on the ONNX Runtime backend are serialised by a mutex
/// around the session (ONNX Runtime parallelises inside each call); tract runs calls concurrently,
/// one of them at a time on its thread pool and any others each on its calling thread.
///
/// ```no_run
/// use fer_runtime::{Backend, Model};
/// let model = Model::load("eac_mbv2.onnx", Backend::Auto)?;
/// let img = image::open("face.png")?;
/// let p = model.predict_image(&img)?;
/// println!("{} ({:.0}% confident)", p.label, 100.0 * p.confidence);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Model {
    path: PathBuf,
    info: ModelInfo,
    pre: Preprocessor,
    tta: Tta,
    engine: Box<dyn Engine>,
}

// The documented promise above, checked at compile time.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Model>();
};

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("backend", &self.engine.name())
            .finish()
    }
}

/// One classified image or face.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The most probable class.
    pub label: String,
    /// Its index in the model's output order.
    pub class_index: usize,
    /// Every class with its probability, in the model's output order.
    pub probs: Vec<(String, f32)>,
    /// The model's `confidence` output if it has one, else `1 − H(p) / ln K` (GReFEL's
    /// normalised-entropy confidence) of `probs`.
    pub confidence: f32,
    /// The predicted class's activation map `[h, w]` at model resolution, if the model has `cam`.
    pub cam: Option<Array2<f32>>,
    /// Where the face is in the source image; `None` when the whole image was classified.
    pub face_box: Option<BBox>,
}

impl Prediction {
    /// The `k` most probable classes, most probable first.
    ///
    /// ```
    /// # use fer_runtime::Prediction;
    /// let p = Prediction { label: "happy".into(), class_index: 1, confidence: 0.5, cam: None, face_box: None,
    ///     probs: vec![("sad".into(), 0.2), ("happy".into(), 0.7), ("angry".into(), 0.1)] };
    /// assert_eq!(p.top(2), vec![("happy", 0.7), ("sad", 0.2)]);
    /// ```
    pub fn top(&self, k: usize) -> Vec<(&str, f32)> {
        let mut v: Vec<(&str, f32)> = self.probs.iter().map(|(l, p)| (l.as_str(), *p)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(k);
        v
    }
}

impl Model {
    /// Loads an ONNX file that follows the fer contract on `backend`.
    ///
    /// Fails with [`FerError::NotOnnx`] for a file that is not ONNX, [`FerError::Contract`] for a
    /// model without a `[N, C, H, W]` input or `logits`/`probs` outputs or with inconsistent
    /// metadata, and [`FerError::OrtUnavailable`] when ONNX Runtime is requested but cannot load.
    pub fn load(path: impl AsRef<Path>, backend: Backend) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| FerError::io(path, e))?;
        let proto = crate::metadata::decode(&bytes, path)?;
        let info = ModelInfo::from_proto(&proto, path)?;
        let engine = backend::open(&bytes, &proto, path, &info, backend)?;
        let pre = Preprocessor::from_info(&info);
        Ok(Model {
            path: path.to_path_buf(),
            info,
            pre,
            tta: Tta::None,
            engine,
        })
    }

    /// The same model with test-time augmentation on image inputs ([`Model::predict_batch`]):
    /// each face is run in `tta.views()` views and their outputs averaged. Ten-crop needs the
    /// file's `fer.crop_pad`.
    pub fn with_tta(mut self, tta: Tta) -> Result<Model> {
        if tta == Tta::TenCrop && self.pre.crop_pad == 0 {
            return Err(FerError::Invalid {
                what: "tta",
                value: tta.to_string(),
                reason: format!(
                    "{} has no positive `fer.crop_pad` metadata to cut the crops from",
                    self.path.display()
                ),
            });
        }
        self.tta = tta;
        Ok(self)
    }

    /// The test-time augmentation [`Model::predict_batch`] applies.
    pub fn tta(&self) -> Tta {
        self.tta
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything the file declares: metadata, inputs, outputs, opset.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The `fer.*` metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.info.metadata
    }

    /// Class labels in output order.
    pub fn labels(&self) -> &[String] {
        &self.info.metadata.labels
    }

    /// What runs the model, e.g. `onnxruntime (CPU)` or `tract`.
    pub fn backend_name(&self) -> String {
        self.engine.name()
    }

    /// The preprocessing this model's metadata prescribes.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// One image as the model's `[C, H, W]` input.
    pub fn preprocess(&self, img: &DynamicImage) -> Array3<f32> {
        self.pre.tensor(img)
    }

    /// Runs an already preprocessed batch `[N, C, H, W]`.
    pub fn predict_tensor(&self, x: ArrayView4<f32>) -> Result<Outputs> {
        let (n, c, h, w) = x.dim();
        let (eh, ew) = self.info.metadata.input_size;
        if n == 0 || (c, h, w) != (self.info.channels, eh, ew) {
            return Err(FerError::InputShape {
                expected: format!("[N >= 1, {}, {eh}, {ew}]", self.info.channels),
                got: vec![n, c, h, w],
            });
        }
        self.engine.run(x)
    }

    /// Classifies one image as it is (a face crop; see [`crate::FaceFinder`] for full photos).
    pub fn predict_image(&self, img: &DynamicImage) -> Result<Prediction> {
        let mut v = self.predict_batch(std::slice::from_ref(img))?;
        Ok(v.remove(0))
    }

    /// Classifies several images in one run of the model (with [`Model::with_tta`], one run of
    /// all their views).
    pub fn predict_batch(&self, imgs: &[DynamicImage]) -> Result<Vec<Prediction>> {
        if imgs.is_empty() {
            return Err(FerError::EmptyBatch);
        }
        let x = self.pre.views_batch(imgs, self.tta);
        let out = self.predict_tensor(x.view())?;
        Ok(self.predictions(&average_views(out, self.tta.views())))
    }

    /// Turns raw outputs into one [`Prediction`] per batch row (no face boxes).
    pub fn predictions(&self, out: &Outputs) -> Vec<Prediction> {
        let labels = self.labels();
        out.probs
            .axis_iter(Axis(0))
            .enumerate()
            .map(|(i, p)| {
                let p: Vec<f32> = p.to_vec();
                let class_index = argmax(&p);
                let confidence = match &out.confidence {
                    Some(c) => c[i],
                    None => entropy_confidence(&p),
                };
                Prediction {
                    label: labels[class_index].clone(),
                    class_index,
                    probs: labels.iter().cloned().zip(p).collect(),
                    confidence,
                    cam: out.cam.as_ref().map(|c| {
                        c.index_axis(Axis(0), i)
                            .index_axis(Axis(0), class_index)
                            .to_owned()
                    }),
                    face_box: None,
                }
            })
            .collect()
    }
}

/// Outputs of `n · views` rows (each image's views together) as `n` rows: logits, probabilities
/// and confidence averaged over the views (the trainer's ten-crop averages probabilities too);
/// the CAM is the first view's, since the others' maps are of other crops or mirrored.
fn average_views(out: Outputs, views: usize) -> Outputs {
    if views == 1 {
        return out;
    }
    let mean = |a: &Array2<f32>| {
        let (rows, k) = a.dim();
        a.to_shape((rows / views, views, k))
            .expect("rows are whole groups of views")
            .mean_axis(Axis(1))
            .expect("views > 0")
    };
    Outputs {
        logits: mean(&out.logits),
        probs: mean(&out.probs),
        cam: out.cam.map(|c| c.slice(s![..;views, .., .., ..]).to_owned()),
        confidence: out.confidence.map(|c| {
            c.to_shape((c.len() / views, views))
                .expect("rows are whole groups of views")
                .mean_axis(Axis(1))
                .expect("views > 0")
        }),
    }
}

fn argmax(p: &[f32]) -> usize {
    // NaN counts as -inf so it never wins; ties go to the first class.
    p.iter()
        .enumerate()
        .max_by(|a, b| {
            let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
            key(*a.1).total_cmp(&key(*b.1)).then(b.0.cmp(&a.0))
        })
        .map(|(i, _)| i)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_prefers_the_first_of_ties_and_skips_nan() {
        assert_eq!(super::argmax(&[0.2, 0.5, 0.5]), 1);
        assert_eq!(super::argmax(&[f32::NAN, 0.1]), 1);
    }

    #[test]
    fn views_are_averaged_per_image_and_the_cam_is_the_first_views() {
        use ndarray::{array, Array1, Array4};
        let out = super::Outputs {
            logits: array![[1.0, 3.0], [3.0, 5.0], [0.0, 0.0], [2.0, 2.0]],
            probs: array![[0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.9, 0.1]],
            cam: Some(Array4::from_shape_fn((4, 2, 1, 1), |(i, k, _, _)| (10 * i + k) as f32)),
            confidence: Some(Array1::from(vec![0.1, 0.3, 0.5, 0.7])),
        };
        let a = super::average_views(out, 2);
        assert_eq!(a.logits, array![[2.0, 4.0], [1.0, 1.0]]);
        assert!((&a.probs - &array![[0.3, 0.7], [0.7, 0.3]]).iter().all(|d| d.abs() < 1e-6));
        assert_eq!(a.cam.unwrap().iter().copied().collect::<Vec<_>>(), vec![0.0, 1.0, 20.0, 21.0]);
        assert!((&a.confidence.unwrap() - &Array1::from(vec![0.2, 0.6])).iter().all(|d| d.abs() < 1e-6));
    }
}
