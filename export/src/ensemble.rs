//! Ensembles: one ONNX file that runs several fer models on the same face and averages their class
//! probabilities, so `fer-run` and the runtime crate use it as they use any model. Two networks
//! that err on different faces average to a better one (two edge MobileNetV2s at 48 and 64 px:
//! 64.5 and 65.0 % alone, 66.3 % together on FER2013 val, docs/RESULTS.md).
//!
//! The ensemble takes the input of its largest member (its size, eval view and crop pad); a smaller
//! member gets that input through a bilinear `Resize` (half-pixel centres, no antialiasing: opset 17
//! has none). That is only the member's own view when both views show the same part of the face,
//! so members must agree on labels, colour, normalisation and opset, and their views must cover
//! the same share of the face within [`VIEW_TOLERANCE`]; anything else is refused with the reason.
//!
//! Outputs: `probs`, the mean of the members' `probs` (a GReFEL member's corrected distribution
//! included), and `logits = ln(probs)`, whose softmax is `probs` again, as the contract asks. `cam`
//! is the mean of the members' maps when every member has one (a smaller map is resized, bilinear,
//! to the largest member's map size first: the 48 px MobileNetV2's 3x3 to the 64 px one's 4x4),
//! else absent; a member's `confidence` is not carried (runtimes then use the entropy of `probs`).

use crate::error::{ExportError, Result};
use crate::graph::{tensor_f32, value_info};
use crate::metadata::keys;
use crate::pb::{
    tensor_proto::DataType, tensor_shape_proto::dimension, AttributeProto, GraphProto, ModelProto,
    NodeProto, StringStringEntryProto,
};
use crate::Dim;
use std::collections::HashMap;

/// How far apart (as a share of the face) two members' views may be: 48 of a 52 px resize
/// (92.3 %) and 64 of a 69 px one (92.8 %) are the same view; a whole-face resize (100 %) and a
/// centre crop (92 %) are not.
pub const VIEW_TOLERANCE: f64 = 0.01;

/// The smallest probability `logits` takes the log of (an underflowed 0 would be −inf).
const LOG_FLOOR: f32 = 1e-30;

/// What [`ensemble`] built.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensembled {
    /// The ensemble's input, `(H, W)`: the largest member's.
    pub input_size: (usize, usize),
    /// Its channels (the members').
    pub channels: usize,
    /// Each member's own input size, in the order given; those that differ from `input_size` are
    /// fed through a `Resize`.
    pub member_sizes: Vec<(usize, usize)>,
    /// The size `(h, w)` of the ensemble's `cam`, or why it has none.
    pub cam: std::result::Result<(usize, usize), String>,
}

/// One member as read from its file: its metadata and its input.
struct Member<'a> {
    name: &'a str,
    props: HashMap<String, String>,
    channels: i64,
    size: (usize, usize),
    /// The share of the face its eval view shows (1 for `resize`, H / (H + crop_pad) for a crop).
    face_share: f64,
    /// That view in words, for errors.
    view: String,
}

fn invalid(msg: String) -> ExportError {
    ExportError::Invalid(msg)
}

impl<'a> Member<'a> {
    fn read(name: &'a str, model: &ModelProto) -> Result<Member<'a>> {
        let props: HashMap<String, String> =
            model.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
        let graph = model.graph.as_ref().ok_or_else(|| invalid(format!("{name}: has no graph")))?;
        let input = graph.input.iter().find(|i| i.name == "input");
        let dims: Vec<Option<i64>> = input
            .and_then(|i| i.r#type.as_ref())
            .and_then(|t| match &t.value {
                Some(crate::pb::type_proto::Value::TensorType(t)) => t.shape.as_ref(),
                _ => None,
            })
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(dimension::Value::DimValue(v)) => Some(v),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let [_, Some(channels), Some(h), Some(w)] = dims[..] else {
            return Err(invalid(format!("{name}: no float input `input` of shape [N, C, H, W] with fixed C, H, W")));
        };
        for output in ["probs", "logits"] {
            if !graph.output.iter().any(|o| o.name == output) {
                return Err(invalid(format!("{name}: no `{output}` output; not a fer model")));
            }
        }
        let size = (h as usize, w as usize);
        let (face_share, view) = match props.get(keys::EVAL_VIEW).map(String::as_str) {
            None | Some("resize") => (1.0, "resize".to_string()),
            Some("centre_crop") => {
                let pad: f64 = props
                    .get(keys::CROP_PAD)
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| invalid(format!("{name}: a centre_crop view without a numeric {}", keys::CROP_PAD)))?;
                (h as f64 / (h as f64 + pad), format!("centre_crop, crop pad {pad}"))
            }
            Some(other) => return Err(invalid(format!("{name}: unknown {} `{other}`", keys::EVAL_VIEW))),
        };
        Ok(Member { name, props, channels, size, face_share, view })
    }

    fn get(&self, key: &str) -> &str {
        self.props.get(key).map_or("", String::as_str)
    }
}

fn opset(model: &ModelProto) -> i64 {
    model.opset_import.iter().filter(|o| o.domain.is_empty()).map(|o| o.version).max().unwrap_or(0)
}

fn node(op_type: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: format!("ensemble/{output}/{op_type}"),
        op_type: op_type.into(),
        attribute,
        ..Default::default()
    }
}

