//! The tract backend's own ops for convolutional networks, on x86-64 CPUs with AVX2 and FMA
//! (checked at run time, so the binary still runs on any x86-64): [`ConvNhwc`] for convolutions
//! (AVX-512 tiles where the CPU has them), [`DepthwiseNhwc`] for depthwise ones and
//! [`MaxPoolNhwc`]. All compute channel-last, with the bias and the ReLU / ReLU6 (and for
//! [`ConvNhwc`] a residual add) that follow fused. Other CPUs (aarch64, older x86) keep tract's
//! own ops: these are measured only where they have their fast path.
//!
//! Why: tract's matrix products and depthwise loop left it 2.2–2.9x behind ONNX Runtime on the
//! 112 px models, mostly in the convolutions and in the packing, clipping and layout moves around
//! them (docs/RESULTS.md, `examples/tract_profile`).
//!
//! [`rewrite`] replaces each eligible ONNX `Conv` (float32, 2-D, constant weights and bias, a
//! concrete input shape) and `MaxPool` before tract lays the graph out, by `move to channel-last →
//! op → move back`; tract's decluttering then cancels those moves against each other, so the whole
//! network stays channel-last, and each op's `declutter` absorbs the element-wise ops after it,
//! also across a move back to channel-first where a tensor feeds two consumers (a residual
//! block's input), which tract's move cancelling does not see through.
//! `FER_TRACT_OPS=0` leaves every op to tract (to compare; docs/RESULTS.md).

// Elsewhere than x86-64 `rewrite` creates none of these ops (tract's run instead), so their
// machinery is unused there; it still compiles, checked with the x86-64 cfgs switched off.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

mod conv;
mod depthwise;
mod pool;
#[cfg(test)]
mod testing;

pub(crate) use conv::ConvNhwc;
pub(crate) use depthwise::DepthwiseNhwc;
pub(crate) use pool::MaxPoolNhwc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// No clip: `min(max(x, -inf), inf)`.
const NO_CLIP: (f32, f32) = (f32::NEG_INFINITY, f32::INFINITY);

/// Whether this CPU runs the ops fast: x86-64 with AVX2 and FMA.
fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where a 2-D convolution reads and writes, channel-last: input `[H, W, Cin]`, output
/// `[OH, OW, Cout]` (the batch is read from the input at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Geometry {
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    dilation: (usize, usize),
    /// Padding before (top, left) and after (bottom, right).
    pad: (usize, usize),
    pad_end: (usize, usize),
    oh: usize,
    ow: usize,
}

impl Geometry {
    /// A window of `spec` sliding over an `hw` image of `cin` channels, giving `cout` channels.
    fn of(spec: &PoolSpec, cout: usize, (h, w): (usize, usize)) -> Geometry {
        let strides = spec.strides.clone().unwrap_or_else(|| tvec![1, 1]);
        let dilations = spec.dilations.clone().unwrap_or_else(|| tvec![1, 1]);
        let geo = spec
            .padding
            .compute(&[h, w], &spec.kernel_shape, &dilations, &strides);
        Geometry {
            h,
            w,
            cin: spec.input_channels,
            cout,
            kh: spec.kernel_shape[0],
            kw: spec.kernel_shape[1],
            stride: (strides[0], strides[1]),
            dilation: (dilations[0], dilations[1]),
            pad: (geo[0].pad_before, geo[1].pad_before),
            pad_end: (geo[0].pad_after, geo[1].pad_after),
            oh: geo[0].convoluted,
            ow: geo[1].convoluted,
        }
    }

    /// The batch size of an input `[N, H, W, Cin]`, or an error naming `op` and the shapes.
    fn batch_of(&self, op: &str, shape: &[usize]) -> TractResult<usize> {
        anyhow::ensure!(
            shape.len() == 4 && shape[1..] == [self.h, self.w, self.cin],
            "{op} expects [N, {}, {}, {}], got {shape:?}",
            self.h,
            self.w,
            self.cin
        );
        Ok(shape[0])
    }

