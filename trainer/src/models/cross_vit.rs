//! GReFEL's feature extractor (seed 002, §3.1 and fig. 3): a window-based cross-attention ViT that
//! fuses a landmark stream with an image stream at three scales, then multi-scale self-attention.
//!
//! - Two pluggable CNN streams give feature pyramids at strides 4, 8 and 16 (28x28, 14x14 and 7x7
//!   at the seed's 112 px face crops): the **image** stream (the seed: IR50 pre-trained on
//!   MS-Celeb-1M; here ResNet-18/50 or MobileNetV2) and the **landmark** stream (the seed:
//!   MobileFaceNet, a pre-trained facial-landmark network; here MobileNetV2 or a ResNet). Neither
//!   pre-trained network can be downloaded here: each stream loads user-supplied weights
//!   (`model.vit.image_init` / `landmark_init`, safetensors with torchvision names) or trains from
//!   scratch.
//! - At each level a [`WindowCrossAttention`] lets the landmark features query the image features
//!   window by window (eq. 1–3); its output is embedded into `E`-wide tokens of the coarsest grid
//!   (`w×w`, a `k×k`-strided conv for a level `k` times finer).
//! - The three token sets are concatenated (`3·w²` tokens), given a learned position embedding and
//!   passed through `depth` pre-norm ViT blocks (the multi-scale self-attention), then a final
//!   layer norm.
//!
//! The output is a feature map `[N, E, w, w]`: the mean over the three levels of each grid cell's
//! token. Its global average is the mean of all tokens (the embedding the heads pool), and it keeps
//! a spatial layout, so the linear head's class activation maps (EAC, `--cam`) work on it.

use super::{MobileNetV2, ResNet, ResNetConfig};
use crate::nn::{emit_tensor, patch_conv, path_name, Block, EncoderBlock, LayerNorm, WindowCrossAttention};
use fer_export::{Attr, GraphBuilder};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::{nn, Kind, Tensor};

/// A CNN that can serve as one of the two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamArch {
    /// Stages 1–3 of ResNet-18 (64, 128, 256 channels).
    Resnet18,
    /// Stages 1–3 of ResNet-50 (256, 512, 1024 channels).
    Resnet50,
    /// MobileNetV2 up to stride 16 (24, 32, 96 channels).
    #[serde(alias = "mobilenet_v2")]
    Mbv2,
}

/// Config `model.vit` of arch `grefel_vit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// The image stream (seed: IR50).
    #[serde(default = "resnet18")]
    pub image: StreamArch,
    /// The landmark stream (seed: MobileFaceNet).
    #[serde(default = "mbv2")]
    pub landmark: StreamArch,
    /// Weights for the image stream (safetensors, torchvision names without a prefix); from scratch
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_init: Option<PathBuf>,
    /// Weights for the landmark stream, as `image_init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landmark_init: Option<PathBuf>,
    /// Cross-attention heads at the fine, middle and coarse level (each must divide the image
    /// stream's channels there).
    #[serde(default = "cross_heads")]
    pub cross_heads: [i64; 3],
    /// Token width `E` of the multi-scale ViT.
    #[serde(default = "dim")]
    pub dim: i64,
    /// ViT blocks.
    #[serde(default = "depth")]
    pub depth: i64,
    /// ViT heads (must divide `dim`).
    #[serde(default = "heads")]
    pub heads: i64,
    /// MLP hidden width, as a multiple of the token width.
    #[serde(default = "mlp_ratio")]
    pub mlp_ratio: i64,
}

fn resnet18() -> StreamArch {
    StreamArch::Resnet18
}
fn mbv2() -> StreamArch {
    StreamArch::Mbv2
}
fn cross_heads() -> [i64; 3] {
    [2, 4, 8]
}
fn dim() -> i64 {
    256
}
fn depth() -> i64 {
    2
}
fn heads() -> i64 {
    8
}
fn mlp_ratio() -> i64 {
    2
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig {
            image: resnet18(),
            landmark: mbv2(),
            image_init: None,
            landmark_init: None,
            cross_heads: cross_heads(),
            dim: dim(),
            depth: depth(),
            heads: heads(),
            mlp_ratio: mlp_ratio(),
        }
    }
}

impl StreamArch {
    /// Channels at strides 4, 8, 16.
    pub fn channels(self) -> [i64; 3] {
        match self {
            StreamArch::Resnet18 => [64, 128, 256],
            StreamArch::Resnet50 => [256, 512, 1024],
            StreamArch::Mbv2 => [24, 32, 96],
        }
    }
}

