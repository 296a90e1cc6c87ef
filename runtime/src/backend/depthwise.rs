//! The tract backend's own depthwise convolution: channel-last, with the ReLU6 (or any clip or
//! ReLU) after it fused, written with AVX2 + FMA intrinsics for x86-64 CPUs that have them (checked
//! at run time, so the binary still runs on any x86-64). Other CPUs (aarch64, older x86) keep
//! tract's own depthwise op: this one is only measured where it has its fast path.
//!
//! Why: tract's `DepthWiseConv` is plain Rust compiled for the baseline target (SSE2 on x86-64)
//! and walks each output point through its zone scanners, and the clip after it is a separate pass
//! over memory. On the 112 px MobileNetV2 its 17 depthwise convolutions took 0.90 ms and the 18
//! clips 0.25 ms of a 3.4 ms run; these take 0.31–0.34 ms with the clips (`FER_TRACT_DEPTHWISE=1|0
//! FER_TRACT_THREADS=2 cargo run --release -p fer-runtime --example tract_profile -- <model> 500`,
//! docs/RESULTS.md). Interior output points go four at a time (four accumulators share each weight
//! vector), edge points one at a time with their out-of-image taps skipped, and a large layer's
//! rows are split across the intra-op pool.
//!
//! [`rewrite`] replaces each eligible ONNX depthwise `Conv` (float32, `group` = input = output
//! channels, 2-D, constant weights and bias, concrete shape) before tract lays the graph out, by
//! `move to channel-last → DepthwiseNhwc → move back`; tract's decluttering then cancels those
//! moves against the ones its `conv_nhwc` transform puts around the neighbouring convolutions, and
//! [`DepthwiseNhwc::declutter`] absorbs the `Max` / `Min` by a constant that follow it.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// A depthwise 2-D convolution on `[N, H, W, C]` float32, bias and clip included.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DepthwiseNhwc {
    /// Input `[H, W, C]` (the batch is read from the input at run time).
    h: usize,
    w: usize,
    c: usize,
    /// Kernel height, width; strides; dilations; padding before (top, left).
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    dilation: (usize, usize),
    pad: (usize, usize),
    /// Output height, width.
    oh: usize,
    ow: usize,
    /// Weights tap-major, `[kh·kw, C]`: one channel vector per tap.
    weights: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    /// `min(max(x, lo), hi)` on the output; `(-inf, inf)` when nothing was fused.
    clip: (f32, f32),
}

impl Eq for DepthwiseNhwc {}

impl Op for DepthwiseNhwc {
    fn name(&self) -> StaticName {
        "FerDepthwiseNhwc".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}x{}x{} k{}x{} s{:?} d{:?} pad{:?} clip{:?}",
            self.h,
            self.w,
            self.c,
            self.kh,
            self.kw,
            self.stride,
            self.dilation,
            self.pad,
            self.clip
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseNhwc {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let shape = x.shape();
        anyhow::ensure!(
            shape.len() == 4 && shape[1..] == [self.h, self.w, self.c],
            "FerDepthwiseNhwc expects [N, {}, {}, {}], got {shape:?}",
            self.h,
            self.w,
            self.c
        );
        let n = shape[0];
        let x = x.try_as_plain_ram()?.as_slice::<f32>()?;
        // SAFETY: `run` writes every output value (each point, each channel) before it is read.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&[n, self.oh, self.ow, self.c])? };
        let mut view = out.try_as_plain_ram_mut()?;
        let out_values = view.as_slice_mut::<f32>()?;
        let (plane_in, plane_out) = (self.h * self.w * self.c, self.oh * self.ow * self.c);
        for (xi, oi) in x
            .chunks_exact(plane_in)
            .zip(out_values.chunks_exact_mut(plane_out))
        {
            self.run_split(xi, oi);
        }
        drop(view);
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DepthwiseNhwc {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([
            n,
            self.oh.to_dim(),
            self.ow.to_dim(),
            self.c.to_dim()
        ])))
    }

    /// Absorbs a following `Max` or `Min` by a constant scalar (ReLU, ReLU6 = Max 0 then Min 6)
    /// when this op's output goes nowhere else.
    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let Some(succ) = model.single_succ(node.id)? else {
            return Ok(None);
        };
        if succ.inputs.len() != 2 || succ.inputs[0] != OutletId::new(node.id, 0) {
            return Ok(None);
        }
        let Some(k) = model.outlet_fact(succ.inputs[1])?.konst.clone() else {
            return Ok(None);
        };
        if k.len() != 1 || k.datum_type() != f32::datum_type() {
            return Ok(None);
        }
        let v = k.try_as_plain_ram()?.as_slice::<f32>()?[0];
        let (lo, hi) = self.clip;
        let clip = match succ.op().name().as_ref() {
            // Applied in order: max then min composes to one clip; a max after a min does when it
            // stays below the min (else the clip would be empty, which a ReLU6 never is).
            "Max" if v <= hi => (lo.max(v), hi),
            "Min" if v >= lo => (lo, hi.min(v)),
            _ => return Ok(None),
        };
        let fused = DepthwiseNhwc {
            clip,
            ..self.clone()
        };
        Ok(Some(TypedModelPatch::fuse_with_next(model, node, fused)?))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let n = inputs[0].shape[0].clone();
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            n * (self.oh * self.ow * self.c * self.kh * self.kw)
        )))
    }

    as_op!();
}

