//! Trainable blocks. Each block lives in one file with both of its forms: the tch `forward_t` used
//! for training and the `emit` that writes the same computation into an ONNX graph, so the two cannot
//! drift apart unnoticed (the parity tests in `tests/` run both on the same weights).
//!
//! Parameters are named by their VarStore path (`layer1.0.conv1.weight`), which is also the
//! torchvision state-dict key and the ONNX initializer name.

mod attention;
mod conv_bn;
mod dan;
mod linear;
mod norm1d;
mod reliability;
mod se;
mod transformer;
mod window_cross;

pub use attention::{AttentionKind, ConvAttention};
pub use conv_bn::{identity_bn, unfolded_bn, Act, ConvBnAct, Observed, Recorder};
pub use dan::{CrossAttentionHead, DanHead};
pub use linear::{Fc3Head, LinearHead};
pub(crate) use linear::cam_of;
pub use norm1d::BatchNorm1d;
pub use reliability::{balance as rb_balance, confidence as rb_confidence, RbConfig, RbHead, RbOutput};
pub use se::SqueezeExcite;
pub use transformer::{EncoderBlock, LayerNorm, Mlp, SelfAttention, TokenLinear};
pub use window_cross::WindowCrossAttention;

use fer_export::GraphBuilder;
use tch::{nn, Kind, Tensor};

/// A block that trains in tch and exports to ONNX.
pub trait Block: std::fmt::Debug + Send {
    /// # Shapes
    /// `[N, C_in, H, W] -> [N, C_out, H', W']` for feature blocks.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor;
    /// Appends this block's eval-mode computation to `g`, reading value `x`; returns the output value.
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String>;
}

/// The dotted name of a VarStore path (`layer1.0.conv1`).
pub fn path_name(p: &nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
}

/// Copies a tensor's values out as float32, row-major (for ONNX initializers).
pub fn to_vec_f32(t: &Tensor) -> Vec<f32> {
    let t = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().flatten(0, -1);
    Vec::<f32>::try_from(&t).expect("a contiguous float tensor converts to Vec<f32>")
}

/// Adds `t` as an initializer named `name`.
pub fn emit_tensor(g: &mut GraphBuilder, name: &str, t: &Tensor) -> fer_export::Result<String> {
    g.initializer(name, &t.size(), &to_vec_f32(t))
}

/// PyTorch's default `nn.Linear` init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
/// (tch's default weight init differs; matching PyTorch keeps our runs comparable to the peer's).
pub fn torch_linear(p: nn::Path, fan_in: i64, fan_out: i64) -> nn::Linear {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Uniform { lo: -bound, up: bound },
        bs_init: Some(nn::Init::Uniform { lo: -bound, up: bound }),
        bias: true,
    };
    nn::linear(p, fan_in, fan_out, cfg)
}

/// Emits an `nn::Linear` (`[out, in]` weight, optional bias) as one `Gemm` named `name`.
pub fn emit_linear(g: &mut GraphBuilder, x: &str, lin: &nn::Linear, name: &str) -> fer_export::Result<String> {
    let w = emit_tensor(g, &format!("{name}.weight"), &lin.ws)?;
    let b = match &lin.bs {
        Some(b) => Some(emit_tensor(g, &format!("{name}.bias"), b)?),
        None => None,
    };
    Ok(g.linear(x, &w, b.as_deref(), name))
}

/// Emits a stride-1 `nn::Conv2D` with "same" padding for its (odd) kernel, weights under `name`.
pub fn emit_conv(g: &mut GraphBuilder, x: &str, conv: &nn::Conv2D, name: &str) -> fer_export::Result<String> {
    let size = conv.ws.size();
    let kernel = [size[2], size[3]];
    let w = emit_tensor(g, &format!("{name}.weight"), &conv.ws)?;
    let b = match &conv.bs {
        Some(b) => Some(emit_tensor(g, &format!("{name}.bias"), b)?),
        None => None,
    };
    Ok(g.conv(x, &w, b.as_deref(), kernel, [1, 1], [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2], 1, name))
}

/// A stride-1 conv with bias and "same" padding, PyTorch's default init (the 1x1 convs of SE and
/// attention MLPs).
pub fn torch_conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, bias: bool) -> nn::Conv2D {
    let cfg = nn::ConvConfig { padding: (kernel - 1) / 2, bias, ..Default::default() };
    nn::conv2d(p, c_in, c_out, kernel, cfg)
}

/// A `k`×`k` conv of stride `k` with bias, no padding (a patch embedding), PyTorch's default init.
pub fn patch_conv(p: nn::Path, c_in: i64, c_out: i64, k: i64) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, k, nn::ConvConfig { stride: k, bias: true, ..Default::default() })
}

/// The L2 norm of each `H×W` map: `[N, C, H, W]` → `[N, C]` (`[N, C, 1, 1]` with `keepdim`).
/// Its gradient at an all-zero map is zero, not NaN (libtorch's vector-norm backward).
pub fn spatial_l2(x: &Tensor, keepdim: bool) -> Tensor {
    let n = x.flatten(2, 3).linalg_norm(2.0, [-1i64].as_slice(), false, None::<Kind>);
    if keepdim {
        n.unsqueeze(-1).unsqueeze(-1)
    } else {
        n
    }
}

/// Asserts that every trainable variable of `vs` (BN running statistics and names starting with
/// one of `skip` aside) received a finite, non-zero gradient.
#[cfg(test)]
pub(crate) fn assert_all_have_gradients(vs: &nn::VarStore, skip: &[&str]) {
    for (name, t) in vs.variables() {
        if name.contains("running") || skip.iter().any(|s| name.starts_with(s)) {
            continue;
        }
        let g = t.grad().abs().sum(Kind::Float).double_value(&[]);
        assert!(g > 0.0 && g.is_finite(), "{name}: gradient {g}");
    }
}