/// The `[K, h, w]` of a member's `cam` for one face, by tract's shape inference.
fn cam_shape(model: &ModelProto, member: &Member) -> Option<Vec<usize>> {
    use tract_onnx::prelude::*;
    let typed = tract_onnx::onnx()
        .model_for_proto_model(model)
        .and_then(|m| {
            m.with_input_fact(0, f32::fact([1, member.channels as usize, member.size.0, member.size.1]).into())
        })
        .and_then(|m| m.into_typed())
        .ok()?;
    let position = model.graph.as_ref()?.output.iter().position(|o| o.name == "cam")?;
    let fact = typed.output_fact(position).ok()?;
    fact.shape.as_concrete().map(|s| s[1..].to_vec())
}

/// A bilinear scale that takes `from` pixels to exactly `to` (runtimes floor `from · scale`; the
/// quotient rounded to f32 can land a hair under `to`).
fn resize_scale(from: usize, to: usize) -> f32 {
    let mut scale = to as f32 / from as f32;
    while ((from as f32) * scale).floor() < to as f32 {
        scale = f32::from_bits(scale.to_bits() + 1);
    }
    scale
}

/// Appends a bilinear `Resize` (half-pixel centres) of the `[N, C, H, W]` value `from`, `H x W` =
/// `from_size`, to `to_size`, named `to`.
fn resize(graph: &mut GraphProto, from: &str, to: &str, from_size: (usize, usize), to_size: (usize, usize)) {
    let scales_name = format!("{to}_scales");
    let scales = [1.0, 1.0, resize_scale(from_size.0, to_size.0), resize_scale(from_size.1, to_size.1)];
    graph.initializer.push(tensor_f32(&scales_name, &[4], &scales));
    let mode = AttributeProto {
        name: "mode".into(),
        r#type: crate::pb::attribute_proto::AttributeType::String as i32,
        s: b"linear".to_vec(),
        ..Default::default()
    };
    graph.node.push(node("Resize", &[from, "", &scales_name], to, vec![mode]));
}

