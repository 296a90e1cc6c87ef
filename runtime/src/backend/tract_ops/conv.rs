//! Convolutions other than depthwise (1x1, 3x3, 7x7, strided), channel-last, as one matrix
//! product read straight from the image ("implicit GEMM"): output points × output channels, summed
//! over taps × input channels. Channel-last, the input channels of one tap of one output point are
//! contiguous, so the product needs no im2col copy and no per-call packing of the image; the
//! weights are packed once, at load. The bias, a residual add and the clip (ReLU / ReLU6) run on the
//! accumulators before they are stored.
//!
//! The inner loop is the classic register tile of matrix products: with AVX2, 6 output points × 16
//! output channels in twelve 8-wide accumulators (per input channel of a tap it loads 16 weights,
//! broadcasts one input value per point and issues 12 fused multiply-adds); with AVX-512, 8 points
//! × 16 channels in eight 16-wide ones. The weights of 16 output channels (a panel) stay in the L2
//! cache while every tile of points passes over them.

use super::{
    absorbed_clip, intra_op_pool, is_move_to_nchw, next_op, replace_through, ConvParts, Geometry,
    NO_CLIP,
};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Output channels per register tile and per packed weight panel.
const NR: usize = 16;
/// Set by the tests to check the AVX2 tiles on CPUs that have AVX-512 too (any test running
/// meanwhile computes the same values in the narrower tiles).
static AVX2_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether to use the AVX-512 tiles: the CPU has AVX-512F and `FER_TRACT_AVX512=0` (for timing
/// the AVX2 tiles on such a CPU) is not set.
#[cfg(target_arch = "x86_64")]
fn use_avx512() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::env::var_os("FER_TRACT_AVX512").is_none_or(|v| v != "0")
    }) && !AVX2_ONLY.load(std::sync::atomic::Ordering::Relaxed)
}
/// Multiply-adds from which one image's work is split across the intra-op pool's threads.
const SPLIT_MACS: usize = 100_000;

/// A grouped-by-1 2-D convolution on `[N, H, W, Cin]` float32 giving `[N, OH, OW, Cout]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConvNhwc {
    g: Geometry,
    /// Panel `j` holds, for each `k = (ky·KW + kx)·Cin + ci`, the 16 weights of output channels
    /// `16j..16j+16` (zeros past `Cout`): `[panels, KH·KW·Cin, 16]`.
    packed: Arc<Vec<f32>>,
    /// `Cout` values, zero-padded to whole panels.
    bias: Arc<Vec<f32>>,
    /// `min(max(x, lo), hi)` on the output, after the bias and the residual.
    clip: (f32, f32),
    /// A second input, `[N, OH, OW, Cout]`, added before the clip (a residual connection).
    residual: bool,
}

impl Eq for ConvNhwc {}

