//! EAC's flip attention consistency (seed 001, eq. 3–5): the CAM of the flipped image, flipped back,
//! must match the CAM of the image.

use super::StepLoss;
use crate::models::Classifier;
use tch::Tensor;

/// `CE(f(x), y) + λ · mean((M(x) − flip(M(flip(x))))²)`.
///
/// # Shapes
/// `x`: `[N, C, H, W]` (already erased), `y`: `[N]`.
pub fn eac_loss(model: &Classifier, x: &Tensor, y: &Tensor, lambda: f64) -> StepLoss {
    let (logits, f) = model.forward_t(x, true);
    let (_, f_flip) = model.forward_t(&x.flip([3]), true);
    let consistency = consistency_loss(&model.head.cam(&f), &model.head.cam(&f_flip));
    let ce = logits.cross_entropy_for_logits(y);
    let loss = &ce + &consistency * lambda;
    StepLoss { loss, logits, terms: vec![("ce", ce), ("consistency", consistency)] }
}

/// MSE between a CAM and the horizontally flipped CAM of the flipped input.
pub fn consistency_loss(cam: &Tensor, cam_of_flipped: &Tensor) -> Tensor {
    cam.mse_loss(&cam_of_flipped.flip([3]), tch::Reduction::Mean)
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
}
