//! ResNet-18 / ResNet-50 (He et al., 2016), derived from torchvision's `resnet.py`: same module
//! tree and parameter names (`conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}`, `downsample.{0,1}`), so
//! a torchvision state dict loads with a strict `VarStore::load`. The `fc` lives in the head.
//!
//! SE-ResNet-50 (DacFER's backbone, seed 000) is the ResNet-50 with a squeeze-excitation block
//! (`layerX.Y.se.fc1/fc2`, r = 16) on each bottleneck's residual branch, after its last BN and
//! before the identity is added (Hu et al., 2018, fig. 3).

use crate::nn::{Act, Block, ConvBnAct, SqueezeExcite};
use fer_export::GraphBuilder;
use tch::{nn, Tensor};

/// Which residual block a ResNet stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Basic,
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A ResNet's stage table.
#[derive(Debug, Clone)]
pub struct ResNetConfig {
    pub block: BlockKind,
    pub layers: [i64; 4],
    pub in_channels: i64,
    /// Squeeze-excitation reduction ratio in every block (SE-ResNet); none for a plain ResNet.
    pub se_reduction: Option<i64>,
    /// Input pixels per output pixel: 32 as torchvision; 16 or 8 keep the last stage(s) at
    /// stride 1, so small faces (48 px) end in a 3x3 or 6x6 map instead of 2x2.
    pub output_stride: i64,
}

impl ResNetConfig {
    pub fn resnet18(in_channels: i64) -> Self {
        ResNetConfig { block: BlockKind::Basic, layers: [2, 2, 2, 2], in_channels, se_reduction: None, output_stride: 32 }
    }
    pub fn resnet50(in_channels: i64) -> Self {
        ResNetConfig { block: BlockKind::Bottleneck, layers: [3, 4, 6, 3], in_channels, se_reduction: None, output_stride: 32 }
    }
    pub fn se_resnet50(in_channels: i64) -> Self {
        ResNetConfig { se_reduction: Some(16), ..Self::resnet50(in_channels) }
    }
}

/// BasicBlock (two 3x3) or Bottleneck (1x1, 3x3 with the stride, 1x1 ×4), with an optional
/// 1x1-conv + BN downsample on the identity path.
#[derive(Debug)]
pub struct Residual {
    convs: Vec<ConvBnAct>,
    se: Option<SqueezeExcite>,
    downsample: Option<ConvBnAct>,
    name: String,
}

impl Residual {
    fn new(p: nn::Path, kind: BlockKind, c_in: i64, planes: i64, stride: i64, se_reduction: Option<i64>) -> Self {
        let c_out = planes * kind.expansion();
        // The last conv's activation comes after the residual add, so it is `Act::None` here.
        let convs = match kind {
            BlockKind::Basic => vec![
                ConvBnAct::new(&p / "conv1", &p / "bn1", c_in, planes, 3, stride, 1, Act::Relu),
                ConvBnAct::new(&p / "conv2", &p / "bn2", planes, planes, 3, 1, 1, Act::None),
            ],
            BlockKind::Bottleneck => vec![
                ConvBnAct::new(&p / "conv1", &p / "bn1", c_in, planes, 1, 1, 1, Act::Relu),
                ConvBnAct::new(&p / "conv2", &p / "bn2", planes, planes, 3, stride, 1, Act::Relu),
                ConvBnAct::new(&p / "conv3", &p / "bn3", planes, c_out, 1, 1, 1, Act::None),
            ],
        };
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = &p / "downsample";
            ConvBnAct::new(&d / 0, &d / 1, c_in, c_out, 1, stride, 1, Act::None)
        });
        let se = se_reduction.map(|r| SqueezeExcite::new(&p / "se", c_out, r));
        Residual { convs, se, downsample, name: crate::nn::path_name(&p) }
    }
}