impl Op for ConvNhwc {
    fn name(&self) -> StaticName {
        "FerConvNhwc".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.g;
        Ok(vec![format!(
            "{}x{}x{} -> {}x{}x{} k{}x{} s{:?} d{:?} pad{:?}/{:?} residual {} clip{:?}",
            g.h,
            g.w,
            g.cin,
            g.oh,
            g.ow,
            g.cout,
            g.kh,
            g.kw,
            g.stride,
            g.dilation,
            g.pad,
            g.pad_end,
            self.residual,
            self.clip
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for ConvNhwc {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.g;
        let n = g.batch_of("FerConvNhwc", inputs[0].shape())?;
        let out_shape = g.output_shape(n);
        anyhow::ensure!(
            inputs.len() == 1 + self.residual as usize,
            "FerConvNhwc: {} inputs",
            inputs.len()
        );
        if self.residual {
            anyhow::ensure!(
                inputs[1].shape() == out_shape,
                "FerConvNhwc residual {:?}, want {out_shape:?}",
                inputs[1].shape()
            );
        }
        let x = inputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
        let res = match inputs.get(1) {
            Some(r) => Some(r.try_as_plain_ram()?.as_slice::<f32>()?),
            None => None,
        };
        // SAFETY: `image` writes every output value (each point, each channel) before it is read.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        let mut view = out.try_as_plain_ram_mut()?;
        let values = view.as_slice_mut::<f32>()?;
        let (plane_in, plane_out) = (g.h * g.w * g.cin, g.oh * g.ow * g.cout);
        let padded = g.pad != (0, 0) || g.pad_end != (0, 0);
        let mut buffer = if padded {
            vec![0f32; (g.h + g.pad.0 + g.pad_end.0) * (g.w + g.pad.1 + g.pad_end.1) * g.cin]
        } else {
            Vec::new()
        };
        for i in 0..n {
            let xi = &x[i * plane_in..][..plane_in];
            let xi = if padded {
                self.pad_into(xi, &mut buffer);
                &buffer[..]
            } else {
                xi
            };
            let res_i = res.map(|r| &r[i * plane_out..][..plane_out]);
            self.image(xi, res_i, &mut values[i * plane_out..][..plane_out]);
        }
        drop(view);
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for ConvNhwc {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(self.g.output_fact(inputs[0]))
    }

    /// Absorbs what follows when this op's output goes nowhere else: `Max` / `Min` by a constant
    /// scalar, or (before any clip) an `Add` of a tensor of the output's shape, the residual. The
    /// add may also come after a move back to channel-first, of the output and of a tensor moved
    /// the same way (a residual block whose shortcut is another of these ops, or the block's input
    /// when that feeds a convolution too, which tract's layout moves cannot see through): the
    /// op then adds the channel-last tensor and the move goes after the add.
    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        if let Some((clip, last, moved)) = absorbed_clip(model, node, self.clip)? {
            return Ok(Some(replace_through(
                model,
                node,
                ConvNhwc {
                    clip,
                    ..self.clone()
                },
                &[],
                moved,
                last,
            )?));
        }
        if self.residual || self.clip != NO_CLIP {
            return Ok(None);
        }
        let Some((add, moved, mine)) = next_op(model, node)? else {
            return Ok(None);
        };
        let add = model.node(add);
        if add.op().name() != "Add" || add.inputs.len() != 2 || add.inputs[0] == add.inputs[1] {
            return Ok(None);
        }
        let other = if add.inputs[0] == mine {
            add.inputs[1]
        } else {
            add.inputs[0]
        };
        let residual = if moved {
            let producer = model.node(other.node);
            if !is_move_to_nchw(producer) {
                return Ok(None);
            }
            producer.inputs[0]
        } else {
            other
        };
        let fact = model.outlet_fact(residual)?;
        if fact.shape != model.outlet_fact(OutletId::new(node.id, 0))?.shape
            || fact.datum_type != f32::datum_type()
        {
            return Ok(None);
        }
        // The residual must not depend on this op's output (it would become its own input).
        let order = model.eval_order()?;
        let at = |id: usize| order.iter().position(|&n| n == id);
        if at(residual.node) >= at(node.id) {
            return Ok(None);
        }
        Ok(Some(replace_through(
            model,
            node,
            ConvNhwc {
                residual: true,
                ..self.clone()
            },
            &[residual],
            moved,
            add.id,
        )?))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.g;
        let n = inputs[0].shape[0].clone();
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            n * (g.oh * g.ow * g.cout * g.kh * g.kw * g.cin)
        )))
    }

    as_op!();
}

/// Raw pointers handed to the pool's threads: each writes disjoint output points or channels.
#[derive(Clone, Copy)]
struct Shared {
    x: *const f32,
    res: *const f32,
    out: *mut f32,
}
// SAFETY: the threads read `x` and `res` and write disjoint parts of `out` (see `image`).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl ConvNhwc {
    /// The op for a convolution with `group` = 1 and a multiple of 8 output channels, else `None`.
    pub(super) fn from_conv(parts: &ConvParts) -> TractResult<Option<ConvNhwc>> {
        let g = &parts.geometry;
        if parts.group != 1 || g.cout % 8 != 0 || g.oh == 0 || g.ow == 0 {
            return Ok(None);
        }
        // ONNX stores [Cout, Cin, KH, KW]; a panel reads 16 output channels per (tap, input channel).
        let (k, panels) = (g.kh * g.kw * g.cin, g.cout.div_ceil(NR));
        let mut packed = vec![0f32; panels * k * NR];
        for o in 0..g.cout {
            for ci in 0..g.cin {
                for t in 0..g.kh * g.kw {
                    let kk = t * g.cin + ci;
                    packed[((o / NR) * k + kk) * NR + o % NR] =
                        parts.kernel[(o * g.cin + ci) * g.kh * g.kw + t];
                }
            }
        }
        let mut bias = parts.bias.clone();
        bias.resize(panels * NR, 0.0);
        Ok(Some(ConvNhwc {
            g: g.clone(),
            packed: Arc::new(packed),
            bias: Arc::new(bias),
            clip: NO_CLIP,
            residual: false,
        }))
    }

    fn padded_width(&self) -> usize {
        self.g.w + self.g.pad.1 + self.g.pad_end.1
    }

