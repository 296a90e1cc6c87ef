//! Backbones and the classifier they feed. A [`Classifier`] is a backbone's feature map followed by
//! the [`LinearHead`] (pool → fc) and, for EAC and CAM exports, the class activation maps.

mod mobilenetv2;
mod resnet;

pub use mobilenetv2::{InvertedResidual, MobileNetV2};
pub use resnet::{BlockKind, ResNet, ResNetConfig, Residual};

use crate::nn::{Block, LinearHead};
use fer_export::{Dim, GraphBuilder, Metadata};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// The architectures `fer-train` builds (config key `model.arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Resnet18,
    Resnet50,
    #[serde(alias = "mobilenet_v2")]
    #[value(alias = "mobilenet_v2")]
    Mbv2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet50 => "resnet50",
            Arch::Mbv2 => "mobilenet_v2",
        }
    }

    /// The head's VarStore path: torchvision calls it `fc` in ResNets, `classifier.1` in MobileNetV2.
    fn head_path<'a>(self, root: &nn::Path<'a>) -> nn::Path<'a> {
        match self {
            Arch::Resnet18 | Arch::Resnet50 => root / "fc",
            Arch::Mbv2 => root / "classifier" / 1,
        }
    }
}

#[derive(Debug)]
enum Backbone {
    ResNet(ResNet),
    MobileNetV2(MobileNetV2),
}

impl Backbone {
    fn as_block(&self) -> &dyn Block {
        match self {
            Backbone::ResNet(b) => b,
            Backbone::MobileNetV2(b) => b,
        }
    }
}

/// Backbone + linear head. `forward_t` returns logits and the feature map (for CAMs).
#[derive(Debug)]
pub struct Classifier {
    pub arch: Arch,
    pub in_channels: i64,
    pub num_classes: i64,
    backbone: Backbone,
    pub head: LinearHead,
}

impl Classifier {
    /// Builds the model under `root` (pass `vs.root()`); names match torchvision.
    pub fn new(root: &nn::Path, arch: Arch, in_channels: i64, num_classes: i64, dropout: f64) -> Self {
        let (backbone, c) = match arch {
            Arch::Resnet18 | Arch::Resnet50 => {
                let cfg = if arch == Arch::Resnet18 {
                    ResNetConfig::resnet18(in_channels)
                } else {
                    ResNetConfig::resnet50(in_channels)
                };
                let r = ResNet::new(root, &cfg);
                let c = r.out_channels();
                (Backbone::ResNet(r), c)
            }
            Arch::Mbv2 => (Backbone::MobileNetV2(MobileNetV2::new(root, in_channels)), MobileNetV2::OUT_CHANNELS),
        };
        let head = LinearHead::new(arch.head_path(root), c, num_classes, dropout);
        Classifier { arch, in_channels, num_classes, backbone, head }
    }

    /// # Shapes
    /// `[N, C, H, W]` → feature map `[N, C_f, H/32, W/32]`.
    pub fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.backbone.as_block().forward_t(xs, train)
    }

    /// # Shapes
    /// `[N, C, H, W]` → (logits `[N, K]`, features `[N, C_f, h, w]`).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let f = self.features(xs, train);
        (self.head.forward_t(&f, train), f)
    }

    /// Writes the eval-mode graph: `input` → `logits`, `probs` (softmax) and, with `with_cam`, `cam`.
    pub fn to_onnx(&self, meta: &Metadata, with_cam: bool) -> fer_export::Result<fer_export::pb::ModelProto> {
        let (h, w) = meta.input_size;
        let mut g = GraphBuilder::new(&format!("fer_{}", self.arch.name()));
        let x = g.input("input", &[Dim::batch(), Dim::Fixed(self.in_channels), Dim::Fixed(h as i64), Dim::Fixed(w as i64)]);
        let f = self.backbone.as_block().emit(&mut g, &x)?;
        let (logits, cam) = self.head.emit(&mut g, &f, with_cam)?;
        let probs = g.softmax(&logits, 1, "probs");
        let k = Dim::Fixed(self.num_classes);
        g.output("logits", &logits, &[Dim::batch(), k.clone()]);
        g.output("probs", &probs, &[Dim::batch(), k.clone()]);
        if let Some(cam) = cam {
            g.output("cam", &cam, &[Dim::batch(), k, Dim::Param("h".into()), Dim::Param("w".into())]);
        }
        g.finish(meta)
    }
}
