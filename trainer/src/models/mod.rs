//! Backbones and the classifier they feed. A [`Classifier`] is a backbone's feature map followed by
//! a [`Head`]: the [`LinearHead`] (pool → fc, with class activation maps: CE, EAC, DacFER), IVSA's
//! three-FC classifier, GReFEL's reliability balancing head, or DAN's MAN + AFN. The method picks
//! the head ([`crate::methods::MethodConfig::head_spec`]); [`ModelSpec`] says what to build.

mod cross_vit;
mod ivsa;
mod mobilenetv2;
mod resnet;

pub use cross_vit::{CrossVit, StreamArch, VitConfig};
pub use ivsa::Ivsa;
pub use mobilenetv2::{InvertedResidual, MobileNetV2};
pub use resnet::{BlockKind, ResNet, ResNetConfig, Residual};

use crate::nn::{AttentionKind, Block, DanHead, Fc3Head, LinearHead, RbConfig, RbHead};
use fer_export::{Dim, GraphBuilder, Metadata};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// The architectures `fer-train` builds (config key `model.arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Resnet18,
    Resnet50,
    /// ResNet-50 with squeeze-excitation in every bottleneck (DacFER, seed 000).
    SeResnet50,
    #[serde(alias = "mobilenet_v2")]
    #[value(alias = "mobilenet_v2")]
    Mbv2,
    /// IVSA's improved VGG with attention after every stage (seed 004); 3-FC classifier.
    Ivsa,
    /// GReFEL's window-based cross-attention ViT on an image and a landmark stream (seed 002);
    /// configured by `model.vit`.
    GrefelVit,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet50 => "resnet50",
            Arch::SeResnet50 => "se_resnet50",
            Arch::Mbv2 => "mobilenet_v2",
            Arch::Ivsa => "ivsa",
            Arch::GrefelVit => "grefel_vit",
        }
    }

    /// The head an architecture has under plain cross-entropy: IVSA's own 3-FC classifier, the
    /// linear (CAM) head otherwise.
    pub fn default_head(self) -> HeadSpec {
        match self {
            Arch::Ivsa => HeadSpec::Fc3 { hidden: 1000 },
            _ => HeadSpec::Linear,
        }
    }

    /// The linear head's VarStore path: torchvision calls it `fc` in ResNets, `classifier.1` in
    /// MobileNetV2.
    fn linear_head_path(self) -> &'static str {
        match self {
            Arch::Mbv2 => "classifier.1",
            _ => "fc",
        }
    }

    fn linear_head<'a>(self, root: &nn::Path<'a>) -> nn::Path<'a> {
        match self {
            Arch::Mbv2 => root / "classifier" / 1,
            _ => root / "fc",
        }
    }
}

/// Which head sits on the backbone.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadSpec {
    /// Global average pool → dropout → fc, with CAMs.
    Linear,
    /// IVSA's flattened map → FC → ReLU → dropout → FC → ReLU → dropout → FC (`hidden` wide).
    Fc3 { hidden: i64 },
    /// GReFEL's reliability balancing on the pooled embedding.
    Rb(RbConfig),
    /// DAN's `heads` cross-attention heads and attention fusion.
    Dan { heads: i64 },
}

impl HeadSpec {
    /// The parameter whose first dimension is the number of classes (read from checkpoints).
    pub fn class_param(&self, arch: Arch) -> String {
        match self {
            HeadSpec::Linear => format!("{}.bias", arch.linear_head_path()),
            HeadSpec::Fc3 { .. } => "classifier.6.bias".into(),
            HeadSpec::Rb(_) => "rb.mlp.fc3.bias".into(),
            HeadSpec::Dan { .. } => "fc.bias".into(),
        }
    }

    /// VarStore prefixes of the head's parameters (left out when initialising a backbone).
    pub fn prefixes(&self, arch: Arch) -> Vec<String> {
        match self {
            HeadSpec::Linear => vec![format!("{}.", arch.linear_head_path().split('.').next().expect("non-empty"))],
            HeadSpec::Fc3 { .. } => vec!["classifier.".into()],
            HeadSpec::Rb(_) => vec!["rb.".into()],
            HeadSpec::Dan { .. } => vec!["cat_head".into(), "fc.".into(), "bn.".into(), "affinity.".into()],
        }
    }

