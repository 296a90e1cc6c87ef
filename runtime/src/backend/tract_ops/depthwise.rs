//! Depthwise convolutions (see the parent module): channel-last, with the ReLU6 (or any clip or
//! ReLU) after it fused, in AVX2 + FMA intrinsics (a channel count that is not a multiple of 8
//! takes a plain loop).
//!
//! Why: tract's `DepthWiseConv` is plain Rust compiled for the baseline target (SSE2 on x86-64)
//! and walks each output point through its zone scanners, and the clip after it is a separate pass
//! over memory. On the 112 px MobileNetV2 its 17 depthwise convolutions took 0.90 ms and the 18
//! clips 0.25 ms of a 3.4 ms run; these take 0.31–0.34 ms with the clips (`FER_TRACT_OPS=1|0
//! FER_TRACT_THREADS=2 cargo run --release -p fer-runtime --example tract_profile -- <model> 500`,
//! docs/RESULTS.md). Interior output points go four at a time (four accumulators share each weight
//! vector), edge points one at a time with their out-of-image taps skipped, and a large layer's
//! rows are split across the intra-op pool.
//!
use super::{
    absorbed_clip, intra_op_pool, replace_through, supported, ConvParts, Geometry, NO_CLIP,
};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// A depthwise 2-D convolution on `[N, H, W, C]` float32, bias and clip included.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DepthwiseNhwc {
    g: Geometry,
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
            self.g.h,
            self.g.w,
            self.g.cin,
            self.g.kh,
            self.g.kw,
            self.g.stride,
            self.g.dilation,
            self.g.pad,
            self.clip
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseNhwc {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let n = self.g.batch_of("FerDepthwiseNhwc", x.shape())?;
        let x = x.try_as_plain_ram()?.as_slice::<f32>()?;
        // SAFETY: `run` writes every output value (each point, each channel) before it is read.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&self.g.output_shape(n))? };
        let mut view = out.try_as_plain_ram_mut()?;
        let out_values = view.as_slice_mut::<f32>()?;
        let (plane_in, plane_out) = (
            self.g.h * self.g.w * self.g.cin,
            self.g.oh * self.g.ow * self.g.cin,
        );
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
        Ok(self.g.output_fact(inputs[0]))
    }

    /// Absorbs a following `Max` or `Min` by a constant scalar (ReLU, ReLU6 = Max 0 then Min 6)
    /// when this op's output goes nowhere else (also behind a move back to channel-first).
    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let Some((clip, last, moved)) = absorbed_clip(model, node, self.clip)? else {
            return Ok(None);
        };
        let fused = DepthwiseNhwc {
            clip,
            ..self.clone()
        };
        Ok(Some(replace_through(model, node, fused, &[], moved, last)?))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let n = inputs[0].shape[0].clone();
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            n * (self.g.oh * self.g.ow * self.g.cin * self.g.kh * self.g.kw)
        )))
    }

    as_op!();
}

/// Multiply-adds from which a layer's rows are split across the intra-op pool's threads. On the
/// 112 px MobileNetV2 (2 threads, `tract_profile`, two rounds) the 17 layers took 0.32–0.35 ms
/// at 100k or 200k, 0.38–0.43 at 500k, 0.44 at 1M and 0.47 unsplit.
const SPLIT_MACS: usize = 200_000;

impl DepthwiseNhwc {
    /// Output columns whose taps are all inside the input: `[first, end)`.
    fn interior_columns(&self) -> (usize, usize) {
        let (s, d, p) = (self.g.stride.1, self.g.dilation.1, self.g.pad.1);
        let first = p.div_ceil(s);
        let reach = (self.g.kw - 1) * d; // from the first tap's column to the last's
        let end = if self.g.w + p > reach {
            ((self.g.w - 1 + p - reach) / s + 1).min(self.g.ow)
        } else {
            0
        };
        (first.min(self.g.ow), end.max(first.min(self.g.ow)))
    }

