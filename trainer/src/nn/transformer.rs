//! Transformer parts of GReFEL's feature extractor (seed 002, §3.1): layer norm, a linear map on
//! tokens, the GELU MLP, scaled dot-product attention over heads, and the pre-norm encoder block
//! of the multi-scale ViT. Tokens are `[N, ..., T, D]` with any static dims between the batch and
//! the token axis, so the same parts serve the windowed cross-attention (`[N, windows, M, D]`) and
//! the ViT (`[N, T, E]`).
//!
//! ONNX: `LayerNormalization` (opset 17), `MatMul` on the transposed weight for token linears
//! (`Gemm` is 2-D only), `Erf`-based GELU (opset 17 has no `Gelu`).

use super::{emit_tensor, path_name, Act};
use fer_export::{Attr, GraphBuilder};
use tch::{nn, Kind, Tensor};

/// `LayerNorm` over the last axis (ε = 1e-5, γ = 1, β = 0 at init).
#[derive(Debug)]
pub struct LayerNorm {
    ln: nn::LayerNorm,
    name: String,
}

impl LayerNorm {
    pub const EPS: f64 = 1e-5;

    pub fn new(p: nn::Path, d: i64) -> Self {
        let name = path_name(&p);
        let cfg = nn::LayerNormConfig { eps: Self::EPS, ..Default::default() };
        LayerNorm { ln: nn::layer_norm(p, vec![d], cfg), name }
    }

    /// # Shapes
    /// `[..., D]` → `[..., D]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.ln)
    }

    pub fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let w = emit_tensor(g, &format!("{}.weight", self.name), self.ln.ws.as_ref().expect("affine LayerNorm"))?;
        let b = emit_tensor(g, &format!("{}.bias", self.name), self.ln.bs.as_ref().expect("affine LayerNorm"))?;
        let attrs = [Attr::int("axis", -1), Attr::float("epsilon", Self::EPS as f32)];
        Ok(g.op("LayerNormalization", &[x, &w, &b], &attrs, &self.name))
    }
}

/// A linear map on the last axis of tokens, ViT init (weights N(0, 0.02), bias 0).
#[derive(Debug)]
pub struct TokenLinear {
    pub lin: nn::Linear,
    name: String,
}

impl TokenLinear {
    pub fn new(p: nn::Path, d_in: i64, d_out: i64) -> Self {
        let name = path_name(&p);
        let cfg = nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, bs_init: Some(nn::Init::Const(0.0)), bias: true };
        TokenLinear { lin: nn::linear(p, d_in, d_out, cfg), name }
    }

    /// # Shapes
    /// `[..., D_in]` → `[..., D_out]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.lin)
    }

    /// `x · Wᵀ + b`; the `Transpose` of the stored `[out, in]` weight is constant-folded by the runtimes.
    pub fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let nm = &self.name;
        let w = emit_tensor(g, &format!("{nm}.weight"), &self.lin.ws)?;
        let wt = g.op("Transpose", &[&w], &[Attr::ints("perm", &[1, 0])], &format!("{nm}/weight_t"));
        let y = g.op("MatMul", &[x, &wt], &[], &format!("{nm}/matmul"));
        let b = emit_tensor(g, &format!("{nm}.bias"), self.lin.bs.as_ref().expect("biased token linear"))?;
        Ok(g.add(&y, &b, nm))
    }
}

/// `fc2(GELU(fc1(x)))`, hidden width `ratio · D`.
#[derive(Debug)]
pub struct Mlp {
    fc1: TokenLinear,
    fc2: TokenLinear,
    name: String,
}

impl Mlp {
    pub fn new(p: nn::Path, d: i64, ratio: i64) -> Self {
        Mlp { fc1: TokenLinear::new(&p / "fc1", d, d * ratio), fc2: TokenLinear::new(&p / "fc2", d * ratio, d), name: path_name(&p) }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2.forward(&Act::Gelu.forward(self.fc1.forward(xs)))
    }

    pub fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let h = self.fc1.emit(g, x)?;
        let h = Act::Gelu.emit(g, &h, &format!("{}/gelu", self.name));
        self.fc2.emit(g, &h)
    }
}

/// The perm that swaps axes −3 and −2 of a rank-`rank` tensor.
fn swap_last_but_one(rank: usize) -> Vec<i64> {
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(rank - 3, rank - 2);
    perm
}

/// `[N, ..., T, D]` → `[N, ..., h, T, D/h]`.
pub fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let mut s = x.size();
    let d = s.pop().expect("tokens have a feature axis");
    s.extend([heads, d / heads]);
    x.reshape(s.as_slice()).transpose(-3, -2)
}