    /// Copies one image into the middle of `buffer` (its padding stays zero).
    fn pad_into(&self, x: &[f32], buffer: &mut [f32]) {
        let (g, wp) = (&self.g, self.padded_width());
        let row = g.w * g.cin;
        for y in 0..g.h {
            let at = ((y + g.pad.0) * wp + g.pad.1) * g.cin;
            buffer[at..at + row].copy_from_slice(&x[y * row..][..row]);
        }
    }

    /// One (padded) image, in the widest tiles this CPU has: 8 points × 16 channels in AVX-512
    /// registers where it has AVX-512, else 6 × 16 in AVX2 ones.
    fn image(&self, x: &[f32], res: Option<&[f32]>, out: &mut [f32]) {
        let shared = Shared {
            x: x.as_ptr(),
            res: res.map_or(std::ptr::null(), |r| r.as_ptr()),
            out: out.as_mut_ptr(),
        };
        #[cfg(target_arch = "x86_64")]
        {
            if use_avx512() {
                return self.image_in_tiles::<8>(shared, Self::tile_avx512::<8>);
            }
            self.image_in_tiles::<6>(shared, Self::tile_avx2)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "ConvNhwc is only created where `supported()`: x86-64 with AVX2 and FMA ({:?})",
            shared.x
        )
    }

    /// The image in tiles of `M` points × 16 channels. With a multi-thread pool and enough work,
    /// the pool's threads take disjoint panels of output channels (when there are enough of them:
    /// each thread then streams its own share of the weights) or else disjoint tiles of points.
    fn image_in_tiles<const M: usize>(&self, s: Shared, tile: Tile<M>) {
        use rayon::prelude::*;
        let g = &self.g;
        let (points, panels) = (g.oh * g.ow, g.cout.div_ceil(NR));
        let tiles = points.div_ceil(M);
        let macs = points * g.cout * g.kh * g.kw * g.cin;
        if let Some(pool) = intra_op_pool().filter(|_| macs >= SPLIT_MACS) {
            let threads = pool.current_num_threads();
            let chunk = |n: usize, i: usize| {
                let per = n.div_ceil(threads);
                (i * per).min(n)..((i + 1) * per).min(n)
            };
            if panels >= 2 * threads || (panels >= threads && tiles < 2 * threads) {
                // SAFETY: each thread writes the channels of its own panels only.
                return pool.install(|| {
                    (0..threads)
                        .into_par_iter()
                        .for_each(|i| unsafe { self.block(s, tile, chunk(panels, i), 0..tiles) })
                });
            }
            if tiles >= threads {
                // SAFETY: each thread writes the points of its own tiles only.
                return pool.install(|| {
                    (0..threads)
                        .into_par_iter()
                        .for_each(|i| unsafe { self.block(s, tile, 0..panels, chunk(tiles, i)) })
                });
            }
        }
        // SAFETY: one thread, the whole output.
        unsafe { self.block(s, tile, 0..panels, 0..tiles) }
    }

    /// Panels × tiles of one image, panel by panel (its weights stay in cache across the tiles).
    ///
    /// # Safety
    /// `s` points at the padded image, the residual (or null) and the output of this op's shapes;
    /// no other thread writes the same panels of the same tiles; the CPU runs `tile`.
    unsafe fn block<const M: usize>(
        &self,
        s: Shared,
        tile: Tile<M>,
        panels: std::ops::Range<usize>,
        tiles: std::ops::Range<usize>,
    ) {
        let g = &self.g;
        let (points, wp, k) = (g.oh * g.ow, self.padded_width(), g.kh * g.kw * g.cin);
        // Where each tap reads, relative to its output point's first input value.
        let taps: Vec<usize> = (0..g.kh)
            .flat_map(|ky| {
                (0..g.kw).map(move |kx| ((ky * g.dilation.0) * wp + kx * g.dilation.1) * g.cin)
            })
            .collect();
        for j in panels {
            let b = self.packed.as_ptr().add(j * k * NR);
            let lanes = NR.min(g.cout - j * NR);
            for t in tiles.clone() {
                let first = t * M;
                let rows = M.min(points - first);
                // Points past the last read the first one's input (valid memory); they are not stored.
                let point = |r: usize| first + if r < rows { r } else { 0 };
                let a: [*const f32; M] = std::array::from_fn(|r| {
                    let (oy, ox) = (point(r) / g.ow, point(r) % g.ow);
                    s.x.add(((oy * g.stride.0) * wp + ox * g.stride.1) * g.cin)
                });
                let o: [*mut f32; M] =
                    std::array::from_fn(|r| s.out.add(point(r) * g.cout + j * NR));
                let res: Option<[*const f32; M]> = (!s.res.is_null())
                    .then(|| std::array::from_fn(|r| s.res.add(point(r) * g.cout + j * NR)));
                tile(
                    self,
                    TileArgs {
                        a,
                        taps: &taps,
                        b,
                        bias: self.bias.as_ptr().add(j * NR),
                        res,
                        o,
                        rows,
                        lanes,
                    },
                );
            }
        }
    }

