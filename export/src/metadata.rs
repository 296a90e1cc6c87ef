//! The metadata_props of the ONNX contract (`docs/onnx-contract.md`). `fer-runtime` reads the same
//! keys (it does not depend on this crate, by design, so the contract document is the shared truth).

use crate::pb::StringStringEntryProto;

/// Metadata keys, as written into `metadata_props`.
pub mod keys {
    pub const LABELS: &str = "fer.labels"; // comma-separated, in output order
    pub const INPUT_SIZE: &str = "fer.input_size"; // "H,W"
    pub const COLOR: &str = "fer.color"; // "gray" | "rgb"
    pub const MEAN: &str = "fer.mean"; // per channel of the model input, comma-separated
    pub const STD: &str = "fer.std";
    pub const METHOD: &str = "fer.method";
    pub const BACKBONE: &str = "fer.backbone";
    pub const DATA: &str = "fer.data";
    pub const VAL_ACCURACY: &str = "fer.val_accuracy";
    pub const PRODUCER: &str = "fer.producer";
    pub const CROP_PAD: &str = "fer.crop_pad"; // pixels the trainer added before its random crops
    pub const EVAL_VIEW: &str = "fer.eval_view"; // "resize" | "centre_crop"
}

/// How the image must be turned into the model's input: gray images are replicated to the model's
/// channel count when the model takes 3 channels (as the trainer does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    #[default]
    Gray,
    Rgb,
}

impl ColorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ColorMode::Gray => "gray",
            ColorMode::Rgb => "rgb",
        }
    }
}

/// What a model file needs to be usable alone.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub labels: Vec<String>,
    /// Input height and width in pixels.
    pub input_size: (usize, usize),
    pub color: ColorMode,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub method: String,
    pub backbone: String,
    pub data: String,
    pub val_accuracy: Option<f64>,
    /// Anything else worth carrying (recipe, noise rate, epochs).
    pub extra: Vec<(String, String)>,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            labels: Vec::new(),
            input_size: (112, 112),
            color: ColorMode::Gray,
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
            method: "ce".into(),
            backbone: String::new(),
            data: String::new(),
            val_accuracy: None,
            extra: Vec::new(),
        }
    }
}

fn join<T: ToString>(xs: &[T]) -> String {
    xs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

impl Metadata {
    pub fn to_props(&self) -> Vec<StringStringEntryProto> {
        let mut kv = vec![
            (keys::LABELS, join(&self.labels)),
            (keys::INPUT_SIZE, format!("{},{}", self.input_size.0, self.input_size.1)),
            (keys::COLOR, self.color.as_str().to_string()),
            (keys::MEAN, join(&self.mean)),
            (keys::STD, join(&self.std)),
            (keys::METHOD, self.method.clone()),
            (keys::BACKBONE, self.backbone.clone()),
            (keys::DATA, self.data.clone()),
            (keys::PRODUCER, format!("fer-export {}", env!("CARGO_PKG_VERSION"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<Vec<_>>();
        if let Some(acc) = self.val_accuracy {
            kv.push((keys::VAL_ACCURACY.to_string(), format!("{acc:.4}")));
        }
        kv.extend(self.extra.iter().cloned());
        kv.into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect()
    }
}
