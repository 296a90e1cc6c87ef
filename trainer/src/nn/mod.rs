//! Trainable blocks. Each block lives in one file with both of its forms: the tch `forward_t` used
//! for training and the `emit` that writes the same computation into an ONNX graph, so the two cannot
//! drift apart unnoticed (the parity tests in `tests/` run both on the same weights).
//!
//! Parameters are named by their VarStore path (`layer1.0.conv1.weight`), which is also the
//! torchvision state-dict key and the ONNX initializer name.

mod conv_bn;
mod linear;

pub use conv_bn::{Act, ConvBnAct};
pub use linear::LinearHead;

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