    /// One register tile: 6 output points (`rows` of them stored) × one panel of 16 output
    /// channels (`lanes` = 16 or 8 stored), in twelve 8-wide AVX2 accumulators.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; the pointers are inside the image, the packed panel, the bias,
    /// the residual and the output for every tap and lane used.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2(&self, t: TileArgs<'_, 6>) {
        use std::arch::x86_64::*;
        let cin = self.g.cin;
        let mut c = [[_mm256_setzero_ps(); 2]; 6];
        let mut bp = t.b;
        for &off in t.taps {
            let p: [*const f32; 6] = std::array::from_fn(|r| t.a[r].add(off));
            for i in 0..cin {
                let (b0, b1) = (_mm256_loadu_ps(bp), _mm256_loadu_ps(bp.add(8)));
                bp = bp.add(NR);
                for r in 0..6 {
                    let v = _mm256_broadcast_ss(&*p[r].add(i));
                    c[r][0] = _mm256_fmadd_ps(v, b0, c[r][0]);
                    c[r][1] = _mm256_fmadd_ps(v, b1, c[r][1]);
                }
            }
        }
        let (lo, hi) = (_mm256_set1_ps(self.clip.0), _mm256_set1_ps(self.clip.1));
        let (bias0, bias1) = (_mm256_loadu_ps(t.bias), _mm256_loadu_ps(t.bias.add(8)));
        for r in 0..t.rows {
            let mut v0 = _mm256_add_ps(c[r][0], bias0);
            let mut v1 = _mm256_add_ps(c[r][1], bias1);
            if let Some(res) = t.res {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(res[r]));
                if t.lanes == NR {
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(res[r].add(8)));
                }
            }
            _mm256_storeu_ps(t.o[r], _mm256_min_ps(_mm256_max_ps(v0, lo), hi));
            if t.lanes == NR {
                _mm256_storeu_ps(t.o[r].add(8), _mm256_min_ps(_mm256_max_ps(v1, lo), hi));
            }
        }
    }

    /// The same tile, `M` output points × 16 channels, in `M` 16-wide AVX-512 accumulators (twice
    /// the multiply-adds per instruction of AVX2; a half panel is stored through a mask). `M` = 8:
    /// on the 112 px ResNet-18 and MobileNetV2 (2 threads, `tract_profile`, two interleaved rounds)
    /// 12 and 16 points were no faster on ResNet-18 (5.7–6.1 ms at 8, 6.3–7.5 at 12, 5.8–5.9 at 16)
    /// and slower on MobileNetV2 (1.75–1.78 ms at 8, 1.94–2.18 at 16), and prefetching the
    /// weights ahead changed nothing beyond noise.
    ///
    /// # Safety
    /// The CPU has AVX-512F; the pointers are as for [`Self::tile_avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_avx512<const M: usize>(&self, t: TileArgs<'_, M>) {
        use std::arch::x86_64::*;
        let cin = self.g.cin;
        let mut c = [_mm512_setzero_ps(); M];
        let mut bp = t.b;
        for &off in t.taps {
            let p: [*const f32; M] = std::array::from_fn(|r| t.a[r].add(off));
            for i in 0..cin {
                let b = _mm512_loadu_ps(bp);
                bp = bp.add(NR);
                for r in 0..M {
                    c[r] = _mm512_fmadd_ps(_mm512_set1_ps(*p[r].add(i)), b, c[r]);
                }
            }
        }
        let (lo, hi) = (_mm512_set1_ps(self.clip.0), _mm512_set1_ps(self.clip.1));
        let bias = _mm512_loadu_ps(t.bias);
        let mask: __mmask16 = if t.lanes == NR { 0xFFFF } else { 0x00FF };
        for r in 0..t.rows {
            let mut v = _mm512_add_ps(c[r], bias);
            if let Some(res) = t.res {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res[r]));
            }
            _mm512_mask_storeu_ps(t.o[r], mask, _mm512_min_ps(_mm512_max_ps(v, lo), hi));
        }
    }
}

