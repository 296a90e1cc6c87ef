//! DAN's attention heads (Wen et al., 2023, as used by seed 003, §3.1.2–3.1.3): the **MAN**
//! (h parallel cross-attention heads) and the **AFN** (log-softmax across heads, sum, fc, BN).
//!
//! A head is a spatial unit then a channel unit (eq. 3.2–3.3), as DAN's code:
//! - spatial: `y = conv1x1(f)` (C → C/2, BN), `y = ReLU(conv3x3(y) + conv1x3(y) + conv3x1(y))`
//!   (C/2 → C, each with BN), `s = f · Σ_c y` (the channel-summed map re-weights every channel);
//! - channel: `v = GAP(s)`, `v · σ(Linear(ReLU(BN(Linear(v)))))` with C → 32 → C.
//!
//! The AFN stacks the h head vectors `[N, h, C]`, applies log-softmax across the heads (eq. 3.4,
//! only when h > 1, as DAN), sums them, and classifies with `fc` then a `bn` (BatchNorm1d on the
//! K logits). Names follow DAN's module tree: `cat_head{i}.sa.conv1x1.{0,1}`,
//! `cat_head{i}.sa.conv_3x3.{0,1}` (and `conv_1x3`, `conv_3x1`), `cat_head{i}.ca.attention.{0,1,3}`,
//! `fc`, `bn`. DAN's convs carry a bias before their BN; here they do not (it is redundant with the
//! BN's shift), so those checkpoints load without the `*.0.bias` keys.

use super::{cam_of, emit_linear, path_name, torch_linear, Act, BatchNorm1d, Block, ConvBnAct};
use fer_export::{Attr, GraphBuilder};
use tch::{nn, Kind, Tensor};

/// Width of the channel unit's bottleneck (DAN: 32).
const CHANNEL_HIDDEN: i64 = 32;

#[derive(Debug)]
pub struct CrossAttentionHead {
    conv1x1: ConvBnAct,
    convs: [ConvBnAct; 3],
    ca1: nn::Linear,
    ca_bn: BatchNorm1d,
    ca2: nn::Linear,
    name: String,
}

impl CrossAttentionHead {
    pub fn new(p: nn::Path, c: i64) -> Self {
        let sa = &p / "sa";
        let mid = (c / 2).max(1);
        let conv = |name: &str, k: [i64; 2]| ConvBnAct::rect(&sa / name / 0, &sa / name / 1, mid, c, k, 1, 1, Act::None);
        let ca = &p / "ca" / "attention";
        CrossAttentionHead {
            conv1x1: ConvBnAct::new(&sa / "conv1x1" / 0, &sa / "conv1x1" / 1, c, mid, 1, 1, 1, Act::None),
            convs: [conv("conv_3x3", [3, 3]), conv("conv_1x3", [1, 3]), conv("conv_3x1", [3, 1])],
            ca1: torch_linear(&ca / 0, c, CHANNEL_HIDDEN),
            ca_bn: BatchNorm1d::new(&ca / 1, CHANNEL_HIDDEN),
            ca2: torch_linear(&ca / 3, CHANNEL_HIDDEN, c),
            name: path_name(&p),
        }
    }

    /// The spatial unit's output `[N, C, h, w]`.
    pub fn spatial(&self, f: &Tensor, train: bool) -> Tensor {
        let y = self.conv1x1.forward_t(f, train);
        let y = self.convs.iter().map(|c| c.forward_t(&y, train)).reduce(|a, b| a + b).expect("three convs").relu();
        f * y.sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
    }

    /// # Shapes
    /// features `[N, C, h, w]` → head vector `[N, C]`.
    pub fn forward_t(&self, f: &Tensor, train: bool) -> Tensor {
        let v = self.spatial(f, train).adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let w = self.ca_bn.forward_t(&v.apply(&self.ca1), train).relu().apply(&self.ca2).sigmoid();
        v * w
    }

    fn emit(&self, g: &mut GraphBuilder, f: &str) -> fer_export::Result<String> {
        let n = self.name.clone();
        let y = self.conv1x1.emit(g, f)?;
        let mut sum: Option<String> = None;
        for c in &self.convs {
            let z = c.emit(g, &y)?;
            sum = Some(match sum {
                Some(s) => g.add(&s, &z, &format!("{n}/sa/sum")),
                None => z,
            });
        }
        let y = g.relu(&sum.expect("three convs"), &format!("{n}/sa/relu"));
        let axis1 = g.const_i64(&format!("{n}/sa/axis1"), &[1]);
        let y = g.op("ReduceSum", &[&y, &axis1], &[Attr::int("keepdims", 1)], &format!("{n}/sa/map"));
        let s = g.mul(f, &y, &format!("{n}/sa"));
        let v = g.global_avg_pool_flat(&s, &format!("{n}/ca/pool"));
        let w = emit_linear(g, &v, &self.ca1, &format!("{n}.ca.attention.0"))?;
        let w = self.ca_bn.emit(g, &w)?;
        let w = g.relu(&w, &format!("{n}/ca/relu"));
        let w = emit_linear(g, &w, &self.ca2, &format!("{n}.ca.attention.3"))?;
        let w = g.sigmoid(&w, &format!("{n}/ca/gate"));
        Ok(g.mul(&v, &w, &format!("{n}/out")))
    }
}

