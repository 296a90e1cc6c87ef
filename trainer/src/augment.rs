//! Device-side augmentation, the peer's `prep` and `erase` (`reference/ref_train.py`) in tch.
//!
//! Batches arrive as uint8 `[B, C, H, W]` on the training device (the whole dataset lives there)
//! and leave as normalized float `[B, channels, size, size]`:
//! - train: `/255`, bilinear resize to `size + pad` (align_corners = false, as
//!   `F.interpolate`), random `size` crop, horizontal flip with p = 0.5, normalize, expand gray
//!   to the model's channels;
//!   (with `affine`: a random rescale, shift and rotation of each face first, at `size + pad`);
//! - eval: `/255`, bilinear resize to `size`, normalize, expand; or, with
//!   [`EvalView::CentreCrop`], resize to `size + pad` and take the centre `size` crop (the
//!   training view without its randomness);
//! - erase: RandomErasing (Zhong et al., AAAI 2020) with torchvision's semantics (up to 10
//!   tries for a box that fits, p = 0.5, value 0), vectorized over the batch, applied after
//!   normalization as the peer does inside EAC.
//!
//! Difference from the peer, on purpose: the peer draws one crop offset per batch (numpy);
//! here every sample gets its own offset (and its own flip), torchvision's `RandomCrop`
//! behaviour. Crop and flip are one pair of `gather`s, no loop over the batch.
//!
//! All randomness comes from torch's generator of the tensor's device, so `tch::manual_seed`
//! makes a run repeatable. `erase` draws its random numbers in the peer's order: on the CPU, with
//! the same seed and shapes, it erases exactly the peer's boxes.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// RandomErasing parameters (torchvision's names and defaults, which the peer uses).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Erase {
    /// Probability of erasing a sample.
    pub p: f64,
    /// Box area as a fraction of the image, uniform in this range.
    pub scale: (f64, f64),
    /// Box aspect ratio h/w, log-uniform in this range.
    pub ratio: (f64, f64),
    /// Fill value (in normalized units: erasing happens after normalization).
    pub value: f64,
}

impl Default for Erase {
    fn default() -> Self {
        Erase { p: 0.5, scale: (0.02, 0.33), ratio: (0.3, 3.3), value: 0.0 }
    }
}

/// Random affine warp of each training face: rescale, shift and rotation, each applied to a sample
/// with probability `p`, black outside the face. The augmentation of IVSA (seed 004: "re-scale,
/// shift horizontally or vertically, rotate", p = 0.5 each) and of the VGG recipe it builds on
/// (Khaireddin & Chen 2021: ±20 % scale, ±20 % shift, ±10°), the defaults here.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Affine {
    /// Probability of each of the three operations, drawn independently per sample.
    pub p: f64,
    /// Scale factor uniform in `[1 - scale, 1 + scale]` (about the centre).
    pub scale: f64,
    /// Shift uniform in `[-shift, shift]` times the side, on each axis.
    pub shift: f64,
    /// Rotation uniform in `[-degrees, degrees]` (about the centre).
    pub degrees: f64,
}

impl Default for Affine {
    fn default() -> Self {
        Affine { p: 0.5, scale: 0.2, shift: 0.2, degrees: 10.0 }
    }
}

impl Affine {
    /// Draws each sample's warp and applies it to float `[B, C, S, S]` images.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let b = x.size()[0];
        let f = (Kind::Float, x.device());
        let on = || Tensor::rand([b], f).lt(self.p).to_kind(Kind::Float);
        let uniform = |r: f64| Tensor::rand([b], f) * (2.0 * r) - r;
        let scale = on() * uniform(self.scale) + 1.0;
        let radians = on() * uniform(self.degrees.to_radians());
        let shift = on();
        let (dx, dy) = (&shift * uniform(self.shift), &shift * uniform(self.shift));
        warp(x, &scale, &radians, &dx, &dy)
    }
}