/// Multiply-adds from which a layer's rows are split across the intra-op pool's threads. On the
/// 112 px MobileNetV2 (2 threads, `tract_profile`, two rounds) the 17 layers took 0.32–0.35 ms
/// at 100k or 200k, 0.38–0.43 at 500k, 0.44 at 1M and 0.47 unsplit.
const SPLIT_MACS: usize = 200_000;

/// Whether this CPU runs [`DepthwiseNhwc`] fast: x86-64 with AVX2 and FMA. Elsewhere (aarch64,
/// older x86) [`rewrite`] leaves the graph to tract's own depthwise op.
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

impl DepthwiseNhwc {
    /// The kernel rows (or columns) `t` whose input index `o·stride − pad + t·dil` falls inside
    /// `[0, len)`, as `(o·stride − pad, first t, end t)`.
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

    /// Output columns whose taps are all inside the input: `[first, end)`.
    fn interior_columns(&self) -> (usize, usize) {
        let (s, d, p) = (self.stride.1, self.dilation.1, self.pad.1);
        let first = p.div_ceil(s);
        let reach = (self.kw - 1) * d; // from the first tap's column to the last's
        let end = if self.w + p > reach {
            ((self.w - 1 + p - reach) / s + 1).min(self.ow)
        } else {
            0
        };
        (first.min(self.ow), end.max(first.min(self.ow)))
    }

    /// One image, its output rows split across tract's intra-op pool when the call runs on one
    /// with several threads (`fer_runtime::intra_op`) and the layer is large enough to pay for it.
    fn run_split(&self, x: &[f32], out: &mut [f32]) {
        use rayon::prelude::*;
        use tract_linalg::multithread::{current_tract_executor, Executor};
        let row = self.ow * self.c;
        let macs = out.len() * self.kh * self.kw;
        if let Executor::MultiThread(pool) = current_tract_executor() {
            let threads = pool.current_num_threads();
            if threads > 1 && self.oh >= threads && macs >= SPLIT_MACS {
                let rows_per_chunk = self.oh.div_ceil(threads);
                return pool.install(|| {
                    out.par_chunks_mut(rows_per_chunk * row)
                        .enumerate()
                        .for_each(|(i, chunk)| {
                            let first = i * rows_per_chunk;
                            self.rows(x, chunk, first..first + chunk.len() / row)
                        })
                });
            }
        }
        self.rows(x, out, 0..self.oh)
    }