/// `[N, ..., h, T, dh]` → `[N, ..., T, h·dh]`.
pub fn merge_heads(x: &Tensor) -> Tensor {
    let x = x.transpose(-3, -2);
    let mut s = x.size();
    let dh = s.pop().expect("rank ≥ 3");
    let h = s.pop().expect("rank ≥ 3");
    s.push(h * dh);
    x.reshape(s.as_slice())
}

/// As [`split_heads`]; `dims` are the static dims after the batch (`[..., T, D]`).
pub fn emit_split_heads(g: &mut GraphBuilder, x: &str, dims: &[i64], heads: i64, hint: &str) -> String {
    let (d, lead) = dims.split_last().expect("tokens have a feature axis");
    let mut shape = vec![-1];
    shape.extend_from_slice(lead);
    shape.extend([heads, d / heads]);
    let shape = g.const_i64(&format!("{hint}/heads_shape"), &shape);
    let y = g.op("Reshape", &[x, &shape], &[], &format!("{hint}/heads"));
    g.op("Transpose", &[&y], &[Attr::ints("perm", &swap_last_but_one(dims.len() + 2))], &format!("{hint}/heads_t"))
}

/// As [`merge_heads`]; `dims` are the static dims after the batch of the merged result (`[..., T, D]`).
pub fn emit_merge_heads(g: &mut GraphBuilder, x: &str, dims: &[i64], hint: &str) -> String {
    let y = g.op("Transpose", &[x], &[Attr::ints("perm", &swap_last_but_one(dims.len() + 2))], &format!("{hint}/merge_t"));
    let mut shape = vec![-1];
    shape.extend_from_slice(dims);
    let shape = g.const_i64(&format!("{hint}/merge_shape"), &shape);
    g.op("Reshape", &[&y, &shape], &[], &format!("{hint}/merged"))
}

/// `softmax(q·kᵀ/√dh + bias)·v` on `[..., h, T, dh]` heads (leading dims broadcast, so one query
/// set can attend to many windows); `bias` broadcasts to `[..., h, T_q, T_k]`.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let dh = *q.size().last().expect("heads have a feature axis") as f64;
    let scores = q.matmul(&k.transpose(-2, -1)) / dh.sqrt();
    let scores = match bias {
        Some(b) => scores + b,
        None => scores,
    };
    scores.softmax(-1, Kind::Float).matmul(v)
}

/// As [`attend`]; `rank` is the rank of the heads tensors, `dh` the head width.
#[allow(clippy::too_many_arguments)]
pub fn emit_attend(g: &mut GraphBuilder, q: &str, k: &str, v: &str, bias: Option<&str>, rank: usize, dh: i64, hint: &str) -> String {
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(rank - 2, rank - 1);
    let kt = g.op("Transpose", &[k], &[Attr::ints("perm", &perm)], &format!("{hint}/k_t"));
    let scores = g.op("MatMul", &[q, &kt], &[], &format!("{hint}/scores"));
    let sqrt_dh = g.const_f32(&format!("{hint}/sqrt_dh"), &[], &[(dh as f32).sqrt()]);
    let mut scores = g.op("Div", &[&scores, &sqrt_dh], &[], &format!("{hint}/scaled"));
    if let Some(b) = bias {
        scores = g.add(&scores, b, &format!("{hint}/biased"));
    }
    let att = g.softmax(&scores, -1, &format!("{hint}/att"));
    g.op("MatMul", &[&att, v], &[], &format!("{hint}/attended"))
}

/// Multi-head self-attention on `[N, T, E]` tokens: q, k, v and output projections.
#[derive(Debug)]
pub struct SelfAttention {
    q: TokenLinear,
    k: TokenLinear,
    v: TokenLinear,
    proj: TokenLinear,
    heads: i64,
    name: String,
}

