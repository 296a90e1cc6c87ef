//! `--fp16` export: the convolutional body computes in float16 with float16 weights, while the
//! interface stays float32 (a Cast after the input, and outputs produced in float32), so `fer-run`
//! and embedders feed and read the same tensors whichever precision the file holds.
//!
//! The classifier tail (`GlobalAveragePool`, `Flatten`, `Gemm`, `Softmax`, and the `Identity`
//! nodes naming the outputs) stays float32: it is a tiny share of the work, the pooled average of many
//! float16 values is where half precision loses most, and tract has no float16 Gemm.

use crate::error::{ExportError, Result};
use crate::graph::initializer_f32;
use crate::pb::{attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, ModelProto, NodeProto};
use std::collections::{HashMap, HashSet};

const FLOAT32_OPS: &[&str] = &["GlobalAveragePool", "Flatten", "Gemm", "Softmax", "Identity"];

fn cast(input: &str, output: &str, to: DataType) -> NodeProto {
    NodeProto {
        input: vec![input.into()],
        output: vec![output.into()],
        name: format!("{output}/Cast"),
        op_type: "Cast".into(),
        attribute: vec![AttributeProto {
            name: "to".into(),
            r#type: AttributeType::Int as i32,
            i: to as i64,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn to_half(t: &mut crate::pb::TensorProto) {
    if let Some(values) = initializer_f32(t) {
        t.data_type = DataType::Float16 as i32;
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
    }
}

/// Converts a float32 model to float16 compute with a float32 interface.
pub fn to_fp16(mut model: ModelProto) -> Result<ModelProto> {
    let graph = model.graph.as_mut().ok_or_else(|| ExportError::Invalid("model has no graph".into()))?;
    if let Some(n) = graph.node.iter().find(|n| n.op_type == "Cast" || n.op_type == "Constant") {
        return Err(ExportError::Unsupported {
            node: n.name.clone(),
            reason: "fp16 conversion does not rewrite Cast/Constant nodes".into(),
        });
    }
    let keeps_f32 = |n: &NodeProto| FLOAT32_OPS.contains(&n.op_type.as_str());
    let init_names: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();

    // Initializers: float16 when read by a float16 node, float32 when read by a float32 node; both
    // (the CAM reuses the fc weight) -> a float16 twin for the float16 readers.
    let read_by = |f32_side: bool| -> HashSet<String> {
        graph.node.iter().filter(|n| keeps_f32(n) == f32_side).flat_map(|n| n.input.iter().cloned()).collect()
    };
    let (read_f32, read_f16) = (read_by(true), read_by(false));
    let mut twins = Vec::new();
    let mut renamed_f16 = HashMap::new();
    for t in graph.initializer.iter_mut() {
        match (read_f32.contains(&t.name), read_f16.contains(&t.name)) {
            (true, true) => {
                let mut twin = t.clone();
                twin.name = format!("{}__fp16", t.name);
                to_half(&mut twin);
                renamed_f16.insert(t.name.clone(), twin.name.clone());
                twins.push(twin);
            }
            (false, _) => to_half(t),
            (true, false) => {}
        }
    }
    graph.initializer.extend(twins);

    // Values: graph inputs are cast to float16 once; each node reads its inputs in its own precision,
    // with a Cast inserted (once per value and direction) where a producer's precision differs.
    let mut is_f32: HashSet<String> = HashSet::new();
    let mut casts: HashMap<(String, bool), String> = HashMap::new();
    let mut nodes = Vec::with_capacity(graph.node.len() + 8);
    for input in &graph.input {
        let half_name = format!("{}__fp16", input.name);
        nodes.push(cast(&input.name, &half_name, DataType::Float16));
        casts.insert((input.name.clone(), false), half_name);
        is_f32.insert(input.name.clone());
    }
    for mut n in std::mem::take(&mut graph.node) {
        let want_f32 = keeps_f32(&n);
        for i in n.input.iter_mut().filter(|i| !i.is_empty()) {
            if init_names.contains(i.as_str()) {
                if !want_f32 {
                    if let Some(twin) = renamed_f16.get(i.as_str()) {
                        *i = twin.clone();
                    }
                }
                continue;
            }
            if is_f32.contains(i.as_str()) != want_f32 {
                let key = (i.clone(), want_f32);
                let name = casts.entry(key).or_insert_with(|| {
                    let name = format!("{i}__{}", if want_f32 { "fp32" } else { "fp16" });
                    nodes.push(cast(i, &name, if want_f32 { DataType::Float } else { DataType::Float16 }));
                    name
                });
                *i = name.clone();
            }
        }
        if want_f32 {
            is_f32.extend(n.output.iter().cloned());
        }
        nodes.push(n);
    }
    for output in &graph.output {
        if !is_f32.contains(&output.name) {
            let half_name = format!("{}__fp16", output.name);
            for n in nodes.iter_mut() {
                for o in n.output.iter_mut().filter(|o| **o == output.name) {
                    *o = half_name.clone();
                }
            }
            nodes.push(cast(&half_name, &output.name, DataType::Float));
        }
    }
    graph.node = nodes;
    Ok(model)
}

/// The inverse of [`to_fp16`] for a file it wrote: float16 weights become float32 again (with the
/// float16 rounding they were stored with) and its Casts become Identity, which every runtime
/// removes. For rewriting a float16 file whose float32 original is gone (a model that came back
/// from the GPU machine in float16), e.g. before [`crate::int8::quantize_weights`].
pub fn to_fp32(mut model: ModelProto) -> Result<ModelProto> {
    let graph = model.graph.as_mut().ok_or_else(|| ExportError::Invalid("model has no graph".into()))?;
    for t in graph.initializer.iter_mut().filter(|t| t.data_type == DataType::Float16 as i32) {
        let halves: Vec<f32> = if t.raw_data.is_empty() {
            // int32_data holds float16 bit patterns when raw_data is not used
            t.int32_data.iter().map(|&b| half::f16::from_bits(b as u16).to_f32()).collect()
        } else {
            t.raw_data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        };
        t.data_type = DataType::Float as i32;
        t.int32_data.clear();
        t.raw_data = halves.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    // to_fp16 refuses graphs with Casts, so its own (to float16 / float32) are the only ones here.
    let float_types = [DataType::Float16 as i64, DataType::Float as i64];
    if let Some(n) = graph.node.iter().find(|n| {
        n.op_type == "Cast" && !n.attribute.iter().any(|a| a.name == "to" && float_types.contains(&a.i))
    }) {
        return Err(ExportError::Unsupported { node: n.name.clone(), reason: "a Cast to a non-float type: not a to_fp16 file".into() });
    }
    for n in graph.node.iter_mut().filter(|n| n.op_type == "Cast") {
        n.op_type = "Identity".into();
        n.attribute.clear();
    }
    let values = graph.input.iter_mut().chain(graph.output.iter_mut()).chain(graph.value_info.iter_mut());
    for v in values {
        if let Some(crate::pb::type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            if t.elem_type == DataType::Float16 as i32 {
                t.elem_type = DataType::Float as i32;
            }
        }
    }
    Ok(model)
}
