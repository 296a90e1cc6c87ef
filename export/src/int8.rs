//! Weight-only int8: each large Conv and Gemm weight is stored as int8 with one float32 scale per
//! output channel (symmetric, zero point 0) behind a `DequantizeLinear`, so the file is about a
//! quarter of its float32 size while activations and arithmetic stay float32. Runtimes fold the
//! dequantization into float32 constants when they load the model (tract's constant propagation;
//! ONNX Runtime with `session.disable_quant_qdq`, which fer-runtime sets for such files), so it
//! runs as fast as the float32 file. For keeping a ResNet-18 (42.6 MB) under the 20 MB a file in
//! git may take; the accuracy it costs is measured per model (its card says).

use crate::error::{ExportError, Result};
use crate::graph::initializer_f32;
use crate::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, ModelProto, NodeProto,
    TensorProto,
};
use std::collections::HashMap;

/// The usual `min_elements`: smaller weights stay float32 (biases, small layers: bytes, not MB).
pub const MIN_ELEMENTS: usize = 1024;

/// What [`quantize_weights`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Quantized {
    /// Weights now stored as int8.
    pub tensors: usize,
    /// Their elements.
    pub elements: usize,
    /// The largest |w − dequantized w| relative to its channel's largest |w| (at most 1/254).
    pub worst_relative_error: f32,
}

