//! GReFEL's losses (seed 002, §3.4, eq. 20–23) for the reliability balancing head
//! ([`crate::nn::RbHead`]): `L = λ_cls L_cls + λ_a L_a + λ_c L_c`, λ = 1, 1, 1 (the seed's Table 4).

use super::StepLoss;
use crate::models::{Classifier, Head};
use tch::{Kind, Tensor};

/// Floor of probabilities under the logarithm.
const EPS_P: f64 = 1e-12;

/// Anchor loss (eq. 21), negative so that minimising it pushes anchors apart, normalised by the
/// number of anchor pairs and by √D: `−1/(M²√D) · Σ_{p,q} ‖a_p − a_q‖²` over all `M = K·A` anchors.
///
/// # Shapes
/// `anchors`: `[K, A, D]`.
pub fn anchor_loss(anchors: &Tensor) -> Tensor {
    let d = anchors.size()[2];
    let a = anchors.reshape([-1, d]);
    let m = a.size()[0] as f64;
    let sq = (a.unsqueeze(0) - a.unsqueeze(1)).square().sum(Kind::Float);
    -sq / (m * m * (d as f64).sqrt())
}

/// Center loss (eq. 22): each embedding to the nearest anchor of its class, `mean_i min_k ‖e_i − a^{y_i,k}‖²`.
///
/// # Shapes
/// `e`: `[N, D]`, `anchors`: `[K, A, D]`, `y`: `[N]`.
pub fn center_loss(e: &Tensor, anchors: &Tensor, y: &Tensor) -> Tensor {
    let own = anchors.index_select(0, y); // [N, A, D]
    let d2 = (e.unsqueeze(1) - own).square().sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
    d2.amin([1], false).mean(Kind::Float)
}

/// One GReFEL step; `lambdas` = `[λ_cls, λ_a, λ_c]`. The anchor and center terms are absent when
/// the head has no anchors (ablation).
pub fn grefel_loss(model: &Classifier, x: &Tensor, y: &Tensor, lambdas: [f64; 3]) -> StepLoss {
    let Head::Rb(rb) = &model.head else { unreachable!("grefel_rb builds the reliability balancing head") };
    let f = model.features(x, true);
    let out = rb.forward_parts(&f, true);
    let logits = out.final_dist.clamp_min(EPS_P).log();
    let cls = logits.nll_loss(y);
    let mut loss = &cls * lambdas[0];
    let mut terms = vec![("nll", cls)];
    if let Some(a) = &rb.anchors {
        let la = anchor_loss(a);
        let lc = center_loss(&out.embedding, a, y);
        loss = loss + &la * lambdas[1] + &lc * lambdas[2];
        terms.push(("anchor", la));
        terms.push(("center", lc));
    }
    StepLoss { loss, logits, terms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_loss_by_hand() {
        // K = 2 classes × A = 1 anchor in D = 4: (0,0,0,0) and (1,1,1,1), ‖Δ‖² = 4 for both ordered
        // pairs: −(4 + 4) / (2² · √4) = −1.
        let a = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]).reshape([2, 1, 4]);
        assert!((anchor_loss(&a).double_value(&[]) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn center_loss_by_hand() {
        // Class 0 anchors (0,0) and (2,0); class 1 anchor pair (5,5), (6,6).
        let a = Tensor::from_slice(&[0.0f32, 0.0, 2.0, 0.0, 5.0, 5.0, 6.0, 6.0]).reshape([2, 2, 2]);
        // e0 = (1.5, 0), class 0: nearest (2,0) at 0.25. e1 = (5, 6), class 1: both at 1 → 1.
        let e = Tensor::from_slice(&[1.5f32, 0.0, 5.0, 6.0]).reshape([2, 2]);
        let y = Tensor::from_slice(&[0i64, 1]);
        assert!((center_loss(&e, &a, &y).double_value(&[]) - 0.625).abs() < 1e-6);
    }
}
