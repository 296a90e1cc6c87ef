//! DAN + flip attention consistency (seed 003, eq. 3.1, 3.5, 3.7, 3.8):
//! `L = λ1 L_af + λ2 L_pt + L_cls + λ3 L_c`.

use super::{l2_consistency_loss, StepLoss};
use crate::models::{Classifier, Head};
use tch::{Kind, Tensor};

/// Affinity loss (eq. 3.1, as DAN's code): the squared distance of each pooled feature to its class
/// centre, averaged over the batch and divided by the centres' variance `Σ_d var_k(c_kd)`
/// (unbiased, over classes).
///
/// # Shapes
/// `feat`: `[N, C]`, `centers`: `[K, C]`, `y`: `[N]`.
pub fn affinity_loss(feat: &Tensor, centers: &Tensor, y: &Tensor) -> Tensor {
    let d2 = (feat - centers.index_select(0, y)).square().sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let var = centers.var_dim([0i64].as_slice(), true, false).sum(Kind::Float);
    d2.mean(Kind::Float) / var
}

/// Partition loss (eq. 3.5): `1/(N·C) Σ_{i,j} ln(1 + h / σ²_ij)`, σ²_ij the (unbiased) variance
/// across the h heads of channel j of sample i; zero with one head.
///
/// # Shapes
/// `heads`: `[N, h, C]` (after the AFN's log-softmax).
pub fn partition_loss(heads: &Tensor) -> Tensor {
    let h = heads.size()[1];
    if h < 2 {
        return Tensor::zeros([], (Kind::Float, heads.device()));
    }
    let var = heads.var_dim([1i64].as_slice(), true, false).clamp_min(1e-12);
    (var.reciprocal() * h as f64 + 1.0).log().mean(Kind::Float)
}

/// One DAN step; `lambdas` = `[λ1, λ2, λ3]` (affinity, partition, consistency).
pub fn dan_loss(model: &Classifier, x: &Tensor, y: &Tensor, lambdas: [f64; 3]) -> StepLoss {
    let Head::Dan(dan) = &model.head else { unreachable!("dan builds the MAN + AFN head") };
    let f = model.features(x, true);
    let (logits, heads) = dan.forward_parts(&f, true);
    let f_flip = model.features(&x.flip([3]), true);
    let cls = logits.cross_entropy_for_logits(y);
    let af = affinity_loss(&f.adaptive_avg_pool2d([1, 1]).flatten(1, -1), &dan.centers, y);
    let pt = partition_loss(&heads);
    let lc = l2_consistency_loss(&dan.cam(&f), &dan.cam(&f_flip));
    let loss = &af * lambdas[0] + &pt * lambdas[1] + &cls + &lc * lambdas[2];
    StepLoss { loss, logits, terms: vec![("ce", cls), ("affinity", af), ("partition", pt), ("consistency", lc)] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_loss_by_hand() {
        // Centres (0,0) and (2,4): per-dim unbiased variances 2 and 8 → σ² = 10.
        let c = Tensor::from_slice(&[0.0f32, 0.0, 2.0, 4.0]).reshape([2, 2]);
        // f0 = (1,0) class 0: 1; f1 = (2,1) class 1: 9 → mean 5 → 5 / 10.
        let f = Tensor::from_slice(&[1.0f32, 0.0, 2.0, 1.0]).reshape([2, 2]);
        let y = Tensor::from_slice(&[0i64, 1]);
        assert!((affinity_loss(&f, &c, &y).double_value(&[]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn partition_loss_by_hand() {
        // N = 1, h = 2, C = 2: channel 0 values (0, 2) → var 2; channel 1 (1, 1) → var 0 (floored).
        let hs = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 1.0]).reshape([1, 2, 2]);
        let want = ((1.0 + 2.0 / 2.0f64).ln() + (1.0 + 2.0 / 1e-12f64).ln()) / 2.0;
        let got = partition_loss(&hs).double_value(&[]);
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        // Spread-out heads lose less than collapsed ones.
        let spread = Tensor::from_slice(&[0.0f32, 0.0, 4.0, 4.0]).reshape([1, 2, 2]);
        assert!(partition_loss(&spread).double_value(&[]) < got);
        assert_eq!(partition_loss(&hs.narrow(1, 0, 1)).double_value(&[]), 0.0);
    }
}
