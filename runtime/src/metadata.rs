//! Reads what a model file says about itself: the `fer.*` metadata_props of the ONNX contract
//! (labels, input size, colour mode, mean/std, method, ...) and the declared inputs and outputs.
//! Preprocessing is driven by this alone; nothing about a model is hard-coded in the runtime.
//!
//! The keys mirror `fer-export`'s `metadata::keys`; the runtime does not depend on the exporter
//! (design: it only reads ONNX), so the contract in `design.md` is the shared truth.

use crate::error::{FerError, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use tract_onnx::pb;

/// Metadata keys of the contract, as found in `metadata_props`.
pub mod keys {
    pub const LABELS: &str = "fer.labels";
    pub const INPUT_SIZE: &str = "fer.input_size";
    pub const COLOR: &str = "fer.color";
    pub const MEAN: &str = "fer.mean";
    pub const STD: &str = "fer.std";
    pub const METHOD: &str = "fer.method";
    pub const BACKBONE: &str = "fer.backbone";
    pub const DATA: &str = "fer.data";
    pub const VAL_ACCURACY: &str = "fer.val_accuracy";
    pub const CROP_PAD: &str = "fer.crop_pad";
    pub const EVAL_VIEW: &str = "fer.eval_view";
}

/// The contract's output names.
pub mod outputs {
    pub const LOGITS: &str = "logits";
    pub const PROBS: &str = "probs";
    pub const CAM: &str = "cam";
    pub const CONFIDENCE: &str = "confidence";
}

/// How an image becomes the model input: gray images are replicated to 3 channels when the model
/// takes 3 (a gray-trained model on an RGB backbone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    Gray,
    Rgb,
}

impl fmt::Display for ColorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColorMode::Gray => "gray",
            ColorMode::Rgb => "rgb",
        })
    }
}

/// How a face becomes the model's view of it at inference (`fer.eval_view`), the view the trainer
/// validated the model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalView {
    /// The whole face resized to the input size (the default, and every file without the key).
    #[default]
    Resize,
    /// The face resized to the input size plus `fer.crop_pad`, then its centre crop of the input
    /// size: the training view (random crops of that resize) without its randomness.
    CentreCrop,
}

impl fmt::Display for EvalView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvalView::Resize => "resize",
            EvalView::CentreCrop => "centre_crop",
        })
    }
}

/// One dimension of a declared graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DimInfo {
    Fixed(usize),
    /// A named dynamic dimension such as the batch `N`.
    Symbolic(String),
    /// Declared without size or name.
    Unknown,
}

impl fmt::Display for DimInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimInfo::Fixed(n) => write!(f, "{n}"),
            DimInfo::Symbolic(s) => f.write_str(s),
            DimInfo::Unknown => f.write_str("?"),
        }
    }
}

/// A declared graph input or output.
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    pub name: String,
    /// ONNX element type name (`float32`, `int64`, ...).
    pub dtype: String,
    /// `None` when the file declares no shape at all.
    pub shape: Option<Vec<DimInfo>>,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.dtype)?;
        match &self.shape {
            Some(s) => {
                let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
                write!(f, " [{}]", dims.join(", "))
            }
            None => f.write_str(" [shape not declared]"),
        }
    }
}

/// The `fer.*` metadata, parsed and checked against the graph.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// Class names in output order.
    pub labels: Vec<String>,
    /// Input height and width in pixels.
    pub input_size: (usize, usize),
    pub color: ColorMode,
    /// Per model-input channel (length = C).
    pub mean: Vec<f32>,
    /// Per model-input channel (length = C), all > 0.
    pub std: Vec<f32>,
    pub method: Option<String>,
    pub backbone: Option<String>,
    pub data: Option<String>,
    pub val_accuracy: Option<f64>,
    /// Pixels the trainer added to each side of the input before its random crops
    /// (`fer.crop_pad`); `None` when the file does not say (files exported before the key).
    pub crop_pad: Option<usize>,
    pub eval_view: EvalView,
    /// Every metadata_props entry as written, `fer.*` or not.
    pub props: BTreeMap<String, String>,
}

