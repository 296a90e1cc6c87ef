//! Convolutional attention after a feature stage: IVSA's **Salient Attention Block** (seed 004,
//! §II-C, eq. 3–9) and, for the seed's ablation, **CBAM** (Woo et al., 2018).
//!
//! Both apply a channel gate, then a spatial gate: `F' = W_c(X) ⊗ X`, `O = W_s(F') ⊗ F'`.
//!
//! | | channel gate `W_c` | spatial gate `W_s` |
//! | --- | --- | --- |
//! | SAB | `C·|γ_i| / Σ_j |γ_j| · σ(MLP(avg + max + L2))` (eq. 5) | `σ(conv7x7(mean_c + max_c))` (eq. 8) |
//! | CBAM | `σ(MLP(avg) + MLP(max))` | `σ(conv7x7([mean_c, max_c]))` |
//!
//! avg / max / L2 pool over the spatial axes (L2 pooling = `√Σ x²`, PyTorch's `LPPool2d` with
//! p = 2 over the whole map); mean_c / max_c pool over channels. γ is the weight of the stage's
//! last BatchNorm (the seed cites network slimming, where |γ| is a channel's importance: its
//! absolute value is used so a negative γ cannot flip a gate's sign or cancel the sum).
//!
//! **Deviation from eq. 5, on purpose:** the share is multiplied by the channel count C, i.e.
//! `|γ_i| / mean_j |γ_j|`, so the shares average 1. The literal `γ_i / Σ_j γ_j` averages 1/C and
//! shrinks every stage's output by that factor (1/512 after the last stage): on the CI set an IVSA
//! with the literal form stayed at chance (loss ln 3) under the seed's SGD for 3 epochs while the
//! same net without attention, and with this form, learned. The relative re-weighting of channels,
//! which is what the seed motivates γ with, is unchanged. The shared
//! MLP is two 1x1 convs with bias, `C → C/r → C`, ReLU between (r = 16, at least 1 channel).
//! Parameters: `<stage>.attn.fc1`, `<stage>.attn.fc2`, `<stage>.attn.spatial` (7x7, no bias).