impl VitConfig {
    /// Why this config cannot be built for `input_size`-px inputs, if it cannot.
    pub fn check(&self, input_size: i64) -> Result<(), String> {
        if input_size < 16 || input_size % 16 != 0 {
            return Err(format!("arch grefel_vit needs model.input_size to be a positive multiple of 16 (its levels are at strides 4, 8, 16), got {input_size}"));
        }
        for ((c, h), level) in self.image.channels().into_iter().zip(self.cross_heads).zip(["fine", "middle", "coarse"]) {
            if h < 1 || c % h != 0 {
                return Err(format!("model.vit.cross_heads: {h} heads at the {level} level do not divide the image stream's {c} channels there"));
            }
        }
        if self.dim < 1 || self.heads < 1 || self.dim % self.heads != 0 {
            return Err(format!("model.vit: heads ({}) must divide dim ({})", self.heads, self.dim));
        }
        if self.depth < 1 || self.mlp_ratio < 1 {
            return Err(format!("model.vit: depth ({}) and mlp_ratio ({}) must be at least 1", self.depth, self.mlp_ratio));
        }
        Ok(())
    }
}

/// One stream: a CNN cut after stride 16, giving three maps.
#[derive(Debug)]
enum Stream {
    ResNet(ResNet),
    MobileNetV2(MobileNetV2),
}

