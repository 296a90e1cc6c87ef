//! Conv2d → BatchNorm2d → activation, torchvision's `Conv2dNormActivation` and ResNet's conv/bn
//! pairs. Exported in eval form with the BN folded into the conv (exact in eval mode):
//! `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`.
//!
//! The way back, for training on from an exported file ([`crate::onnx_init`]): `w'` becomes the
//! conv's weight and the BN is set so that it adds `b'` in eval mode *and* normalises like the
//! original in training mode. That needs the conv output's per-channel mean `m` and variance `v`
//! on real faces, which [`Recorder`] collects in one eval pass: `μ = m`, `σ² = v`, `γ = √(v+ε)`,
//! `β = m + b'` give `γ(y−μ)/√(σ²+ε)+β = y + b'` exactly, and batch statistics near `(m, v)` give
//! nearly that in training too. (`γ = 1`, `β = b'`, `μ = 0`, `σ² = 1−ε` is exact in eval mode alone:
//! training mode would then rescale every channel to unit variance and change the network.)

use super::{path_name, Block};
use fer_export::GraphBuilder;
use std::cell::RefCell;
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    Relu6,
    /// Exact (erf) GELU; opset 17 has no `Gelu` op, so it is emitted as `0.5·x·(1 + erf(x/√2))`.
    Gelu,
}

impl Act {
    /// Applies the activation, in place for ReLU / ReLU6 (as torchvision's `inplace=True`: one
    /// memory pass less forward and backward): `xs` must be a fresh value nothing else reads.
    pub fn forward(self, mut xs: Tensor) -> Tensor {
        match self {
            Act::None => xs,
            Act::Relu => xs.relu_(),
            Act::Relu6 => xs.relu6_(),
            Act::Gelu => xs.gelu("none"),
        }
    }

    pub fn emit(self, g: &mut GraphBuilder, x: &str, hint: &str) -> String {
        match self {
            Act::None => x.to_string(),
            Act::Relu => g.relu(x, hint),
            Act::Relu6 => g.clip(x, 0.0, 6.0, hint),
            Act::Gelu => {
                let sqrt2 = g.const_f32(&format!("{hint}/sqrt2"), &[], &[std::f32::consts::SQRT_2]);
                let half = g.const_f32(&format!("{hint}/half"), &[], &[0.5]);
                let one = g.const_f32(&format!("{hint}/one"), &[], &[1.0]);
                let scaled = g.op("Div", &[x, &sqrt2], &[], &format!("{hint}/div"));
                let erf = g.op("Erf", &[&scaled], &[], &format!("{hint}/erf"));
                let erf1 = g.add(&erf, &one, &format!("{hint}/erf1"));
                let xh = g.mul(x, &half, &format!("{hint}/half_x"));
                g.mul(&xh, &erf1, hint)
            }
        }
    }
}

#[derive(Debug)]
pub struct ConvBnAct {
    pub conv: nn::Conv2D,
    pub bn: nn::BatchNorm,
    act: Act,
    /// `[kh, kw]`: square for most blocks, 1x3 / 3x1 in DAN's spatial unit.
    kernel: [i64; 2],
    stride: i64,
    groups: i64,
    /// BN epsilon (tch keeps its config private, so we remember it for folding).
    eps: f64,
    /// Where the folded weights go in ONNX: the conv's own path.
    conv_name: String,
    /// The BN's path (its variables' prefix), for unfolding.
    bn_name: String,
}

impl ConvBnAct {
    /// A bias-free `kernel`×`kernel` conv with padding `(kernel-1)/2` at `conv_p`, its BN at `bn_p`.
    /// Init as torchvision: conv Kaiming-normal (fan_out, ReLU), BN γ=1, β=0.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conv_p: nn::Path,
        bn_p: nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        groups: i64,
        act: Act,
    ) -> Self {
        Self::rect(conv_p, bn_p, c_in, c_out, [kernel, kernel], stride, groups, act)
    }

    /// As [`new`](Self::new) with a `kh`×`kw` kernel, padded by `((kh-1)/2, (kw-1)/2)` ("same" for
    /// odd kernels at stride 1).
    #[allow(clippy::too_many_arguments)]
    pub fn rect(
        conv_p: nn::Path,
        bn_p: nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: [i64; 2],
        stride: i64,
        groups: i64,
        act: Act,
    ) -> Self {
        let conv_name = path_name(&conv_p);
        let bn_name = path_name(&bn_p);
        let cfg = nn::ConvConfigND::<[i64; 2]> {
            stride: [stride, stride],
            padding: [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2],
            dilation: [1, 1],
            groups,
            bias: false,
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Normal,
                fan: nn::init::FanInOut::FanOut,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            ..Default::default()
        };
        let conv = nn::conv(conv_p, c_in, c_out, kernel, cfg);
        let bn_cfg = nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let eps = bn_cfg.eps;
        let bn = nn::batch_norm2d(bn_p, c_out, bn_cfg);
        ConvBnAct { conv, bn, act, kernel, stride, groups, eps, conv_name, bn_name }
    }

    /// The BN-folded conv weight and bias (eval form).
    pub fn folded(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let gamma = self.bn.ws.as_ref().expect("affine BN").detach();
            let beta = self.bn.bs.as_ref().expect("affine BN").detach();
            let scale = &gamma / (self.bn.running_var.detach() + self.eps).sqrt();
            let w = self.conv.ws.detach() * scale.reshape([-1, 1, 1, 1]);
            let b = beta - self.bn.running_mean.detach() * &scale;
            (w, b)
        })
    }
}

