//! Conv2d → BatchNorm2d → activation, torchvision's `Conv2dNormActivation` and ResNet's conv/bn
//! pairs. Exported in eval form with the BN folded into the conv (exact in eval mode):
//! `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`.

use super::{path_name, Block};
use fer_export::GraphBuilder;
use tch::{nn, Tensor};

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
        ConvBnAct { conv, bn, act, kernel, stride, groups, eps, conv_name }
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
        self.act.forward(xs.apply(&self.conv).apply_t(&self.bn, train))
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