/// MAN + AFN on a backbone's feature map.
#[derive(Debug)]
pub struct DanHead {
    pub heads: Vec<CrossAttentionHead>,
    pub fc: nn::Linear,
    bn: BatchNorm1d,
    /// The FCN's class centres `[K, C]` for the affinity loss (`affinity.centers`, N(0, 1) as DAN);
    /// training only, not exported.
    pub centers: Tensor,
}

impl DanHead {
    /// `h` heads on `c`-channel features at `root` (`cat_head{i}`, `fc`, `bn`).
    pub fn new(root: &nn::Path, c: i64, h: i64, num_classes: i64) -> Self {
        DanHead {
            heads: (0..h).map(|i| CrossAttentionHead::new(root / format!("cat_head{i}"), c)).collect(),
            fc: torch_linear(root / "fc", c, num_classes),
            bn: BatchNorm1d::new(root / "bn", num_classes),
            centers: (root / "affinity").var("centers", &[num_classes, c], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
        }
    }

    /// # Shapes
    /// features `[N, C, h, w]` → (logits `[N, K]`, head vectors after the AFN's log-softmax `[N, h, C]`).
    pub fn forward_parts(&self, f: &Tensor, train: bool) -> (Tensor, Tensor) {
        let hs = Tensor::stack(&self.heads.iter().map(|h| h.forward_t(f, train)).collect::<Vec<_>>(), 1);
        let hs = if self.heads.len() > 1 { hs.log_softmax(1, Kind::Float) } else { hs };
        let logits = self.bn.forward_t(&hs.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).apply(&self.fc), train);
        (logits, hs)
    }

    /// The attention maps `M = W_fc · F` `[N, K, h, w]` of the AFN's fc (seed 003, eq. 3.6).
    pub fn cam(&self, f: &Tensor) -> Tensor {
        cam_of(f, &self.fc.ws)
    }

    /// Emits `(logits, cam)`.
    pub fn emit(&self, g: &mut GraphBuilder, f: &str, with_cam: bool) -> fer_export::Result<(String, Option<String>)> {
        let axis1 = g.const_i64("afn/axis1", &[1]);
        let mut stacked = Vec::new();
        for h in &self.heads {
            let v = h.emit(g, f)?;
            stacked.push(g.op("Unsqueeze", &[&v, &axis1], &[], &format!("{}/stack", h.name)));
        }
        let refs: Vec<&str> = stacked.iter().map(String::as_str).collect();
        let mut hs = g.op("Concat", &refs, &[Attr::int("axis", 1)], "afn/heads");
        if self.heads.len() > 1 {
            hs = g.op("LogSoftmax", &[&hs], &[Attr::int("axis", 1)], "afn/log_softmax");
        }
        let sum = g.op("ReduceSum", &[&hs, &axis1], &[Attr::int("keepdims", 0)], "afn/sum");
        let logits = emit_linear(g, &sum, &self.fc, "fc")?;
        let logits = self.bn.emit(g, &logits)?;
        let cam = with_cam.then(|| super::linear::emit_cam(g, f, "fc.weight", "fc"));
        Ok((logits, cam))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn man_heads_shapes_and_gradients() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let head = DanHead::new(&vs.root(), 16, 3, 5);
        let f = Tensor::randn([4, 16, 3, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert_eq!(head.heads[0].spatial(&f, true).size(), [4, 16, 3, 3]);
        assert_eq!(head.heads[0].forward_t(&f, true).size(), [4, 16]);
        let (logits, hs) = head.forward_parts(&f, true);
        assert_eq!(logits.size(), [4, 5]);
        assert_eq!(hs.size(), [4, 3, 16]);
        // Log-softmax across heads: exp sums to 1 over the head axis.
        let s = hs.exp().sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        assert!((s - 1.0).abs().max().double_value(&[]) < 1e-5);
        assert_eq!(head.cam(&f).size(), [4, 5, 3, 3]);
        logits.square().sum(Kind::Float).backward();
        // The affinity centres only enter the loss (methods::dan).
        crate::nn::assert_all_have_gradients(&vs, &["affinity."]);
        assert!(f.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
