//! GReFEL's **reliability balancing** head (seed 002, §3.2–3.3, eq. 9–19) on a backbone's pooled
//! embedding `e ∈ R^D`:
//!
//! - primary distribution `l = softmax(MLP(e))` (eq. 9): two hidden layers of 64, each
//!   Linear → ReLU → dropout (0.5) → BatchNorm, then Linear to K;
//! - geometric correction (eq. 13–15): A trainable anchors per class `a^{ij}` (`rb.anchors`,
//!   `[K, A, D]`), `d(e, a) = √Σ(e − a)²`, `s^{ij} = softmax_{ij}(−d(e, a^{ij}) / δ)` over all K·A
//!   anchors, `t_g[i] = Σ_j s^{ij}`;
//! - attentive correction (eq. 16–17): multi-head self-attention within one sample (never across
//!   the batch). The seed leaves the sequence unspecified; here the embedding is cut into `tokens`
//!   tokens of `D / tokens` features, attended with `heads` heads (q, k, v and output projections,
//!   `d_head = D / (tokens·heads)`), flattened back and mapped to K by `rb.attn.fc`:
//!   `t_a = softmax(fc(MHSA(e)))`;
//! - confidences `c = C_f(p) = 1 − H(p) / ln K` (eq. 10–11) and the weighted combinations
//!   `t = (c_g t_g + c_a t_a) / (c_g + c_a)` (eq. 18), `L_final = (c_l l + c_t t) / (c_l + c_t)`
//!   (eq. 19). Each weight is computed as `(c_1 + ε) / (c_1 + c_2 + 2ε)`, ε = 1e-6, so two
//!   uniform (zero-confidence) distributions average instead of dividing by zero.
//!
//! With `use_anchors` or `use_mhsa` off (the seed's ablation) `t` is the remaining correction;
//! with both off `L_final = l`. The head's `logits` are `ln L_final` (so `softmax(logits)` is
//! `L_final`), its `probs` are `L_final`, and its `confidence` is `C_f(L_final)`.

use super::transformer::{attend, emit_attend, emit_merge_heads, emit_split_heads, merge_heads, split_heads};
use super::{emit_linear, emit_tensor, path_name, torch_linear, BatchNorm1d};
use fer_export::{Attr, GraphBuilder};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Config `method.rb` of `grefel_rb`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RbConfig {
    /// Anchors per class (the seed's Table 6: 8–10 is best).
    #[serde(default = "ten")]
    pub anchors: i64,
    /// Softmax temperature δ of the anchor similarity (seed: 1.0).
    #[serde(default = "one")]
    pub delta: f64,
    /// Tokens the embedding is cut into for the self-attention (must divide D).
    #[serde(default = "eight")]
    pub tokens: i64,
    /// Attention heads (must divide D / tokens).
    #[serde(default = "four")]
    pub heads: i64,
    /// Hidden width of the primary MLP (seed: 64).
    #[serde(default = "sixty_four")]
    pub hidden: i64,
    /// Dropout of the primary MLP (seed: 0.5).
    #[serde(default = "half")]
    pub dropout: f64,
    #[serde(default = "yes")]
    pub use_anchors: bool,
    #[serde(default = "yes")]
    pub use_mhsa: bool,
}

fn ten() -> i64 {
    10
}
fn one() -> f64 {
    1.0
}
fn eight() -> i64 {
    8
}
fn four() -> i64 {
    4
}
fn sixty_four() -> i64 {
    64
}
fn half() -> f64 {
    0.5
}
fn yes() -> bool {
    true
}

impl Default for RbConfig {
    fn default() -> Self {
        RbConfig { anchors: 10, delta: 1.0, tokens: 8, heads: 4, hidden: 64, dropout: 0.5, use_anchors: true, use_mhsa: true }
    }
}

impl RbConfig {
    /// Why this config cannot sit on a `dim`-wide embedding, if it cannot.
    pub fn check(&self, dim: i64) -> Result<(), String> {
        if self.anchors < 1 || self.hidden < 1 || self.delta <= 0.0 {
            return Err(format!("method.rb: anchors ({}) and hidden ({}) must be ≥ 1 and delta ({}) > 0", self.anchors, self.hidden, self.delta));
        }
        if self.use_mhsa && (self.tokens < 1 || self.heads < 1 || dim % self.tokens != 0 || (dim / self.tokens) % self.heads != 0) {
            return Err(format!(
                "method.rb: the {dim}-wide embedding cannot be cut into {} tokens of {} heads (tokens must divide {dim}, heads the token width)",
                self.tokens, self.heads
            ));
        }
        Ok(())
    }
}