/// What a model file declares: metadata, graph inputs and outputs, opset and producer.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub metadata: Metadata,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// Model input channels `C` of `[N, C, H, W]`.
    pub channels: usize,
    /// Name of the image input (`input` in the contract).
    pub input_name: String,
    pub opset: Option<i64>,
    pub producer: String,
    /// What was missing and filled in from the graph (e.g. labels `class_0..`), for the user to see.
    pub notices: Vec<String>,
    /// float32 weights that are subnormal (slow on Intel CPUs; a notice says how to zero them).
    pub subnormal_weights: usize,
    /// Weights stored as int8 behind a `DequantizeLinear` of initializers (`fer_export::int8`):
    /// the backends fold them into float32 constants at load.
    pub int8_weights: usize,
}

impl ModelInfo {
    /// Whether the model has the optional `cam` output.
    pub fn has_cam(&self) -> bool {
        self.outputs.iter().any(|o| o.name == outputs::CAM)
    }

    /// Whether the model has the optional `confidence` output.
    pub fn has_confidence(&self) -> bool {
        self.outputs.iter().any(|o| o.name == outputs::CONFIDENCE)
    }

    /// Number of classes `K`.
    pub fn num_classes(&self) -> usize {
        self.metadata.labels.len()
    }

    /// Reads a model file's declarations without loading it on a backend (for `fer-run info`).
    ///
    /// ```no_run
    /// let info = fer_runtime::ModelInfo::read("eac_mbv2.onnx".as_ref())?;
    /// println!("{} classes: {:?}", info.num_classes(), info.metadata.labels);
    /// # Ok::<(), fer_runtime::FerError>(())
    /// ```
    pub fn read(path: &Path) -> Result<ModelInfo> {
        let bytes = std::fs::read(path).map_err(|e| FerError::io(path, e))?;
        ModelInfo::from_proto(&decode(&bytes, path)?, path)
    }

    /// Reads and checks everything from a decoded ONNX model; `path` names the file in errors.
    pub fn from_proto(proto: &pb::ModelProto, path: &Path) -> Result<ModelInfo> {
        let contract = |reason: String| FerError::Contract {
            path: path.to_path_buf(),
            reason,
        };
        let graph = proto.graph.as_ref().ok_or_else(|| FerError::NotOnnx {
            path: path.to_path_buf(),
            reason: "the file holds no graph".into(),
        })?;
        if graph.node.is_empty() && graph.output.is_empty() {
            return Err(FerError::NotOnnx {
                path: path.to_path_buf(),
                reason: "the graph has no nodes and no outputs".into(),
            });
        }
        // Older exporters also list initializers as graph inputs: those are weights, not inputs.
        let weights: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<TensorInfo> = graph
            .input
            .iter()
            .filter(|v| !weights.contains(v.name.as_str()))
            .map(tensor_info)
            .collect();
        let outputs: Vec<TensorInfo> = graph.output.iter().map(tensor_info).collect();

        let input = match inputs.as_slice() {
            [one] => one,
            [] => return Err(contract("the graph has no input".into())),
            many => {
                let names: Vec<&str> = many.iter().map(|i| i.name.as_str()).collect();
                return Err(contract(format!(
                    "expected one image input, found {names:?}"
                )));
            }
        };
        if input.dtype != "float32" {
            return Err(contract(format!(
                "input `{}` is {}, expected float32",
                input.name, input.dtype
            )));
        }
        let shape = input.shape.as_ref().ok_or_else(|| {
            contract(format!(
                "input `{}` declares no shape; expected [N, C, H, W]",
                input.name
            ))
        })?;
        if shape.len() != 4 {
            return Err(contract(format!(
                "input `{}` has rank {} ({input}); expected rank 4 [N, C, H, W]",
                input.name,
                shape.len()
            )));
        }
        let channels = match shape[1] {
            DimInfo::Fixed(c @ (1 | 3)) => c,
            ref d => return Err(contract(format!("input channels are {d}; expected 1 or 3"))),
        };
        for name in [outputs::LOGITS, outputs::PROBS] {
            if !outputs.iter().any(|o| o.name == name) {
                let have: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
                return Err(contract(format!("no `{name}` output (outputs: {have:?})")));
            }
        }
        let probs_k = outputs
            .iter()
            .find(|o| o.name == outputs::PROBS)
            .and_then(|o| o.shape.as_ref())
            .and_then(|s| match s.get(1) {
                Some(DimInfo::Fixed(k)) => Some(*k),
                _ => None,
            });

        let props: BTreeMap<String, String> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let mut notices = Vec::new();
        let metadata =
            parse_metadata(props, shape, channels, probs_k, &mut notices).map_err(|e| match e {
                FerError::Metadata { key, value, reason } => {
                    contract(format!("metadata `{key}` = {value:?}: {reason}"))
                }
                other => other,
            })?;
        let (subnormal, weights) = subnormal_weights(graph);
        if subnormal > 0 {
            notices.push(format!(
                "{subnormal} of {weights} float32 weights are subnormal (below 1.2e-38); Intel CPUs \
                 take a slow microcode assist for each use (ONNX Runtime ran a 48 px MobileNetV2 \
                 with 449,297 of them 14x slower: 9.2 against 0.65 ms). They are too small to change any output: \
                 rewrite them as zero with `cargo run --release -p fer-export --example \
                 flush_subnormals -- {}`",
                path.display()
            ));
        }
        for n in &notices {
            tracing::warn!("{}: {n}", path.display());
        }
        let opset = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version);
        let producer = format!("{} {}", proto.producer_name, proto.producer_version)
            .trim()
            .to_string();
        Ok(ModelInfo {
            metadata,
            input_name: input.name.clone(),
            inputs,
            outputs,
            channels,
            opset,
            producer,
            notices,
            subnormal_weights: subnormal,
            int8_weights: int8_weights(graph),
        })
    }
}