/// Warps square float `[B, C, S, S]` images: sample `i` scaled by `scale[i]` and rotated by
/// `radians[i]` (clockwise as displayed, rows going down) about the centre, then shifted by
/// `(dx[i], dy[i])` sides (right, down); bilinear, zeros outside. One `affine_grid` +
/// `grid_sample`, as torchvision's tensor `affine`.
pub fn warp(x: &Tensor, scale: &Tensor, radians: &Tensor, dx: &Tensor, dy: &Tensor) -> Tensor {
    let [b, c, h, w] = x.size()[..] else { panic!("warp: expected [B, C, H, W], got {:?}", x.size()) };
    assert_eq!(h, w, "warp: square images only (a rotation in normalized coordinates would shear others)");
    // grid_sample asks, for each output point, where to read: p_in = R(-θ) (p_out - t) / s, in
    // coordinates normalized to [-1, 1] across the side (so a shift of one side is 2).
    let (cos, sin) = (radians.cos() / scale, radians.sin() / scale);
    let (tx, ty) = (dx * 2.0, dy * 2.0);
    let row0 = Tensor::stack(&[&cos, &sin, &(-(&cos * &tx) - &sin * &ty)], 1);
    let row1 = Tensor::stack(&[&(-&sin), &cos, &(&sin * &tx - &cos * &ty)], 1);
    let theta = Tensor::stack(&[row0, row1], 1).to_kind(x.kind());
    let grid = Tensor::affine_grid_generator(&theta, [b, c, h, w], false);
    // interpolation 0 = bilinear, padding 0 = zeros
    x.grid_sampler(&grid, 0, 0, false)
}

/// What validation and the exported model see of a face (`train.eval_view`; written into the
/// ONNX file as `fer.eval_view`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvalView {
    /// The whole face resized to the input size (the peer's and the seeds' validation).
    #[default]
    Resize,
    /// The centre crop of the face resized to `input_size + crop_pad`. Where training never sees
    /// a face's raw pixels (48 px faces at 48 px are always upsampled to 52 before their random
    /// crop), this is the view the network knows: +3.6 points on the 48 px edge model.
    CentreCrop,
}

impl EvalView {
    pub fn name(self) -> &'static str {
        match self {
            EvalView::Resize => "resize",
            EvalView::CentreCrop => "centre_crop",
        }
    }
}

/// Tries per sample to find a box that fits (torchvision: 10).
const ERASE_TRIES: i64 = 10;

/// The augmentation recipe; part of a training config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Model input side.
    pub size: i64,
    /// Train: resize to `size + pad`, then random-crop `size` (peer: 8).
    pub pad: i64,
    /// Train: horizontal flip with p = 0.5.
    pub flip: bool,
    /// Used by [`Augment::erase`]; `None` makes it the identity.
    pub erase: Option<Erase>,
    /// Train: a random rescale / shift / rotation of each face before the crop; `None` = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<Affine>,
    /// Per-channel mean/std of the normalization, after scaling to [0, 1]: one value (all
    /// channels) or `channels` values.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Model input channels: gray input is expanded to 3; rgb input reduced to 1 by luma.
    pub channels: i64,
    /// What [`Augment::eval`] returns.
    #[serde(default)]
    pub eval_view: EvalView,
}

impl Augment {
    /// The peer's recipe at input side `size`: pad 8, flip, erasing, mean = std = 0.5, 3 channels.
    pub fn peer(size: i64) -> Self {
        Augment {
            size,
            pad: 8,
            flip: true,
            erase: Some(Erase::default()),
            affine: None,
            mean: vec![0.5],
            std: vec![0.5],
            channels: 3,
            eval_view: EvalView::Resize,
        }
    }

    /// uint8 `[B, C, H, W]` -> float `[B, C, side, side]` in [0, 1].
    fn scaled(x_u8: &Tensor, side: i64) -> Tensor {
        let x = x_u8.to_kind(Kind::Float) / 255.0;
        let s = x.size();
        if s[2] == side && s[3] == side {
            x
        } else {
            x.upsample_bilinear2d([side, side], false, None, None)
        }
    }

    /// Normalizes and converts to `channels`, as the peer: `(x - mean) / std`, then expand.
    fn finish(&self, x: Tensor) -> Tensor {
        // One value for all channels (or all values equal): normalize with scalars before
        // expanding, the peer's order and the least work. Otherwise expand, then per channel.
        let varies = |v: &[f64]| v.windows(2).any(|w| w[0] != w[1]);
        if varies(&self.mean) || varies(&self.std) {
            self.normalize_per_channel(self.to_channels(x))
        } else {
            let (m, s) = (self.mean.first().copied().unwrap_or(0.0), self.std.first().copied().unwrap_or(1.0));
            self.to_channels((x - m) / s)
        }
    }