use super::{emit_conv, path_name, to_vec_f32, torch_conv};
use fer_export::{Attr, GraphBuilder};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Config key `model.attention` (arch `ivsa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    Sab,
    Cbam,
    None,
}

#[derive(Debug)]
pub struct ConvAttention {
    kind: AttentionKind,
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
    spatial: nn::Conv2D,
    name: String,
}

impl ConvAttention {
    /// `kind` must be `Sab` or `Cbam` (a stage without attention has no block).
    pub fn new(p: nn::Path, channels: i64, reduction: i64, kind: AttentionKind) -> Self {
        assert!(kind != AttentionKind::None, "ConvAttention::new with AttentionKind::None");
        let hidden = (channels / reduction).max(1);
        let spatial_in = if kind == AttentionKind::Sab { 1 } else { 2 };
        ConvAttention {
            kind,
            fc1: torch_conv(&p / "fc1", channels, hidden, 1, true),
            fc2: torch_conv(&p / "fc2", hidden, channels, 1, true),
            spatial: torch_conv(&p / "spatial", spatial_in, 1, 7, false),
            name: path_name(&p),
        }
    }

    fn mlp(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).relu().apply(&self.fc2)
    }

    /// SAB's re-scaling `C·|γ_i| / Σ_j |γ_j|` (mean 1, see the module docs) as `[1, C, 1, 1]`.
    fn gamma_share(gamma: &Tensor) -> Tensor {
        let a = gamma.abs();
        (&a / a.mean(Kind::Float)).reshape([1, -1, 1, 1])
    }

    /// The channel gate `[N, C, 1, 1]`; `gamma` is the stage BN's γ (SAB only).
    pub fn channel_gate(&self, xs: &Tensor, gamma: Option<&Tensor>) -> Tensor {
        let avg = xs.adaptive_avg_pool2d([1, 1]);
        let max = xs.amax([2, 3], true);
        match self.kind {
            AttentionKind::Sab => {
                let l2 = super::spatial_l2(xs, true);
                let w = self.mlp(&(avg + max + l2)).sigmoid();
                w * Self::gamma_share(gamma.expect("SAB needs the stage's BN γ"))
            }
            _ => (self.mlp(&avg) + self.mlp(&max)).sigmoid(),
        }
    }

    /// The spatial gate `[N, 1, H, W]`.
    pub fn spatial_gate(&self, xs: &Tensor) -> Tensor {
        let mean = xs.mean_dim([1i64].as_slice(), true, Kind::Float);
        let max = xs.amax([1], true);
        let d = match self.kind {
            AttentionKind::Sab => mean + max,
            _ => Tensor::cat(&[mean, max], 1),
        };
        d.apply(&self.spatial).sigmoid()
    }

    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`.
    pub fn forward_t(&self, xs: &Tensor, gamma: Option<&Tensor>) -> Tensor {
        let f = xs * self.channel_gate(xs, gamma);
        &f * self.spatial_gate(&f)
    }

    pub fn emit(&self, g: &mut GraphBuilder, x: &str, gamma: Option<&Tensor>) -> fer_export::Result<String> {
        let n = self.name.clone();
        let avg = g.op("GlobalAveragePool", &[x], &[], &format!("{n}/avg"));
        let max = g.op("GlobalMaxPool", &[x], &[], &format!("{n}/max"));
        let gate = match self.kind {
            AttentionKind::Sab => {
                let l2 = g.op("ReduceL2", &[x], &[Attr::ints("axes", &[2, 3]), Attr::int("keepdims", 1)], &format!("{n}/l2"));
                let s = g.add(&avg, &max, &format!("{n}/avg_max"));
                let s = g.add(&s, &l2, &format!("{n}/pooled"));
                let m = self.emit_mlp(g, &s, "mlp")?;
                let w = g.sigmoid(&m, &format!("{n}/channel_sigmoid"));
                let share = tch::no_grad(|| Self::gamma_share(gamma.expect("SAB needs the stage's BN γ")));
                let share = g.initializer(&format!("{n}.gamma_share"), &share.size(), &to_vec_f32(&share))?;
                g.mul(&w, &share, &format!("{n}/channel_gate"))
            }
            _ => {
                let a = self.emit_mlp(g, &avg, "mlp_avg")?;
                let m = self.emit_mlp(g, &max, "mlp_max")?;
                let s = g.add(&a, &m, &format!("{n}/mlp_sum"));
                g.sigmoid(&s, &format!("{n}/channel_gate"))
            }
        };
        let f = g.mul(x, &gate, &format!("{n}/channel"));
        let keep = |axes: &[i64]| [Attr::ints("axes", axes), Attr::int("keepdims", 1)];
        let mean = g.op("ReduceMean", &[&f], &keep(&[1]), &format!("{n}/mean_c"));
        let max_c = g.op("ReduceMax", &[&f], &keep(&[1]), &format!("{n}/max_c"));
        let d = match self.kind {
            AttentionKind::Sab => g.add(&mean, &max_c, &format!("{n}/descriptor")),
            _ => g.op("Concat", &[&mean, &max_c], &[Attr::int("axis", 1)], &format!("{n}/descriptor")),
        };
        let s = emit_conv(g, &d, &self.spatial, &format!("{n}.spatial"))?;
        let s = g.sigmoid(&s, &format!("{n}/spatial_gate"));
        Ok(g.mul(&f, &s, &n))
    }

    /// The shared MLP; its weights are emitted once (the first call) and reused.
    fn emit_mlp(&self, g: &mut GraphBuilder, x: &str, hint: &str) -> fer_export::Result<String> {
        let n = &self.name;
        let (w1, b1, w2, b2) = (format!("{n}.fc1.weight"), format!("{n}.fc1.bias"), format!("{n}.fc2.weight"), format!("{n}.fc2.bias"));
        if !g.has(&w1) {
            super::emit_tensor(g, &w1, &self.fc1.ws)?;
            super::emit_tensor(g, &b1, self.fc1.bs.as_ref().expect("bias"))?;
            super::emit_tensor(g, &w2, &self.fc2.ws)?;
            super::emit_tensor(g, &b2, self.fc2.bs.as_ref().expect("bias"))?;
        }
        let h = g.conv(x, &w1, Some(&b1), [1, 1], [1, 1], [0, 0], 1, &format!("{n}/{hint}/fc1"));
        let h = g.relu(&h, &format!("{n}/{hint}/relu"));
        Ok(g.conv(&h, &w2, Some(&b2), [1, 1], [1, 1], [0, 0], 1, &format!("{n}/{hint}/fc2")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn check(kind: AttentionKind) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        // 16 hidden units in the MLP, so that not all of its ReLUs are dead on this draw.
        let att = ConvAttention::new(vs.root() / "attn", 64, 4, kind);
        let gamma = (vs.root() / "bn").var("weight", &[64], nn::Init::Uniform { lo: -1.0, up: 1.0 });
        let x = Tensor::randn([2, 64, 6, 6], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = att.forward_t(&x, Some(&gamma));
        assert_eq!(y.size(), [2, 64, 6, 6]);
        let cg = att.channel_gate(&x, Some(&gamma));
        assert_eq!(cg.size(), [2, 64, 1, 1]);
        assert_eq!(att.spatial_gate(&x).size(), [2, 1, 6, 6]);
        if kind == AttentionKind::Sab {
            // Each gate is σ(·) ∈ (0, 1) times its channel's share C·|γ_i|/Σ|γ_j|, never more.
            let share = gamma.abs() * 64.0 / gamma.abs().sum(Kind::Float);
            let excess = (cg.reshape([2, 64]) - share.unsqueeze(0)).max().double_value(&[]);
            assert!(excess <= 0.0, "a SAB gate exceeds its γ share by {excess}");
        }
        (&y * Tensor::randn_like(&y)).sum(Kind::Float).backward();
        // CBAM does not use the stage's γ.
        crate::nn::assert_all_have_gradients(&vs, if kind == AttentionKind::Cbam { &["bn."] } else { &[] });
        assert!(x.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn sab_shapes_gamma_share_and_gradients() {
        check(AttentionKind::Sab);
    }

    #[test]
    fn cbam_shapes_and_gradients() {
        check(AttentionKind::Cbam);
    }
}