impl Block for ConvBnAct {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = xs.apply(&self.conv);
        Recorder::observe(self, &y);
        self.act.forward(y.apply_t(&self.bn, train))
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let (w, b) = self.folded();
        let w = super::emit_tensor(g, &format!("{}.weight", self.conv_name), &w)?;
        let b = super::emit_tensor(g, &format!("{}.bias", self.conv_name), &b)?;
        let k = self.kernel;
        let p = [(k[0] - 1) / 2, (k[1] - 1) / 2];
        let y = g.conv(x, &w, Some(&b), k, [self.stride, self.stride], p, self.groups, &self.conv_name);
        Ok(self.act.emit(g, &y, &format!("{}/act", self.conv_name)))
    }
}

/// What a [`Recorder`] saw of one conv + BN: the names and ε that unfolding needs, and the
/// per-channel sums of the conv's output (before the BN) over every forward pass it recorded.
#[derive(Debug)]
pub struct Observed {
    /// The conv's path: its folded weights in ONNX are `<conv_name>.weight` / `.bias`.
    pub conv_name: String,
    /// The BN's path.
    pub bn_name: String,
    pub eps: f64,
    /// float64 `[C]`: Σy and Σy² per channel, and how many values each sums.
    sum: Tensor,
    sum_sq: Tensor,
    count: i64,
}

impl Observed {
    /// Per-channel mean and (population) variance of the conv's output, float32 `[C]`.
    pub fn mean_var(&self) -> (Tensor, Tensor) {
        let n = self.count.max(1) as f64;
        let mean = &self.sum / n;
        let var = (&self.sum_sq / n - &mean * &mean).clamp_min(0.0);
        (mean.to_kind(Kind::Float), var.to_kind(Kind::Float))
    }
}

thread_local! {
    static RECORDING: RefCell<Option<Vec<Observed>>> = const { RefCell::new(None) };
}

/// While a `Recorder` lives, every [`ConvBnAct`] forward on this thread adds its conv output's
/// per-channel statistics to it (the model code stays as it is: no hooks to thread through every
/// block). One per thread at a time; [`Recorder::finish`] returns what was seen, in the order the
/// blocks first ran. Dropping it unfinished stops the recording too.
pub struct Recorder(());

impl Recorder {
    pub fn start() -> Recorder {
        RECORDING.with(|r| {
            let mut r = r.borrow_mut();
            assert!(r.is_none(), "one conv_bn::Recorder per thread at a time");
            *r = Some(Vec::new());
        });
        Recorder(())
    }

    pub fn finish(self) -> Vec<Observed> {
        RECORDING.with(|r| r.borrow_mut().take()).unwrap_or_default()
    }

    fn observe(block: &ConvBnAct, y: &Tensor) {
        RECORDING.with(|r| {
            let mut r = r.borrow_mut();
            let Some(seen) = r.as_mut() else { return };
            let y = y.detach().to_kind(Kind::Double);
            let (sum, sum_sq) = (y.sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double), (&y * &y).sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double));
            let count = y.numel() as i64 / y.size()[1];
            match seen.iter_mut().find(|o| o.conv_name == block.conv_name) {
                Some(o) => {
                    o.sum += sum;
                    o.sum_sq += sum_sq;
                    o.count += count;
                }
                None => seen.push(Observed { conv_name: block.conv_name.clone(), bn_name: block.bn_name.clone(), eps: block.eps, sum, sum_sq, count }),
            }
        });
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        RECORDING.with(|r| r.borrow_mut().take());
    }
}

