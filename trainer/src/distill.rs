//! Knowledge distillation from a teacher's stored outputs (Hinton et al., 2015): the student's
//! loss gains `weight · T² · KL(softmax(t/T) ‖ softmax(s/T))`, with `t` the teacher's logits for the
//! same training face and `s` the student's logits on its augmented view, so a small edge model
//! learns from a larger one's full distribution as well as from the (possibly noisy) label.
//!
//! The teacher's logits are computed once, before training, for the whole training split, from
//! one of two sources:
//! - `teacher: runs/NAME`, a fer-train run directory: its checkpoint (best, else last) runs here,
//!   in tch on the training device, with the preprocessing it was validated with, ten crops
//!   averaged where its config has `train.ten_crop_eval` (seconds on a GPU; the ResNet-18 at
//!   112 px takes minutes on a 2-core CPU, ten times that with ten crops);
//! - `targets: FILE`, stored logits, for a teacher that exists only as an ONNX file
//!   (`scripts/teacher_targets.py` writes them with ONNX Runtime from the model and the trainer's
//!   dataset cache): `logits` float32 `[N, K]`, `pixel_sums` int64 `[N]` (the sum of each face's
//!   pixels, so a file made for other data or another order is refused instead of silently pairing
//!   faces with the wrong targets), and the class names as JSON under the metadata key `classes`.
//!
//! Precomputed logits cost nothing per step, on the CPU as on the GPU; the price is that the
//! teacher saw the un-augmented face, not the student's crop, flip or erasing.

use crate::data::Dataset;
use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The config's optional `distill` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher as a fer-train run directory (exactly one of `teacher` and `targets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    /// The teacher's stored logits for the full training split (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<PathBuf>,
    /// Weight of the distillation term, added to the method's own loss.
    #[serde(default = "one")]
    pub weight: f64,
    /// Softening temperature `T` of both distributions (the term is scaled by `T²` so its
    /// gradients keep their size as `T` changes).
    #[serde(default = "four")]
    pub temperature: f64,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}

impl DistillConfig {
    /// The teacher's logits for every face of `train` (the full split, before any subset),
    /// float32 `[N, K]` on `device`.
    pub fn teacher_logits(&self, train: &Dataset, device: tch::Device) -> Result<Tensor> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) || !(self.weight >= 0.0 && self.weight.is_finite()) {
            bail!(
                "distill: temperature must be positive and weight non-negative, got temperature {} and weight {}",
                self.temperature,
                self.weight
            );
        }
        match (&self.teacher, &self.targets) {
            (Some(run), None) => run_teacher(run, train, device),
            (None, Some(file)) => Ok(load_targets(file, train)?.to_device(device)),
            _ => bail!("distill: give exactly one of `teacher` (a run directory) and `targets` (stored logits)"),
        }
    }

    /// A short name of the teacher, for the model's metadata.
    pub fn teacher_name(&self) -> String {
        let p = self.teacher.as_ref().or(self.targets.as_ref());
        p.and_then(|p| p.file_name()).map_or_else(String::new, |f| f.to_string_lossy().into_owned())
    }
}

/// Runs the teacher run's checkpoint over `train` in eval mode, batch by batch.
fn run_teacher(run: &Path, train: &Dataset, device: tch::Device) -> Result<Tensor> {
    let dev = match device {
        tch::Device::Cuda(i) => format!("train.device=cuda:{i}"),
        _ => "train.device=cpu".to_string(),
    };
    let t = crate::eval::LoadedRun::open(run, None, &[dev], false).with_context(|| format!("distill: loading the teacher {}", run.display()))?;
    if t.classes != train.classes {
        bail!("distill: the teacher {} has classes {:?}, the training data {:?}", run.display(), t.classes, train.classes);
    }
    let aug = t.eval_augment();
    let n = train.len() as i64;
    let batch = t.cfg.train.eval_batch_size.max(1);
    // The teacher labels the faces as it was validated: over its ten crops where its config says so
    // (the mean of their logits, as scripts/teacher_targets.py --tta ten-crop).
    let ten_crop = t.cfg.train.ten_crop_eval;
    tracing::info!("distill: the teacher {} labels {n} training faces{}", run.display(), if ten_crop { " (ten crops each)" } else { "" });
    let logits = |x: &Tensor| t.model.forward_t(x, false).0.to_kind(Kind::Float);
    let chunks: Vec<Tensor> = tch::no_grad(|| {
        (0..n)
            .step_by(batch as usize)
            .map(|i| {
                let x = train.images.narrow(0, i, batch.min(n - i)).to_device(device);
                if ten_crop {
                    let views = aug.ten_crop(&x);
                    let k = views.len() as f64;
                    views.iter().map(logits).reduce(|a, b| a + b).expect("ten views") / k
                } else {
                    logits(&aug.eval(&x))
                }
            })
            .collect()
    });
    Ok(Tensor::cat(&chunks, 0))
}