    /// The output's shape for a batch of `n`.
    fn output_shape(&self, n: usize) -> [usize; 4] {
        [n, self.oh, self.ow, self.cout]
    }

    /// The output fact for the input fact `x`, `[N, OH, OW, Cout]` float32.
    fn output_fact(&self, x: &TypedFact) -> TVec<TypedFact> {
        tvec!(f32::fact([
            x.shape[0].clone(),
            self.oh.to_dim(),
            self.ow.to_dim(),
            self.cout.to_dim()
        ]))
    }

    /// The kernel rows that output row `oy` reads inside the input, as
    /// `(oy·stride − pad, first kernel row, end kernel row)`.
    fn row_taps(&self, oy: usize) -> (isize, usize, usize) {
        taps(
            oy,
            self.stride.0,
            self.dilation.0,
            self.pad.0,
            self.kh,
            self.h,
        )
    }

    /// The same for the kernel columns of output column `ox`.
    fn col_taps(&self, ox: usize) -> (isize, usize, usize) {
        taps(
            ox,
            self.stride.1,
            self.dilation.1,
            self.pad.1,
            self.kw,
            self.w,
        )
    }
}

/// The kernel taps `t` whose input index `o·stride − pad + t·dil` falls inside `[0, len)`, as
/// `(o·stride − pad, first t, end t)`.
fn taps(
    o: usize,
    stride: usize,
    dil: usize,
    pad: usize,
    k: usize,
    len: usize,
) -> (isize, usize, usize) {
    let base = (o * stride) as isize - pad as isize;
    let first = if base >= 0 {
        0
    } else {
        ((-base) as usize).div_ceil(dil)
    };
    let end = if base >= len as isize {
        0
    } else {
        (((len as isize - 1 - base) as usize) / dil + 1).min(k)
    };
    (base, first, end.max(first))
}

/// What [`rewrite`] reads off an eligible ONNX `Conv`.
struct ConvParts {
    geometry: Geometry,
    group: usize,
    /// ONNX layout, `[Cout, Cin / group, KH, KW]`.
    kernel: Vec<f32>,
    /// `Cout` values (zeros where the file has no bias).
    bias: Vec<f32>,
}

/// Replaces every eligible `Conv` of `model` by one of this module's ops between two layout
/// moves. Returns how many it replaced.
pub(crate) fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
    if !supported() || std::env::var_os("FER_TRACT_OPS").is_some_and(|v| v == "0") {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let op: Box<dyn TypedOp> = if let Some(pool) = node.op_as::<MaxPool>() {
            match MaxPoolNhwc::from_pool(model, node, pool)? {
                Some(op) => Box::new(op),
                None => continue,
            }
        } else if let Some(conv) = node.op_as::<Conv>() {
            let Some(parts) = conv_parts(model, node, conv)? else {
                continue;
            };
            if let Some(op) = DepthwiseNhwc::from_conv(&parts)? {
                Box::new(op)
            } else if let Some(op) = ConvNhwc::from_conv(&parts)? {
                Box::new(op)
            } else {
                continue;
            }
        } else {
            continue;
        };
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, node.inputs[0])?;
        let x = patch.wire_node(format!("{}.to_nhwc", node.name), AxisOp::Move(1, 3), &[x])?;
        let y = patch.wire_node(&node.name, op, &x)?;
        let y = patch.wire_node(format!("{}.to_nchw", node.name), AxisOp::Move(3, 1), &y)?;
        patch.shunt_outside(model, OutletId::new(id, 0), y[0])?;
        patch.obliterate(id)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// The parts of `node` when it is a float32 NCHW 2-D convolution with constant weights and bias