    /// One image: `x` is `[H, W, C]`, `out` `[OH, OW, C]`. With AVX2 (and `C` a multiple of 8) each
    /// output row runs its interior in groups of four points and the rest one point at a time;
    /// otherwise every point runs in plain Rust.
    fn rows(&self, x: &[f32], out: &mut [f32], oys: std::ops::Range<usize>) {
        assert_eq!(
            (x.len(), out.len()),
            (self.h * self.w * self.c, oys.len() * self.ow * self.c)
        );
        // `out` holds rows `oys` only: the point functions index it from the first of them.
        let first = oys.start;
        #[cfg(target_arch = "x86_64")]
        if self.c % 8 == 0 && supported() {
            let (in_first, in_end) = self.interior_columns();
            for oy in oys {
                let rows = Self::taps(
                    oy,
                    self.stride.0,
                    self.dilation.0,
                    self.pad.0,
                    self.kh,
                    self.h,
                );
                let mut ox = 0;
                while ox < self.ow {
                    // SAFETY: AVX2 and FMA are there (`supported`), C is a multiple of 8; the taps
                    // are inside the input: the four points' columns are interior, and each
                    // function keeps to the valid rows (and, one point at a time, columns).
                    unsafe {
                        if ox >= in_first && ox + 4 <= in_end {
                            self.four_points_avx2(x, out, oy - first, ox, rows);
                            ox += 4;
                        } else {
                            self.one_point_avx2(x, out, oy - first, ox, rows);
                            ox += 1;
                        }
                    }
                }
            }
            return;
        }
        for oy in oys {
            let rows = Self::taps(
                oy,
                self.stride.0,
                self.dilation.0,
                self.pad.0,
                self.kh,
                self.h,
            );
            for ox in 0..self.ow {
                self.one_point(x, out, oy - first, ox, rows);
            }
        }
    }

    /// Output point `(oy, ox)`, all channels, in plain Rust (channel counts that are not a
    /// multiple of 8, CPUs without AVX2; and the reference the tests compare the AVX2 loops with).
    fn one_point(
        &self,
        x: &[f32],
        out: &mut [f32],
        out_row: usize,
        ox: usize,
        (by, ky0, ky1): (isize, usize, usize),
    ) {
        let c = self.c;
        let (bx, kx0, kx1) = Self::taps(
            ox,
            self.stride.1,
            self.dilation.1,
            self.pad.1,
            self.kw,
            self.w,
        );
        let o = &mut out[(out_row * self.ow + ox) * c..][..c];
        o.copy_from_slice(&self.bias);
        for ky in ky0..ky1 {
            let iy = (by + (ky * self.dilation.0) as isize) as usize;
            for kx in kx0..kx1 {
                let ix = (bx + (kx * self.dilation.1) as isize) as usize;
                let xs = &x[(iy * self.w + ix) * c..][..c];
                let ws = &self.weights[(ky * self.kw + kx) * c..][..c];
                for ((a, &xi), &wi) in o.iter_mut().zip(xs).zip(ws) {
                    *a += xi * wi;
                }
            }
        }
        let (lo, hi) = self.clip;
        for a in o.iter_mut() {
            *a = a.max(lo).min(hi);
        }
    }

