//! GReFEL's window-based cross-attention (seed 002, §3.1, eq. 1–3 and fig. 3), one pyramid level.
//!
//! The image features `X_img` `[N, D, S, S]` are cut into `k×k` non-overlapping windows of
//! `M = w×w` tokens. The landmark features, average-pooled down to one `w×w` window and projected
//! to `D` channels by a 1x1 conv, are the queries `z_lm`, shared by every window of the image
//! ("the down-sampled features are converted into the window size"); keys and values come from each
//! image window. With `I` heads and a learned relative position bias `b` (a table over the
//! `(2w−1)²` offsets between two tokens of a window, as in Swin):
//!
//! `CA = softmax(Q·Kᵀ/√d + b)·V` per window and head, merged over heads and projected: the overall
//! cross-attention `OCA` of all windows. Then the encoder of eq. 3: `X' = OCA + X_img`,
//! `X_out = MLP(LN(X')) + X'`, and the windows are put back together as `[N, D, S, S]`.

use super::transformer::{attend, emit_attend, emit_merge_heads, emit_split_heads, merge_heads, split_heads, LayerNorm, Mlp, TokenLinear};
use super::{emit_conv, emit_tensor, path_name, torch_conv};
use fer_export::{Attr, GraphBuilder};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct WindowCrossAttention {
    lm_proj: nn::Conv2D,
    norm_q: LayerNorm,
    norm_kv: LayerNorm,
    q: TokenLinear,
    k: TokenLinear,
    v: TokenLinear,
    proj: TokenLinear,
    /// `[(2w−1)², I]`.
    rel_table: Tensor,
    /// `[M·M]`: the table row of each (query token, key token) pair.
    rel_index: Tensor,
    norm_mlp: LayerNorm,
    mlp: Mlp,
    dim: i64,
    heads: i64,
    /// Window side `w`.
    window: i64,
    /// Windows per side `k` (the level's side is `k·w`).
    per_side: i64,
    name: String,
}