    /// Gray -> `channels` by expansion, rgb -> gray by luma.
    fn to_channels(&self, x: Tensor) -> Tensor {
        match (x.size()[1], self.channels) {
            (a, b) if a == b => x,
            (1, n) => x.expand([-1, n, -1, -1], false).contiguous(),
            (3, 1) => {
                // ITU-R 601 luma, as torchvision's rgb_to_grayscale
                let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).to_device(x.device()).view([1, 3, 1, 1]);
                (x * w).sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
            }
            (a, b) => panic!("Augment: cannot turn {a}-channel images into {b} channels"),
        }
    }

    fn normalize_per_channel(&self, x: Tensor) -> Tensor {
        let c = x.size()[1];
        let col = |v: &[f64], what: &str| {
            assert!(v.len() == c as usize, "Augment: {} {what} values for {c} channels", v.len());
            Tensor::from_slice(&v.iter().map(|&f| f as f32).collect::<Vec<_>>())
                .to_device(x.device())
                .view([1, c, 1, 1])
        };
        (&x - col(&self.mean, "mean")) / col(&self.std, "std")
    }

    /// Training view of a batch: uint8 `[B, C, H, W]` -> float `[B, channels, size, size]`,
    /// on the input's device. Per sample: crop offset uniform in `0..=pad` on each axis, flip
    /// with p = 0.5. Does not erase: call [`Augment::erase`] on the result (the peer erases for
    /// EAC only).
    pub fn train(&self, x_u8: &Tensor) -> Tensor {
        let (s, pad) = (self.size, self.pad.max(0));
        let x = Self::scaled(x_u8, s + pad);
        let x = match &self.affine {
            Some(a) => a.apply(&x),
            None => x,
        };
        let [b, c, _, big] = x.size()[..] else { panic!("Augment::train: expected [B, C, H, W], got {:?}", x.size()) };
        if pad == 0 && !self.flip {
            return self.finish(x);
        }
        let dev = x.device();
        let opt = (Kind::Int64, dev);
        let (i, j) = if pad > 0 {
            (Tensor::randint(pad + 1, [b], opt), Tensor::randint(pad + 1, [b], opt))
        } else {
            (Tensor::zeros([b], opt), Tensor::zeros([b], opt))
        };
        let ar = Tensor::arange(s, opt).unsqueeze(0);
        // flipped sample: output column k reads crop column s-1-k
        let cols = if self.flip {
            let flip = Tensor::rand([b], (Kind::Float, dev)).lt(0.5).unsqueeze(1);
            ar.flip([1]).where_self(&flip, &ar)
        } else {
            ar.shallow_clone()
        };
        let rows = (ar + i.unsqueeze(1)).view([b, 1, s, 1]).expand([b, c, s, big], false);
        let cols = (cols + j.unsqueeze(1)).view([b, 1, 1, s]).expand([b, c, s, s], false);
        self.finish(x.gather(2, &rows, false).gather(3, &cols, false))
    }

    /// Evaluation view: uint8 `[B, C, H, W]` -> float `[B, channels, size, size]`.
    pub fn eval(&self, x_u8: &Tensor) -> Tensor {
        let (s, p) = (self.size, self.pad.max(0));
        match self.eval_view {
            EvalView::Resize => self.finish(Self::scaled(x_u8, s)),
            // Offsets as the centre view of `ten_crop`.
            EvalView::CentreCrop => self.finish(Self::scaled(x_u8, s + p)).narrow(2, p / 2, s).narrow(3, p / 2, s),
        }
    }

    /// Ten-crop views (IVSA's evaluation, seed 004): the batch resized to `size + pad` as in
    /// training, its four corner crops and centre crop of `size` (centre offset `pad / 2`), and
    /// their horizontal flips; 10 tensors `[B, channels, size, size]`.
    pub fn ten_crop(&self, x_u8: &Tensor) -> Vec<Tensor> {
        let (s, p) = (self.size, self.pad.max(0));
        let x = self.finish(Self::scaled(x_u8, s + p));
        let crops: Vec<Tensor> = [(0, 0), (0, p), (p, 0), (p, p), (p / 2, p / 2)]
            .iter()
            .map(|&(i, j)| x.narrow(2, i, s).narrow(3, j, s))
            .collect();
        let flips: Vec<Tensor> = crops.iter().map(|c| c.flip([3])).collect();
        crops.into_iter().chain(flips).collect()
    }

    /// Random erasing of a normalized float batch `[B, C, H, W]`: per sample, with probability
    /// `p`, one box (the first of 10 random draws that fits) is set to `value` on all channels.
    /// The peer's `erase`, draw for draw.
    pub fn erase(&self, x: &Tensor) -> Tensor {
        let Some(e) = &self.erase else { return x.shallow_clone() };
        let [n, _, h, w] = x.size()[..] else { panic!("Augment::erase: expected [B, C, H, W], got {:?}", x.size()) };
        let dev = x.device();
        let f = (Kind::Float, dev);
        let area = Tensor::empty([n, ERASE_TRIES], f).uniform_(e.scale.0, e.scale.1) * (h * w) as f64;
        let r = Tensor::empty([n, ERASE_TRIES], f).uniform_(e.ratio.0.ln(), e.ratio.1.ln()).exp();
        let bh = (&area * &r).sqrt().round();
        let bw = (&area / &r).sqrt().round();
        let ok = bh.lt(h as f64).logical_and(&bw.lt(w as f64));
        let first = ok
            .to_kind(Kind::Float)
            .argmax(1, false)
            .where_self(&ok.any_dim(1, false), &Tensor::full([n], -1i64, (Kind::Int64, dev)));
        let sel = first.clamp_min(0).unsqueeze(1);
        let bh = bh.gather(1, &sel, false).squeeze_dim(1);
        let bw = bw.gather(1, &sel, false).squeeze_dim(1);
        let i = (Tensor::rand([n], f) * (-&bh + (h + 1) as f64)).floor();
        let j = (Tensor::rand([n], f) * (-&bw + (w + 1) as f64)).floor();
        let apply = first.ge(0i64).logical_and(&Tensor::rand([n], f).lt(e.p));
        let span = |len: i64, start: &Tensor, size: &Tensor| {
            let at = Tensor::arange(len, (Kind::Int64, dev)).unsqueeze(0);
            at.ge_tensor(&start.unsqueeze(1)).logical_and(&at.lt_tensor(&(start + size).unsqueeze(1)))
        };
        let m = span(h, &i, &bh)
            .unsqueeze(2)
            .logical_and(&span(w, &j, &bw).unsqueeze(1))
            .logical_and(&apply.view([n, 1, 1]));
        x.masked_fill(&m.unsqueeze(1), e.value)
    }
}

