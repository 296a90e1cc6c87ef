//! Test support for the ops: convolutions by their definition (f64 sums), and running an op the
//! way a plan does, on the calling thread alone and on a two-thread intra-op pool.

use super::{ConvParts, Geometry};
use tract_onnx::prelude::*;

/// Deterministic values in [-1, 1).
pub(super) fn values(n: usize, seed: u64) -> Vec<f32> {
    crate::test_rng::lcg(seed)
        .map(|s| ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        .take(n)
        .collect()
}

/// One convolution to check.
pub(super) struct Case {
    pub hw: (usize, usize),
    pub cin: usize,
    pub cout: usize,
    pub group: usize,
    pub k: (usize, usize),
    pub stride: (usize, usize),
    pub dilation: (usize, usize),
    /// ((top, bottom), (left, right))
    pub pad: ((usize, usize), (usize, usize)),
}

/// The parts `rewrite` would read off such an ONNX `Conv`, with random weights and bias.
pub(super) fn parts(t: &Case, seed: u64) -> ConvParts {
    let out = |len: usize, (b, a): (usize, usize), k: usize, s: usize, d: usize| {
        (len + b + a - (k - 1) * d - 1) / s + 1
    };
    let geometry = Geometry {
        h: t.hw.0,
        w: t.hw.1,
        cin: t.cin,
        cout: t.cout,
        kh: t.k.0,
        kw: t.k.1,
        stride: t.stride,
        dilation: t.dilation,
        pad: (t.pad.0 .0, t.pad.1 .0),
        pad_end: (t.pad.0 .1, t.pad.1 .1),
        oh: out(t.hw.0, t.pad.0, t.k.0, t.stride.0, t.dilation.0),
        ow: out(t.hw.1, t.pad.1, t.k.1, t.stride.1, t.dilation.1),
    };
    ConvParts {
        geometry,
        group: t.group,
        kernel: values(t.cout * t.cin / t.group * t.k.0 * t.k.1, seed),
        bias: values(t.cout, seed + 1),
    }
}

/// The grouped convolution by its definition on channel-last `x` (`[H, W, Cin]`), then `+ res`
/// (`[OH, OW, Cout]`) and the clip, summed in f64; with each value, the sum of the absolute values
/// of its terms (what float32 rounding of a long sum is proportional to).
pub(super) fn reference(
    p: &ConvParts,
    x: &[f32],
    res: Option<&[f32]>,
    (lo, hi): (f32, f32),
) -> (Vec<f32>, Vec<f32>) {
    let g = &p.geometry;
    let (cin_g, cout_g) = (g.cin / p.group, g.cout / p.group);
    let mut out = vec![0f32; g.oh * g.ow * g.cout];
    let mut scale = vec![0f32; g.oh * g.ow * g.cout];
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            for o in 0..g.cout {
                let mut acc = p.bias[o] as f64;
                let mut abs = acc.abs();
                let first_in = o / cout_g * cin_g;
                for i in 0..cin_g {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy =
                                (oy * g.stride.0 + ky * g.dilation.0) as isize - g.pad.0 as isize;
                            let ix =
                                (ox * g.stride.1 + kx * g.dilation.1) as isize - g.pad.1 as isize;
                            if (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix) {
                                let xv = x[(iy as usize * g.w + ix as usize) * g.cin + first_in + i]
                                    as f64;
                                let term =
                                    xv * p.kernel[((o * cin_g + i) * g.kh + ky) * g.kw + kx] as f64;
                                acc += term;
                                abs += term.abs();
                            }
                        }
                    }
                }
                let at = (oy * g.ow + ox) * g.cout + o;
                if let Some(r) = res {
                    acc += r[at] as f64;
                }
                out[at] = (acc as f32).max(lo).min(hi);
                scale[at] = abs as f32;
            }
        }
    }
    (out, scale)
}

/// Runs `op` on a batch of two images (`x` twice, then the second scaled by −0.5) as a plan would,
/// on the calling thread and on a two-thread intra-op pool, and checks both against `want`
/// (values and term scales as [`reference`] gives them, for `x`) and its counterpart for the
/// second image: `|got − want| ≤ 1e-5·(1 + |want|) + 2e-7·Σ|terms|` (float32 rounding of the sum;
/// a wrong tap or weight is off by a whole term, orders of magnitude more).
pub(super) fn check_op(
    op: &dyn TypedOp,
    g: &Geometry,
    x: &[f32],
    res: Option<&[f32]>,
    want: impl Fn(&[f32], Option<&[f32]>) -> (Vec<f32>, Vec<f32>),
    what: &str,
) {
    let x2: Vec<f32> = x.iter().map(|v| -0.5 * v).collect();
    let batch: Vec<f32> = x.iter().chain(&x2).copied().collect();
    let mut inputs: TVec<TValue> = tvec![Tensor::from_shape(&[2, g.h, g.w, g.cin], &batch)
        .unwrap()
        .into_tvalue()];
    let res2: Option<Vec<f32>> = res.map(|r| r.iter().map(|v| 2.0 * v).collect());
    if let (Some(r), Some(r2)) = (res, &res2) {
        let both: Vec<f32> = r.iter().chain(r2).copied().collect();
        inputs.push(
            Tensor::from_shape(&[2, g.oh, g.ow, g.cout], &both)
                .unwrap()
                .into_tvalue(),
        );
    }
    let (mut expected, mut scale) = want(x, res);
    let (e2, s2) = want(&x2, res2.as_deref());
    expected.extend(e2);
    scale.extend(s2);
    for threads in [1, 2] {
        let pool = crate::intra_op::IntraOp::with_threads(threads);
        let out = pool.run(|| {
            op.as_op()
                .eval_out_of_plan(inputs.clone())
                .unwrap()
                .unwrap()
        });
        let got = out[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        assert_eq!(out[0].shape(), [2, g.oh, g.ow, g.cout], "{what}");
        for (i, ((a, b), s)) in got.iter().zip(&expected).zip(&scale).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()) + 2e-7 * s,
                "{what}, {threads} thread(s), value {i}: {a} vs {b} (Σ|terms| {s})"
            );
        }
    }
}