impl SelfAttention {
    pub fn new(p: nn::Path, d: i64, heads: i64) -> Self {
        SelfAttention {
            q: TokenLinear::new(&p / "q", d, d),
            k: TokenLinear::new(&p / "k", d, d),
            v: TokenLinear::new(&p / "v", d, d),
            proj: TokenLinear::new(&p / "proj", d, d),
            heads,
            name: path_name(&p),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.heads;
        let o = attend(&split_heads(&self.q.forward(x), h), &split_heads(&self.k.forward(x), h), &split_heads(&self.v.forward(x), h), None);
        self.proj.forward(&merge_heads(&o))
    }

    /// `tokens` is `T`, the static token count.
    pub fn emit(&self, g: &mut GraphBuilder, x: &str, tokens: i64) -> fer_export::Result<String> {
        let (nm, h) = (self.name.clone(), self.heads);
        let d = self.q.lin.ws.size()[0];
        let dims = [tokens, d];
        let mut heads = Vec::new();
        for (lin, which) in [(&self.q, "q"), (&self.k, "k"), (&self.v, "v")] {
            let y = lin.emit(g, x)?;
            heads.push(emit_split_heads(g, &y, &dims, h, &format!("{nm}/{which}")));
        }
        let o = emit_attend(g, &heads[0], &heads[1], &heads[2], None, 4, d / h, &nm);
        let o = emit_merge_heads(g, &o, &dims, &nm);
        self.proj.emit(g, &o)
    }
}

/// The pre-norm ViT encoder block: `x + MHSA(LN(x))`, then `x + MLP(LN(x))`.
#[derive(Debug)]
pub struct EncoderBlock {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    mlp: Mlp,
    name: String,
}

impl EncoderBlock {
    pub fn new(p: nn::Path, d: i64, heads: i64, mlp_ratio: i64) -> Self {
        EncoderBlock {
            norm1: LayerNorm::new(&p / "norm1", d),
            attn: SelfAttention::new(&p / "attn", d, heads),
            norm2: LayerNorm::new(&p / "norm2", d),
            mlp: Mlp::new(&p / "mlp", d, mlp_ratio),
            name: path_name(&p),
        }
    }

    /// # Shapes
    /// `[N, T, E]` → `[N, T, E]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attn.forward(&self.norm1.forward(x));
        &x + self.mlp.forward(&self.norm2.forward(&x))
    }

    pub fn emit(&self, g: &mut GraphBuilder, x: &str, tokens: i64) -> fer_export::Result<String> {
        let a = self.norm1.emit(g, x)?;
        let a = self.attn.emit(g, &a, tokens)?;
        let x = g.add(x, &a, &format!("{}/attn_res", self.name));
        let m = self.norm2.emit(g, &x)?;
        let m = self.mlp.emit(g, &m)?;
        Ok(g.add(&x, &m, &format!("{}/mlp_res", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn heads_split_and_merge_are_inverse_and_attention_matches_by_hand() {
        let x = Tensor::arange(2 * 3 * 5 * 8, (Kind::Float, Device::Cpu)).reshape([2, 3, 5, 8]);
        let s = split_heads(&x, 4);
        assert_eq!(s.size(), [2, 3, 4, 5, 2]);
        // Head 1 of token 2 holds features 2..4 of that token.
        assert_eq!(s.double_value(&[1, 2, 1, 2, 0]), x.double_value(&[1, 2, 2, 2]));
        assert_eq!(merge_heads(&s), x);

        // One head, two tokens: q = [1, 0], k = [[1, 0], [0, 1]] → scores [1/√2, 0].
        let q = Tensor::from_slice(&[1.0f32, 0.0]).reshape([1, 1, 1, 2]);
        let k = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).reshape([1, 1, 2, 2]);
        let v = Tensor::from_slice(&[10.0f32, 0.0, 0.0, 20.0]).reshape([1, 1, 2, 2]);
        let w0 = 1.0 / (1.0 + (-(0.5f64).sqrt()).exp());
        let o = attend(&q, &k, &v, None);
        assert!((o.double_value(&[0, 0, 0, 0]) - 10.0 * w0).abs() < 1e-5, "{o}");
        assert!((o.double_value(&[0, 0, 0, 1]) - 20.0 * (1.0 - w0)).abs() < 1e-5, "{o}");
        // A bias of −∞ on the first key leaves only the second.
        let bias = Tensor::from_slice(&[f32::NEG_INFINITY, 0.0]).reshape([1, 1, 1, 2]);
        let o = attend(&q, &k, &v, Some(&bias));
        assert!((o.double_value(&[0, 0, 0, 1]) - 20.0).abs() < 1e-5, "{o}");
    }

    #[test]
    fn encoder_block_keeps_shape_and_trains_every_parameter() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let block = EncoderBlock::new(vs.root() / "b", 16, 4, 2);
        let x = Tensor::randn([3, 5, 16], (Kind::Float, Device::Cpu));
        let y = block.forward(&x);
        assert_eq!(y.size(), [3, 5, 16]);
        y.square().sum(Kind::Float).backward();
        crate::nn::assert_all_have_gradients(&vs, &[]);
    }
}