/// ε of the confidence-weighted averages.
const EPS_W: f64 = 1e-6;
/// Floor of probabilities under a logarithm (and of squared distances under a square root).
const EPS_P: f64 = 1e-12;

/// Multi-head self-attention over the tokens of one embedding.
#[derive(Debug)]
struct TokenAttention {
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    out: nn::Linear,
    fc: nn::Linear,
    tokens: i64,
    heads: i64,
    name: String,
}

impl TokenAttention {
    fn new(p: nn::Path, dim: i64, tokens: i64, heads: i64, num_classes: i64) -> Self {
        let d = dim / tokens;
        TokenAttention {
            q: torch_linear(&p / "q", d, d),
            k: torch_linear(&p / "k", d, d),
            v: torch_linear(&p / "v", d, d),
            out: torch_linear(&p / "out", d, d),
            fc: torch_linear(&p / "fc", dim, num_classes),
            tokens,
            heads,
            name: path_name(&p),
        }
    }

    /// `[N, D]` → `t_a` `[N, K]`.
    fn forward(&self, e: &Tensor) -> Tensor {
        let n = e.size()[0];
        let x = e.reshape([n, self.tokens, -1]);
        let heads = |lin: &nn::Linear| split_heads(&x.apply(lin), self.heads);
        let o = attend(&heads(&self.q), &heads(&self.k), &heads(&self.v), None);
        merge_heads(&o).apply(&self.out).reshape([n, -1]).apply(&self.fc).softmax(1, Kind::Float)
    }

    fn emit(&self, g: &mut GraphBuilder, e: &str) -> fer_export::Result<String> {
        let nm = self.name.clone();
        let (t, h) = (self.tokens, self.heads);
        let d = self.q.ws.size()[0];
        // Token rows `[N·T, d]`, so each projection is one Gemm.
        let rows = g.const_i64(&format!("{nm}/rows"), &[-1, d]);
        let x = g.op("Reshape", &[e, &rows], &[], &format!("{nm}/tokens"));
        let mut heads = Vec::new();
        for (lin, which) in [(&self.q, "q"), (&self.k, "k"), (&self.v, "v")] {
            let y = emit_linear(g, &x, lin, &format!("{nm}.{which}"))?;
            heads.push(emit_split_heads(g, &y, &[t, d], h, &format!("{nm}/{which}")));
        }
        let o = emit_attend(g, &heads[0], &heads[1], &heads[2], None, 4, d / h, &nm);
        let o = emit_merge_heads(g, &o, &[t, d], &nm);
        let o = g.op("Reshape", &[&o, &rows], &[], &format!("{nm}/merged_rows"));
        let o = emit_linear(g, &o, &self.out, &format!("{nm}.out"))?;
        let flat = g.const_i64(&format!("{nm}/flat"), &[-1, t * d]);
        let o = g.op("Reshape", &[&o, &flat], &[], &format!("{nm}/flat"));
        let o = emit_linear(g, &o, &self.fc, &format!("{nm}.fc"))?;
        Ok(g.softmax(&o, 1, &format!("{nm}/t_a")))
    }
}

/// What the head computed, for the losses and the ablations.
pub struct RbOutput {
    /// The pooled embedding `e` `[N, D]`.
    pub embedding: Tensor,
    /// Primary distribution `l` `[N, K]`.
    pub primary: Tensor,
    /// Geometric correction `t_g` `[N, K]` (with anchors).
    pub t_g: Option<Tensor>,
    /// Attentive correction `t_a` `[N, K]` (with MHSA).
    pub t_a: Option<Tensor>,
    /// `L_final` `[N, K]`.
    pub final_dist: Tensor,
}

#[derive(Debug)]
pub struct RbHead {
    pub cfg: RbConfig,
    fc1: nn::Linear,
    bn1: BatchNorm1d,
    fc2: nn::Linear,
    bn2: BatchNorm1d,
    fc3: nn::Linear,
    /// `[K, A, D]`, absent without `use_anchors`.
    pub anchors: Option<Tensor>,
    attn: Option<TokenAttention>,
    num_classes: i64,
    name: String,
}