    /// Output point `(oy, ox)`, all channels, 32 at a time (four independent accumulators hide the
    /// multiply-add latency), then 8 at a time; taps outside the input are skipped.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `c % 8 == 0`; `ky0..ky1` are the valid kernel rows of `oy`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn one_point_avx2(
        &self,
        x: &[f32],
        out: &mut [f32],
        out_row: usize,
        ox: usize,
        (by, ky0, ky1): (isize, usize, usize),
    ) {
        use std::arch::x86_64::*;
        let c = self.c;
        let (bx, kx0, kx1) = Self::taps(
            ox,
            self.stride.1,
            self.dilation.1,
            self.pad.1,
            self.kw,
            self.w,
        );
        let (lo, hi) = (_mm256_set1_ps(self.clip.0), _mm256_set1_ps(self.clip.1));
        let (xp, wp, bp) = (x.as_ptr(), self.weights.as_ptr(), self.bias.as_ptr());
        let op = out.as_mut_ptr().add((out_row * self.ow + ox) * c);
        let clip = |v| _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        // Taps and their input / weight offsets (relative to the channel block), once per point.
        let mut taps = [(0usize, 0usize); 64];
        let mut n = 0;
        for ky in ky0..ky1 {
            let iy = (by + (ky * self.dilation.0) as isize) as usize;
            for kx in kx0..kx1 {
                let ix = (bx + (kx * self.dilation.1) as isize) as usize;
                if n == taps.len() {
                    // Larger kernels than 8x8 are not in these models: the plain loop takes them.
                    return self.one_point(x, out, out_row, ox, (by, ky0, ky1));
                }
                taps[n] = ((iy * self.w + ix) * c, (ky * self.kw + kx) * c);
                n += 1;
            }
        }
        let taps = &taps[..n];
        let mut cb = 0;
        // Four independent accumulators (32 channels) hide the multiply-add latency; kept in
        // named variables so that they stay in registers.
        while cb + 32 <= c {
            let (mut a0, mut a1, mut a2, mut a3) = (
                _mm256_loadu_ps(bp.add(cb)),
                _mm256_loadu_ps(bp.add(cb + 8)),
                _mm256_loadu_ps(bp.add(cb + 16)),
                _mm256_loadu_ps(bp.add(cb + 24)),
            );
            for &(xi, wi) in taps {
                let (p, w) = (xp.add(xi + cb), wp.add(wi + cb));
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(w), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(w.add(8)), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(w.add(16)), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(24)), _mm256_loadu_ps(w.add(24)), a3);
            }
            _mm256_storeu_ps(op.add(cb), clip(a0));
            _mm256_storeu_ps(op.add(cb + 8), clip(a1));
            _mm256_storeu_ps(op.add(cb + 16), clip(a2));
            _mm256_storeu_ps(op.add(cb + 24), clip(a3));
            cb += 32;
        }
        while cb < c {
            let mut a = _mm256_loadu_ps(bp.add(cb));
            for &(xi, wi) in taps {
                a = _mm256_fmadd_ps(
                    _mm256_loadu_ps(xp.add(xi + cb)),
                    _mm256_loadu_ps(wp.add(wi + cb)),
                    a,
                );
            }
            _mm256_storeu_ps(op.add(cb), clip(a));
            cb += 8;
        }
    }

    /// Output points `ox..ox+4` of an output row (`out_row` of `out`; its valid kernel rows and
    /// their input offset in `(by, ky0, ky1)`), all channels, eight at a time: four accumulators (one per
    /// point) share each weight vector, so the loads per multiply-add are ~1.25 instead of 2 and
    /// four independent chains hide the multiply-add latency.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `c % 8 == 0`; every tap of the four points is inside the input
    /// (`ox..ox+4` interior columns, `ky0..ky1` the valid kernel rows of `oy`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn four_points_avx2(
        &self,
        x: &[f32],
        out: &mut [f32],
        out_row: usize,
        ox: usize,
        (by, ky0, ky1): (isize, usize, usize),
    ) {
        use std::arch::x86_64::*;
        let c = self.c;
        let (s, d) = (self.stride.1, self.dilation.1);
        let bx = (ox * s) as isize - self.pad.1 as isize;
        let (lo, hi) = (_mm256_set1_ps(self.clip.0), _mm256_set1_ps(self.clip.1));
        let (xp, wp, bp) = (x.as_ptr(), self.weights.as_ptr(), self.bias.as_ptr());
        let op = out.as_mut_ptr().add((out_row * self.ow + ox) * c);
        for cb in (0..c).step_by(8) {
            let b = _mm256_loadu_ps(bp.add(cb));
            let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
            for ky in ky0..ky1 {
                let iy = (by + (ky * self.dilation.0) as isize) as usize;
                for kx in 0..self.kw {
                    let wv = _mm256_loadu_ps(wp.add((ky * self.kw + kx) * c + cb));
                    let ix = (bx + (kx * d) as isize) as usize;
                    let p = xp.add((iy * self.w + ix) * c + cb);
                    let step = s * c;
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), wv, a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(step)), wv, a1);
                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(2 * step)), wv, a2);
                    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(3 * step)), wv, a3);
                }
            }
            let clip = |v| _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            _mm256_storeu_ps(op.add(cb), clip(a0));
            _mm256_storeu_ps(op.add(c + cb), clip(a1));
            _mm256_storeu_ps(op.add(2 * c + cb), clip(a2));
            _mm256_storeu_ps(op.add(3 * c + cb), clip(a3));
        }
    }
}

