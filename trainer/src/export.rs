//! `fer-train export` and the export at the end of `fit`: the eval-mode graph of a [`Classifier`]
//! with the contract's metadata, written atomically and then loaded back in tract as a check.

use crate::config::Config;
use crate::models::Classifier;
use crate::train::broadcast;
use anyhow::{Context, Result};
use fer_export::{ColorMode, Metadata};
use std::path::Path;

/// The metadata a model file carries so that it is usable alone.
pub fn metadata(cfg: &Config, classes: &[String], val_accuracy: Option<f64>) -> Metadata {
    let c = cfg.model.in_channels;
    let color = match cfg.data.color {
        crate::data::Color::Gray => ColorMode::Gray,
        crate::data::Color::Rgb => ColorMode::Rgb,
    };
    let mut extra = vec![
        ("fer.recipe".to_string(), cfg.name.clone()),
        ("fer.noise_rate".to_string(), cfg.noise.rate.to_string()),
        ("fer.epochs".to_string(), cfg.train.epochs.to_string()),
        // The eval view the run validated with, and the crop margin the runtime's centre-crop
        // and ten-crop views need (fer-run --tta ten-crop).
        (fer_export::keys::CROP_PAD.to_string(), cfg.train.crop_pad.max(0).to_string()),
        (fer_export::keys::EVAL_VIEW.to_string(), cfg.train.eval_view.name().to_string()),
    ];
    extra.extend(cfg.method.metadata());
    if let Some(d) = &cfg.distill {
        extra.push(("fer.distill".to_string(), format!("{} (weight {}, T {})", d.teacher_name(), d.weight, d.temperature)));
    }
    let attention = cfg.model.attention.or((cfg.model.arch == crate::models::Arch::Ivsa).then_some(crate::nn::AttentionKind::Sab));
    if let Some(att) = attention {
        extra.push(("fer.attention".to_string(), serde_json::to_string(&att).expect("serialisable").trim_matches('"').to_string()));
    }
    if cfg.model.arch == crate::models::Arch::GrefelVit {
        let vit = cfg.model.vit.clone().unwrap_or_default();
        extra.push(("fer.vit".to_string(), serde_json::to_string(&vit).expect("serialisable")));
    }
    Metadata {
        labels: classes.to_vec(),
        input_size: (cfg.model.input_size as usize, cfg.model.input_size as usize),
        color,
        mean: broadcast(&cfg.model.mean, c).iter().map(|&v| v as f32).collect(),
        std: broadcast(&cfg.model.std, c).iter().map(|&v| v as f32).collect(),
        method: cfg.method.name().into(),
        backbone: cfg.model.arch.name().into(),
        data: format!("{} ({:?}, split {})", cfg.data.root.display(), cfg.data.format, cfg.splits.train),
        val_accuracy,
        extra,
    }
}

/// How an exported file stores its weights; the interface is float32 in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WeightStorage {
    #[default]
    Float32,
    /// float16 weights, computing in float16 (`--fp16`): half the size, refused where it would not
    /// match the trained model.
    Float16,
    /// int8 weights with one scale per output channel (`--int8-weights`, `fer_export::int8`): a
    /// quarter of the size, computing in float32 on the dequantized weights.
    Int8,
}

/// Writes `path`; `with_cam` adds the `cam` output, `weights` says how the file stores them.
pub fn export_model(
    model: &Classifier,
    cfg: &Config,
    classes: &[String],
    val_accuracy: Option<f64>,
    path: &Path,
    with_cam: bool,
    weights: WeightStorage,
) -> Result<()> {
    let fp16 = weights == WeightStorage::Float16;
    if fp16 && !model.fp16_faithful() {
        // Measured against tch (see Classifier::fp16_faithful): refused rather than shipped approximate.
        let what = if model.head.fp16_faithful() { format!("arch {}", model.arch.name()) } else { format!("the {} head", cfg.method.name()) };
        anyhow::bail!("--fp16: {what} does not export faithfully in float16; export it in float32");
    }
    let meta = metadata(cfg, classes, val_accuracy);
    let mut proto = model.to_onnx(&meta, with_cam)?;
    match weights {
        WeightStorage::Float32 => {}
        WeightStorage::Float16 => proto = fer_export::fp16::to_fp16(proto)?,
        WeightStorage::Int8 => proto = fer_export::int8::quantize_weights(proto, fer_export::int8::MIN_ELEMENTS)?.0,
    }
    fer_export::save(&proto, path)?;
    let s = cfg.model.input_size as usize;
    fer_export::check::load_in_tract(&fer_export::to_bytes(&proto), &[1, model.in_channels as usize, s, s])
        .with_context(|| format!("checking {}", path.display()))?;
    Ok(())
}
