//! IVSA's improved VGG feature extractor (seed 004, §II-B, eq. 1–2): four stages, each two
//! conv3x3 → BN → GELU modules and a 2x2 max-pool, doubling the channels (64, 128, 256, 512), with
//! an attention block at the end of every stage (§II-C): the Salient Attention Block, CBAM, or none
//! (the seed's ablation, config `model.attention`). The three-FC classifier is the head
//! ([`crate::nn::Fc3Head`]). A 48x48 input leaves a 512 × 3 × 3 map.
//!
//! Names: `features.{s}.conv{1,2}`, `features.{s}.bn{1,2}`, `features.{s}.attn.*`.

use crate::nn::{path_name, Act, AttentionKind, Block, ConvAttention, ConvBnAct};
use fer_export::GraphBuilder;
use tch::{nn, Tensor};

/// Channel-attention MLP reduction (CBAM's r = 16).
const REDUCTION: i64 = 16;

#[derive(Debug)]
struct Stage {
    convs: [ConvBnAct; 2],
    attn: Option<ConvAttention>,
    name: String,
}

impl Stage {
    /// The stage's last BN γ, which SAB's channel gate is re-scaled by.
    fn gamma(&self) -> &Tensor {
        self.convs[1].bn.ws.as_ref().expect("affine BN")
    }
}

impl Block for Stage {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.convs[1].forward_t(&self.convs[0].forward_t(xs, train), train);
        let y = y.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        match &self.attn {
            Some(a) => a.forward_t(&y, Some(self.gamma())),
            None => y,
        }
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let y = self.convs[0].emit(g, x)?;
        let y = self.convs[1].emit(g, &y)?;
        let y = g.max_pool(&y, 2, 2, 0, &format!("{}/pool", self.name));
        match &self.attn {
            Some(a) => a.emit(g, &y, Some(self.gamma())),
            None => Ok(y),
        }
    }
}

#[derive(Debug)]
pub struct Ivsa {
    stages: Vec<Stage>,
}

impl Ivsa {
    #[rustfmt::skip]
    pub const STAGES: [i64; 4] = [64, 128, 256, 512]; // output channels per stage
    pub const OUT_CHANNELS: i64 = 512;
    /// Each stage halves the side: the input side must be a multiple of this.
    pub const STRIDE: i64 = 16;

    pub fn new(p: &nn::Path, in_channels: i64, attention: AttentionKind) -> Self {
        let f = p / "features";
        let mut c_in = in_channels;
        let stages = Self::STAGES
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let s = &f / i;
                let convs = [
                    ConvBnAct::new(&s / "conv1", &s / "bn1", c_in, c, 3, 1, 1, Act::Gelu),
                    ConvBnAct::new(&s / "conv2", &s / "bn2", c, c, 3, 1, 1, Act::Gelu),
                ];
                c_in = c;
                let attn = (attention != AttentionKind::None).then(|| ConvAttention::new(&s / "attn", c, REDUCTION, attention));
                Stage { convs, attn, name: path_name(&s) }
            })
            .collect();
        Ivsa { stages }
    }
}

impl Block for Ivsa {
    /// # Shapes
    /// `[N, C, H, W]` → `[N, 512, H/16, W/16]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.stages.iter().fold(xs.shallow_clone(), |y, s| s.forward_t(&y, train))
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let mut y = x.to_string();
        for s in &self.stages {
            y = s.emit(g, &y)?;
        }
        Ok(y)
    }
}