impl WindowCrossAttention {
    /// A level on a `(k·w)²` map of `dim` image channels and `lm_channels` landmark channels.
    pub fn new(p: nn::Path, dim: i64, lm_channels: i64, heads: i64, window: i64, per_side: i64, mlp_ratio: i64) -> Self {
        let rel = relative_index(window);
        WindowCrossAttention {
            lm_proj: torch_conv(&p / "lm_proj", lm_channels, dim, 1, true),
            norm_q: LayerNorm::new(&p / "norm_q", dim),
            norm_kv: LayerNorm::new(&p / "norm_kv", dim),
            q: TokenLinear::new(&p / "q", dim, dim),
            k: TokenLinear::new(&p / "k", dim, dim),
            v: TokenLinear::new(&p / "v", dim, dim),
            proj: TokenLinear::new(&p / "proj", dim, dim),
            rel_table: p.var("relative_position_bias_table", &[(2 * window - 1).pow(2), heads], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            rel_index: Tensor::from_slice(&rel).to_device(p.device()),
            norm_mlp: LayerNorm::new(&p / "norm_mlp", dim),
            mlp: Mlp::new(&p / "mlp", dim, mlp_ratio),
            dim,
            heads,
            window,
            per_side,
            name: path_name(&p),
        }
    }

    fn tokens(&self) -> i64 {
        self.window * self.window
    }

    /// The bias `b` `[I, M, M]` added to every window's attention scores.
    pub fn position_bias(&self) -> Tensor {
        let m = self.tokens();
        self.rel_table.index_select(0, &self.rel_index).reshape([m, m, self.heads]).permute([2, 0, 1])
    }

    /// # Shapes
    /// image `[N, D, k·w, k·w]`, landmarks `[N, C_lm, k·w, k·w]` → `[N, D, k·w, k·w]`.
    pub fn forward(&self, img: &Tensor, lm: &Tensor) -> Tensor {
        let (n, d, h) = (img.size()[0], self.dim, self.heads);
        let (k, w, m) = (self.per_side, self.window, self.tokens());
        let lm = if k > 1 { lm.avg_pool2d([k, k], [k, k], [0, 0], false, true, None) } else { lm.shallow_clone() };
        let z_lm = lm.apply(&self.lm_proj).flatten(2, 3).transpose(1, 2); // [N, M, D]
        let x = img.reshape([n, d, k, w, k, w]).permute([0, 2, 4, 3, 5, 1]).reshape([n, k * k, m, d]);
        let q = split_heads(&self.q.forward(&self.norm_q.forward(&z_lm)).unsqueeze(1), h); // [N, 1, I, M, dh]
        let xn = self.norm_kv.forward(&x);
        let o = attend(&q, &split_heads(&self.k.forward(&xn), h), &split_heads(&self.v.forward(&xn), h), Some(&self.position_bias()));
        let x = x + self.proj.forward(&merge_heads(&o));
        let x = &x + self.mlp.forward(&self.norm_mlp.forward(&x));
        x.reshape([n, k, k, w, w, d]).permute([0, 5, 1, 3, 2, 4]).reshape([n, d, k * w, k * w])
    }

    pub fn emit(&self, g: &mut GraphBuilder, img: &str, lm: &str) -> fer_export::Result<String> {
        let nm = self.name.clone();
        let (d, h) = (self.dim, self.heads);
        let (k, w, m) = (self.per_side, self.window, self.tokens());
        let lm = if k > 1 {
            let attrs = [Attr::ints("kernel_shape", &[k, k]), Attr::ints("strides", &[k, k])];
            g.op("AveragePool", &[lm], &attrs, &format!("{nm}/lm_pool"))
        } else {
            lm.to_string()
        };
        let z = emit_conv(g, &lm, &self.lm_proj, &format!("{nm}.lm_proj"))?;
        let flat = g.const_i64(&format!("{nm}/lm_flat"), &[-1, d, m]);
        let z = g.op("Reshape", &[&z, &flat], &[], &format!("{nm}/lm_tokens_t"));
        let z = g.op("Transpose", &[&z], &[Attr::ints("perm", &[0, 2, 1])], &format!("{nm}/lm_tokens"));
        let q = self.norm_q.emit(g, &z)?;
        let q = self.q.emit(g, &q)?;
        let axis1 = g.const_i64(&format!("{nm}/axis1"), &[1]);
        let q = g.op("Unsqueeze", &[&q, &axis1], &[], &format!("{nm}/q_shared"));
        let q = emit_split_heads(g, &q, &[1, m, d], h, &format!("{nm}/q"));

        let split = g.const_i64(&format!("{nm}/split_shape"), &[-1, d, k, w, k, w]);
        let x = g.op("Reshape", &[img, &split], &[], &format!("{nm}/split"));
        let x = g.op("Transpose", &[&x], &[Attr::ints("perm", &[0, 2, 4, 3, 5, 1])], &format!("{nm}/windows_t"));
        let win = g.const_i64(&format!("{nm}/windows_shape"), &[-1, k * k, m, d]);
        let x = g.op("Reshape", &[&x, &win], &[], &format!("{nm}/windows"));
        let dims = [k * k, m, d];
        let xn = self.norm_kv.emit(g, &x)?;
        let kk = self.k.emit(g, &xn)?;
        let kk = emit_split_heads(g, &kk, &dims, h, &format!("{nm}/k"));
        let v = self.v.emit(g, &xn)?;
        let v = emit_split_heads(g, &v, &dims, h, &format!("{nm}/v"));
        // The bias is a function of the table alone: computed here, stored as a constant.
        let bias = emit_tensor(g, &format!("{nm}.relative_position_bias"), &self.position_bias())?;
        let o = emit_attend(g, &q, &kk, &v, Some(&bias), 5, d / h, &nm);
        let o = emit_merge_heads(g, &o, &dims, &nm);
        let o = self.proj.emit(g, &o)?;
        let x = g.add(&x, &o, &format!("{nm}/attn_res"));
        let y = self.norm_mlp.emit(g, &x)?;
        let y = self.mlp.emit(g, &y)?;
        let x = g.add(&x, &y, &format!("{nm}/mlp_res"));

        let unsplit = g.const_i64(&format!("{nm}/unsplit_shape"), &[-1, k, k, w, w, d]);
        let x = g.op("Reshape", &[&x, &unsplit], &[], &format!("{nm}/unsplit"));
        let x = g.op("Transpose", &[&x], &[Attr::ints("perm", &[0, 5, 1, 3, 2, 4])], &format!("{nm}/map_t"));
        let map = g.const_i64(&format!("{nm}/map_shape"), &[-1, d, k * w, k * w]);
        Ok(g.op("Reshape", &[&x, &map], &[], &format!("{nm}/map")))
    }
}

/// For each pair (query token `a`, key token `b`) of a `w×w` window, row-major, the row of the
/// `(2w−1)²` bias table for their offset: `(Δy + w − 1)·(2w − 1) + (Δx + w − 1)`.
fn relative_index(w: i64) -> Vec<i64> {
    let coords: Vec<(i64, i64)> = (0..w).flat_map(|y| (0..w).map(move |x| (y, x))).collect();
    coords
        .iter()
        .flat_map(|&(ya, xa)| coords.iter().map(move |&(yb, xb)| (ya - yb + w - 1) * (2 * w - 1) + (xa - xb + w - 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn relative_index_by_hand() {
        // w = 2: tokens (0,0) (0,1) (1,0) (1,1); the 3x3 table's centre (row 4) is offset (0, 0).
        let idx = relative_index(2);
        assert_eq!(idx.len(), 16);
        assert_eq!(idx[0], 4); // a = b
        assert_eq!(idx[1], 3); // (0,0) vs (0,1): Δx = −1
        assert_eq!(idx[3 * 4], 8); // (1,1) vs (0,0): Δ = (1, 1)
        assert_eq!(idx[3], 0); // (0,0) vs (1,1): Δ = (−1, −1)
    }

    /// Windows stay windows: with attention and MLP outputs zeroed, the block is the identity, so the
    /// split into windows and the merge back are exact inverses; and every parameter trains.
    #[test]
    fn window_split_and_merge_are_inverse_and_every_parameter_trains() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let level = WindowCrossAttention::new(vs.root() / "cross", 8, 5, 2, 2, 3, 2);
        let img = Tensor::randn([2, 8, 6, 6], (Kind::Float, Device::Cpu));
        let lm = Tensor::randn([2, 5, 6, 6], (Kind::Float, Device::Cpu));
        let y = level.forward(&img, &lm);
        assert_eq!(y.size(), [2, 8, 6, 6]);
        y.square().sum(Kind::Float).backward();
        crate::nn::assert_all_have_gradients(&vs, &[]);
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.contains("proj.") || name.contains("mlp.fc2") {
                    let _ = t.zero_();
                }
            }
        });
        let same = tch::no_grad(|| level.forward(&img, &lm));
        assert!((same - &img).abs().max().double_value(&[]) < 1e-6);
    }

    /// The queries come from the landmark stream: the same image with other landmarks attends
    /// differently (a rescaled landmark map would not do: the queries are layer-normalised).
    #[test]
    fn landmarks_steer_the_attention() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let level = WindowCrossAttention::new(vs.root() / "cross", 8, 4, 2, 2, 2, 2);
        // At the ViT init (weights N(0, 0.02)) the scores are near zero and attention is near
        // uniform whatever the query; trained-size q/k weights make it depend on the query.
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.contains(".q.weight") || name.contains(".k.weight") || name.contains(".proj.weight") {
                    let _ = t.normal_(0.0, 1.0);
                }
            }
        });
        let img = Tensor::randn([1, 8, 4, 4], (Kind::Float, Device::Cpu));
        let lm = Tensor::randn([1, 4, 4, 4], (Kind::Float, Device::Cpu));
        let (a, b) = tch::no_grad(|| (level.forward(&img, &lm), level.forward(&img, &Tensor::randn([1, 4, 4, 4], (Kind::Float, Device::Cpu)))));
        assert!((a - b).abs().max().double_value(&[]) > 1e-2);
    }
}