/// Replaces every eligible depthwise `Conv` of `model` (see the module doc) by a
/// [`DepthwiseNhwc`] between two layout moves. Returns how many it replaced.
pub(crate) fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    if !supported() {
        return Ok(0);
    }
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = eligible(model, node, conv)? else {
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

/// The op for `node` when it is a float32 NCHW depthwise 2-D convolution with constant weights
/// and bias and a concrete input shape; `None` leaves it to tract.
fn eligible(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<DepthwiseNhwc>> {
    let spec = &conv.pool_spec;
    let x = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = x.shape.as_concrete() else {
        return Ok(None);
    };
    let c = spec.input_channels;
    if conv.q_params.is_some()
        || x.datum_type != f32::datum_type()
        || spec.data_format != DataFormat::NCHW
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.kernel_shape.len() != 2
        || shape.len() != 4
        || shape[1] != c
        || conv.group != c
        || spec.output_channels != c
        || c < 2
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
        || k.shape() != [c, 1, kh, kw]
        || b.datum_type() != f32::datum_type()
    {
        return Ok(None);
    }
    let bias = match b.len() {
        1 => vec![b.try_as_plain_ram()?.as_slice::<f32>()?[0]; c], // a scalar (no bias in the file: zero)
        n if n == c => b.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
        _ => return Ok(None),
    };
    // ONNX stores [C, 1, KH, KW]; the loop reads one channel vector per tap.
    let k = k.try_as_plain_ram()?.as_slice::<f32>()?;
    let mut weights = vec![0f32; kh * kw * c];
    for ch in 0..c {
        for t in 0..kh * kw {
            weights[t * c + ch] = k[ch * kh * kw + t];
        }
    }
    let strides = spec.strides.clone().unwrap_or_else(|| tvec![1, 1]);
    let dilations = spec.dilations.clone().unwrap_or_else(|| tvec![1, 1]);
    let (h, w) = (shape[2], shape[3]);
    let geo = spec
        .padding
        .compute(&[h, w], &spec.kernel_shape, &dilations, &strides);
    Ok(Some(DepthwiseNhwc {
        h,
        w,
        c,
        kh,
        kw,
        stride: (strides[0], strides[1]),
        dilation: (dilations[0], dilations[1]),
        pad: (geo[0].pad_before, geo[1].pad_before),
        oh: geo[0].convoluted,
        ow: geo[1].convoluted,
        weights: Arc::new(weights),
        bias: Arc::new(bias),
        clip: (f32::NEG_INFINITY, f32::INFINITY),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    struct Case {
        hw: (usize, usize),
        c: usize,
        k: (usize, usize),
        stride: (usize, usize),
        dilation: (usize, usize),
        pad: ((usize, usize), (usize, usize)), // (top, bottom), (left, right)
        clip: (f32, f32),
    }

    fn op(t: &Case, seed: u64) -> DepthwiseNhwc {
        let out_dim = |len: usize, (b, a): (usize, usize), k: usize, s: usize, d: usize| {
            (len + b + a - (k - 1) * d - 1) / s + 1
        };
        DepthwiseNhwc {
            h: t.hw.0,
            w: t.hw.1,
            c: t.c,
            kh: t.k.0,
            kw: t.k.1,
            stride: t.stride,
            dilation: t.dilation,
            pad: (t.pad.0 .0, t.pad.1 .0),
            oh: out_dim(t.hw.0, t.pad.0, t.k.0, t.stride.0, t.dilation.0),
            ow: out_dim(t.hw.1, t.pad.1, t.k.1, t.stride.1, t.dilation.1),
            weights: Arc::new(values(t.k.0 * t.k.1 * t.c, seed)),
            bias: Arc::new(values(t.c, seed + 1)),
            clip: t.clip,
        }
    }

    /// The convolution by its definition, in f64.
    fn reference(d: &DepthwiseNhwc, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; d.oh * d.ow * d.c];
        for oy in 0..d.oh {
            for ox in 0..d.ow {
                for ch in 0..d.c {
                    let mut acc = d.bias[ch] as f64;
                    for ky in 0..d.kh {
                        for kx in 0..d.kw {
                            let iy =
                                (oy * d.stride.0 + ky * d.dilation.0) as isize - d.pad.0 as isize;
                            let ix =
                                (ox * d.stride.1 + kx * d.dilation.1) as isize - d.pad.1 as isize;
                            if (0..d.h as isize).contains(&iy) && (0..d.w as isize).contains(&ix) {
                                let xv = x[(iy as usize * d.w + ix as usize) * d.c + ch] as f64;
                                acc += xv * d.weights[(ky * d.kw + kx) * d.c + ch] as f64;
                            }
                        }
                    }
                    out[(oy * d.ow + ox) * d.c + ch] = (acc as f32).max(d.clip.0).min(d.clip.1);
                }
            }
        }
        out
    }

    fn check(t: Case, seed: u64) {
        let d = op(&t, seed);
        let x = values(d.h * d.w * d.c, seed + 2);
        let want = reference(&d, &x);
        let mut got = vec![f32::NAN; want.len()];
        d.rows(&x, &mut got, 0..d.oh);
        // The same with the rows split in two halves, as the intra-op pool runs them.
        let mut split = vec![f32::NAN; want.len()];
        let half = d.oh / 2;
        let (top, bottom) = split.split_at_mut(half * d.ow * d.c);
        d.rows(&x, top, 0..half);
        d.rows(&x, bottom, half..d.oh);
        for (what, got) in [("whole", &got), ("split", &split)] {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{what}, value {i}: {g} vs {w} ({}x{}x{}, k{:?})",
                    d.h,
                    d.w,
                    d.c,
                    t.k
                );
            }
        }
    }

    const NONE: (f32, f32) = (f32::NEG_INFINITY, f32::INFINITY);

    #[test]
    fn matches_the_definition_on_mobilenet_shapes_and_odd_ones() {
        let mut seed = 0;
        let mut case = |t: Case| {
            seed += 10;
            check(t, seed)
        };
        // MobileNetV2's: 3x3, pad 1, stride 1 and 2, ReLU6, channels in 32-blocks and 8-blocks.
        for (hw, c) in [
            ((56, 56), 32),
            ((28, 28), 144),
            ((7, 7), 576),
            ((4, 4), 960),
            ((3, 3), 40),
            ((1, 1), 24),
        ] {
            for s in [1, 2] {
                case(Case {
                    hw,
                    c,
                    k: (3, 3),
                    stride: (s, s),
                    dilation: (1, 1),
                    pad: ((1, 1), (1, 1)),
                    clip: (0.0, 6.0),
                });
            }
        }
        // Channels that are not a multiple of 8 (the plain loop), asymmetric and no padding,
        // dilation, non-square kernels, a kernel larger than the input, no clip.
        case(Case {
            hw: (9, 11),
            c: 12,
            k: (3, 3),
            stride: (1, 1),
            dilation: (1, 1),
            pad: ((1, 1), (1, 1)),
            clip: NONE,
        });
        case(Case {
            hw: (10, 13),
            c: 16,
            k: (3, 3),
            stride: (2, 1),
            dilation: (1, 1),
            pad: ((0, 1), (1, 0)),
            clip: NONE,
        });
        case(Case {
            hw: (12, 12),
            c: 48,
            k: (3, 3),
            stride: (1, 1),
            dilation: (2, 2),
            pad: ((2, 2), (2, 2)),
            clip: (-0.5, 0.5),
        });
        case(Case {
            hw: (8, 20),
            c: 40,
            k: (1, 5),
            stride: (1, 3),
            dilation: (1, 1),
            pad: ((0, 0), (2, 2)),
            clip: (0.0, f32::INFINITY),
        });
        case(Case {
            hw: (6, 6),
            c: 8,
            k: (5, 5),
            stride: (1, 1),
            dilation: (1, 1),
            pad: ((0, 0), (0, 0)),
            clip: NONE,
        });
        case(Case {
            hw: (3, 3),
            c: 32,
            k: (5, 5),
            stride: (1, 1),
            dilation: (1, 1),
            pad: ((2, 2), (2, 2)),
            clip: NONE,
        });
        case(Case {
            hw: (2, 2),
            c: 8,
            k: (9, 9),
            stride: (1, 1),
            dilation: (1, 1),
            pad: ((4, 4), (4, 4)),
            clip: NONE,
        });
    }

    /// A small MobileNetV2-like ONNX graph (depthwise 3x3 + ReLU6, 1x1, depthwise stride 2 without
    /// bias + ReLU, a depthwise with 12 channels) through the backend's graph preparation: each
    /// depthwise becomes a `FerDepthwiseNhwc` with its activation fused, and the optimised plan
    /// computes what tract's own ops compute.
    #[test]
    fn the_backend_graph_fuses_clips_and_computes_what_tract_computes() {
        if !supported() {
            eprintln!(
                "SKIP: this CPU has no AVX2 + FMA, so the backend keeps tract's depthwise op"
            );
            return;
        }
        use fer_export::{Dim, GraphBuilder};
        let mut g = GraphBuilder::new("dw");
        let x = g.input(
            "input",
            &[Dim::batch(), Dim::Fixed(16), Dim::Fixed(11), Dim::Fixed(11)],
        );
        let w1 = g
            .initializer("dw1.w", &[16, 1, 3, 3], &values(144, 1))
            .unwrap();
        let b1 = g.initializer("dw1.b", &[16], &values(16, 2)).unwrap();
        let f = g.conv(&x, &w1, Some(&b1), [3, 3], [1, 1], [1, 1], 16, "dw1");
        let f = g.clip(&f, 0.0, 6.0, "relu6");
        let w2 = g
            .initializer("pw.w", &[24, 16, 1, 1], &values(384, 3))
            .unwrap();
        let f = g.conv(&f, &w2, None, [1, 1], [1, 1], [0, 0], 1, "pw");
        let w3 = g
            .initializer("dw2.w", &[24, 1, 3, 3], &values(216, 4))
            .unwrap();
        let f = g.conv(&f, &w3, None, [3, 3], [2, 2], [1, 1], 24, "dw2");
        let f = g.relu(&f, "relu");
        let w4 = g
            .initializer("pw2.w", &[12, 24, 1, 1], &values(288, 5))
            .unwrap();
        let f = g.conv(&f, &w4, None, [1, 1], [1, 1], [0, 0], 1, "pw2");
        let w5 = g
            .initializer("dw3.w", &[12, 1, 3, 3], &values(108, 6))
            .unwrap();
        let f = g.conv(&f, &w5, None, [3, 3], [1, 1], [1, 1], 12, "dw3");
        g.output(
            "features",
            &f,
            &[Dim::batch(), Dim::Fixed(12), Dim::Fixed(6), Dim::Fixed(6)],
        );
        let meta = fer_export::Metadata {
            labels: vec!["a".into()],
            input_size: (11, 11),
            color: fer_export::ColorMode::Rgb,
            mean: vec![0.0],
            std: vec![1.0],
            method: "ce".into(),
            backbone: "test".into(),
            data: "none".into(),
            val_accuracy: None,
            extra: vec![],
        };
        let proto = g.finish(&meta).unwrap(); // fer_export::pb is tract-onnx's
        let typed = || {
            let m = tract_onnx::onnx().model_for_proto_model(&proto).unwrap();
            m.with_input_fact(0, f32::fact([1, 16, 11, 11]).into())
                .unwrap()
                .into_typed()
                .unwrap()
        };
        let mut ours = typed();
        super::super::tract::prepare_tract_graph(&mut ours).unwrap();
        let ours = ours.into_optimized().unwrap();
        let mut theirs = typed();
        super::super::tract::channels_last(&mut theirs).unwrap();
        let theirs = theirs.into_optimized().unwrap();

        let ops: Vec<&DepthwiseNhwc> = ours
            .nodes()
            .iter()
            .filter_map(|n| n.op_as::<DepthwiseNhwc>())
            .collect();
        let clips: Vec<(f32, f32)> = ops.iter().map(|o| o.clip).collect();
        assert_eq!(
            clips,
            [
                (0.0, 6.0),
                (0.0, f32::INFINITY),
                (f32::NEG_INFINITY, f32::INFINITY)
            ],
            "{ours}"
        );
        assert!(
            ours.nodes()
                .iter()
                .all(|n| n.op().name() != "DepthWiseConv"),
            "{ours}"
        );
        assert!(
            ours.nodes().iter().all(|n| !n.op().name().contains("Max")),
            "the clips were not fused: {ours}"
        );

        let input: Tensor = tract_ndarray::Array4::from_shape_vec(
            (1, 16, 11, 11),
            values(16 * 121, 7).iter().map(|v| v * 3.0).collect(),
        )
        .unwrap()
        .into();
        let run = |m: TypedModel| {
            let out = m
                .into_runnable()
                .unwrap()
                .run(tvec!(input.clone().into()))
                .unwrap();
            out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<f32>>()
        };
        let (a, b) = (run(ours), run(theirs));
        assert_eq!(a.len(), 12 * 36);
        // Float32 rounding only (fused multiply-adds here, separate ones in tract): relative 1e-6.
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0f32, f32::max);
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            worst <= 1e-5 && scale > 1.0,
            "max |ours − tract| / (1 + |tract|) = {worst} (largest value {scale})"
        );
    }
}