/// Per-face sums of pixel values, the fingerprint stored beside the teacher's logits.
pub fn pixel_sums(images: &Tensor) -> Tensor {
    images
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Int64)
        .sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Int64)
}

/// Reads the teacher's logits for `train` (the full split, before any subset), checking they were
/// made for exactly these faces, in this order, with these classes. Returns float32 `[N, K]` on
/// the CPU.
pub fn load_targets(path: &Path, train: &Dataset) -> Result<Tensor> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the teacher targets {}", path.display()))?;
    let bad = |msg: String| anyhow::anyhow!("teacher targets {}: {msg}", path.display());
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let classes: Vec<String> = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("classes"))
        .ok_or_else(|| bad("no `classes` in the metadata".into()))
        .and_then(|c| {
            serde_json::from_str(c).map_err(|e| bad(format!("metadata `classes`: {e}")))
        })?;
    if classes != train.classes {
        bail!(bad(format!(
            "the teacher's classes {classes:?} differ from the training data's {:?}",
            train.classes
        )));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let read = |name: &str, dtype: Dtype, kind: Kind| -> Result<Tensor> {
        let t = st
            .tensor(name)
            .map_err(|_| bad(format!("no tensor `{name}`")))?;
        if t.dtype() != dtype {
            bail!(bad(format!(
                "`{name}` is {:?}, expected {dtype:?}",
                t.dtype()
            )));
        }
        let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
        Ok(Tensor::f_from_data_size(t.data(), &shape, kind)?)
    };
    let logits = read("logits", Dtype::F32, Kind::Float)?;
    let sums = read("pixel_sums", Dtype::I64, Kind::Int64)?;
    let (n, k) = (train.len() as i64, train.num_classes() as i64);
    if logits.size() != [n, k] || sums.size() != [n] {
        bail!(bad(format!(
            "logits {:?} and pixel_sums {:?} do not fit {n} training faces of {k} classes (made for other data, or for a subset?)",
            logits.size(),
            sums.size()
        )));
    }
    let want = pixel_sums(&train.images);
    let differ = want.ne_tensor(&sums);
    let n_differ = differ.sum(Kind::Int64).int64_value(&[]);
    if n_differ > 0 {
        let first = differ.nonzero().int64_value(&[0, 0]);
        bail!(bad(format!(
            "{n_differ} of {n} faces differ from the ones the targets were made for (first: face {first}); remake them for this data"
        )));
    }
    if logits.isfinite().all().int64_value(&[]) == 0 {
        bail!(bad("the logits are not all finite".into()));
    }
    Ok(logits)
}

/// `T² · KL(softmax(teacher/T) ‖ softmax(student/T))`, averaged over the batch, in float32.
pub fn distill_loss(student: &Tensor, teacher: &Tensor, temperature: f64) -> Tensor {
    let s = (student.to_kind(Kind::Float) / temperature).log_softmax(-1, Kind::Float);
    let t = (teacher.to_kind(Kind::Float) / temperature).log_softmax(-1, Kind::Float);
    let kl = (t.exp() * (&t - &s)).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
    kl.mean(Kind::Float) * (temperature * temperature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_matches_a_hand_computed_value() {
        // One sample, two classes, T = 2: t/T = [1, 0], s/T = [0, 0].
        // p_t = [e/(e+1), 1/(e+1)] = [0.731059, 0.268941], p_s = [0.5, 0.5];
        // KL = Σ p_t ln(p_t / p_s) = 0.731059·ln(1.462117) + 0.268941·ln(0.537883) = 0.110944;
        // times T² = 4: 0.443776.
        let got = distill_loss(
            &Tensor::from_slice(&[0f32, 0.]).view([1, 2]),
            &Tensor::from_slice(&[2f32, 0.]).view([1, 2]),
            2.0,
        );
        assert!((got.double_value(&[]) - 0.443776).abs() < 1e-5, "{got}");
        // Identical distributions cost nothing, and the gradient pulls the student towards the teacher.
        let s = Tensor::from_slice(&[0.3f32, -1.0, 2.0, 0.1, 0.0, 0.0])
            .view([2, 3])
            .set_requires_grad(true);
        let same = distill_loss(&s, &s.detach(), 4.0);
        assert!(same.double_value(&[]).abs() < 1e-6);
        let t = Tensor::from_slice(&[5f32, 0., 0., 5., 0., 0.]).view([2, 3]);
        distill_loss(&s, &t, 4.0).backward();
        let g = s.grad();
        assert!(
            g.double_value(&[0, 0]) < 0.0 && g.double_value(&[1, 0]) < 0.0,
            "{g}"
        );
    }
}