/// The BN variables that make a conv with folded weights `w'` and folded bias `b'` compute what
/// the exported graph computes (module docs), given its output's per-channel `mean` and `var`:
/// `(weight, bias, running_mean, running_var)`, each `[C]`.
pub fn unfolded_bn(folded_bias: &Tensor, mean: &Tensor, var: &Tensor, eps: f64) -> [Tensor; 4] {
    [(var + eps).sqrt(), mean + folded_bias, mean.copy(), var.copy()]
}

/// The BN variables that make the BN add `b'` in eval mode before any statistics are known:
/// γ 1, β `b'`, μ 0, σ² 1−ε (the starting point of the recording pass).
pub fn identity_bn(folded_bias: &Tensor, eps: f64) -> [Tensor; 4] {
    let ones = folded_bias.ones_like();
    [ones.copy(), folded_bias.copy(), folded_bias.zeros_like(), ones * (1.0 - eps)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unfolding a folded conv + BN gives back a block that computes the same in eval mode and,
    /// on the batch its statistics came from, in training mode too; the identity BN (eval-exact
    /// only) does not survive training mode, which is why the recording pass exists.
    #[test]
    fn unfolding_keeps_eval_and_training_outputs() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let a = ConvBnAct::new(vs.root() / "c", vs.root() / "b", 3, 8, 3, 1, 1, Act::None);
        tch::no_grad(|| {
            a.bn.ws.as_ref().unwrap().shallow_clone().copy_(&(Tensor::rand([8], (Kind::Float, tch::Device::Cpu)) * 2.0 + 0.1));
            a.bn.bs.as_ref().unwrap().shallow_clone().copy_(&Tensor::randn([8], (Kind::Float, tch::Device::Cpu)));
        });
        let x = Tensor::randn([16, 3, 10, 10], (Kind::Float, tch::Device::Cpu));
        // Running statistics from training-mode passes, as a trained model has them.
        for _ in 0..100 {
            let _ = a.forward_t(&x, true);
        }
        let (want_eval, want_train) = (a.forward_t(&x, false), a.forward_t(&x, true));
        let (w, b) = a.folded();

        let vs2 = nn::VarStore::new(tch::Device::Cpu);
        let u = ConvBnAct::new(vs2.root() / "c", vs2.root() / "b", 3, 8, 3, 1, 1, Act::None);
        let set = |bn: [Tensor; 4]| {
            tch::no_grad(|| {
                u.bn.ws.as_ref().unwrap().shallow_clone().copy_(&bn[0]);
                u.bn.bs.as_ref().unwrap().shallow_clone().copy_(&bn[1]);
                u.bn.running_mean.shallow_clone().copy_(&bn[2]);
                u.bn.running_var.shallow_clone().copy_(&bn[3]);
            })
        };
        tch::no_grad(|| u.conv.ws.shallow_clone().copy_(&w));
        set(identity_bn(&b, u.eps));
        let identity_eval = u.forward_t(&x, false);
        assert!(identity_eval.allclose(&want_eval, 1e-4, 1e-4, false));
        // Identity BN in training mode: every channel at unit variance, not the model's.
        set(identity_bn(&b, u.eps));
        let off = (u.forward_t(&x, true) - &want_train).abs().max().double_value(&[]);
        assert!(off > 0.1, "identity BN in training mode is off by only {off}");

        set(identity_bn(&b, u.eps));
        let rec = Recorder::start();
        let _ = u.forward_t(&x, false);
        let seen = rec.finish();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].conv_name.as_str(), seen[0].bn_name.as_str()), ("c", "b"));
        let (mean, var) = seen[0].mean_var();
        set(unfolded_bn(&b, &mean, &var, seen[0].eps));
        let got_eval = u.forward_t(&x, false);
        let diff = (&got_eval - &want_eval).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "eval differs by {diff}");
        // Training mode on the same batch: its batch statistics are the recorded ones (up to the
        // running variance's n/(n−1), which the original's folded weights carry).
        let diff = (u.forward_t(&x, true) - &want_train).abs().max().double_value(&[]);
        assert!(diff < 1e-2, "training mode differs by {diff}");
    }

    #[test]
    fn nothing_is_recorded_without_a_recorder() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let a = ConvBnAct::new(vs.root() / "c", vs.root() / "b", 3, 4, 1, 1, 1, Act::Relu);
        let _ = a.forward_t(&Tensor::ones([1, 3, 2, 2], (Kind::Float, tch::Device::Cpu)), false);
        let rec = Recorder::start();
        assert!(rec.finish().is_empty());
        // Dropped unfinished: a new one can start.
        drop(Recorder::start());
        let _ = Recorder::start().finish();
    }
}