impl RbHead {
    /// The head at `p` (`rb`) on a `dim`-wide embedding. `cfg` must pass [`RbConfig::check`].
    pub fn new(p: nn::Path, dim: i64, num_classes: i64, cfg: &RbConfig) -> Self {
        let m = &p / "mlp";
        let hid = cfg.hidden;
        let anchors = cfg.use_anchors.then(|| p.var("anchors", &[num_classes, cfg.anchors, dim], nn::Init::Randn { mean: 0.0, stdev: 1.0 }));
        let attn = cfg.use_mhsa.then(|| TokenAttention::new(&p / "attn", dim, cfg.tokens, cfg.heads, num_classes));
        RbHead {
            cfg: cfg.clone(),
            fc1: torch_linear(&m / "fc1", dim, hid),
            bn1: BatchNorm1d::new(&m / "bn1", hid),
            fc2: torch_linear(&m / "fc2", hid, hid),
            bn2: BatchNorm1d::new(&m / "bn2", hid),
            fc3: torch_linear(&m / "fc3", hid, num_classes),
            anchors,
            attn,
            num_classes,
            name: path_name(&p),
        }
    }

    /// # Shapes
    /// features `[N, C, h, w]` → all the head's distributions (see [`RbOutput`]).
    pub fn forward_parts(&self, features: &Tensor, train: bool) -> RbOutput {
        let e = features.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let x = self.bn1.forward_t(&e.apply(&self.fc1).relu().dropout(self.cfg.dropout, train), train);
        let x = self.bn2.forward_t(&x.apply(&self.fc2).relu().dropout(self.cfg.dropout, train), train);
        let l = x.apply(&self.fc3).softmax(1, Kind::Float);
        let t_g = self.anchors.as_ref().map(|a| geometric_correction(&e, a, self.cfg.delta));
        let t_a = self.attn.as_ref().map(|att| att.forward(&e));
        let t = match (&t_g, &t_a) {
            (Some(g), Some(a)) => Some(balance(g, a)),
            (Some(g), None) => Some(g.shallow_clone()),
            (None, Some(a)) => Some(a.shallow_clone()),
            (None, None) => None,
        };
        let final_dist = match &t {
            Some(t) => balance(&l, t),
            None => l.shallow_clone(),
        };
        RbOutput { embedding: e, primary: l, t_g, t_a, final_dist }
    }

    /// # Shapes
    /// features `[N, C, h, w]` → logits `ln L_final` `[N, K]`.
    pub fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        self.forward_parts(features, train).final_dist.clamp_min(EPS_P).log()
    }

    /// Emits `(logits, probs, confidence)`: `ln L_final`, `L_final` `[N, K]` and `C_f(L_final)` `[N]`.
    pub fn emit(&self, g: &mut GraphBuilder, features: &str) -> fer_export::Result<(String, String, String)> {
        let n = self.name.clone();
        let e = g.global_avg_pool_flat(features, &format!("{n}/embedding"));
        let mut x = e.clone();
        for (i, (fc, bn)) in [(&self.fc1, &self.bn1), (&self.fc2, &self.bn2)].into_iter().enumerate() {
            x = emit_linear(g, &x, fc, &format!("{n}.mlp.fc{}", i + 1))?;
            x = g.relu(&x, &format!("{n}/mlp/relu{}", i + 1));
            x = bn.emit(g, &x)?;
        }
        let x = emit_linear(g, &x, &self.fc3, &format!("{n}.mlp.fc3"))?;
        let l = g.softmax(&x, 1, &format!("{n}/primary"));
        let t_g = match &self.anchors {
            Some(a) => Some(emit_geometric(g, &e, a, self.cfg.delta, &format!("{n}.anchors"))?),
            None => None,
        };
        let t_a = match &self.attn {
            Some(att) => Some(att.emit(g, &e)?),
            None => None,
        };
        let t = match (t_g, t_a) {
            (Some(tg), Some(ta)) => Some(emit_balance(g, &tg, &ta, self.num_classes, &format!("{n}/t"))),
            (Some(t), None) | (None, Some(t)) => Some(t),
            (None, None) => None,
        };
        let fin = match t {
            Some(t) => emit_balance(g, &l, &t, self.num_classes, &format!("{n}/final")),
            None => l,
        };
        let floor = g.const_f32(&format!("{n}/floor"), &[], &[EPS_P as f32]);
        let safe = g.op("Max", &[&fin, &floor], &[], &format!("{n}/floored"));
        let logits = g.op("Log", &[&safe], &[], &format!("{n}/log_final"));
        let conf = emit_confidence(g, &fin, self.num_classes, &format!("{n}/confidence"));
        let axes = g.const_i64(&format!("{n}/squeeze_axes"), &[1]);
        let conf = g.op("Squeeze", &[&conf, &axes], &[], &format!("{n}/confidence_n"));
        Ok((logits, fin, conf))
    }
}

