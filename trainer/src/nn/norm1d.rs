//! `BatchNorm1d` on `[N, C]` vectors (GReFEL's MLP, DAN's channel unit and AFN). Exported in eval
//! form as one `Mul` and one `Add` by per-channel constants, `scale = γ/√(σ²+ε)`,
//! `shift = β − μ·scale` (exact in eval mode; the constants are derived, named `<path>.scale` /
//! `<path>.shift`).

use super::{path_name, to_vec_f32};
use fer_export::GraphBuilder;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct BatchNorm1d {
    pub bn: nn::BatchNorm,
    eps: f64,
    name: String,
}

impl BatchNorm1d {
    /// γ = 1, β = 0, ε = 1e-5, momentum 0.1 (PyTorch's defaults).
    pub fn new(p: nn::Path, c: i64) -> Self {
        let cfg = nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), bs_init: nn::Init::Const(0.0), ..Default::default() };
        let eps = cfg.eps;
        let name = path_name(&p);
        BatchNorm1d { bn: nn::batch_norm1d(p, c, cfg), eps, name }
    }

    /// # Shapes
    /// `[N, C]` → `[N, C]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply_t(&self.bn, train)
    }

    /// The eval-mode affine map `(scale, shift)`.
    pub fn folded(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let gamma = self.bn.ws.as_ref().expect("affine BN").detach();
            let beta = self.bn.bs.as_ref().expect("affine BN").detach();
            let scale = gamma / (self.bn.running_var.detach() + self.eps).sqrt();
            let shift = beta - self.bn.running_mean.detach() * &scale;
            (scale, shift)
        })
    }

    pub fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let (scale, shift) = self.folded();
        let c = scale.size()[0];
        let scale = g.initializer(&format!("{}.scale", self.name), &[c], &to_vec_f32(&scale))?;
        let shift = g.initializer(&format!("{}.shift", self.name), &[c], &to_vec_f32(&shift))?;
        let y = g.mul(x, &scale, &format!("{}/scale", self.name));
        Ok(g.add(&y, &shift, &self.name))
    }
}