/// What one register tile reads and writes (see [`ConvNhwc::block`]).
struct TileArgs<'a, const M: usize> {
    /// Each point's first input value (its window's top-left tap, channel 0).
    a: [*const f32; M],
    /// Each tap's offset from there.
    taps: &'a [usize],
    /// The panel's packed weights and its 16 biases.
    b: *const f32,
    bias: *const f32,
    /// Each point's residual and output, at the panel's first channel.
    res: Option<[*const f32; M]>,
    o: [*mut f32; M],
    /// Points and channels to store.
    rows: usize,
    lanes: usize,
}

/// A register-tile function for `M` points.
type Tile<const M: usize> = unsafe fn(&ConvNhwc, TileArgs<'_, M>);

#[cfg(test)]
mod tests {
    use super::super::testing::{check_op, parts, reference, values, Case};
    use super::*;

    fn check(t: Case, clip: (f32, f32), residual: bool, seed: u64) {
        let p = parts(&t, seed);
        let op = ConvNhwc {
            clip,
            residual,
            ..ConvNhwc::from_conv(&p)
                .unwrap()
                .expect("a convolution it takes")
        };
        let g = &p.geometry;
        let x = values(g.h * g.w * g.cin, seed + 2);
        let res = residual.then(|| values(g.oh * g.ow * g.cout, seed + 3));
        let what = format!(
            "{}x{}x{} -> {} k{:?} s{:?} d{:?} pad{:?} residual {residual}",
            g.h, g.w, g.cin, g.cout, t.k, t.stride, t.dilation, t.pad
        );
        check_op(
            &op,
            g,
            &x,
            res.as_deref(),
            |x, r| reference(&p, x, r, clip),
            &what,
        );
    }

    fn conv(
        hw: (usize, usize),
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Case {
        Case {
            hw,
            cin,
            cout,
            group: 1,
            k: (k, k),
            stride: (stride, stride),
            dilation: (1, 1),
            pad: ((pad, pad), (pad, pad)),
        }
    }

    #[test]
    fn matches_the_definition_on_resnet_and_mobilenet_shapes_and_odd_ones() {
        // Found by running the tests on aarch64 under qemu (scripts/check_aarch64.sh): the op
        // exists only where its kernels do.
        if !super::super::supported() {
            eprintln!("SKIP: this CPU has no AVX2 + FMA, so there is no ConvNhwc to test");
            return;
        }
        for avx2_only in [false, true] {
            AVX2_ONLY.store(avx2_only, std::sync::atomic::Ordering::Relaxed);
            cases();
        }
        AVX2_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn cases() {
        let mut seed = 0;
        let mut case = |t: Case, clip, residual| {
            seed += 10;
            check(t, clip, residual, seed)
        };
        // ResNet-18's: the 7x7 stem, 3x3 convolutions with and without stride, 1x1 shortcuts,
        // residual adds then ReLU; the late 3x3 at 4x4 with 512 channels is split across the pool
        // by panels, the 56x56 ones by tiles of points.
        case(conv((32, 32), 3, 64, 7, 2, 3), (0.0, f32::INFINITY), false);
        case(conv((28, 28), 64, 64, 3, 1, 1), (0.0, f32::INFINITY), true);
        case(
            conv((14, 14), 64, 128, 3, 2, 1),
            (0.0, f32::INFINITY),
            false,
        );
        case(conv((14, 14), 64, 128, 1, 2, 0), NO_CLIP, false);
        case(conv((4, 4), 512, 512, 3, 1, 1), (0.0, f32::INFINITY), true);
        // MobileNetV2's 1x1: expansion with ReLU6, projection with and without a residual, and
        // output channels that are not a multiple of 16 (24: a half panel).
        case(conv((56, 56), 16, 96, 1, 1, 0), (0.0, 6.0), false);
        case(conv((28, 28), 144, 24, 1, 1, 0), NO_CLIP, true);
        case(conv((4, 4), 320, 1280, 1, 1, 0), (0.0, 6.0), false);
        // Odd ones: one output point, fewer points than a tile, dilation, asymmetric padding.
        case(conv((1, 1), 8, 8, 1, 1, 0), NO_CLIP, false);
        case(conv((3, 1), 5, 40, 3, 1, 1), (-0.5, 0.5), true);
        case(
            Case {
                hw: (9, 7),
                cin: 12,
                cout: 16,
                group: 1,
                k: (3, 2),
                stride: (2, 1),
                dilation: (2, 3),
                pad: ((1, 2), (3, 0)),
            },
            NO_CLIP,
            false,
        );
    }
}