/// `t_g` of eq. 13–15: `[N, D]` embeddings, `[K, A, D]` anchors → `[N, K]`.
pub fn geometric_correction(e: &Tensor, anchors: &Tensor, delta: f64) -> Tensor {
    let (k, a, d) = (anchors.size()[0], anchors.size()[1], anchors.size()[2]);
    let diff = e.unsqueeze(1) - anchors.reshape([1, k * a, d]);
    let dist = diff.square().sum_dim_intlist([2i64].as_slice(), false, Kind::Float).clamp_min(EPS_P).sqrt();
    let s = (dist / -delta).softmax(1, Kind::Float);
    s.reshape([-1, k, a]).sum_dim_intlist([2i64].as_slice(), false, Kind::Float)
}

/// `C_f(p) = 1 − H(p) / ln K` (eq. 10–11), `[N, K]` → `[N, 1]`.
pub fn confidence(p: &Tensor) -> Tensor {
    let k = p.size()[1] as f64;
    let h = -(p * p.clamp_min(EPS_P).log()).sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    1.0 - h / k.ln()
}

/// Eq. 18 / 19: `(c_1 p_1 + c_2 p_2) / (c_1 + c_2)` with the confidences of `p_1` and `p_2`.
pub fn balance(p1: &Tensor, p2: &Tensor) -> Tensor {
    let (c1, c2) = (confidence(p1), confidence(p2));
    let w = (&c1 + EPS_W) / (c1 + c2 + 2.0 * EPS_W);
    &w * p1 + (1.0 - &w) * p2
}

fn emit_geometric(g: &mut GraphBuilder, e: &str, anchors: &Tensor, delta: f64, name: &str) -> fer_export::Result<String> {
    let (k, a, d) = (anchors.size()[0], anchors.size()[1], anchors.size()[2]);
    let w = emit_tensor(g, name, anchors)?;
    let flat = g.const_i64(&format!("{name}/flat_shape"), &[1, k * a, d]);
    let w = g.op("Reshape", &[&w, &flat], &[], &format!("{name}/flat"));
    let axis1 = g.const_i64(&format!("{name}/axis1"), &[1]);
    let eu = g.op("Unsqueeze", &[e, &axis1], &[], &format!("{name}/e"));
    let diff = g.op("Sub", &[&eu, &w], &[], &format!("{name}/diff"));
    let sq = g.mul(&diff, &diff, &format!("{name}/sq"));
    let axis2 = g.const_i64(&format!("{name}/axis2"), &[2]);
    let d2 = g.op("ReduceSum", &[&sq, &axis2], &[Attr::int("keepdims", 0)], &format!("{name}/d2"));
    let floor = g.const_f32(&format!("{name}/floor"), &[], &[EPS_P as f32]);
    let d2 = g.op("Max", &[&d2, &floor], &[], &format!("{name}/d2_floored"));
    let dist = g.op("Sqrt", &[&d2], &[], &format!("{name}/dist"));
    let scale = g.const_f32(&format!("{name}/neg_inv_delta"), &[], &[(-1.0 / delta) as f32]);
    let z = g.mul(&dist, &scale, &format!("{name}/z"));
    let s = g.softmax(&z, 1, &format!("{name}/similarity"));
    let per_class = g.const_i64(&format!("{name}/class_shape"), &[-1, k, a]);
    let s = g.op("Reshape", &[&s, &per_class], &[], &format!("{name}/per_class"));
    Ok(g.op("ReduceSum", &[&s, &axis2], &[Attr::int("keepdims", 0)], &format!("{name}/t_g")))
}

/// `[N, K]` → `[N, 1]`, as [`confidence`].
fn emit_confidence(g: &mut GraphBuilder, p: &str, k: i64, hint: &str) -> String {
    let floor = g.const_f32(&format!("{hint}/floor"), &[], &[EPS_P as f32]);
    let safe = g.op("Max", &[p, &floor], &[], &format!("{hint}/floored"));
    let logp = g.op("Log", &[&safe], &[], &format!("{hint}/log"));
    let plogp = g.mul(p, &logp, &format!("{hint}/plogp"));
    let axis1 = g.const_i64(&format!("{hint}/axis1"), &[1]);
    let s = g.op("ReduceSum", &[&plogp, &axis1], &[Attr::int("keepdims", 1)], &format!("{hint}/neg_h"));
    // 1 − H/ln K = 1 + (Σ p ln p)/ln K
    let inv = g.const_f32(&format!("{hint}/inv_ln_k"), &[], &[1.0 / (k as f32).ln()]);
    let s = g.mul(&s, &inv, &format!("{hint}/scaled"));
    let one = g.const_f32(&format!("{hint}/one"), &[], &[1.0]);
    g.add(&s, &one, hint)
}