impl Block for Residual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = xs.shallow_clone();
        for c in &self.convs {
            y = c.forward_t(&y, train);
        }
        if let Some(se) = &self.se {
            y = se.forward_t(&y, train);
        }
        let identity = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let mut sum = y + identity;
        sum.relu_() // in place, as torchvision
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let mut y = x.to_string();
        for c in &self.convs {
            y = c.emit(g, &y)?;
        }
        if let Some(se) = &self.se {
            y = se.emit(g, &y)?;
        }
        let identity = match &self.downsample {
            Some(d) => d.emit(g, x)?,
            None => x.to_string(),
        };
        let sum = g.add(&y, &identity, &format!("{}/add", self.name));
        Ok(g.relu(&sum, &format!("{}/relu", self.name)))
    }
}

/// The ResNet feature extractor: stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and four stages
/// (or the first few, for a feature pyramid: strides 4, 8, 16, 32 after stages 1–4).
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBnAct,
    blocks: Vec<Residual>,
    /// Channels after each built stage.
    stage_channels: Vec<i64>,
    /// How many blocks precede the end of each built stage.
    stage_ends: Vec<usize>,
    /// The VarStore path (`""` at the root, `"image"` as a stream of a larger model).
    name: String,
}

impl ResNet {
    pub fn new(p: &nn::Path, cfg: &ResNetConfig) -> Self {
        Self::with_stages(p, cfg, 4)
    }

    /// The stem and the first `stages` (1–4) stages, with torchvision's names.
    pub fn with_stages(p: &nn::Path, cfg: &ResNetConfig, stages: usize) -> Self {
        let stem = ConvBnAct::new(p / "conv1", p / "bn1", cfg.in_channels, 64, 7, 2, 1, Act::Relu);
        let mut blocks = Vec::new();
        let (mut stage_channels, mut stage_ends) = (Vec::new(), Vec::new());
        let mut c_in = 64;
        let mut total_stride = 4; // the stem's conv and max-pool
        #[rustfmt::skip]
        let table = [(64, 1), (128, 2), (256, 2), (512, 2)]; // planes, first stride
        for (s, ((planes, stride), n)) in table.into_iter().zip(cfg.layers).enumerate().take(stages) {
            let lp = p / format!("layer{}", s + 1);
            for i in 0..n {
                let st = if i == 0 && total_stride * stride <= cfg.output_stride { stride } else { 1 };
                total_stride *= st;
                blocks.push(Residual::new(&lp / i, cfg.block, c_in, planes, st, cfg.se_reduction));
                c_in = planes * cfg.block.expansion();
            }
            stage_channels.push(c_in);
            stage_ends.push(blocks.len());
        }
        ResNet { stem, blocks, stage_channels, stage_ends, name: crate::nn::path_name(p) }
    }

    pub fn out_channels(&self) -> i64 {
        *self.stage_channels.last().expect("at least one stage")
    }

    /// Channels after each built stage.
    pub fn stage_channels(&self) -> &[i64] {
        &self.stage_channels
    }

    /// # Shapes
    /// `[N, C, H, W]` → the output of each built stage, `[N, C_s, H/2^(s+1), W/2^(s+1)]` (the
    /// divisor capped at `output_stride`).
    pub fn forward_stages(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let mut y = self.stem.forward_t(xs, train).max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            y = b.forward_t(&y, train);
            if self.stage_ends.contains(&(i + 1)) {
                out.push(y.shallow_clone());
            }
        }
        out
    }

    /// As [`forward_stages`](Self::forward_stages).
    pub fn emit_stages(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<Vec<String>> {
        let stem = self.stem.emit(g, x)?;
        let hint = if self.name.is_empty() { "maxpool".to_string() } else { format!("{}.maxpool", self.name) };
        let mut y = g.max_pool(&stem, 3, 2, 1, &hint);
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            y = b.emit(g, &y)?;
            if self.stage_ends.contains(&(i + 1)) {
                out.push(y.clone());
            }
        }
        Ok(out)
    }
}

impl Block for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_stages(xs, train).pop().expect("at least one stage")
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        Ok(self.emit_stages(g, x)?.pop().expect("at least one stage"))
    }
}
