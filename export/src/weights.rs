//! The way back from a deployed file to its weights: every weight of a fer ONNX file as float32,
//! whatever precision the file stores it in, under the name the graph reads it by. `fer-train`
//! starts a run from a shipped model this way (`model.init: model.onnx`); the weights are the
//! exported ones, so convolutions come with their batch norm folded in (the trainer unfolds them).
//!
//! - float32 initializers as they are;
//! - float16 ones of an `--fp16` file ([`crate::fp16`]: `X`, or `X__fp16` beside a float32 `X`)
//!   as `X`, widened;
//! - int8 ones ([`crate::int8`]: `X__int8`, `X__scale`, `X__zero_point` behind a
//!   `DequantizeLinear` producing `X`) as `X`, dequantized exactly as the runtimes do.

use crate::error::{ExportError, Result};
use crate::graph::initializer_f32;
use crate::pb::{tensor_proto::DataType, ModelProto, TensorProto};
use std::collections::HashMap;

/// One weight: its shape and its values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub dims: Vec<i64>,
    pub data: Vec<f32>,
}

/// Every weight of `model` as float32 by the name its readers use (see the module docs). The int8
/// and float16 storage tensors themselves are not listed; other integer initializers (shapes,
/// indices) are skipped. Errors name the weight a malformed file gets wrong.
pub fn float_weights(model: &ModelProto) -> Result<HashMap<String, Weight>> {
    let graph = model.graph.as_ref().ok_or_else(|| ExportError::Invalid("model has no graph".into()))?;
    let by_name: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut out = HashMap::new();
    for t in &graph.initializer {
        if let Some(data) = initializer_f32(t) {
            out.insert(t.name.clone(), checked(t, data)?);
        }
    }
    for t in graph.initializer.iter().filter(|t| t.data_type == DataType::Float16 as i32) {
        // A weight read in both precisions has a float32 original and a float16 twin.
        let name = t.name.strip_suffix("__fp16").unwrap_or(&t.name);
        if out.contains_key(name) {
            continue;
        }
        let data = if t.raw_data.is_empty() {
            // ONNX keeps float16 bits in int32_data when not raw.
            t.int32_data.iter().map(|&b| half::f16::from_bits(b as u16).to_f32()).collect()
        } else {
            t.raw_data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        };
        out.insert(name.to_string(), checked(t, data)?);
    }
    let dequantized: Vec<_> = graph.node.iter().filter(|n| n.op_type == "DequantizeLinear").collect();
    // A scale is storage, not a weight.
    for n in &dequantized {
        for i in n.input.iter().skip(1) {
            out.remove(i);
        }
    }
    for n in dequantized {
        let (Some(q), Some(scale), Some(out_name)) =
            (n.input.first().and_then(|i| by_name.get(i.as_str())), n.input.get(1).and_then(|i| by_name.get(i.as_str())), n.output.first())
        else {
            continue; // dequantizes an activation, not a stored weight
        };
        let bad = |what: String| ExportError::Invalid(format!("weight `{out_name}`: {what}"));
        if q.data_type != DataType::Int8 as i32 {
            return Err(bad(format!("stored as data type {}, not int8", q.data_type)));
        }
        let scales = initializer_f32(scale).ok_or_else(|| bad("its scale is not float32".into()))?;
        let zero: Vec<i8> = match n.input.get(2).and_then(|i| by_name.get(i.as_str())) {
            Some(z) if z.data_type == DataType::Int8 as i32 => int8_values(z),
            Some(_) => return Err(bad("its zero point is not int8".into())),
            None => vec![0; scales.len()],
        };
        let axis = n.attribute.iter().find(|a| a.name == "axis").map_or(1, |a| a.i);
        let values = int8_values(q);
        let per_tensor = scales.len() == 1;
        let (channels, inner) = if per_tensor {
            (1, values.len().max(1))
        } else {
            let axis = usize::try_from(axis).ok().filter(|&a| a < q.dims.len()).ok_or_else(|| bad(format!("axis {axis} of a {}-d tensor", q.dims.len())))?;
            (q.dims[axis] as usize, q.dims[axis + 1..].iter().product::<i64>() as usize)
        };
        if scales.len() != channels || zero.len() != channels {
            return Err(bad(format!("{} scales and {} zero points for {channels} channels", scales.len(), zero.len())));
        }
        let data = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner) % channels;
                (v as i32 - zero[c] as i32) as f32 * scales[c]
            })
            .collect();
        let w = checked(q, data)?;
        out.insert(out_name.clone(), w);
    }
    Ok(out)
}