impl Stream {
    fn new(p: nn::Path, arch: StreamArch, in_channels: i64) -> Self {
        match arch {
            StreamArch::Resnet18 => Stream::ResNet(ResNet::with_stages(&p, &ResNetConfig::resnet18(in_channels), 3)),
            StreamArch::Resnet50 => Stream::ResNet(ResNet::with_stages(&p, &ResNetConfig::resnet50(in_channels), 3)),
            StreamArch::Mbv2 => Stream::MobileNetV2(MobileNetV2::pyramid(&p, in_channels)),
        }
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        match self {
            Stream::ResNet(r) => r.forward_stages(xs, train),
            Stream::MobileNetV2(m) => m.forward_taps(xs, train),
        }
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<Vec<String>> {
        match self {
            Stream::ResNet(r) => r.emit_stages(g, x),
            Stream::MobileNetV2(m) => m.emit_taps(g, x),
        }
    }
}

/// A level's patch embedding: a `k×k` conv of stride `k` to the ViT's width.
#[derive(Debug)]
struct Embed {
    conv: nn::Conv2D,
    k: i64,
    name: String,
}

#[derive(Debug)]
pub struct CrossVit {
    image: Stream,
    landmark: Stream,
    levels: Vec<WindowCrossAttention>,
    embeds: Vec<Embed>,
    /// `[1, 3·w², E]`.
    pos_embed: Tensor,
    blocks: Vec<EncoderBlock>,
    norm: LayerNorm,
    /// Side `w` of the coarsest grid (the window).
    window: i64,
    dim: i64,
    name: String,
}

impl CrossVit {
    /// Builds the extractor under `p` for `input_size`-px inputs; `cfg` must pass [`VitConfig::check`].
    pub fn new(p: &nn::Path, in_channels: i64, input_size: i64, cfg: &VitConfig) -> Self {
        let window = input_size / 16;
        let img_c = cfg.image.channels();
        let lm_c = cfg.landmark.channels();
        let mut levels = Vec::new();
        let mut embeds = Vec::new();
        for (i, k) in [4i64, 2, 1].into_iter().enumerate() {
            levels.push(WindowCrossAttention::new(p / "cross" / i as i64, img_c[i], lm_c[i], cfg.cross_heads[i], window, k, cfg.mlp_ratio));
            let ep = p / "embed" / i as i64;
            embeds.push(Embed { name: path_name(&ep), conv: patch_conv(ep, img_c[i], cfg.dim, k), k });
        }
        let tokens = 3 * window * window;
        CrossVit {
            image: Stream::new(p / "image", cfg.image, in_channels),
            landmark: Stream::new(p / "landmark", cfg.landmark, in_channels),
            levels,
            embeds,
            pos_embed: p.var("pos_embed", &[1, tokens, cfg.dim], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            blocks: (0..cfg.depth).map(|i| EncoderBlock::new(p / "blocks" / i, cfg.dim, cfg.heads, cfg.mlp_ratio)).collect(),
            norm: LayerNorm::new(p / "norm", cfg.dim),
            window,
            dim: cfg.dim,
            name: path_name(p),
        }
    }

    pub fn out_channels(&self) -> i64 {
        self.dim
    }

    /// A value name under this model's path.
    fn hint(&self, what: &str) -> String {
        if self.name.is_empty() {
            what.to_string()
        } else {
            format!("{}/{what}", self.name)
        }
    }

    /// The initializer name of a parameter directly under this model's path.
    fn param_name(&self, what: &str) -> String {
        if self.name.is_empty() {
            what.to_string()
        } else {
            format!("{}.{what}", self.name)
        }
    }
}

impl Block for CrossVit {
    /// # Shapes
    /// `[N, C, 16w, 16w]` → `[N, E, w, w]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let img = self.image.forward(xs, train);
        let lm = self.landmark.forward(xs, train);
        let tokens: Vec<Tensor> = self
            .levels
            .iter()
            .zip(&self.embeds)
            .enumerate()
            .map(|(i, (level, e))| level.forward(&img[i], &lm[i]).apply(&e.conv).flatten(2, 3).transpose(1, 2))
            .collect();
        let mut x = Tensor::cat(&tokens, 1) + &self.pos_embed;
        for b in &self.blocks {
            x = b.forward(&x);
        }
        let x = self.norm.forward(&x);
        let (n, w) = (x.size()[0], self.window);
        x.reshape([n, 3, w * w, self.dim]).mean_dim([1i64].as_slice(), false, Kind::Float).transpose(1, 2).reshape([n, self.dim, w, w])
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let (e, w) = (self.dim, self.window);
        let m = w * w;
        let img = self.image.emit(g, x)?;
        let lm = self.landmark.emit(g, x)?;
        let flat = g.const_i64(&self.hint("tokens_shape"), &[-1, e, m]);
        let mut tokens = Vec::new();
        for (i, (level, emb)) in self.levels.iter().zip(&self.embeds).enumerate() {
            let o = level.emit(g, &img[i], &lm[i])?;
            let wt = emit_tensor(g, &format!("{}.weight", emb.name), &emb.conv.ws)?;
            let b = emit_tensor(g, &format!("{}.bias", emb.name), emb.conv.bs.as_ref().expect("biased embedding"))?;
            let o = g.conv(&o, &wt, Some(&b), [emb.k, emb.k], [emb.k, emb.k], [0, 0], 1, &emb.name);
            let o = g.op("Reshape", &[&o, &flat], &[], &format!("{}/flat", emb.name));
            tokens.push(g.op("Transpose", &[&o], &[Attr::ints("perm", &[0, 2, 1])], &format!("{}/tokens", emb.name)));
        }
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let x = g.op("Concat", &refs, &[Attr::int("axis", 1)], &self.hint("tokens"));
        let pos = emit_tensor(g, &self.param_name("pos_embed"), &self.pos_embed)?;
        let mut x = g.add(&x, &pos, &self.hint("positioned"));
        for b in &self.blocks {
            x = b.emit(g, &x, 3 * m)?;
        }
        let x = self.norm.emit(g, &x)?;
        let levels = g.const_i64(&self.hint("levels_shape"), &[-1, 3, m, e]);
        let x = g.op("Reshape", &[&x, &levels], &[], &self.hint("levels"));
        // opset 17: ReduceMean still takes its axes as an attribute.
        let x = g.op("ReduceMean", &[&x], &[Attr::ints("axes", &[1]), Attr::int("keepdims", 0)], &self.hint("level_mean"));
        let x = g.op("Transpose", &[&x], &[Attr::ints("perm", &[0, 2, 1])], &self.hint("map_t"));
        let map = g.const_i64(&self.hint("map_shape"), &[-1, e, w, w]);
        Ok(g.op("Reshape", &[&x, &map], &[], &self.hint("map")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn shapes_at_32px_and_every_parameter_trains() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = VitConfig { dim: 32, heads: 4, ..Default::default() };
        cfg.check(32).unwrap();
        let m = CrossVit::new(&vs.root(), 1, 32, &cfg);
        let y = m.forward_t(&Tensor::randn([2, 1, 32, 32], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [2, 32, 2, 2]);
        y.square().sum(Kind::Float).backward();
        crate::nn::assert_all_have_gradients(&vs, &[]);
        // The streams keep torchvision's names under their prefixes.
        let names = vs.variables();
        assert!(names.contains_key("image.layer3.1.conv2.weight") && !names.contains_key("image.layer4.0.conv1.weight"));
        assert!(names.contains_key("landmark.features.13.conv.2.weight") && !names.contains_key("landmark.features.14.conv.0.0.weight"));
    }

    #[test]
    fn bad_configs_are_named() {
        let e = VitConfig::default().check(40).unwrap_err();
        assert!(e.contains("multiple of 16"), "{e}");
        let e = VitConfig { cross_heads: [3, 4, 8], ..Default::default() }.check(112).unwrap_err();
        assert!(e.contains("3 heads at the fine level") && e.contains("64 channels"), "{e}");
        let e = VitConfig { dim: 100, heads: 8, ..Default::default() }.check(112).unwrap_err();
        assert!(e.contains("heads (8) must divide dim (100)"), "{e}");
    }
}
