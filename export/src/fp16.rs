//! `--fp16` export: float32 initializers become float16, the graph computes in float16, and the
//! interface stays float32 (a Cast after each input and before each output), so `fer-run` and
//! embedders feed and read the same tensors whichever precision the file holds.
//! `Gemm` nodes (the final classifier: tiny) stay float32 between Casts: tract has no float16 Gemm,
//! and the logits keep full precision.

use crate::error::{ExportError, Result};
use crate::graph::initializer_f32;
use crate::pb::{attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, ModelProto, NodeProto};

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

/// Converts a float32 model to float16 compute with a float32 interface.
pub fn to_fp16(mut model: ModelProto) -> Result<ModelProto> {
    let graph = model.graph.as_mut().ok_or_else(|| ExportError::Invalid("model has no graph".into()))?;
    let gemm_params: std::collections::HashSet<String> =
        graph.node.iter().filter(|n| n.op_type == "Gemm").flat_map(|n| n.input.iter().skip(1).cloned()).collect();
    // A Gemm parameter also read elsewhere (the CAM reuses the fc weight) gets a float16 twin.
    let mut twins = Vec::new();
    for t in graph.initializer.iter().filter(|t| gemm_params.contains(&t.name)) {
        let shared = graph.node.iter().any(|n| n.op_type != "Gemm" && n.input.contains(&t.name));
        if shared {
            let mut twin = t.clone();
            twin.name = format!("{}__fp16", t.name);
            for n in graph.node.iter_mut().filter(|n| n.op_type != "Gemm") {
                for i in n.input.iter_mut().filter(|i| **i == t.name) {
                    *i = twin.name.clone();
                }
            }
            twins.push(twin);
        }
    }
    graph.initializer.extend(twins);
    for t in graph.initializer.iter_mut().filter(|t| !gemm_params.contains(&t.name)) {
        if let Some(values) = initializer_f32(t) {
            t.data_type = DataType::Float16 as i32;
            t.float_data.clear();
            t.raw_data = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        }
    }
    for n in &graph.node {
        if n.op_type == "Cast" || n.op_type == "Constant" {
            return Err(ExportError::Unsupported {
                node: n.name.clone(),
                reason: "fp16 conversion does not rewrite Cast/Constant nodes".into(),
            });
        }
    }
    // Gemm: float16 activation -> Cast -> float32 Gemm -> Cast -> float16.
    let mut nodes = Vec::with_capacity(graph.node.len());
    for mut n in std::mem::take(&mut graph.node) {
        if n.op_type == "Gemm" {
            let x32 = format!("{}__fp32", n.input[0]);
            nodes.push(cast(&n.input[0], &x32, DataType::Float));
            n.input[0] = x32;
            let y16 = n.output[0].clone();
            let y32 = format!("{y16}__fp32");
            n.output[0] = y32.clone();
            nodes.push(n);
            nodes.push(cast(&y32, &y16, DataType::Float16));
        } else {
            nodes.push(n);
        }
    }
    graph.node = nodes;
    let mut prologue = Vec::new();
    for input in &graph.input {
        let half_name = format!("{}__fp16", input.name);
        for n in graph.node.iter_mut() {
            for i in n.input.iter_mut().filter(|i| **i == input.name) {
                *i = half_name.clone();
            }
        }
        prologue.push(cast(&input.name, &half_name, DataType::Float16));
    }
    for output in &graph.output {
        let half_name = format!("{}__fp16", output.name);
        for n in graph.node.iter_mut() {
            for o in n.output.iter_mut().filter(|o| **o == output.name) {
                *o = half_name.clone();
            }
        }
        graph.node.push(cast(&half_name, &output.name, DataType::Float));
    }
    prologue.append(&mut graph.node);
    graph.node = prologue;
    Ok(model)
}