fn int8_values(t: &TensorProto) -> Vec<i8> {
    if t.raw_data.is_empty() {
        t.int32_data.iter().map(|&v| v as i8).collect()
    } else {
        t.raw_data.iter().map(|&b| b as i8).collect()
    }
}

/// `data` as the weight `t` describes, if its element count matches its dims.
fn checked(t: &TensorProto, data: Vec<f32>) -> Result<Weight> {
    let want: i64 = t.dims.iter().product();
    if want < 0 || want as usize != data.len() {
        return Err(ExportError::Invalid(format!(
            "initializer `{}` has {} values for dims {:?}",
            t.name,
            data.len(),
            t.dims
        )));
    }
    Ok(Weight { dims: t.dims.clone(), data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dim, GraphBuilder, Metadata};

    /// A conv and a Gemm big enough to be quantized, plus a small bias that stays float32.
    fn model() -> ModelProto {
        let mut g = GraphBuilder::new("t");
        let x = g.input("input", &[Dim::batch(), Dim::Fixed(4), Dim::Fixed(8), Dim::Fixed(8)]);
        let wv: Vec<f32> = (0..32 * 4 * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let w = g.initializer("conv.weight", &[32, 4, 3, 3], &wv).unwrap();
        let b = g.initializer("conv.bias", &[32], &(0..32).map(|i| i as f32 / 7.0).collect::<Vec<_>>()).unwrap();
        let y = g.conv(&x, &w, Some(&b), [3, 3], [1, 1], [1, 1], 1, "conv");
        let p = g.op("GlobalAveragePool", &[&y], &[], "pool");
        let f = g.op("Flatten", &[&p], &[], "flat");
        let fw: Vec<f32> = (0..7 * 32 * 8).map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0).collect();
        let fcw = g.initializer("fc.weight", &[56, 32], &fw[..56 * 32]).unwrap();
        let z = g.op("Gemm", &[&f, &fcw], &[crate::Attr::int("transB", 1)], "fc");
        g.output("logits", &z, &[Dim::batch(), Dim::Fixed(56)]);
        g.finish(&Metadata::default()).unwrap()
    }

    #[test]
    fn float32_weights_come_back_as_stored() {
        let w = float_weights(&model()).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w["conv.weight"].dims, vec![32, 4, 3, 3]);
        assert_eq!(w["conv.bias"].data[7], 1.0);
        assert_eq!(w["fc.weight"].data.len(), 56 * 32);
    }

    /// int8 files give back each weight within half a quantization step of its channel, under
    /// its own name, and the storage tensors are not listed.
    #[test]
    fn int8_weights_come_back_dequantized() {
        let plain = float_weights(&model()).unwrap();
        let (q, report) = crate::int8::quantize_weights(model(), 1024).unwrap();
        assert_eq!(report.tensors, 2);
        let back = float_weights(&q).unwrap();
        let mut names: Vec<_> = back.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["conv.bias", "conv.weight", "fc.weight"]);
        for name in ["conv.weight", "fc.weight"] {
            let (a, b) = (&plain[name], &back[name]);
            assert_eq!(a.dims, b.dims);
            let rows = a.dims[0] as usize;
            let inner = a.data.len() / rows;
            for r in 0..rows {
                let row = &a.data[r * inner..(r + 1) * inner];
                let step = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for (x, y) in row.iter().zip(&b.data[r * inner..(r + 1) * inner]) {
                    assert!((x - y).abs() <= step / 2.0 + 1e-6, "{name}: {x} came back as {y}");
                }
            }
        }
        assert_eq!(back["conv.bias"], plain["conv.bias"]);
    }

    #[test]
    fn float16_weights_come_back_widened() {
        let plain = float_weights(&model()).unwrap();
        let half = crate::fp16::to_fp16(model()).unwrap();
        let back = float_weights(&half).unwrap();
        let w = &back["conv.weight"];
        assert_eq!(w.dims, plain["conv.weight"].dims);
        for (x, y) in plain["conv.weight"].data.iter().zip(&w.data) {
            assert!((x - y).abs() <= x.abs() / 1024.0, "{x} came back as {y}");
        }
    }

    #[test]
    fn a_weight_with_the_wrong_count_is_named() {
        let mut m = model();
        m.graph.as_mut().unwrap().initializer[0].dims = vec![5];
        let err = float_weights(&m).unwrap_err().to_string();
        assert!(err.contains("conv.weight") && err.contains("[5]"), "{err}");
    }
}