/// and a concrete input shape; `None` leaves it to tract.
fn conv_parts(model: &TypedModel, node: &TypedNode, conv: &Conv) -> TractResult<Option<ConvParts>> {
    let spec = &conv.pool_spec;
    let x = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = x.shape.as_concrete() else {
        return Ok(None);
    };
    let (cin, cout, group) = (spec.input_channels, spec.output_channels, conv.group);
    if conv.q_params.is_some()
        || x.datum_type != f32::datum_type()
        || spec.data_format != DataFormat::NCHW
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.kernel_shape.len() != 2
        || shape.len() != 4
        || shape[1] != cin
        || group == 0
        || cin % group != 0
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let (Some(k), Some(b)) = (
        constant(model, node.inputs[1])?,
        constant(model, node.inputs[2])?,
    ) else {
        return Ok(None);
    };
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    if k.datum_type() != f32::datum_type()
        || k.shape() != [cout, cin / group, kh, kw]
        || b.datum_type() != f32::datum_type()
    {
        return Ok(None);
    }
    let bias = match b.len() {
        1 => vec![b.try_as_plain_ram()?.as_slice::<f32>()?[0]; cout], // a scalar: no bias in the file
        n if n == cout => b.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
        _ => return Ok(None),
    };
    Ok(Some(ConvParts {
        geometry: Geometry::of(spec, cout, (shape[2], shape[3])),
        group,
        kernel: k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
        bias,
    }))
}