/// Decodes ONNX protobuf bytes (the file at `path`).
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<pb::ModelProto> {
    use tract_onnx::prelude::Framework;
    tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| FerError::NotOnnx {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })
}

fn tensor_info(v: &pb::ValueInfoProto) -> TensorInfo {
    use pb::tensor_shape_proto::dimension::Value;
    use pb::type_proto::Value as TypeValue;
    let tensor = v.r#type.as_ref().and_then(|t| match &t.value {
        Some(TypeValue::TensorType(tt)) => Some(tt),
        _ => None,
    });
    let dtype = tensor
        .map(|t| elem_type_name(t.elem_type))
        .unwrap_or("non-tensor")
        .to_string();
    let shape = tensor.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(Value::DimValue(n)) if *n >= 0 => DimInfo::Fixed(*n as usize),
                Some(Value::DimParam(p)) if !p.is_empty() => DimInfo::Symbolic(p.clone()),
                _ => DimInfo::Unknown,
            })
            .collect()
    });
    TensorInfo {
        name: v.name.clone(),
        dtype,
        shape,
    }
}

/// How many `DequantizeLinear` nodes read only initializers: weights stored as int8, not
/// quantized activations.
fn int8_weights(graph: &pb::GraphProto) -> usize {
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
        .filter(|n| n.input.iter().all(|i| initializers.contains(i.as_str())))
        .count()
}

/// How many of the graph's float32 initializer values are subnormal, and how many there are.
/// Exporters that fold BatchNorm can leave them where weight decay drove a channel's scale to ~0
/// (fer-export writes them as zero).
fn subnormal_weights(graph: &pb::GraphProto) -> (usize, usize) {
    let (mut subnormal, mut total) = (0, 0);
    for t in graph.initializer.iter().filter(|t| t.data_type == 1) {
        let mut count = |v: f32| {
            total += 1;
            subnormal += v.is_subnormal() as usize;
        };
        if t.raw_data.is_empty() {
            t.float_data.iter().copied().for_each(&mut count);
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .for_each(&mut count);
        }
    }
    (subnormal, total)
}

fn elem_type_name(t: i32) -> &'static str {
    // TensorProto.DataType numbering of onnx.proto.
    match t {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        6 => "int32",
        7 => "int64",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        16 => "bfloat16",
        _ => "other",
    }
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> FerError {
    FerError::Metadata {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_floats(key: &str, value: &str) -> Result<Vec<f32>> {
    value
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<f32>()
                .map_err(|e| bad(key, value, format!("not a number list ({e})")))
        })
        .collect()
}

/// Per-channel values: one value broadcasts to all channels, C values are taken as they are.
fn per_channel(key: &str, value: &str, channels: usize) -> Result<Vec<f32>> {
    let v = parse_floats(key, value)?;
    match v.len() {
        1 => Ok(vec![v[0]; channels]),
        n if n == channels => Ok(v),
        n => Err(bad(
            key,
            value,
            format!("{n} values for a {channels}-channel input"),
        )),
    }
}

