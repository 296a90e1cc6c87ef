//! A small ONNX graph builder: values are named by strings, initializers by their VarStore path
//! (so checkpoint keys, ONNX initializer names and torchvision keys are one namespace).

use crate::error::{ExportError, Result};
use crate::metadata::Metadata;
use crate::pb::{
    self, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::collections::HashSet;

/// The one opset every emitter targets.
pub const OPSET: i64 = 17;
/// IR version 8 goes with opset 17 (ONNX 1.13+); ONNX Runtime 1.31 and tract read it.
pub const IR_VERSION: i64 = 8;

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic dimension such as the batch `N`.
    Param(String),
}

impl Dim {
    /// The dynamic batch axis of the contract.
    pub fn batch() -> Dim {
        Dim::Param("N".into())
    }
}

/// A node attribute.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(String, i64),
    Ints(String, Vec<i64>),
    Float(String, f32),
    Floats(String, Vec<f32>),
    Str(String, String),
}

impl Attr {
    pub fn int(name: &str, v: i64) -> Attr {
        Attr::Int(name.into(), v)
    }
    pub fn ints(name: &str, v: &[i64]) -> Attr {
        Attr::Ints(name.into(), v.to_vec())
    }
    pub fn float(name: &str, v: f32) -> Attr {
        Attr::Float(name.into(), v)
    }
    pub fn floats(name: &str, v: &[f32]) -> Attr {
        Attr::Floats(name.into(), v.to_vec())
    }
    pub fn string(name: &str, v: &str) -> Attr {
        Attr::Str(name.into(), v.into())
    }

    fn to_proto(&self) -> AttributeProto {
        let mut a = AttributeProto::default();
        match self {
            Attr::Int(n, v) => {
                a.name = n.clone();
                a.r#type = AttributeType::Int as i32;
                a.i = *v;
            }
            Attr::Ints(n, v) => {
                a.name = n.clone();
                a.r#type = AttributeType::Ints as i32;
                a.ints = v.clone();
            }
            Attr::Float(n, v) => {
                a.name = n.clone();
                a.r#type = AttributeType::Float as i32;
                a.f = *v;
            }
            Attr::Floats(n, v) => {
                a.name = n.clone();
                a.r#type = AttributeType::Floats as i32;
                a.floats = v.clone();
            }
            Attr::Str(n, v) => {
                a.name = n.clone();
                a.r#type = AttributeType::String as i32;
                a.s = v.as_bytes().to_vec();
            }
        }
        a
    }
}

pub(crate) fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(v) => dimension::Value::DimValue(*v),
                Dim::Param(p) => dimension::Value::DimParam(p.clone()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

/// A float32 initializer; subnormal values are written as zero (see [`flush_subnormal`]).
pub(crate) fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|&v| flush_subnormal(v).to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// `v`, or zero if it is subnormal (|v| < 1.2e-38). Trained weights hold many: a channel whose BN
/// scale weight decay drove to ~0 folds into a conv of subnormal weights (449,297 of the
/// 2026-12-03 edge model's 2.3 M). Intel CPUs take a microcode assist for every subnormal operand,
/// which made ONNX Runtime 14x slower on that file (9.2 ms instead of 0.65 ms per face, Python's
/// onnxruntime alike); AMD's Zen cores, where it was measured before, do not pay it. The values are
/// below anything float32 arithmetic can add to a logit, so zero changes no output.
pub fn flush_subnormal(v: f32) -> f32 {
    if v.is_subnormal() {
        0.0
    } else {
        v
    }
}

/// Rewrites the float32 initializers of an existing model with [`flush_subnormal`] (files
/// exported before the exporter did it); returns how many values became zero.
pub fn flush_subnormals(model: &mut pb::ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else { return 0 };
    let mut flushed = 0;
    for t in graph.initializer.iter_mut() {
        let Some(values) = initializer_f32(t) else { continue };
        flushed += values.iter().filter(|v| v.is_subnormal()).count();
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|&v| flush_subnormal(v).to_le_bytes()).collect();
    }
    flushed
}

fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Builds one ONNX graph. Every `op*` call appends a node and returns the name(s) of its output(s).
#[derive(Debug, Default)]
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    used: HashSet<String>,
    counter: usize,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder { name: name.into(), ..Default::default() }
    }

    /// A fresh value name derived from `hint` (`hint`, `hint_1`, `hint_2`, ...).
    pub fn fresh(&mut self, hint: &str) -> String {
        let hint = if hint.is_empty() { "v" } else { hint };
        let mut name = hint.to_string();
        while self.used.contains(&name) {
            self.counter += 1;
            name = format!("{hint}_{}", self.counter);
        }
        self.used.insert(name.clone());
        name
    }

    /// Whether a value or initializer named `name` exists already (blocks that emit shared weights
    /// once, such as an MLP applied to several inputs).
    pub fn has(&self, name: &str) -> bool {
        self.used.contains(name)
    }

    fn claim(&mut self, name: &str) -> Result<()> {
        if !self.used.insert(name.to_string()) {
            return Err(ExportError::DuplicateName(name.into()));
        }
        Ok(())
    }

    /// Declares a float32 graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.used.insert(name.into());
        self.inputs.push(value_info(name, DataType::Float, dims));
        name.into()
    }

    /// Adds a float32 initializer under its exact name (the parameter's VarStore path).
    pub fn initializer(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Result<String> {
        let expected = dims.iter().product::<i64>().max(0) as usize;
        if expected != data.len() {
            return Err(ExportError::ShapeMismatch {
                name: name.into(),
                dims: dims.to_vec(),
                expected,
                got: data.len(),
            });
        }
        self.claim(name)?;
        self.initializers.push(tensor_f32(name, dims, data));
        Ok(name.into())
    }

    /// A float32 constant with a generated name (scalars: `dims = &[]`).
    pub fn const_f32(&mut self, hint: &str, dims: &[i64], data: &[f32]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(tensor_f32(&name, dims, data));
        name
    }

    /// A 1-D int64 constant with a generated name (shapes, axes, pads).
    pub fn const_i64(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(tensor_i64(&name, &[data.len() as i64], data));
        name
    }

    /// Appends a node with one output; returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: &[Attr], hint: &str) -> String {
        self.op_n(op_type, inputs, attrs, hint, 1).remove(0)
    }

    /// Appends a node with `n_outputs` outputs.
    pub fn op_n(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: &[Attr],
        hint: &str,
        n_outputs: usize,
    ) -> Vec<String> {
        let node_name = self.fresh(&format!("{hint}/{op_type}"));
        let outputs: Vec<String> = (0..n_outputs)
            .map(|i| self.fresh(&if n_outputs == 1 { hint.to_string() } else { format!("{hint}:{i}") }))
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name: node_name,
            op_type: op_type.into(),
            attribute: attrs.iter().map(Attr::to_proto).collect(),
            ..Default::default()
        });
        outputs
    }

    /// Declares a float32 graph output named `name` carrying `value` (through an Identity, so the
    /// contract's names never depend on how the last block named its value).
    pub fn output(&mut self, name: &str, value: &str, dims: &[Dim]) {
        let mut value = value.to_string();
        if !self.used.insert(name.into()) {
            // An internal value already took the contract's name (a block hinted "probs"): rename
            // it, so the Identity below is the one producer of `name`.
            let renamed = self.fresh(&format!("{name}_value"));
            for n in self.nodes.iter_mut() {
                for v in n.output.iter_mut().chain(n.input.iter_mut()).filter(|v| *v == name) {
                    *v = renamed.clone();
                }
            }
            if value == name {
                value = renamed;
            }
        }
        self.nodes.push(NodeProto {
            input: vec![value],
            output: vec![name.into()],
            name: format!("{name}/Identity"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push(value_info(name, DataType::Float, dims));
    }

    // ---- one emitter per op that several blocks share ----

    /// `Conv` (NCHW); `w` is `[out, in/groups, kh, kw]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: &str,
        w: &str,
        b: Option<&str>,
        kernel: [i64; 2],
        stride: [i64; 2],
        pad: [i64; 2],
        groups: i64,
        hint: &str,
    ) -> String {
        let mut inputs = vec![x, w];
        if let Some(b) = b {
            inputs.push(b);
        }
        let attrs = [
            Attr::ints("kernel_shape", &kernel),
            Attr::ints("strides", &stride),
            Attr::ints("pads", &[pad[0], pad[1], pad[0], pad[1]]),
            Attr::ints("dilations", &[1, 1]),
            Attr::int("group", groups),
        ];
        self.op("Conv", &inputs, &attrs, hint)
    }

    pub fn relu(&mut self, x: &str, hint: &str) -> String {
        self.op("Relu", &[x], &[], hint)
    }

    /// `min(max(x, lo), hi)`: ReLU6 is `clip(x, 0, 6)`.
    pub fn clip(&mut self, x: &str, lo: f32, hi: f32, hint: &str) -> String {
        let lo = self.const_f32(&format!("{hint}/min"), &[], &[lo]);
        let hi = self.const_f32(&format!("{hint}/max"), &[], &[hi]);
        self.op("Clip", &[x, &lo, &hi], &[], hint)
    }

    pub fn add(&mut self, a: &str, b: &str, hint: &str) -> String {
        self.op("Add", &[a, b], &[], hint)
    }

    pub fn mul(&mut self, a: &str, b: &str, hint: &str) -> String {
        self.op("Mul", &[a, b], &[], hint)
    }

    pub fn sigmoid(&mut self, x: &str, hint: &str) -> String {
        self.op("Sigmoid", &[x], &[], hint)
    }

    /// `[N, C, H, W] -> [N, C]` by global average pooling then flatten.
    pub fn global_avg_pool_flat(&mut self, x: &str, hint: &str) -> String {
        let p = self.op("GlobalAveragePool", &[x], &[], &format!("{hint}/gap"));
        self.op("Flatten", &[&p], &[Attr::int("axis", 1)], hint)
    }

    pub fn max_pool(&mut self, x: &str, kernel: i64, stride: i64, pad: i64, hint: &str) -> String {
        let attrs = [
            Attr::ints("kernel_shape", &[kernel, kernel]),
            Attr::ints("strides", &[stride, stride]),
            Attr::ints("pads", &[pad, pad, pad, pad]),
        ];
        self.op("MaxPool", &[x], &attrs, hint)
    }

    /// `y = x · wᵀ + b` with `w` as stored by `nn::Linear` (`[out, in]`).
    pub fn linear(&mut self, x: &str, w: &str, b: Option<&str>, hint: &str) -> String {
        let mut inputs = vec![x, w];
        if let Some(b) = b {
            inputs.push(b);
        }
        self.op("Gemm", &inputs, &[Attr::int("transB", 1)], hint)
    }

    pub fn softmax(&mut self, x: &str, axis: i64, hint: &str) -> String {
        self.op("Softmax", &[x], &[Attr::int("axis", axis)], hint)
    }

    /// Finishes the model: opset 17, IR 8, the contract's metadata.
    pub fn finish(self, meta: &Metadata) -> Result<ModelProto> {
        if self.outputs.is_empty() {
            return Err(ExportError::Invalid(format!("graph `{}` has no outputs", self.name)));
        }
        Ok(ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "fer-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: self.name,
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: meta.to_props(),
            ..Default::default()
        })
    }
}