/// The value of `outlet` when it is a constant, also through a `Cast` (tract-onnx casts the bias
/// before the graph is decluttered, which is when [`rewrite`] runs).
fn constant(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Arc<Tensor>>> {
    if let Some(k) = &model.outlet_fact(outlet)?.konst {
        return Ok(Some(k.clone()));
    }
    let node = model.node(outlet.node);
    if node.op().name() == "Cast" && node.inputs.len() == 1 {
        if let Some(k) = &model.outlet_fact(node.inputs[0])?.konst {
            let dt = model.outlet_fact(outlet)?.datum_type;
            return Ok(Some(k.cast_to_dt(dt)?.into_owned().into_arc_tensor()));
        }
    }
    Ok(None)
}

/// What `node`'s output goes to when that is one op: its single successor, or, when that is a
/// move back to channel-first (the op was put between two moves), the move's single successor.
/// Returns the successor, whether it is behind the move, and the outlet the successor reads.
/// Nothing is absorbed past an outlet that is also a model output (it must keep its value).
fn next_op(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(usize, bool, OutletId)>> {
    let outputs = model.output_outlets()?;
    let mine = OutletId::new(node.id, 0);
    let Some(next) = model.single_succ(node.id)? else {
        return Ok(None);
    };
    if outputs.contains(&mine) {
        return Ok(None);
    }
    if !is_move_to_nchw(next) {
        return Ok(Some((next.id, false, mine)));
    }
    let moved = OutletId::new(next.id, 0);
    if outputs.contains(&moved) {
        return Ok(None);
    }
    Ok(model
        .single_succ(next.id)?
        .map(|after| (after.id, true, moved)))
}

fn is_move_to_nchw(node: &TypedNode) -> bool {
    node.op_as::<AxisOp>() == Some(&AxisOp::Move(3, 1))
}

/// Replaces `node` and everything up to `last` (found by [`next_op`]) by `op` on `node`'s
/// inputs and `extra` ones, followed by a move back to channel-first when `moved`.
fn replace_through(
    model: &TypedModel,
    node: &TypedNode,
    op: impl Into<Box<dyn TypedOp>>,
    extra: &[OutletId],
    moved: bool,
    last: usize,
) -> TractResult<TypedModelPatch> {
    let mut patch = TypedModelPatch::default();
    let mut inputs = TVec::new();
    for &i in node.inputs.iter().chain(extra) {
        inputs.push(patch.tap_model(model, i)?);
    }
    let mut y = patch.wire_node(&node.name, op.into(), &inputs)?;
    if moved {
        y = patch.wire_node(format!("{}.to_nchw", node.name), AxisOp::Move(3, 1), &y)?;
    }
    patch.shunt_outside(model, OutletId::new(last, 0), y[0])?;
    Ok(patch)
}

/// When what follows `node` ([`next_op`]) is a `Max` or `Min` by a constant scalar (ReLU; ReLU6
/// = Max 0 then Min 6; both commute with a layout move), the clip with it absorbed, that op's id
/// and whether it is behind a move.
fn absorbed_clip(
    model: &TypedModel,
    node: &TypedNode,
    (lo, hi): (f32, f32),
) -> TractResult<Option<((f32, f32), usize, bool)>> {
    let Some((succ, moved, mine)) = next_op(model, node)? else {
        return Ok(None);
    };
    let succ = model.node(succ);
    if succ.inputs.len() != 2 || succ.inputs[0] != mine {
        return Ok(None);
    }
    let Some(k) = model.outlet_fact(succ.inputs[1])?.konst.clone() else {
        return Ok(None);
    };
    // One value, and no broadcast to a larger shape than the op's output.
    if k.len() != 1
        || k.datum_type() != f32::datum_type()
        || model.outlet_fact(OutletId::new(succ.id, 0))?.shape != model.outlet_fact(mine)?.shape
    {
        return Ok(None);
    }
    let v = k.try_as_plain_ram()?.as_slice::<f32>()?[0];
    let clip = match succ.op().name().as_ref() {
        // Applied in order: max then min composes to one clip; a max after a min does when it
        // stays below the min (else the clip would be empty, which a ReLU6 never is).
        "Max" if v <= hi => (lo.max(v), hi),
        "Min" if v >= lo => (lo, hi.min(v)),
        _ => return Ok(None),
    };
    Ok(Some((clip, succ.id, moved)))
}

/// tract's intra-op pool when the call runs on one with several threads (`fer_runtime::intra_op`).
fn intra_op_pool() -> Option<std::sync::Arc<rayon::ThreadPool>> {
    use tract_linalg::multithread::{current_tract_executor, Executor};
    match current_tract_executor() {
        Executor::MultiThread(pool) if pool.current_num_threads() > 1 => Some(pool),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::testing::values;
    use super::*;
    use fer_export::{Dim, GraphBuilder};

    /// A small network of both kinds of blocks through the backend's graph preparation: a
    /// MobileNetV2-like one (depthwise 3x3 + ReLU6, 1x1 expansion + ReLU6, depthwise stride 2
    /// without bias + ReLU, a 1x1 to 12 channels that stays tract's (not a multiple of 8), a
    /// depthwise of 12 channels (the plain loop)) and a ResNet-like one (3x3 + ReLU, 3x3, residual
    /// add of the block's input, ReLU). The other convolutions become these ops with what follows
    /// them fused, and the optimised plan computes what tract's own ops compute.
    #[test]
    fn the_backend_graph_fuses_and_computes_what_tract_computes() {
        if !supported() {
            eprintln!("SKIP: this CPU has no AVX2 + FMA, so the backend keeps tract's ops");
            return;
        }
        let mut g = GraphBuilder::new("blocks");
        let mut seed = 0;
        let mut w = |g: &mut GraphBuilder, name: &str, dims: &[i64]| {
            seed += 1;
            let n = dims.iter().product::<i64>() as usize;
            // Weights of ±0.5 keep the activations of these unnormalised layers within ~10, where
            // float32 rounding of either side stays far under the bound below.
            let v: Vec<f32> = values(n, seed).iter().map(|v| 0.5 * v).collect();
            g.initializer(name, dims, &v).unwrap()
        };
        let x = g.input(
            "input",
            &[Dim::batch(), Dim::Fixed(16), Dim::Fixed(11), Dim::Fixed(11)],
        );
        let (w1, b1) = (
            w(&mut g, "dw1.w", &[16, 1, 3, 3]),
            w(&mut g, "dw1.b", &[16]),
        );
        let f = g.conv(&x, &w1, Some(&b1), [3, 3], [1, 1], [1, 1], 16, "dw1");
        let f = g.clip(&f, 0.0, 6.0, "relu6");
        let (w2, b2) = (w(&mut g, "pw.w", &[24, 16, 1, 1]), w(&mut g, "pw.b", &[24]));
        let f = g.conv(&f, &w2, Some(&b2), [1, 1], [1, 1], [0, 0], 1, "pw");
        let f = g.clip(&f, 0.0, 6.0, "relu6b");
        let w3 = w(&mut g, "dw2.w", &[24, 1, 3, 3]);
        let f = g.conv(&f, &w3, None, [3, 3], [2, 2], [1, 1], 24, "dw2");
        let f = g.relu(&f, "relu");
        let w4 = w(&mut g, "pw2.w", &[12, 24, 1, 1]);
        let f = g.conv(&f, &w4, None, [1, 1], [1, 1], [0, 0], 1, "pw2");
        let w5 = w(&mut g, "dw3.w", &[12, 1, 3, 3]);
        let f = g.conv(&f, &w5, None, [3, 3], [1, 1], [1, 1], 12, "dw3");
        let (w6, b6) = (w(&mut g, "c1.w", &[16, 12, 3, 3]), w(&mut g, "c1.b", &[16]));
        let f = g.conv(&f, &w6, Some(&b6), [3, 3], [1, 1], [1, 1], 1, "c1");
        let f = g.relu(&f, "relu1");
        let (w7, b7) = (w(&mut g, "c2.w", &[16, 16, 3, 3]), w(&mut g, "c2.b", &[16]));
        let h = g.conv(&f, &w7, Some(&b7), [3, 3], [1, 1], [1, 1], 1, "c2");
        let h = g.add(&h, &f, "residual");
        let h = g.relu(&h, "relu2");
        g.output(
            "features",
            &h,
            &[Dim::batch(), Dim::Fixed(16), Dim::Fixed(6), Dim::Fixed(6)],
        );
        let (ours, theirs) = ours_and_tracts(g, [1, 16, 11, 11]);

        let names: Vec<String> = ours
            .nodes()
            .iter()
            .map(|n| {
                format!(
                    "{} {}",
                    n.op().name(),
                    n.op().info().unwrap_or_default().join(" ")
                )
            })
            .collect();
        let count = |what: &str| names.iter().filter(|n| n.starts_with(what)).count();
        assert_eq!(
            (
                count("FerDepthwiseNhwc"),
                count("FerConvNhwc"),
                count("OptMatMul ")
            ),
            (3, 3, 1),
            "{names:#?}"
        );
        assert!(names.iter().any(|n| n.starts_with("FerConvNhwc") && n.contains("residual true clip(0.0, inf)")), "{names:#?}");
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("FerDepthwiseNhwc") && n.contains("clip(0.0, 6.0)")),
            "{names:#?}"
        );
        assert!(
            !names.iter().any(|n| n.contains("Max") || n.contains("Add")),
            "not everything was fused: {names:#?}"
        );

        let input = values(16 * 121, 99);
        let (a, b) = (run(ours, &input), run(theirs, &input));
        assert_eq!(a[0].len(), 16 * 36);
        assert_close(&a[0], &b[0], "features");
    }

    /// A convolution whose output is a model output and also goes through a ReLU to another:
    /// the ReLU must not be fused into it (the first output would lose its negative values).
    #[test]
    fn nothing_is_fused_past_a_model_output() {
        if !supported() {
            eprintln!("SKIP: this CPU has no AVX2 + FMA, so the backend keeps tract's ops");
            return;
        }
        let mut g = GraphBuilder::new("two_outputs");
        let x = g.input(
            "input",
            &[Dim::batch(), Dim::Fixed(8), Dim::Fixed(5), Dim::Fixed(5)],
        );
        let w = g
            .initializer("c.w", &[16, 8, 3, 3], &values(16 * 8 * 9, 1))
            .unwrap();
        let pre = g.conv(&x, &w, None, [3, 3], [1, 1], [1, 1], 1, "c");
        let post = g.relu(&pre, "relu");
        let dims = [Dim::batch(), Dim::Fixed(16), Dim::Fixed(5), Dim::Fixed(5)];
        g.output("pre", &pre, &dims);
        g.output("post", &post, &dims);
        let (ours, theirs) = ours_and_tracts(g, [1, 8, 5, 5]);
        let fused = ours
            .nodes()
            .iter()
            .filter_map(|n| n.op_as::<ConvNhwc>())
            .count();
        assert_eq!(fused, 1, "{ours}");
        let input = values(8 * 25, 2);
        let (a, b) = (run(ours, &input), run(theirs, &input));
        assert!(
            b[0].iter().any(|&v| v < 0.0),
            "the test needs negative pre-activations"
        );
        assert_close(&a[0], &b[0], "pre");
        assert_close(&a[1], &b[1], "post");
    }

    /// A float16 file (`fer-train export --fp16`, upcast on a CPU without half-precision
    /// arithmetic) and an int8-weight one (`fer_export::int8`): their weights are folded into
    /// float32 constants, so their convolutions become the backend's ops too (unfolded, tract
    /// converted and re-packed every weight on every call, 2.3x slower on ResNet-18), and each
    /// computes what the float32 graph computes up to the rounding of its stored weights.
    #[test]
    fn float16_and_int8_files_run_the_backend_ops_in_float32() {
        if !supported() || cfg!(target_arch = "aarch64") {
            eprintln!("SKIP: no AVX2 + FMA (or native float16): the backend keeps tract's ops");
            return;
        }
        let mut g = GraphBuilder::new("stored");
        let x = g.input(
            "input",
            &[Dim::batch(), Dim::Fixed(8), Dim::Fixed(5), Dim::Fixed(5)],
        );
        let w = g
            .initializer("c.w", &[16, 8, 3, 3], &values(16 * 8 * 9, 3))
            .unwrap();
        let b = g.initializer("c.b", &[16], &values(16, 4)).unwrap();
        let y = g.conv(&x, &w, Some(&b), [3, 3], [1, 1], [1, 1], 1, "c");
        let y = g.relu(&y, "relu");
        g.output(
            "y",
            &y,
            &[Dim::batch(), Dim::Fixed(16), Dim::Fixed(5), Dim::Fixed(5)],
        );
        let proto32 = g.finish(&test_metadata([5, 5])).unwrap();
        let prepared = |proto: &tract_onnx::pb::ModelProto| {
            let m = tract_onnx::onnx().model_for_proto_model(proto).unwrap();
            let mut t = m
                .with_input_fact(0, f32::fact([1, 8, 5, 5]).into())
                .unwrap()
                .into_typed()
                .unwrap();
            super::super::tract::prepare_tract_graph(&mut t).unwrap();
            t.into_optimized().unwrap()
        };
        let input = values(8 * 25, 5);
        let want = run(prepared(&proto32), &input);
        let (int8, _) = fer_export::int8::quantize_weights(proto32.clone(), 1).unwrap();
        // 72 products of weights rounded to 11 significant bits (float16) or to 1/254 of their
        // channel's largest (int8): bounds well above each rounding, far below a wrong weight.
        let forms = [
            ("float16", fer_export::fp16::to_fp16(proto32).unwrap(), 5e-3),
            ("int8", int8, 5e-2),
        ];
        for (form, proto, bound) in forms {
            let plan = prepared(&proto);
            let ours = plan
                .nodes()
                .iter()
                .filter(|n| n.op_is::<ConvNhwc>())
                .count();
            assert_eq!(
                ours, 1,
                "the {form} file's convolution is not the backend's:\n{plan}"
            );
            assert!(
                plan.nodes().iter().all(|n| n
                    .outputs
                    .iter()
                    .all(|o| o.fact.datum_type == f32::datum_type())),
                "{form}: values other than float32 left in the plan:\n{plan}"
            );
            let got = run(plan, &input);
            let worst = got[0]
                .iter()
                .zip(&want[0])
                .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
                .fold(0f32, f32::max);
            let scale = want[0].iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                worst <= bound && worst > 0.0 && scale > 1.0,
                "{form} vs float32 file: {worst} (largest {scale})"
            );
        }
    }

    /// An int8 weight whose float32 form (512·256·3·3 values, 4.7 MB) is over the 4 MiB that
    /// tract's own constant propagation folds: it must still become a constant for the backend's
    /// convolution (as in every ResNet-18's last stage).
    #[test]
    fn a_large_int8_weight_is_folded_too() {
        if !supported() {
            eprintln!("SKIP: this CPU has no AVX2 + FMA, so the backend keeps tract's ops");
            return;
        }
        let mut g = GraphBuilder::new("large");
        let x = g.input(
            "input",
            &[Dim::batch(), Dim::Fixed(256), Dim::Fixed(3), Dim::Fixed(3)],
        );
        let n = 512 * 256 * 9;
        let w = g
            .initializer("c.w", &[512, 256, 3, 3], &values(n, 6))
            .unwrap();
        let y = g.conv(&x, &w, None, [3, 3], [1, 1], [1, 1], 1, "c");
        g.output(
            "y",
            &y,
            &[Dim::batch(), Dim::Fixed(512), Dim::Fixed(3), Dim::Fixed(3)],
        );
        let proto = g.finish(&test_metadata([3, 3])).unwrap();
        let (int8, _) = fer_export::int8::quantize_weights(proto, 1).unwrap();
        let m = tract_onnx::onnx().model_for_proto_model(&int8).unwrap();
        let mut t = m
            .with_input_fact(0, f32::fact([1, 256, 3, 3]).into())
            .unwrap()
            .into_typed()
            .unwrap();
        super::super::tract::prepare_tract_graph(&mut t).unwrap();
        let plan = t.into_optimized().unwrap();
        let ours = plan
            .nodes()
            .iter()
            .filter(|n| n.op_is::<ConvNhwc>())
            .count();
        assert_eq!(ours, 1, "the large int8 weight was not folded:\n{plan}");
    }

    fn test_metadata(input_size: [usize; 2]) -> fer_export::Metadata {
        fer_export::Metadata {
            labels: vec!["a".into()],
            input_size: (input_size[0], input_size[1]),
            color: fer_export::ColorMode::Rgb,
            mean: vec![0.0],
            std: vec![1.0],
            method: "ce".into(),
            backbone: "test".into(),
            data: "none".into(),
            val_accuracy: None,
            extra: vec![],
        }
    }

    /// `g` (given its outputs) optimised for `input` by the backend's graph preparation, and by
    /// tract alone (its channel-last transform only).
    fn ours_and_tracts(g: GraphBuilder, input: [usize; 4]) -> (TypedModel, TypedModel) {
        let proto = g.finish(&test_metadata([input[2], input[3]])).unwrap(); // fer_export::pb is tract-onnx's
        let typed = || {
            let m = tract_onnx::onnx().model_for_proto_model(&proto).unwrap();
            m.with_input_fact(0, f32::fact(input).into())
                .unwrap()
                .into_typed()
                .unwrap()
        };
        let mut ours = typed();
        super::super::tract::prepare_tract_graph(&mut ours).unwrap();
        let mut theirs = typed();
        super::super::tract::channels_last(&mut theirs).unwrap();
        (
            ours.into_optimized().unwrap(),
            theirs.into_optimized().unwrap(),
        )
    }

    /// Every output of `m` on `input` (its first input's shape), flattened.
    fn run(m: TypedModel, input: &[f32]) -> Vec<Vec<f32>> {
        let shape: Vec<usize> = m
            .input_fact(0)
            .unwrap()
            .shape
            .as_concrete()
            .unwrap()
            .to_vec();
        let x = Tensor::from_shape(&shape, input).unwrap();
        let out = m.into_runnable().unwrap().run(tvec!(x.into())).unwrap();
        out.iter()
            .map(|o| {
                o.to_plain_array_view::<f32>()
                    .unwrap()
                    .iter()
                    .copied()
                    .collect()
            })
            .collect()
    }

    /// Equal up to float32 rounding (fused multiply-adds and another summation order here), and
    /// not trivially small.
    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0f32, f32::max);
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            worst <= 1e-5 && scale > 1.0,
            "{what}: max |ours − tract| / (1 + |tract|) = {worst} (largest value {scale})"
        );
    }
}