/// Builds one model that runs `members` (a name for the metadata, and the model) on one input and
/// averages their probabilities. Needs two or more members that agree as the module says.
pub fn ensemble(members: &[(&str, ModelProto)]) -> Result<(ModelProto, Ensembled)> {
    if members.len() < 2 {
        return Err(invalid(format!("an ensemble needs two or more models, got {}", members.len())));
    }
    let read: Vec<Member> = members.iter().map(|(n, m)| Member::read(n, m)).collect::<Result<_>>()?;
    // The largest input (by area) is the ensemble's: the others are resized to theirs, which for
    // square inputs (every fer model's) only ever shrinks them.
    let host = (0..read.len()).max_by_key(|&i| (read[i].size.0 * read[i].size.1, usize::MAX - i)).unwrap_or(0);
    let h = &read[host];
    for m in &read {
        for key in [keys::LABELS, keys::COLOR, keys::MEAN, keys::STD] {
            if m.get(key) != h.get(key) {
                return Err(invalid(format!(
                    "{} has {key} `{}` but {} has `{}`: an ensemble's members must agree on it",
                    m.name,
                    m.get(key),
                    h.name,
                    h.get(key)
                )));
            }
        }
        if m.channels != h.channels {
            return Err(invalid(format!("{} takes {} channels, {} takes {}", m.name, m.channels, h.name, h.channels)));
        }
        if (m.face_share - h.face_share).abs() > VIEW_TOLERANCE {
            return Err(invalid(format!(
                "{} sees {:.1} % of the face ({}) and {} {:.1} % ({}): resizing one's input cannot make the other's view",
                m.name,
                100.0 * m.face_share,
                m.view,
                h.name,
                100.0 * h.face_share,
                h.view
            )));
        }
    }
    let opsets: Vec<i64> = members.iter().map(|(_, m)| opset(m)).collect();
    if opsets.iter().any(|&o| o != opsets[0]) {
        return Err(invalid(format!("the members' opsets differ ({opsets:?}); export them with one opset")));
    }

    let mut graph = GraphProto { name: "ensemble".into(), ..Default::default() };
    let (height, width) = h.size;
    let input_dims = [Dim::batch(), Dim::Fixed(h.channels), Dim::Fixed(height as i64), Dim::Fixed(width as i64)];
    graph.input.push(value_info("input", DataType::Float, &input_dims));
    let cams: Vec<Option<Vec<usize>>> = members.iter().zip(&read).map(|((_, m), r)| cam_shape(m, r)).collect();
    let cam = match cams.iter().position(|c| c.as_ref().is_none_or(|c| c.len() != 3)) {
        Some(missing) => Err(format!("{} has no cam output", read[missing].name)),
        // The host's map is the largest: its input is.
        None => cams[host].as_ref().map(|c| (c[1], c[2])).ok_or_else(String::new),
    };
    let mut member_probs = Vec::new();
    let mut member_cams = Vec::new();
    for (i, ((_, model), m)) in members.iter().zip(&read).enumerate() {
        let prefix = format!("m{i}/");
        let mut input = "input".to_string();
        if m.size != h.size {
            input = format!("{prefix}input");
            resize(&mut graph, "input", &input, h.size, m.size);
        }
        let rename = |v: &str| match v {
            "" => String::new(),
            "input" => input.clone(),
            v => format!("{prefix}{v}"),
        };
        let g = model.graph.clone().unwrap_or_default();
        for mut t in g.initializer {
            t.name = rename(&t.name);
            graph.initializer.push(t);
        }
        for mut n in g.node {
            n.name = format!("{prefix}{}", n.name);
            n.input.iter_mut().for_each(|v| *v = rename(v));
            n.output.iter_mut().for_each(|v| *v = rename(v));
            graph.node.push(n);
        }
        for mut v in g.value_info {
            v.name = rename(&v.name);
            graph.value_info.push(v);
        }
        member_probs.push(rename("probs"));
        let mut cam_value = rename("cam");
        if let (Ok(size), Some(c)) = (&cam, &cams[i]) {
            if (c[1], c[2]) != *size {
                let resized = format!("{prefix}cam_resized");
                resize(&mut graph, &cam_value, &resized, (c[1], c[2]), *size);
                cam_value = resized;
            }
        }
        member_cams.push(cam_value);
    }

    let n = members.len() as f32;
    graph.initializer.push(tensor_f32("ensemble/one_nth", &[], &[1.0 / n]));
    graph.initializer.push(tensor_f32("ensemble/log_floor", &[], &[LOG_FLOOR]));
    let probs: Vec<&str> = member_probs.iter().map(String::as_str).collect();
    graph.node.push(node("Sum", &probs, "ensemble/probs_sum", vec![]));
    graph.node.push(node("Mul", &["ensemble/probs_sum", "ensemble/one_nth"], "probs", vec![]));
    graph.node.push(node("Max", &["probs", "ensemble/log_floor"], "ensemble/probs_floored", vec![]));
    graph.node.push(node("Log", &["ensemble/probs_floored"], "logits", vec![]));
    let classes = h.get(keys::LABELS).split(',').count() as i64;
    graph.output.push(value_info("logits", DataType::Float, &[Dim::batch(), Dim::Fixed(classes)]));
    graph.output.push(value_info("probs", DataType::Float, &[Dim::batch(), Dim::Fixed(classes)]));
    if let Ok((map_h, map_w)) = cam {
        let cams: Vec<&str> = member_cams.iter().map(String::as_str).collect();
        graph.node.push(node("Sum", &cams, "ensemble/cam_sum", vec![]));
        graph.node.push(node("Mul", &["ensemble/cam_sum", "ensemble/one_nth"], "cam", vec![]));
        let cam_dims = [Dim::batch(), Dim::Fixed(classes), Dim::Fixed(map_h as i64), Dim::Fixed(map_w as i64)];
        graph.output.push(value_info("cam", DataType::Float, &cam_dims));
    }

    let model = ModelProto {
        ir_version: members[host].1.ir_version,
        opset_import: members[host].1.opset_import.clone(),
        producer_name: "fer-export".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: ensemble_metadata(&read, host),
        ..Default::default()
    };
    let summary =
        Ensembled { input_size: h.size, channels: h.channels as usize, member_sizes: read.iter().map(|m| m.size).collect(), cam };
    Ok((model, summary))
}