/// `n` deterministic pseudo-random weights in [-1, 1) from `seed`, for the graph tests of every
/// module (no RNG crate needed, and the same numbers on every machine).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Reads a float32 initializer back (tests and fp16 conversion).
pub fn initializer_f32(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        Some(t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    } else {
        Some(t.float_data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subnormal weights are written as zero, by the builder and by the rewrite of an old file;
    /// normal values (also the smallest normal one) and signs pass unchanged.
    #[test]
    fn subnormal_weights_become_zero() {
        let tiny = f32::MIN_POSITIVE; // the smallest normal float32
        let data = [1.0e-39, -3.0e-42, tiny, -tiny, 0.25, -0.0];
        let kept = [0.0, 0.0, tiny, -tiny, 0.25, -0.0];
        let mut g = GraphBuilder::new("t");
        let x = g.input("input", &[Dim::batch(), Dim::Fixed(6)]);
        let w = g.initializer("w", &[6], &data).unwrap();
        let y = g.op("Mul", &[&x, &w], &[], "mul");
        g.output("y", &y, &[Dim::batch(), Dim::Fixed(6)]);
        let mut m = g.finish(&Metadata::default()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let stored = initializer_f32(&m.graph.as_ref().unwrap().initializer[0]).unwrap();
        assert_eq!(bits(&stored), bits(&kept));
        // An old file with the subnormals still in it (float_data form, as other exporters write).
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data.clear();
        t.float_data = data.to_vec();
        assert_eq!(flush_subnormals(&mut m), 2);
        let stored = initializer_f32(&m.graph.as_ref().unwrap().initializer[0]).unwrap();
        assert_eq!(bits(&stored), bits(&kept));
        assert_eq!(flush_subnormals(&mut m), 0);
    }

    #[test]
    fn an_output_name_taken_by_an_internal_value_is_renamed_not_duplicated() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("input", &[Dim::batch(), Dim::Fixed(3)]);
        let p = g.softmax(&x, 1, "probs");
        assert_eq!(p, "probs");
        g.output("probs", &p, &[Dim::batch(), Dim::Fixed(3)]);
        let m = g.finish(&Metadata::default()).unwrap();
        let graph = m.graph.unwrap();
        let producers: Vec<_> = graph.node.iter().filter(|n| n.output.contains(&"probs".to_string())).collect();
        assert_eq!(producers.len(), 1);
        assert_eq!(producers[0].op_type, "Identity");
        assert_ne!(producers[0].input[0], "probs");
    }

    #[test]
    fn initializer_shape_must_match_data() {
        let mut g = GraphBuilder::new("t");
        let e = g.initializer("w", &[2, 3], &[0.0; 5]).unwrap_err();
        assert!(e.to_string().contains("need 6 values, got 5"), "{e}");
        g.initializer("w", &[5], &[0.0; 5]).unwrap();
        assert!(matches!(g.initializer("w", &[5], &[0.0; 5]), Err(ExportError::DuplicateName(_))));
    }
}