fn parse_metadata(
    props: BTreeMap<String, String>,
    shape: &[DimInfo],
    channels: usize,
    probs_k: Option<usize>,
    notices: &mut Vec<String>,
) -> Result<Metadata> {
    let get = |k: &str| props.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());

    let labels: Vec<String> = match get(keys::LABELS) {
        Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        None => {
            let k = probs_k.ok_or_else(|| {
                bad(
                    keys::LABELS,
                    "",
                    "missing, and `probs` declares no fixed class count",
                )
            })?;
            notices.push(format!(
                "no `{}` metadata: labels are class_0..class_{}",
                keys::LABELS,
                k - 1
            ));
            (0..k).map(|i| format!("class_{i}")).collect()
        }
    };
    if labels.iter().any(|l| l.is_empty()) {
        return Err(bad(keys::LABELS, &labels.join(","), "empty label"));
    }
    if let Some(k) = probs_k {
        if k != labels.len() {
            return Err(bad(
                keys::LABELS,
                &labels.join(","),
                format!("{} labels but `probs` has {k} classes", labels.len()),
            ));
        }
    }

    let graph_hw = match (&shape[2], &shape[3]) {
        (DimInfo::Fixed(h), DimInfo::Fixed(w)) => Some((*h, *w)),
        _ => None,
    };
    let input_size = match get(keys::INPUT_SIZE) {
        Some(v) => {
            let parts: Vec<&str> = v.split(',').map(str::trim).collect();
            let hw = match parts.as_slice() {
                [h, w] => h.parse::<usize>().ok().zip(w.parse::<usize>().ok()),
                _ => None,
            };
            let (h, w) = hw
                .filter(|(h, w)| *h > 0 && *w > 0)
                .ok_or_else(|| bad(keys::INPUT_SIZE, v, "expected \"H,W\" in pixels"))?;
            if let Some(g) = graph_hw {
                if g != (h, w) {
                    return Err(bad(
                        keys::INPUT_SIZE,
                        v,
                        format!("the graph input is {}x{} (HxW)", g.0, g.1),
                    ));
                }
            }
            (h, w)
        }
        None => {
            let g = graph_hw.ok_or_else(|| {
                bad(
                    keys::INPUT_SIZE,
                    "",
                    "missing, and the graph input has no fixed H, W",
                )
            })?;
            notices.push(format!(
                "no `{}` metadata: using the graph's {}x{}",
                keys::INPUT_SIZE,
                g.0,
                g.1
            ));
            g
        }
    };

    let color = match get(keys::COLOR) {
        Some("gray") | Some("grey") => ColorMode::Gray,
        Some("rgb") => ColorMode::Rgb,
        Some(v) => return Err(bad(keys::COLOR, v, "expected \"gray\" or \"rgb\"")),
        None => {
            let c = if channels == 1 {
                ColorMode::Gray
            } else {
                ColorMode::Rgb
            };
            notices.push(format!(
                "no `{}` metadata: assuming {c} from {channels} input channels",
                keys::COLOR
            ));
            c
        }
    };
    if color == ColorMode::Rgb && channels != 3 {
        return Err(bad(
            keys::COLOR,
            "rgb",
            format!("the model input has {channels} channel(s)"),
        ));
    }

    let mut norm = |key: &str, default: f32| -> Result<Vec<f32>> {
        match get(key) {
            Some(v) => per_channel(key, v, channels),
            None => {
                notices.push(format!("no `{key}` metadata: using {default}"));
                Ok(vec![default; channels])
            }
        }
    };
    let mean = norm(keys::MEAN, 0.0)?;
    let std = norm(keys::STD, 1.0)?;
    if let Some(s) = std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
        return Err(bad(
            keys::STD,
            &format!("{std:?}"),
            format!("{s} is not a positive number"),
        ));
    }
    let val_accuracy = match get(keys::VAL_ACCURACY) {
        Some(v) => Some(
            v.parse::<f64>()
                .map_err(|e| bad(keys::VAL_ACCURACY, v, e.to_string()))?,
        ),
        None => None,
    };
    let crop_pad = match get(keys::CROP_PAD) {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| bad(keys::CROP_PAD, v, "expected a whole number of pixels"))?,
        ),
        None => None,
    };
    let eval_view = match get(keys::EVAL_VIEW) {
        None | Some("resize") => EvalView::Resize,
        Some("centre_crop") | Some("center_crop") => match crop_pad {
            Some(p) if p > 0 => EvalView::CentreCrop,
            _ => {
                return Err(bad(
                    keys::EVAL_VIEW,
                    "centre_crop",
                    format!("needs a positive `{}`", keys::CROP_PAD),
                ))
            }
        },
        Some(v) => {
            return Err(bad(
                keys::EVAL_VIEW,
                v,
                "expected \"resize\" or \"centre_crop\"",
            ))
        }
    };
    let text = |k: &str| get(k).map(str::to_string);
    Ok(Metadata {
        labels,
        input_size,
        color,
        mean,
        std,
        method: text(keys::METHOD),
        backbone: text(keys::BACKBONE),
        data: text(keys::DATA),
        val_accuracy,
        crop_pad,
        eval_view,
        props,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_broadcasts_one_value_and_refuses_wrong_counts() {
        assert_eq!(per_channel("k", "0.5", 3).unwrap(), vec![0.5; 3]);
        assert_eq!(
            per_channel("k", "0.1, 0.2,0.3", 3).unwrap(),
            vec![0.1, 0.2, 0.3]
        );
        assert!(per_channel("k", "0.1,0.2", 3).is_err());
        assert!(per_channel("k", "a", 1).is_err());
    }

    #[test]
    fn missing_keys_fall_back_to_the_graph_with_notices() {
        let shape = [
            DimInfo::Symbolic("N".into()),
            DimInfo::Fixed(1),
            DimInfo::Fixed(48),
            DimInfo::Fixed(40),
        ];
        let mut notices = Vec::new();
        let m = parse_metadata(BTreeMap::new(), &shape, 1, Some(3), &mut notices).unwrap();
        assert_eq!(m.labels, ["class_0", "class_1", "class_2"]);
        assert_eq!(m.input_size, (48, 40));
        assert_eq!(m.color, ColorMode::Gray);
        assert_eq!((m.mean.clone(), m.std.clone()), (vec![0.0], vec![1.0]));
        assert_eq!(notices.len(), 5);
    }

    #[test]
    fn inconsistent_metadata_is_refused() {
        let shape = [
            DimInfo::Unknown,
            DimInfo::Fixed(3),
            DimInfo::Fixed(8),
            DimInfo::Fixed(8),
        ];
        let props = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut n = Vec::new();
        let e = parse_metadata(props(&[(keys::LABELS, "a,b")]), &shape, 3, Some(3), &mut n);
        assert!(matches!(e, Err(FerError::Metadata { key, .. }) if key == keys::LABELS));
        let e = parse_metadata(
            props(&[(keys::INPUT_SIZE, "7,8")]),
            &shape,
            3,
            Some(1),
            &mut n,
        );
        assert!(matches!(e, Err(FerError::Metadata { key, .. }) if key == keys::INPUT_SIZE));
        let e = parse_metadata(props(&[(keys::STD, "0")]), &shape, 3, Some(1), &mut n);
        assert!(matches!(e, Err(FerError::Metadata { key, .. }) if key == keys::STD));
        let e = parse_metadata(props(&[(keys::COLOR, "bgr")]), &shape, 3, Some(1), &mut n);
        assert!(matches!(e, Err(FerError::Metadata { key, .. }) if key == keys::COLOR));
        let e = parse_metadata(props(&[(keys::CROP_PAD, "-4")]), &shape, 3, Some(1), &mut n);
        assert!(matches!(e, Err(FerError::Metadata { key, .. }) if key == keys::CROP_PAD));
        // A centre crop of what? Without the pad the view is undefined.
        let e = parse_metadata(props(&[(keys::EVAL_VIEW, "centre_crop")]), &shape, 3, Some(1), &mut n);
        assert!(matches!(e, Err(FerError::Metadata { key, .. }) if key == keys::EVAL_VIEW));
        let e = parse_metadata(
            props(&[(keys::EVAL_VIEW, "ten_crop"), (keys::CROP_PAD, "4")]),
            &shape,
            3,
            Some(1),
            &mut n,
        );
        assert!(matches!(e, Err(FerError::Metadata { key, .. }) if key == keys::EVAL_VIEW));
        let m = parse_metadata(
            props(&[(keys::EVAL_VIEW, "centre_crop"), (keys::CROP_PAD, "4")]),
            &shape,
            3,
            Some(1),
            &mut n,
        )
        .unwrap();
        assert_eq!((m.eval_view, m.crop_pad), (EvalView::CentreCrop, Some(4)));
    }
}