/// As [`balance`].
fn emit_balance(g: &mut GraphBuilder, p1: &str, p2: &str, k: i64, hint: &str) -> String {
    let c1 = emit_confidence(g, p1, k, &format!("{hint}/c1"));
    let c2 = emit_confidence(g, p2, k, &format!("{hint}/c2"));
    let eps = g.const_f32(&format!("{hint}/eps"), &[], &[EPS_W as f32]);
    let eps2 = g.const_f32(&format!("{hint}/eps2"), &[], &[2.0 * EPS_W as f32]);
    let num = g.add(&c1, &eps, &format!("{hint}/num"));
    let den = g.add(&c1, &c2, &format!("{hint}/c_sum"));
    let den = g.add(&den, &eps2, &format!("{hint}/den"));
    let w = g.op("Div", &[&num, &den], &[], &format!("{hint}/w"));
    let a = g.mul(&w, p1, &format!("{hint}/w_p1"));
    let one = g.const_f32(&format!("{hint}/one"), &[], &[1.0]);
    let w2 = g.op("Sub", &[&one, &w], &[], &format!("{hint}/w2"));
    let b = g.mul(&w2, p2, &format!("{hint}/w_p2"));
    g.add(&a, &b, hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).reshape(shape)
    }

    #[test]
    fn confidence_is_one_minus_normalised_entropy() {
        let p = t(&[1.0, 0.0, 0.0, 0.25, 0.25, 0.5], &[2, 3]);
        let c = confidence(&p);
        // One-hot: H = 0 → 1. (¼, ¼, ½): H = ½ln4 + ½ln2 = 1.5 ln 2 → 1 − 1.5 ln2 / ln3.
        let want = 1.0 - 1.5 * 2f64.ln() / 3f64.ln();
        assert!((c.double_value(&[0, 0]) - 1.0).abs() < 1e-6);
        assert!((c.double_value(&[1, 0]) - want).abs() < 1e-6, "{} vs {want}", c.double_value(&[1, 0]));
    }

    #[test]
    fn balance_weights_by_confidence() {
        // A one-hot (c = 1) and a uniform (c = 0) distribution: the result is (almost) the one-hot.
        let sure = t(&[0.0, 1.0], &[1, 2]);
        let unsure = t(&[0.5, 0.5], &[1, 2]);
        let b = balance(&sure, &unsure);
        assert!((b.double_value(&[0, 1]) - 1.0).abs() < 1e-5, "{b}");
        // Two uniform distributions average (no 0/0).
        let u = balance(&unsure, &unsure);
        assert!((u.double_value(&[0, 0]) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn geometric_correction_by_hand() {
        // 2 classes × 1 anchor in 2-D at (0,0) and (3,4); e = (0,0): distances 0 and 5, δ = 1.
        let anchors = t(&[0.0, 0.0, 3.0, 4.0], &[2, 1, 2]);
        let e = t(&[0.0, 0.0], &[1, 2]);
        let tg = geometric_correction(&e, &anchors, 1.0);
        let want0 = 1.0 / (1.0 + (-5f64).exp());
        assert!((tg.double_value(&[0, 0]) - want0).abs() < 1e-6, "{tg}");
        assert!((tg.double_value(&[0, 1]) - (1.0 - want0)).abs() < 1e-6);
    }

    #[test]
    fn head_distributions_sum_to_one_and_every_part_gets_gradients() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let head = RbHead::new(vs.root() / "rb", 32, 3, &RbConfig { anchors: 2, tokens: 4, heads: 2, ..Default::default() });
        let f = Tensor::randn([4, 32, 2, 2], (Kind::Float, Device::Cpu));
        let out = head.forward_parts(&f, true);
        for (what, p) in [("l", &out.primary), ("t_g", out.t_g.as_ref().unwrap()), ("t_a", out.t_a.as_ref().unwrap()), ("final", &out.final_dist)] {
            assert_eq!(p.size(), [4, 3], "{what}");
            let s = p.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
            assert!((s - 1.0).abs().max().double_value(&[]) < 1e-5, "{what} does not sum to 1");
        }
        let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
        out.final_dist.log().nll_loss(&y).backward();
        crate::nn::assert_all_have_gradients(&vs, &[]);
    }
}