    /// One image, its output rows split across tract's intra-op pool when the call runs on one
    /// with several threads (`fer_runtime::intra_op`) and the layer is large enough to pay for it.
    fn run_split(&self, x: &[f32], out: &mut [f32]) {
        use rayon::prelude::*;
        let row = self.g.ow * self.g.cin;
        let macs = out.len() * self.g.kh * self.g.kw;
        if let Some(pool) = intra_op_pool() {
            let threads = pool.current_num_threads();
            if self.g.oh >= threads && macs >= SPLIT_MACS {
                let rows_per_chunk = self.g.oh.div_ceil(threads);
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
        self.rows(x, out, 0..self.g.oh)
    }

    /// One image: `x` is `[H, W, C]`, `out` `[OH, OW, C]`. With AVX2 (and `C` a multiple of 8) each
    /// output row runs its interior in groups of four points and the rest one point at a time;
    /// otherwise every point runs in plain Rust.
    fn rows(&self, x: &[f32], out: &mut [f32], oys: std::ops::Range<usize>) {
        assert_eq!(
            (x.len(), out.len()),
            (
                self.g.h * self.g.w * self.g.cin,
                oys.len() * self.g.ow * self.g.cin
            )
        );
        // `out` holds rows `oys` only: the point functions index it from the first of them.
        let first = oys.start;
        #[cfg(target_arch = "x86_64")]
        if self.g.cin % 8 == 0 && supported() {
            let (in_first, in_end) = self.interior_columns();
            for oy in oys {
                let rows = self.g.row_taps(oy);
                let mut ox = 0;
                while ox < self.g.ow {
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
            let rows = self.g.row_taps(oy);
            for ox in 0..self.g.ow {
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
        let c = self.g.cin;
        let (bx, kx0, kx1) = self.g.col_taps(ox);
        let o = &mut out[(out_row * self.g.ow + ox) * c..][..c];
        o.copy_from_slice(&self.bias);
        for ky in ky0..ky1 {
            let iy = (by + (ky * self.g.dilation.0) as isize) as usize;
            for kx in kx0..kx1 {
                let ix = (bx + (kx * self.g.dilation.1) as isize) as usize;
                let xs = &x[(iy * self.g.w + ix) * c..][..c];
                let ws = &self.weights[(ky * self.g.kw + kx) * c..][..c];
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
        let c = self.g.cin;
        let (bx, kx0, kx1) = self.g.col_taps(ox);
        let (lo, hi) = (_mm256_set1_ps(self.clip.0), _mm256_set1_ps(self.clip.1));
        let (xp, wp, bp) = (x.as_ptr(), self.weights.as_ptr(), self.bias.as_ptr());
        let op = out.as_mut_ptr().add((out_row * self.g.ow + ox) * c);
        let clip = |v| _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        // Taps and their input / weight offsets (relative to the channel block), once per point.
        let mut taps = [(0usize, 0usize); 64];
        let mut n = 0;
        for ky in ky0..ky1 {
            let iy = (by + (ky * self.g.dilation.0) as isize) as usize;
            for kx in kx0..kx1 {
                let ix = (bx + (kx * self.g.dilation.1) as isize) as usize;
                if n == taps.len() {
                    // Larger kernels than 8x8 are not in these models: the plain loop takes them.
                    return self.one_point(x, out, out_row, ox, (by, ky0, ky1));
                }
                taps[n] = ((iy * self.g.w + ix) * c, (ky * self.g.kw + kx) * c);
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
        let c = self.g.cin;
        let (s, d) = (self.g.stride.1, self.g.dilation.1);
        let bx = (ox * s) as isize - self.g.pad.1 as isize;
        let (lo, hi) = (_mm256_set1_ps(self.clip.0), _mm256_set1_ps(self.clip.1));
        let (xp, wp, bp) = (x.as_ptr(), self.weights.as_ptr(), self.bias.as_ptr());
        let op = out.as_mut_ptr().add((out_row * self.g.ow + ox) * c);
        for cb in (0..c).step_by(8) {
            let b = _mm256_loadu_ps(bp.add(cb));
            let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
            for ky in ky0..ky1 {
                let iy = (by + (ky * self.g.dilation.0) as isize) as usize;
                for kx in 0..self.g.kw {
                    let wv = _mm256_loadu_ps(wp.add((ky * self.g.kw + kx) * c + cb));
                    let ix = (bx + (kx * d) as isize) as usize;
                    let p = xp.add((iy * self.g.w + ix) * c + cb);
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

impl DepthwiseNhwc {
    /// The op for a depthwise convolution (`group` = input = output channels), else `None`.
    pub(super) fn from_conv(parts: &ConvParts) -> TractResult<Option<DepthwiseNhwc>> {
        let (g, c) = (&parts.geometry, parts.geometry.cin);
        if parts.group != c || g.cout != c || c < 2 {
            return Ok(None);
        }
        // ONNX stores [C, 1, KH, KW]; the loop reads one channel vector per tap.
        let taps = g.kh * g.kw;
        let mut weights = vec![0f32; taps * c];
        for ch in 0..c {
            for t in 0..taps {
                weights[t * c + ch] = parts.kernel[ch * taps + t];
            }
        }
        Ok(Some(DepthwiseNhwc {
            g: g.clone(),
            weights: Arc::new(weights),
            bias: Arc::new(parts.bias.clone()),
            clip: NO_CLIP,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_op, parts, reference, values, Case};
    use super::*;

    fn check(t: Case, clip: (f32, f32), seed: u64) {
        let p = parts(&t, seed);
        let op = DepthwiseNhwc {
            clip,
            ..DepthwiseNhwc::from_conv(&p)
                .unwrap()
                .expect("a depthwise convolution")
        };
        let x = values(t.hw.0 * t.hw.1 * t.cin, seed + 2);
        let what = format!(
            "{}x{}x{} k{:?} s{:?} d{:?} pad{:?}",
            t.hw.0, t.hw.1, t.cin, t.k, t.stride, t.dilation, t.pad
        );
        check_op(
            &op,
            &p.geometry,
            &x,
            None,
            |x, _| reference(&p, x, None, clip),
            &what,
        );
    }

    fn dw(
        hw: (usize, usize),
        c: usize,
        k: (usize, usize),
        stride: (usize, usize),
        dilation: (usize, usize),
        pad: ((usize, usize), (usize, usize)),
    ) -> Case {
        Case {
            hw,
            cin: c,
            cout: c,
            group: c,
            k,
            stride,
            dilation,
            pad,
        }
    }

    #[test]
    fn matches_the_definition_on_mobilenet_shapes_and_odd_ones() {
        let mut seed = 0;
        let mut case = |t: Case, clip| {
            seed += 10;
            check(t, clip, seed)
        };
        // MobileNetV2's: 3x3, pad 1, stride 1 and 2, ReLU6, channels in 32-blocks and 8-blocks;
        // 56x56x32 is large enough to be split across the pool's two threads.
        for (hw, c) in [
            ((56, 56), 32),
            ((28, 28), 144),
            ((7, 7), 576),
            ((4, 4), 960),
            ((3, 3), 40),
            ((1, 1), 24),
        ] {
            for s in [1, 2] {
                case(
                    dw(hw, c, (3, 3), (s, s), (1, 1), ((1, 1), (1, 1))),
                    (0.0, 6.0),
                );
            }
        }
        // Channels that are not a multiple of 8 (the plain loop), asymmetric and no padding,
        // dilation, non-square kernels, kernels larger than the input, no clip.
        case(
            dw((9, 11), 12, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))),
            NO_CLIP,
        );
        case(
            dw((10, 13), 16, (3, 3), (2, 1), (1, 1), ((0, 1), (1, 0))),
            NO_CLIP,
        );
        case(
            dw((12, 12), 48, (3, 3), (1, 1), (2, 2), ((2, 2), (2, 2))),
            (-0.5, 0.5),
        );
        case(
            dw((8, 20), 40, (1, 5), (1, 3), (1, 1), ((0, 0), (2, 2))),
            (0.0, f32::INFINITY),
        );
        case(
            dw((6, 6), 8, (5, 5), (1, 1), (1, 1), ((0, 0), (0, 0))),
            NO_CLIP,
        );
        case(
            dw((3, 3), 32, (5, 5), (1, 1), (1, 1), ((2, 2), (2, 2))),
            NO_CLIP,
        );
        case(
            dw((2, 2), 8, (9, 9), (1, 1), (1, 1), ((4, 4), (4, 4))),
            NO_CLIP,
        );
    }
}