/// The same values with channels-last strides (`[N, C, H, W]` stored as NHWC), which PyTorch's
/// `contiguous(memory_format=torch.channels_last)` gives and tch 0.24 has no call for. A conv whose
/// input is channels-last runs its channels-last kernels and hands that layout on to the rest of
/// the network (oneDNN on the CPU, cuDNN on the GPU).
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Serializes tests that seed torch's global generator.
    fn seeded(seed: i64) -> std::sync::MutexGuard<'static, ()> {
        let g = crate::data::TORCH_RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed);
        g
    }

    /// The tests run on the GPU where there is one (all but the CPU-generator parity test).
    fn dev() -> Device {
        Device::cuda_if_available()
    }

    fn u8s(v: &[u8], shape: [i64; 4]) -> Tensor {
        Tensor::from_slice(v).view(shape).to_device(dev())
    }

    fn floats(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(&t.flatten(0, -1).to_device(Device::Cpu)).unwrap()
    }

    #[test]
    fn eval_constant_and_bilinear() {
        let a = Augment::peer(5);
        let out = a.eval(&Tensor::full([2, 1, 3, 3], 51, (Kind::Uint8, dev())));
        assert_eq!(out.size(), [2, 3, 5, 5]);
        let want = (51.0 / 255.0 - 0.5) / 0.5;
        assert!(floats(&out).iter().all(|&v| (v as f64 - want).abs() < 1e-6));

        // 2x2 -> 3x3, align_corners = false: output k samples source (k + 0.5) * 2/3 - 0.5,
        // i.e. rows/cols at 0 (clamped), 0.5, 1 (clamped); then (v/255 - 0.5) / 0.5.
        // Same numbers as the peer's prep(x, False) on torch 2.11.
        let a = Augment { channels: 1, ..Augment::peer(3) };
        let out = floats(&a.eval(&u8s(&[0, 64, 128, 255], [1, 1, 2, 2])));
        let px = |v: f64| ((v / 255.0 - 0.5) / 0.5) as f32;
        let want = [px(0.0), px(32.0), px(64.0), px(64.0), px(111.75), px(159.5), px(128.0), px(191.5), px(255.0)];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() <= 1e-6 + 1e-6 * w.abs(), "{out:?} vs {want:?}");
        }

        // per-channel stats on rgb; rgb -> 1 channel by luma
        let a = Augment { channels: 3, mean: vec![0.0, 0.5, 1.0], std: vec![1.0, 0.5, 0.25], ..Augment::peer(1) };
        let out = floats(&a.eval(&u8s(&[255, 255, 255], [1, 3, 1, 1])));
        assert_eq!(out, [1.0, 1.0, 0.0]);
        let a = Augment { channels: 1, mean: vec![0.0], std: vec![1.0], ..Augment::peer(1) };
        let out = floats(&a.eval(&u8s(&[255, 0, 0], [1, 3, 1, 1])));
        assert!((out[0] - 0.299).abs() < 1e-6);
    }

    /// 12x12 images whose pixel (y, x) is 12 y + x (+ 144 n for sample n, mod 256).
    fn grid(b: i64) -> Tensor {
        let v: Vec<u8> = (0..b * 144).map(|k| (k % 144 + 7 * (k / 144)) as u8).collect();
        u8s(&v, [b, 1, 12, 12])
    }

    /// Recovers the uint8 pixel values from a train() output with mean = std = 0.5.
    fn pixels(t: &Tensor) -> Tensor {
        ((t * 0.5 + 0.5) * 255.0).round().to_kind(Kind::Int64)
    }

    #[test]
    fn train_crops_per_sample_and_flips_half() {
        let _g = seeded(7);
        let b = 64;
        let x = grid(b);
        // size + pad = 12: no resize, so every output is an exact crop
        let a = Augment { size: 8, pad: 4, channels: 1, ..Augment::peer(8) };
        let out = a.train(&x).to_device(Device::Cpu);
        assert_eq!(out.size(), [b, 1, 8, 8]);
        assert!(out.min().double_value(&[]) >= -1.0 && out.max().double_value(&[]) <= 1.0);
        let got = pixels(&out);
        let src = x.to_device(Device::Cpu).to_kind(Kind::Int64);
        let (mut offsets, mut flipped) = (std::collections::HashSet::new(), 0);
        for n in 0..b {
            let g = got.get(n).get(0);
            let found = (0..=4).flat_map(|i| (0..=4).map(move |j| (i, j))).find_map(|(i, j)| {
                let crop = src.get(n).get(0).narrow(0, i, 8).narrow(1, j, 8);
                if g.equal(&crop) {
                    Some((i, j, false))
                } else if g.equal(&crop.flip([1])) {
                    Some((i, j, true))
                } else {
                    None
                }
            });
            let (i, j, f) = found.unwrap_or_else(|| panic!("sample {n} is not a crop of its input"));
            offsets.insert((i, j));
            flipped += f as usize;
        }
        assert!(offsets.len() >= 10, "crop offsets barely vary: {offsets:?}");
        assert!((16..=48).contains(&flipped), "{flipped} of {b} flipped");

        // flip alone, large batch: about half
        let a = Augment { size: 12, pad: 0, channels: 1, ..Augment::peer(12) };
        let x = grid(1).repeat([1000, 1, 1, 1]);
        let out = pixels(&a.train(&x).to_device(Device::Cpu));
        let flipped = out.select(3, 0).select(2, 0).select(1, 0).eq(11i64).sum(Kind::Int64).int64_value(&[]);
        let kept = out.select(3, 0).select(2, 0).select(1, 0).eq(0i64).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(flipped + kept, 1000);
        assert!((440..=560).contains(&flipped), "{flipped} of 1000 flipped");

        // the peer's recipe: 48x48 gray -> resize 120, crop 112, 3 channels
        let out = Augment::peer(112).train(&Tensor::randint(256, [4, 1, 48, 48], (Kind::Uint8, dev())));
        assert_eq!(out.size(), [4, 3, 112, 112]);
        assert!(out.get(0).get(0).equal(&out.get(0).get(2)));
    }

    #[test]
    fn erase_boxes() {
        let _g = seeded(1);
        let a = Augment::peer(32);
        let (b, h, w) = (400, 32, 32);
        let out = a.erase(&Tensor::ones([b, 3, h, w], (Kind::Float, dev()))).to_device(Device::Cpu);
        let zero = out.eq(0.0);
        // same box on every channel, everything else untouched
        assert!(zero.get(0).get(0).equal(&zero.get(0).get(2)));
        assert!(out.eq(0.0).logical_or(&out.eq(1.0)).all().int64_value(&[]) == 1);
        let mut erased = 0;
        for n in 0..b {
            let m = zero.get(n).get(0);
            let cnt = m.sum(Kind::Int64).int64_value(&[]);
            if cnt == 0 {
                continue;
            }
            erased += 1;
            let rows = m.any_dim(1, false).nonzero().view([-1]);
            let cols = m.any_dim(0, false).nonzero().view([-1]);
            let (bh, bw) = (rows.size()[0], cols.size()[0]);
            assert_eq!(cnt, bh * bw, "sample {n}: erased pixels are not a rectangle");
            assert!(bh < h && bw < w);
            let frac = cnt as f64 / (h * w) as f64;
            assert!((0.01..=0.40).contains(&frac), "sample {n}: area fraction {frac}");
        }
        assert!((160..=240).contains(&erased), "{erased} of {b} erased");
        assert!(Augment { erase: None, ..a }.erase(&out).equal(&out));
    }

    /// Exact draws from torch's global generator: checked alone (`crate::data::run_alone`).
    #[test]
    fn erase_matches_peer_draws() {
        crate::data::run_alone("augment::tests::erase_matches_peer_draws_alone");
    }

    #[test]
    #[ignore = "run alone, in its own process, by erase_matches_peer_draws"]
    fn erase_matches_peer_draws_alone() {
        // torch 2.11, CPU: torch.manual_seed(0); y = erase(torch.ones(8, 1, 12, 16)) with the peer's
        // erase; per sample the erased (row0, row1, col0, col1) box or None.
        let want =
            [Some((4, 7, 0, 10)), Some((2, 8, 6, 10)), None, Some((0, 4, 3, 9)), None, Some((3, 9, 6, 14)), None, None];
        let _g = seeded(0);
        let out = Augment::peer(12).erase(&Tensor::ones([8, 1, 12, 16], (Kind::Float, Device::Cpu)));
        for (n, want) in want.iter().enumerate() {
            let m = out.get(n as i64).get(0).eq(0.0);
            let rows = Vec::<i64>::try_from(&m.any_dim(1, false).nonzero().view([-1])).unwrap();
            let cols = Vec::<i64>::try_from(&m.any_dim(0, false).nonzero().view([-1])).unwrap();
            let got = rows.first().map(|&r0| (r0, rows[rows.len() - 1] + 1, cols[0], cols[cols.len() - 1] + 1));
            assert_eq!(got, *want, "sample {n}");
        }
    }

    #[test]
    fn config_round_trips() {
        let a = Augment::peer(112);
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Augment>(&s).unwrap(), a);
        assert!(serde_yaml::from_str::<Augment>(
            "size: 1\npad: 0\nflip: true\nerase: null\nmean: [0.5]\nstd: [0.5]\nchannels: 3\ncrop: 2\n"
        )
        .is_err());
    }

    #[test]
    fn ten_crop_views_are_the_corners_centre_and_flips() {
        let aug = Augment { size: 4, pad: 2, flip: false, erase: None, affine: None, mean: vec![0.0], std: vec![1.0], channels: 1, eval_view: EvalView::Resize };
        // A 6x6 image at size + pad = 6: no resampling, so the crops are exact sub-windows.
        let img = Tensor::arange(36, (Kind::Uint8, tch::Device::Cpu)).view([1, 1, 6, 6]);
        let views = aug.ten_crop(&img);
        assert_eq!(views.len(), 10);
        let full = aug.finish(Augment::scaled(&img, 6));
        for (v, (i, j)) in views.iter().zip([(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]) {
            assert_eq!(v.size(), [1, 1, 4, 4]);
            let want = full.narrow(2, i, 4).narrow(3, j, 4);
            assert!(v.allclose(&want, 1e-6, 1e-6, false), "crop at ({i}, {j})");
        }
        for k in 0..5 {
            assert!(views[k + 5].allclose(&views[k].flip([3]), 1e-6, 1e-6, false), "flip of view {k}");
        }
        // The centre-crop eval view is the centre view; the resize view is the whole image at 4x4.
        let centre = Augment { eval_view: EvalView::CentreCrop, ..aug.clone() };
        assert!(centre.eval(&img).equal(&views[4]));
        assert!(aug.eval(&img).allclose(&aug.finish(Augment::scaled(&img, 4)), 1e-6, 1e-6, false));
        assert!(!aug.eval(&img).allclose(&views[4], 1e-3, 1e-3, false));
    }

    #[test]
    fn channels_last_keeps_values_and_strides_nhwc() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).reshape([2, 3, 4, 5]);
        let y = channels_last(&x);
        assert_eq!(y.size(), [2, 3, 4, 5]);
        assert_eq!(y.stride(), [60, 1, 15, 3]);
        assert_eq!(y, x);
    }

    /// Constant per-sample parameters for `warp`.
    fn per_sample(v: f32, b: i64) -> Tensor {
        Tensor::full([b], v as f64, (Kind::Float, dev()))
    }

    #[test]
    fn warp_is_exact_on_the_pixel_grid() {
        let x = Tensor::rand([2, 1, 8, 8], (Kind::Float, dev()));
        let (one, zero) = (per_sample(1.0, 2), per_sample(0.0, 2));
        // identity
        let same = warp(&x, &one, &zero, &zero, &zero);
        assert!(same.allclose(&x, 1e-5, 1e-6, false));
        // a quarter turn maps pixel centres onto pixel centres: clockwise as displayed
        let quarter = warp(&x, &one, &per_sample(std::f32::consts::FRAC_PI_2, 2), &zero, &zero);
        assert!(quarter.allclose(&x.rot90(-1, [2, 3]), 1e-5, 1e-5, false), "{quarter}");
        // a shift of 2 of 8 pixels right and 1 down, black where nothing comes from
        let shifted = warp(&x, &one, &zero, &per_sample(0.25, 2), &per_sample(0.125, 2));
        let want = x.narrow(2, 0, 7).narrow(3, 0, 6).constant_pad_nd([2, 0, 1, 0]);
        assert!(shifted.allclose(&want, 1e-5, 1e-5, false), "{shifted}\n{want}");
        // scale 2 about the centre: the middle 4x4 block is spread over the image, bilinearly; a
        // constant image stays constant wherever the source is inside
        let c = Tensor::full([1, 1, 8, 8], 0.7, (Kind::Float, dev()));
        let zoomed = warp(&c, &per_sample(2.0, 1), &per_sample(0.0, 1), &per_sample(0.0, 1), &per_sample(0.0, 1));
        assert!(zoomed.allclose(&c, 1e-5, 1e-5, false));
    }

    #[test]
    fn affine_draws_per_sample_and_respects_p() {
        let _g = seeded(3);
        let x = Tensor::rand([64, 1, 16, 16], (Kind::Float, dev())) + 0.1;
        let off = Affine { p: 0.0, ..Affine::default() }.apply(&x);
        assert!(off.allclose(&x, 1e-5, 1e-6, false), "p = 0 must leave every face alone");
        let on = Affine { p: 1.0, ..Affine::default() }.apply(&x);
        let changed = (&on - &x).abs().amax([1i64, 2, 3].as_slice(), false).gt(1e-3).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(changed, 64, "p = 1 warps every face");
        let half = Affine { p: 0.5, ..Affine::default() }.apply(&x);
        let changed = (&half - &x).abs().amax([1i64, 2, 3].as_slice(), false).gt(1e-3).sum(Kind::Int64).int64_value(&[]);
        // P(a face untouched) = 0.5³ = 1/8: about 56 of 64 changed
        assert!((44..=63).contains(&changed), "{changed} of 64 changed at p = 0.5");
        // the train view applies it before the crop: a fully warped batch differs from the plain one
        let a = Augment { size: 16, pad: 0, flip: false, erase: None, channels: 1, ..Augment::peer(16) };
        let u8s = Tensor::randint(256, [8, 1, 16, 16], (Kind::Uint8, dev()));
        let warped = Augment { affine: Some(Affine { p: 1.0, ..Affine::default() }), ..a.clone() }.train(&u8s);
        assert!(!warped.allclose(&a.train(&u8s), 1e-3, 1e-3, false));
    }
}
