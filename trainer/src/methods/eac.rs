//! Flip attention consistency: the CAM of the flipped image, flipped back, must match the CAM of
//! the image. EAC (seed 001, eq. 3–5) measures the mismatch by MSE; DacFER (seed 000, eq. 4) and
//! DAN + attention consistency (seed 003, eq. 3.7) by the L2 norm of each class map.

use super::StepLoss;
use crate::models::Classifier;
use tch::{Kind, Tensor};

/// `CE(f(x), y) + λ · mean((M(x) − flip(M(flip(x))))²)`.
///
/// # Shapes
/// `x`: `[N, C, H, W]` (already erased), `y`: `[N]`.
pub fn eac_loss(model: &Classifier, x: &Tensor, y: &Tensor, lambda: f64) -> StepLoss {
    flip_cam_loss(model, x, y, lambda, consistency_loss)
}

/// CE on the original view plus `λ · consistency(M(x), M(flip(x)))`, two forward passes (BN sees
/// each view separately, as the peer). The model's head must have CAMs (checked when the model is
/// built for the method).
pub fn flip_cam_loss(model: &Classifier, x: &Tensor, y: &Tensor, lambda: f64, consistency: fn(&Tensor, &Tensor) -> Tensor) -> StepLoss {
    let (logits, f) = model.forward_t(x, true);
    let (_, f_flip) = model.forward_t(&x.flip([3]), true);
    let cam = |f: &Tensor| model.head.cam(f).expect("the method's head has CAMs (validated when the model was built)");
    let consistency = consistency(&cam(&f), &cam(&f_flip));
    let ce = logits.cross_entropy_for_logits(y);
    let loss = &ce + &consistency * lambda;
    StepLoss { loss, logits, terms: vec![("ce", ce), ("consistency", consistency)] }
}

/// MSE between a CAM and the horizontally flipped CAM of the flipped input.
pub fn consistency_loss(cam: &Tensor, cam_of_flipped: &Tensor) -> Tensor {
    cam.mse_loss(&cam_of_flipped.flip([3]), tch::Reduction::Mean)
}

/// DacFER's eq. 4 (and seed 003's eq. 3.7): `1/(N·K·H·W) · Σ_{n,k} ‖M_nk − flip(M'_nk)‖₂`, the
/// (not squared) L2 norm of each `H×W` class map's difference.
pub fn l2_consistency_loss(cam: &Tensor, cam_of_flipped: &Tensor) -> Tensor {
    let s = cam.size();
    let norms = crate::nn::spatial_l2(&(cam - cam_of_flipped.flip([3])), false);
    norms.sum(Kind::Float) / (s.iter().product::<i64>() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_is_zero_for_mirror_cams_and_hand_value_otherwise() {
        let cam = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([1, 1, 2, 2]);
        // The flipped input's CAM is the mirror image: perfectly consistent.
        assert_eq!(consistency_loss(&cam, &cam.flip([3])).double_value(&[]), 0.0);
        // Unflipped copy: differences (1-2, 2-1, 3-4, 4-3) → squares all 1 → mean 1.
        assert!((consistency_loss(&cam, &cam).double_value(&[]) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn l2_consistency_by_hand() {
        // N = 1, K = 2, 2x2 maps. Class 0 as above: differences ±1 → norm √4 = 2. Class 1:
        // [[0, 3], [0, 0]] vs its unflipped copy: differences (−3, 3, 0, 0) → norm √18.
        let cam = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 0.0, 3.0, 0.0, 0.0]).reshape([1, 2, 2, 2]);
        let want = (2.0 + 18f64.sqrt()) / 8.0;
        let got = l2_consistency_loss(&cam, &cam).double_value(&[]);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(l2_consistency_loss(&cam, &cam.flip([3])).double_value(&[]), 0.0);
        // A perfectly consistent pair still has a finite (zero) gradient.
        let c = cam.set_requires_grad(true);
        l2_consistency_loss(&c, &c.detach().flip([3])).backward();
        assert!(c.grad().isfinite().all().int64_value(&[]) == 1);
    }
}