/// Rewrites the float32 weights of Conv (input 1, channel axis 0) and Gemm (input 1: axis 0 with
/// `transB = 1`, else 1) of at least `min_elements` elements (2-D or more) as int8 + per-channel
/// scales behind a `DequantizeLinear` (opset ≥ 13) that produces the weight's old name. A weight
/// read by any other node too stays float32. Errors on a graph with no float32 weight to rewrite.
pub fn quantize_weights(
    mut model: ModelProto,
    min_elements: usize,
) -> Result<(ModelProto, Quantized)> {
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty())
        .map(|o| o.version)
        .max()
        .unwrap_or(0);
    if opset < 13 {
        return Err(ExportError::Invalid(format!(
            "opset {opset}: per-channel DequantizeLinear needs opset 13 or later"
        )));
    }
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| ExportError::Invalid("model has no graph".into()))?;
    // Which weight each Conv / Gemm reads, with the axis of its output channels.
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    let mut axis_of: HashMap<String, i64> = HashMap::new();
    for n in &graph.node {
        let axis = match n.op_type.as_str() {
            "Conv" => 0,
            "Gemm" => {
                let trans_b = n
                    .attribute
                    .iter()
                    .find(|a| a.name == "transB")
                    .map_or(0, |a| a.i);
                if trans_b == 1 {
                    0
                } else {
                    1
                }
            }
            _ => continue,
        };
        if let Some(w) = n.input.get(1) {
            if readers.get(w.as_str()) == Some(&1) {
                axis_of.insert(w.clone(), axis);
            }
        }
    }
    let mut report = Quantized::default();
    let mut dequantize = Vec::new();
    let mut kept = Vec::with_capacity(graph.initializer.len());
    for t in std::mem::take(&mut graph.initializer) {
        let (Some(&axis), Some(values)) = (axis_of.get(&t.name), initializer_f32(&t)) else {
            kept.push(t);
            continue;
        };
        if values.len() < min_elements || t.dims.len() < 2 {
            kept.push(t);
            continue;
        }
        let (q, scales, worst) = per_channel(&values, &t.dims, axis as usize);
        report.tensors += 1;
        report.elements += values.len();
        report.worst_relative_error = report.worst_relative_error.max(worst);
        let name = t.name.clone();
        let channels = scales.len() as i64;
        kept.push(TensorProto {
            name: format!("{name}__int8"),
            dims: t.dims.clone(),
            data_type: DataType::Int8 as i32,
            raw_data: q.iter().map(|&v| v as u8).collect(),
            ..Default::default()
        });
        kept.push(TensorProto {
            name: format!("{name}__scale"),
            dims: vec![channels],
            data_type: DataType::Float as i32,
            raw_data: scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
            ..Default::default()
        });
        kept.push(TensorProto {
            name: format!("{name}__zero_point"),
            dims: vec![channels],
            data_type: DataType::Int8 as i32,
            raw_data: vec![0; channels as usize],
            ..Default::default()
        });
        dequantize.push(NodeProto {
            input: vec![
                format!("{name}__int8"),
                format!("{name}__scale"),
                format!("{name}__zero_point"),
            ],
            output: vec![name.clone()],
            name: format!("{name}/DequantizeLinear"),
            op_type: "DequantizeLinear".into(),
            attribute: vec![AttributeProto {
                name: "axis".into(),
                r#type: AttributeType::Int as i32,
                i: axis,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    graph.initializer = kept;
    if report.tensors == 0 {
        return Err(ExportError::Invalid(format!(
            "no float32 Conv/Gemm weight of {min_elements}+ elements to quantize (already int8, or float16: convert it first)"
        )));
    }
    // Before every reader: the dequantized weights come first.
    dequantize.append(&mut graph.node);
    graph.node = dequantize;
    Ok((model, report))
}

/// Symmetric int8 per channel along `axis`: scale = max|w| / 127 (1 for an all-zero channel).
/// Returns the int8 values, the scales and the worst |w − q·scale| / max|w| of any channel.
fn per_channel(values: &[f32], dims: &[i64], axis: usize) -> (Vec<i8>, Vec<f32>, f32) {
    let channels = dims[axis] as usize;
    let inner: usize = dims[axis + 1..].iter().product::<i64>() as usize;
    let channel = |i: usize| (i / inner) % channels;
    let mut max = vec![0f32; channels];
    for (i, v) in values.iter().enumerate() {
        max[channel(i)] = max[channel(i)].max(v.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let mut worst = 0f32;
    let q = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = channel(i);
            let q = (v / scales[c]).round().clamp(-127.0, 127.0);
            if max[c] > 0.0 {
                worst = worst.max((v - q * scales[c]).abs() / max[c]);
            }
            q as i8
        })
        .collect();
    (q, scales, worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::test_values as values;
    use crate::{Dim, GraphBuilder};

    fn meta(labels: &[&str]) -> crate::Metadata {
        crate::Metadata {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            input_size: (6, 6),
            color: crate::ColorMode::Rgb,
            mean: vec![0.0],
            std: vec![1.0],
            method: "ce".into(),
            backbone: "test".into(),
            data: "none".into(),
            val_accuracy: None,
            extra: vec![],
        }
    }

    /// A conv (channels on axis 0) and a Gemm with transB = 0 (channels on axis 1) are rewritten;
    /// the bias and a small weight are not; the rewritten file computes what the float32 one does
    /// up to int8 rounding (tract runs both), and quantizing it again is refused.
    #[test]
    fn quantizes_large_conv_and_gemm_weights_per_channel() {
        let mut g = GraphBuilder::new("q");
        let x = g.input(
            "input",
            &[Dim::batch(), Dim::Fixed(16), Dim::Fixed(6), Dim::Fixed(6)],
        );
        // Channel 3 is 100x the others: a per-tensor scale would round the others to a few levels.
        let mut wv = values(32 * 16 * 9, 1);
        for v in &mut wv[3 * 144..4 * 144] {
            *v *= 100.0;
        }
        let w = g.initializer("c.w", &[32, 16, 3, 3], &wv).unwrap();
        let b = g.initializer("c.b", &[32], &values(32, 2)).unwrap();
        let y = g.conv(&x, &w, Some(&b), [3, 3], [1, 1], [1, 1], 1, "c");
        let p = g.op("GlobalAveragePool", &[&y], &[], "gap");
        let f = g.op("Flatten", &[&p], &[], "flat");
        let fc = g
            .initializer("fc.w", &[32, 40], &values(32 * 40, 3))
            .unwrap();
        let z = g.op("Gemm", &[&f, &fc], &[], "fc");
        let small = g.initializer("s.w", &[40, 2], &values(80, 4)).unwrap();
        let o = g.op("Gemm", &[&z, &small], &[], "out");
        g.output("logits", &o, &[Dim::batch(), Dim::Fixed(2)]);
        let f32_model = g.finish(&meta(&["a", "b"])).unwrap();
        let (q, report) = quantize_weights(f32_model.clone(), MIN_ELEMENTS).unwrap();
        assert_eq!(
            (report.tensors, report.elements),
            (2, 32 * 16 * 9 + 32 * 40)
        );
        assert!(
            report.worst_relative_error > 0.0 && report.worst_relative_error <= 0.5 / 127.0 + 1e-6,
            "{report:?}"
        );
        let graph = q.graph.as_ref().unwrap();
        let dq: Vec<_> = graph
            .node
            .iter()
            .filter(|n| n.op_type == "DequantizeLinear")
            .collect();
        assert_eq!(dq.len(), 2);
        assert_eq!(
            dq.iter().map(|n| n.attribute[0].i).collect::<Vec<_>>(),
            [0, 1],
            "conv axis 0, Gemm (transB 0) axis 1"
        );
        let dtype = |name: &str| {
            graph
                .initializer
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.data_type)
        };
        assert_eq!(dtype("c.w__int8"), Some(DataType::Int8 as i32));
        assert_eq!(dtype("c.b"), Some(DataType::Float as i32));
        assert_eq!(
            dtype("s.w"),
            Some(DataType::Float as i32),
            "80 elements: not worth rewriting"
        );
        assert_eq!(dtype("c.w"), None);
        let bytes = |m: &ModelProto| crate::to_bytes(m).len();
        assert!(
            bytes(&q) * 3 < bytes(&f32_model),
            "{} vs {} bytes",
            bytes(&q),
            bytes(&f32_model)
        );

        let run = |m: &ModelProto| -> Vec<f32> {
            use tract_onnx::prelude::*;
            let model = tract_onnx::onnx()
                .model_for_proto_model(m)
                .unwrap()
                .with_input_fact(0, f32::fact([1, 16, 6, 6]).into())
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let x =
                tract_ndarray::Array4::from_shape_vec((1, 16, 6, 6), values(16 * 36, 5)).unwrap();
            let out = model.run(tvec!(Tensor::from(x).into())).unwrap();
            out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        let (a, b) = (run(&q), run(&f32_model));
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            scale > 1.0 && worst > 0.0 && worst <= 0.01 * scale,
            "int8 vs float32: {worst} (largest {scale})"
        );

        let again = quantize_weights(q, MIN_ELEMENTS).unwrap_err().to_string();
        assert!(again.contains("no float32 Conv/Gemm weight"), "{again}");
    }

    /// A float16 file back to float32: weights keep their float16 values, Casts become Identity,
    /// and it computes what the float16 file computes (tract upcasts that one too).
    #[test]
    fn to_fp32_undoes_to_fp16() {
        let mut g = GraphBuilder::new("h");
        let x = g.input(
            "input",
            &[Dim::batch(), Dim::Fixed(16), Dim::Fixed(6), Dim::Fixed(6)],
        );
        let w = g
            .initializer("c.w", &[8, 16, 3, 3], &values(8 * 16 * 9, 6))
            .unwrap();
        let y = g.conv(&x, &w, None, [3, 3], [1, 1], [1, 1], 1, "c");
        g.output(
            "y",
            &y,
            &[Dim::batch(), Dim::Fixed(8), Dim::Fixed(6), Dim::Fixed(6)],
        );
        let half = crate::fp16::to_fp16(g.finish(&meta(&["a"])).unwrap()).unwrap();
        let back = crate::fp16::to_fp32(half).unwrap();
        let graph = back.graph.as_ref().unwrap();
        assert!(graph.node.iter().all(|n| n.op_type != "Cast"));
        let w = graph.initializer.iter().find(|t| t.name == "c.w").unwrap();
        let got = initializer_f32(w).expect("float32 again");
        let want: Vec<f32> = values(8 * 16 * 9, 6)
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        assert_eq!(got, want);
        crate::check::load_in_tract(&crate::to_bytes(&back), &[1, 16, 6, 6]).unwrap();
        quantize_weights(back, MIN_ELEMENTS).unwrap();

        // A Cast to a non-float type is not one of to_fp16's: refused by name, not made Identity.
        let mut g = GraphBuilder::new("int_cast");
        let x = g.input("input", &[Dim::batch(), Dim::Fixed(4)]);
        let y = g.op("Cast", &[&x], &[crate::Attr::int("to", 7)], "to_int64");
        g.output("y", &y, &[Dim::batch(), Dim::Fixed(4)]);
        let e = crate::fp16::to_fp32(g.finish(&meta(&["a"])).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("a Cast to a non-float type"), "{e}");
    }
}
