//! The classifier head shared by every backbone: global average pooling, optional dropout, a
//! linear layer, and the class activation maps `M = W_fc · F` (EAC, eq. of the CAM: a 1x1
//! "convolution" of the feature map by the fc weights, no bias, as the peer's einsum).

use super::{emit_tensor, path_name, torch_linear};
use fer_export::{Attr, GraphBuilder};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct LinearHead {
    pub fc: nn::Linear,
    dropout: f64,
    name: String,
}

impl LinearHead {
    pub fn new(p: nn::Path, c_in: i64, num_classes: i64, dropout: f64) -> Self {
        let name = path_name(&p);
        LinearHead { fc: torch_linear(p, c_in, num_classes), dropout, name }
    }

    /// # Shapes
    /// features `[N, C, h, w]` → logits `[N, K]`.
    pub fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        features.adaptive_avg_pool2d([1, 1]).flatten(1, -1).dropout(self.dropout, train).apply(&self.fc)
    }

    /// # Shapes
    /// features `[N, C, h, w]` → CAM `[N, K, h, w]`: `cam[n,k] = Σ_c W[k,c]·F[n,c]`.
    pub fn cam(&self, features: &Tensor) -> Tensor {
        Tensor::einsum("nchw,kc->nkhw", &[features, &self.fc.ws], None::<&[i64]>)
    }

    /// Emits `(logits, cam)`; the CAM nodes are only added when `with_cam`.
    pub fn emit(&self, g: &mut GraphBuilder, features: &str, with_cam: bool) -> fer_export::Result<(String, Option<String>)> {
        let w = emit_tensor(g, &format!("{}.weight", self.name), &self.fc.ws)?;
        let b = match &self.fc.bs {
            Some(b) => Some(emit_tensor(g, &format!("{}.bias", self.name), b)?),
            None => None,
        };
        let pooled = g.global_avg_pool_flat(features, &format!("{}/pool", self.name));
        let logits = g.linear(&pooled, &w, b.as_deref(), &self.name);
        let cam = if with_cam {
            // [K, C] -> [K, C, 1, 1] so the CAM is one 1x1 Conv (no bias), which every runtime fuses well.
            let shape = g.const_i64(&format!("{}/cam_shape", self.name), &[0, 0, 1, 1]);
            let w4 = g.op("Reshape", &[&w, &shape], &[], &format!("{}/cam_weight", self.name));
            Some(g.op(
                "Conv",
                &[features, &w4],
                &[Attr::ints("kernel_shape", &[1, 1])],
                &format!("{}/cam", self.name),
            ))
        } else {
            None
        };
        Ok((logits, cam))
    }
}