    pub fn has_cam(&self) -> bool {
        matches!(self, HeadSpec::Linear | HeadSpec::Dan { .. })
    }
}

/// Everything that decides a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub arch: Arch,
    pub in_channels: i64,
    pub num_classes: i64,
    pub dropout: f64,
    /// Side of the square input (IVSA's classifier is sized by it).
    pub input_size: i64,
    /// IVSA's per-stage attention (`None`: the arch's default, SAB for IVSA).
    pub attention: Option<AttentionKind>,
    /// GReFEL's extractor (`None`: the defaults, for arch `grefel_vit`).
    pub vit: Option<VitConfig>,
    /// Network stride of the ResNets and MobileNetV2: 32 (`None`, torchvision's), 16 or 8.
    pub output_stride: Option<i64>,
    pub head: HeadSpec,
}

impl ModelSpec {
    /// The arch with its default head, attention and input size (48 for IVSA, 112 otherwise).
    pub fn new(arch: Arch, in_channels: i64, num_classes: i64, dropout: f64) -> Self {
        let input_size = if arch == Arch::Ivsa { 48 } else { 112 };
        ModelSpec { arch, in_channels, num_classes, dropout, input_size, attention: None, vit: None, output_stride: None, head: arch.default_head() }
    }
}

/// A model that cannot be built as specified (a config error, reported by name).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model.attention is only for arch ivsa (got arch {0})")]
    AttentionWithoutIvsa(&'static str),
    #[error("model.vit is only for arch grefel_vit (got arch {0})")]
    VitWithoutGrefelVit(&'static str),
    #[error("{0}")]
    Vit(String),
    #[error("arch ivsa needs model.input_size to be a positive multiple of 16 (four 2x2 poolings), got {0}")]
    IvsaInputSize(i64),
    #[error("the 3-FC classifier belongs to arch ivsa, not {0}")]
    Fc3WithoutIvsa(&'static str),
    #[error("{0}")]
    Head(String),
    #[error("model.output_stride must be 32, 16 or 8, got {0}")]
    OutputStride(i64),
    #[error("model.output_stride is for arch resnet18, resnet50, se_resnet50 and mbv2, not {0}")]
    OutputStrideArch(&'static str),
}

#[derive(Debug)]
enum Backbone {
    ResNet(ResNet),
    MobileNetV2(MobileNetV2),
    Ivsa(Ivsa),
    CrossVit(CrossVit),
}

impl Backbone {
    fn as_block(&self) -> &dyn Block {
        match self {
            Backbone::ResNet(b) => b,
            Backbone::MobileNetV2(b) => b,
            Backbone::Ivsa(b) => b,
            Backbone::CrossVit(b) => b,
        }
    }
}

/// A classifier head (see [`HeadSpec`]).
#[derive(Debug)]
pub enum Head {
    Linear(LinearHead),
    Fc3(Fc3Head),
    Rb(RbHead),
    Dan(DanHead),
}

impl Head {
    /// # Shapes
    /// features `[N, C, h, w]` → logits `[N, K]` (GReFEL: `ln L_final`).
    pub fn forward_t(&self, f: &Tensor, train: bool) -> Tensor {
        match self {
            Head::Linear(h) => h.forward_t(f, train),
            Head::Fc3(h) => h.forward_t(f, train),
            Head::Rb(h) => h.forward_t(f, train),
            Head::Dan(h) => h.forward_parts(f, train).0,
        }
    }

    /// The class activation maps `[N, K, h, w]` of heads that have them (linear, DAN).
    pub fn cam(&self, f: &Tensor) -> Option<Tensor> {
        match self {
            Head::Linear(h) => Some(h.cam(f)),
            Head::Dan(h) => Some(h.cam(f)),
            Head::Fc3(_) | Head::Rb(_) => None,
        }
    }

    /// Whether the `--fp16` export of this head matches tch within the parity tests' 1e-2. The
    /// reliability balancing head (squared distances summed over the embedding, ln of small
    /// probabilities) and DAN's AFN (log-softmax across heads and sums over 512 channels in float16,
    /// then a BatchNorm that magnifies them) were measured at 1–2·10⁻² and are refused.
    pub fn fp16_faithful(&self) -> bool {
        matches!(self, Head::Linear(_) | Head::Fc3(_))
    }

    /// The fc whose weights make the CAMs (and which scales the logits of linear heads).
    pub fn cam_fc(&self) -> Option<&nn::Linear> {
        match self {
            Head::Linear(h) => Some(&h.fc),
            Head::Dan(h) => Some(&h.fc),
            Head::Fc3(_) | Head::Rb(_) => None,
        }
    }
}

/// Backbone + head. `forward_t` returns logits and the feature map (for CAMs).
#[derive(Debug)]
pub struct Classifier {
    pub arch: Arch,
    pub in_channels: i64,
    pub num_classes: i64,
    pub spec: ModelSpec,
    backbone: Backbone,
    pub head: Head,
}

impl Classifier {
    /// The arch with its default head under `root` (pass `vs.root()`); names match torchvision.
    pub fn new(root: &nn::Path, arch: Arch, in_channels: i64, num_classes: i64, dropout: f64) -> Self {
        Self::build(root, &ModelSpec::new(arch, in_channels, num_classes, dropout)).expect("an arch's default spec always builds")
    }

    /// Builds `spec` under `root`, or says why it cannot be built.
    pub fn build(root: &nn::Path, spec: &ModelSpec) -> Result<Self, ModelError> {
        let arch = spec.arch;
        if spec.attention.is_some() && arch != Arch::Ivsa {
            return Err(ModelError::AttentionWithoutIvsa(arch.name()));
        }
        if spec.vit.is_some() && arch != Arch::GrefelVit {
            return Err(ModelError::VitWithoutGrefelVit(arch.name()));
        }
        let output_stride = match spec.output_stride {
            None => 32,
            Some(os) if ![8, 16, 32].contains(&os) => return Err(ModelError::OutputStride(os)),
            Some(_) if matches!(arch, Arch::Ivsa | Arch::GrefelVit) => return Err(ModelError::OutputStrideArch(arch.name())),
            Some(os) => os,
        };
        let (backbone, c) = match arch {
            Arch::Resnet18 | Arch::Resnet50 | Arch::SeResnet50 => {
                let cfg = match arch {
                    Arch::Resnet18 => ResNetConfig::resnet18(spec.in_channels),
                    Arch::Resnet50 => ResNetConfig::resnet50(spec.in_channels),
                    _ => ResNetConfig::se_resnet50(spec.in_channels),
                };
                let r = ResNet::new(root, &ResNetConfig { output_stride, ..cfg });
                let c = r.out_channels();
                (Backbone::ResNet(r), c)
            }
            Arch::Mbv2 => (Backbone::MobileNetV2(MobileNetV2::new(root, spec.in_channels, output_stride)), MobileNetV2::OUT_CHANNELS),
            Arch::Ivsa => {
                if spec.input_size < Ivsa::STRIDE || spec.input_size % Ivsa::STRIDE != 0 {
                    return Err(ModelError::IvsaInputSize(spec.input_size));
                }
                let att = spec.attention.unwrap_or(AttentionKind::Sab);
                (Backbone::Ivsa(Ivsa::new(root, spec.in_channels, att)), Ivsa::OUT_CHANNELS)
            }
            Arch::GrefelVit => {
                let cfg = spec.vit.clone().unwrap_or_default();
                cfg.check(spec.input_size).map_err(ModelError::Vit)?;
                let m = CrossVit::new(root, spec.in_channels, spec.input_size, &cfg);
                let c = m.out_channels();
                (Backbone::CrossVit(m), c)
            }
        };
        let k = spec.num_classes;
        let head = match &spec.head {
            HeadSpec::Linear => Head::Linear(LinearHead::new(arch.linear_head(root), c, k, spec.dropout)),
            HeadSpec::Fc3 { hidden } => {
                if arch != Arch::Ivsa {
                    return Err(ModelError::Fc3WithoutIvsa(arch.name()));
                }
                let side = spec.input_size / Ivsa::STRIDE;
                Head::Fc3(Fc3Head::new(root / "classifier", c * side * side, *hidden, k, spec.dropout))
            }
            HeadSpec::Rb(cfg) => {
                cfg.check(c).map_err(ModelError::Head)?;
                Head::Rb(RbHead::new(root / "rb", c, k, cfg))
            }
            HeadSpec::Dan { heads } => {
                if *heads < 1 {
                    return Err(ModelError::Head(format!("method.heads must be at least 1, got {heads}")));
                }
                Head::Dan(DanHead::new(root, c, *heads, k))
            }
        };
        Ok(Classifier { arch, in_channels: spec.in_channels, num_classes: k, spec: spec.clone(), backbone, head })
    }

    /// Whether the `--fp16` export matches tch within the parity tests' 1e-2: the head must be
    /// (see [`Head::fp16_faithful`]), and GReFEL's ViT is not: its layer norms and attention
    /// softmaxes in float16 were measured at 0.4–1.3·10⁻² on the logits and CAMs, so it is refused.
    pub fn fp16_faithful(&self) -> bool {
        self.head.fp16_faithful() && !matches!(self.backbone, Backbone::CrossVit(_))
    }

    /// # Shapes
    /// `[N, C, H, W]` → feature map `[N, C_f, h, w]` (`h = H/32`; IVSA and GReFEL's ViT: `H/16`).
    pub fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.backbone.as_block().forward_t(xs, train)
    }

    /// # Shapes
    /// `[N, C, H, W]` → (logits `[N, K]`, features `[N, C_f, h, w]`).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let f = self.features(xs, train);
        (self.head.forward_t(&f, train), f)
    }

    /// Writes the eval-mode graph: `input` → `logits`, `probs` (softmax of the logits; GReFEL: its
    /// corrected distribution), `cam` when `with_cam` and the head has CAMs, and `confidence` when
    /// the head computes one (GReFEL).
    pub fn to_onnx(&self, meta: &Metadata, with_cam: bool) -> fer_export::Result<fer_export::pb::ModelProto> {
        let (h, w) = meta.input_size;
        let mut g = GraphBuilder::new(&format!("fer_{}", self.arch.name()));
        let x = g.input("input", &[Dim::batch(), Dim::Fixed(self.in_channels), Dim::Fixed(h as i64), Dim::Fixed(w as i64)]);
        let f = self.backbone.as_block().emit(&mut g, &x)?;
        let (logits, probs, cam, confidence) = match &self.head {
            Head::Linear(head) => {
                let (logits, cam) = head.emit(&mut g, &f, with_cam)?;
                (logits, None, cam, None)
            }
            Head::Dan(head) => {
                let (logits, cam) = head.emit(&mut g, &f, with_cam)?;
                (logits, None, cam, None)
            }
            Head::Fc3(head) => (head.emit(&mut g, &f)?, None, None, None),
            Head::Rb(head) => {
                let (logits, probs, conf) = head.emit(&mut g, &f)?;
                (logits, Some(probs), None, Some(conf))
            }
        };
        let probs = probs.unwrap_or_else(|| g.softmax(&logits, 1, "probs"));
        let k = Dim::Fixed(self.num_classes);
        g.output("logits", &logits, &[Dim::batch(), k.clone()]);
        g.output("probs", &probs, &[Dim::batch(), k.clone()]);
        if let Some(cam) = cam {
            g.output("cam", &cam, &[Dim::batch(), k, Dim::Param("h".into()), Dim::Param("w".into())]);
        }
        if let Some(conf) = confidence {
            g.output("confidence", &conf, &[Dim::batch()]);
        }
        g.finish(meta)
    }
}
