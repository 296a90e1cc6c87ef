//! The classifier head shared by every backbone: global average pooling, optional dropout, a
//! linear layer, and the class activation maps `M = W_fc · F` (EAC, eq. of the CAM: a 1x1
//! "convolution" of the feature map by the fc weights, no bias, as the peer's einsum).

use super::{emit_linear, path_name, torch_linear};
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
        cam_of(features, &self.fc.ws)
    }

    /// Emits `(logits, cam)`; the CAM nodes are only added when `with_cam`.
    pub fn emit(&self, g: &mut GraphBuilder, features: &str, with_cam: bool) -> fer_export::Result<(String, Option<String>)> {
        let pooled = g.global_avg_pool_flat(features, &format!("{}/pool", self.name));
        let logits = emit_linear(g, &pooled, &self.fc, &self.name)?;
        let cam = if with_cam { Some(emit_cam(g, features, &format!("{}.weight", self.name), &self.name)) } else { None };
        Ok((logits, cam))
    }
}

/// The CAM `[N, K, h, w]` of `features` by the already emitted fc weight `w` (`[K, C]`): reshaped to
/// `[K, C, 1, 1]`, so the CAM is one 1x1 Conv (no bias), which every runtime fuses well.
pub(crate) fn emit_cam(g: &mut GraphBuilder, features: &str, w: &str, name: &str) -> String {
    let shape = g.const_i64(&format!("{name}/cam_shape"), &[0, 0, 1, 1]);
    let w4 = g.op("Reshape", &[w, &shape], &[], &format!("{name}/cam_weight"));
    g.op("Conv", &[features, &w4], &[Attr::ints("kernel_shape", &[1, 1])], &format!("{name}/cam"))
}

/// `M = W · F`: `[N, C, h, w]` features by a `[K, C]` fc weight → `[N, K, h, w]`.
pub(crate) fn cam_of(features: &Tensor, w: &Tensor) -> Tensor {
    Tensor::einsum("nchw,kc->nkhw", &[features, w], None::<&[i64]>)
}

/// IVSA's classifier (seed 004, eq. 10): the feature map flattened, then three fully connected
/// layers with ReLU and dropout between them, torchvision VGG's `classifier.{0,3,6}` names.
#[derive(Debug)]
pub struct Fc3Head {
    fcs: [nn::Linear; 3],
    dropout: f64,
    names: [String; 3],
}

impl Fc3Head {
    pub fn new(p: nn::Path, c_in: i64, hidden: i64, num_classes: i64, dropout: f64) -> Self {
        let names = [0, 3, 6].map(|i| path_name(&(&p / i)));
        let fcs = [
            torch_linear(&p / 0, c_in, hidden),
            torch_linear(&p / 3, hidden, hidden),
            torch_linear(&p / 6, hidden, num_classes),
        ];
        Fc3Head { fcs, dropout, names }
    }

    /// # Shapes
    /// features `[N, C, h, w]` → logits `[N, K]` (`C·h·w` must be the `c_in` it was built for).
    pub fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        let x = features.flatten(1, -1).apply(&self.fcs[0]).relu().dropout(self.dropout, train);
        let x = x.apply(&self.fcs[1]).relu().dropout(self.dropout, train);
        x.apply(&self.fcs[2])
    }

    pub fn emit(&self, g: &mut GraphBuilder, features: &str) -> fer_export::Result<String> {
        let mut x = g.op("Flatten", &[features], &[Attr::int("axis", 1)], &format!("{}/flatten", self.names[0]));
        for (i, (fc, name)) in self.fcs.iter().zip(&self.names).enumerate() {
            x = emit_linear(g, &x, fc, name)?;
            if i < 2 {
                x = g.relu(&x, &format!("{name}/relu"));
            }
        }
        Ok(x)
    }
}