/// The host's view and the shared keys at the top; `fer.method = ensemble`; each member's own
/// keys under `fer.member<i>.` (its recipe, accuracy, distillation...), so nothing is lost.
fn ensemble_metadata(read: &[Member], host: usize) -> Vec<StringStringEntryProto> {
    let h = &read[host];
    let mut kv: Vec<(String, String)> = Vec::new();
    for key in [keys::LABELS, keys::INPUT_SIZE, keys::COLOR, keys::MEAN, keys::STD, keys::EVAL_VIEW, keys::CROP_PAD] {
        if let Some(v) = h.props.get(key) {
            kv.push((key.into(), v.clone()));
        }
    }
    kv.push((keys::METHOD.into(), "ensemble".into()));
    let backbones: Vec<&str> = read.iter().map(|m| m.get(keys::BACKBONE)).collect();
    kv.push((keys::BACKBONE.into(), backbones.join("+")));
    if read.iter().all(|m| m.get(keys::DATA) == h.get(keys::DATA)) {
        kv.push((keys::DATA.into(), h.get(keys::DATA).into()));
    }
    kv.push((keys::PRODUCER.into(), format!("fer-export {}", env!("CARGO_PKG_VERSION"))));
    kv.push(("fer.members".into(), read.iter().map(|m| m.name).collect::<Vec<_>>().join(",")));
    for (i, m) in read.iter().enumerate() {
        let mut own: Vec<(&String, &String)> = m.props.iter().filter(|(k, _)| k.starts_with("fer.")).collect();
        own.sort();
        for (k, v) in own {
            kv.push((format!("fer.member{i}.{}", &k["fer.".len()..]), v.clone()));
        }
    }
    kv.into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::test_values as values;
    use crate::{ColorMode, GraphBuilder, Metadata};
    use tract_onnx::prelude::*;

    /// A CAM network in miniature: a 3x3 conv to one map per class (`cam`), its spatial mean
    /// (`logits`) and their softmax (`probs`), on a gray `size`x`size` input.
    fn member(size: i64, seed: u32, extra: &[(&str, &str)]) -> ModelProto {
        let mut g = GraphBuilder::new("member");
        let x = g.input("input", &[Dim::batch(), Dim::Fixed(1), Dim::Fixed(size), Dim::Fixed(size)]);
        let w = g.initializer("conv.w", &[3, 1, 3, 3], &values(27, seed)).unwrap();
        let b = g.initializer("conv.b", &[3], &values(3, seed + 1)).unwrap();
        let cam = g.conv(&x, &w, Some(&b), [3, 3], [1, 1], [1, 1], 1, "maps");
        let pooled = g.op("GlobalAveragePool", &[&cam], &[], "pool");
        let logits = g.op("Flatten", &[&pooled], &[], "flat");
        let probs = g.op("Softmax", &[&logits], &[Attr::int("axis", 1)], "softmax");
        let k = || [Dim::batch(), Dim::Fixed(3)];
        g.output("logits", &logits, &k());
        g.output("probs", &probs, &k());
        g.output("cam", &cam, &[Dim::batch(), Dim::Fixed(3), Dim::Param("h".into()), Dim::Param("w".into())]);
        let meta = Metadata {
            labels: vec!["a".into(), "b".into(), "c".into()],
            input_size: (size as usize, size as usize),
            color: ColorMode::Gray,
            mean: vec![0.5],
            std: vec![0.5],
            method: "eac".into(),
            backbone: format!("net{size}"),
            data: "faces".into(),
            val_accuracy: Some(0.5),
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        g.finish(&meta).unwrap()
    }
    use crate::Attr;

    /// `[logits, probs, cam]` of `model` on `x` (`[1, 1, s, s]`), by tract.
    fn run(model: &ModelProto, x: &tract_ndarray::Array4<f32>) -> Vec<tract_ndarray::ArrayD<f32>> {
        let plan = tract_onnx::onnx()
            .model_for_proto_model(model)
            .unwrap()
            .with_input_fact(0, f32::fact(x.shape()).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let out = plan.run(tvec!(Tensor::from(x.clone()).into())).unwrap();
        out.iter().map(|t| t.to_plain_array_view::<f32>().unwrap().to_owned()).collect()
    }

    fn close(a: &tract_ndarray::ArrayD<f32>, b: &tract_ndarray::ArrayD<f32>, tol: f32) {
        assert_eq!(a.shape(), b.shape());
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= tol, "differ by {worst}:\n{a}\n{b}");
    }

    /// An 8 px and a 4 px member: the ensemble takes 8 px, halves it for the small one (bilinear
    /// with half-pixel centres at scale 1/2 is the mean of each 2x2 block, computed here by hand),
    /// and its probs are the mean of the two members' probs on their own inputs; softmax(logits)
    /// is probs; the 4x4 maps are enlarged to 8x8 (checked against tract's own Resize of the small
    /// member's map) before they are averaged.
    #[test]
    fn averages_the_members_probabilities_through_a_resize() {
        let (big, small) = (member(8, 1, &[]), member(4, 7, &[]));
        // The small one first: the host is the larger input wherever it stands.
        let (model, built) = ensemble(&[("small", small.clone()), ("big", big.clone())]).unwrap();
        assert_eq!((built.input_size, built.member_sizes.clone()), ((8, 8), vec![(4, 4), (8, 8)]));
        assert_eq!(built.cam, Ok((8, 8)));
        crate::check::load_in_tract(&crate::to_bytes(&model), &[1, 1, 8, 8]).unwrap();
        let x = tract_ndarray::Array4::from_shape_vec((1, 1, 8, 8), values(64, 3)).unwrap();
        let halved = tract_ndarray::Array4::from_shape_fn((1, 1, 4, 4), |(_, _, i, j)| {
            (x[[0, 0, 2 * i, 2 * j]] + x[[0, 0, 2 * i + 1, 2 * j]] + x[[0, 0, 2 * i, 2 * j + 1]] + x[[0, 0, 2 * i + 1, 2 * j + 1]]) / 4.0
        });
        let (on_big, on_small, both) = (run(&big, &x), run(&small, &halved), run(&model, &x));
        let mean = (&on_big[1] + &on_small[1]) / 2.0;
        close(&both[1], &mean, 1e-6);
        // The small map enlarged: 1-D bilinear at scale 2 with half-pixel centres puts output i at
        // input (i + 0.5) / 2 - 0.5, clamped to the edges.
        let up = |v: &tract_ndarray::ArrayView1<f32>| -> Vec<f32> {
            (0..8)
                .map(|i| {
                    let p = ((i as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, 3.0);
                    let (lo, t) = (p.floor() as usize, p.fract());
                    v[lo] * (1.0 - t) + v[(lo + 1).min(3)] * t
                })
                .collect()
        };
        let small_map = on_small[2].clone().into_shape_with_order((3, 4, 4)).unwrap();
        let mut enlarged = tract_ndarray::Array4::<f32>::zeros((1, 3, 8, 8));
        for k in 0..3 {
            let rows: Vec<Vec<f32>> = (0..4).map(|r| up(&small_map.slice(tract_ndarray::s![k, r, ..]))).collect();
            for j in 0..8 {
                let column = tract_ndarray::Array1::from_iter((0..4).map(|r| rows[r][j]));
                for (i, v) in up(&column.view()).into_iter().enumerate() {
                    enlarged[[0, k, i, j]] = v;
                }
            }
        }
        close(&both[2], &((&on_big[2] + &enlarged.into_dyn()) / 2.0), 1e-5);
        assert!((on_big[1].clone() - &on_small[1]).iter().any(|d| d.abs() > 1e-2), "the members must differ for the test to mean anything");
        let e = both[0].mapv(f32::exp);
        close(&(&e / e.sum()), &both[1], 1e-6);
    }

    /// Two members of one size: the cam is the mean of theirs; the metadata is the shared keys,
    /// `fer.method = ensemble`, and every member's own keys under `fer.member<i>.`.
    #[test]
    fn averages_equal_sized_maps_and_keeps_each_members_metadata() {
        let view = [("fer.eval_view", "centre_crop"), ("fer.crop_pad", "1")];
        let (a, b) = (member(6, 1, &[view[0], view[1], ("fer.recipe", "r_a")]), member(6, 5, &view));
        let (model, built) = ensemble(&[("a.onnx", a.clone()), ("b.onnx", b.clone())]).unwrap();
        assert_eq!(built.cam, Ok((6, 6)));
        let x = tract_ndarray::Array4::from_shape_vec((1, 1, 6, 6), values(36, 9)).unwrap();
        let (on_a, on_b, both) = (run(&a, &x), run(&b, &x), run(&model, &x));
        close(&both[1], &((&on_a[1] + &on_b[1]) / 2.0), 1e-6);
        close(&both[2], &((&on_a[2] + &on_b[2]) / 2.0), 1e-6);
        let props: HashMap<_, _> = model.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
        for (k, v) in [
            ("fer.method", "ensemble"),
            ("fer.backbone", "net6+net6"),
            ("fer.members", "a.onnx,b.onnx"),
            ("fer.input_size", "6,6"),
            ("fer.eval_view", "centre_crop"),
            ("fer.crop_pad", "1"),
            ("fer.member0.recipe", "r_a"),
            ("fer.member1.val_accuracy", "0.5000"),
        ] {
            assert_eq!(props.get(k), Some(&v), "{k} in {props:?}");
        }
        assert!(!props.contains_key("fer.val_accuracy") && !props.contains_key("fer.recipe"), "the members' own, not the ensemble's");
        let mut mapless = b.clone();
        mapless.graph.as_mut().unwrap().output.retain(|o| o.name != "cam");
        let (model, built) = ensemble(&[("a.onnx", a), ("b.onnx", mapless)]).unwrap();
        assert_eq!(built.cam, Err("b.onnx has no cam output".into()));
        assert_eq!(model.graph.unwrap().output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["logits", "probs"]);
    }

    #[test]
    fn refuses_members_that_do_not_see_a_face_alike() {
        let a = member(8, 1, &[]);
        let retag = |m: &ModelProto, key: &str, value: &str| {
            let mut m = m.clone();
            m.metadata_props.retain(|p| p.key != key);
            m.metadata_props.push(StringStringEntryProto { key: key.into(), value: value.into() });
            m
        };
        let crop = retag(&retag(&a, "fer.eval_view", "centre_crop"), "fer.crop_pad", "4");
        for (other, says) in [
            (retag(&a, "fer.labels", "a,b,d"), "b has fer.labels `a,b,d` but a has `a,b,c`"),
            (retag(&a, "fer.color", "rgb"), "b has fer.color `rgb` but a has `gray`"),
            (retag(&a, "fer.std", "0.25"), "b has fer.std `0.25`"),
            (crop, "b sees 66.7 % of the face (centre_crop, crop pad 4) and a 100.0 % (resize)"),
        ] {
            let err = ensemble(&[("a", a.clone()), ("b", other)]).unwrap_err().to_string();
            assert!(err.contains(says), "wanted {says:?} in {err:?}");
        }
        let err = ensemble(&[("a", a.clone())]).unwrap_err().to_string();
        assert!(err.contains("needs two or more models, got 1"), "{err}");
        let mut headless = a.clone();
        headless.graph.as_mut().unwrap().output.retain(|o| o.name != "probs");
        let err = ensemble(&[("a", a), ("b", headless)]).unwrap_err().to_string();
        assert!(err.contains("b: no `probs` output"), "{err}");
    }

    /// Runtimes floor `from · scale`: 48 / 64 is exact, 40 / 56 is not and must not floor to 39.
    #[test]
    fn resize_scales_land_on_the_target_size() {
        for (from, to) in [(64, 48), (56, 40), (69, 52), (112, 100), (7, 3)] {
            let s = resize_scale(from, to);
            assert_eq!(((from as f32) * s).floor() as usize, to, "{from} -> {to}: {s}");
            assert!((s as f64 - to as f64 / from as f64).abs() < 1e-6);
        }
    }
}
