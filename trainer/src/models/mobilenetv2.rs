//! MobileNetV2 (Sandler et al., 2018), width 1.0, derived from torchvision's `mobilenetv2.py`:
//! `features.{0..18}` with `features.i.conv.*` inside inverted residuals, so torchvision weights load
//! by name. The classifier (`classifier.1`) lives in the head.

use crate::nn::{path_name, Act, Block, ConvBnAct};
use fer_export::GraphBuilder;
use tch::{nn, Tensor};

/// Inverted residual: 1x1 expand (skipped when t = 1) → 3x3 depthwise → 1x1 linear projection,
/// with the identity added when stride is 1 and the channel count is unchanged.
#[derive(Debug)]
pub struct InvertedResidual {
    layers: Vec<ConvBnAct>,
    residual: bool,
    name: String,
}

impl InvertedResidual {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64, expand: i64) -> Self {
        let hidden = c_in * expand;
        let c = &p / "conv";
        let mut layers = Vec::new();
        let mut i = 0;
        if expand != 1 {
            layers.push(ConvBnAct::new(&c / 0 / 0, &c / 0 / 1, c_in, hidden, 1, 1, 1, Act::Relu6));
            i = 1;
        }
        layers.push(ConvBnAct::new(&c / i / 0, &c / i / 1, hidden, hidden, 3, stride, hidden, Act::Relu6));
        // torchvision names the projection conv and its BN as siblings: conv.{i+1} and conv.{i+2}.
        layers.push(ConvBnAct::new(&c / (i + 1), &c / (i + 2), hidden, c_out, 1, 1, 1, Act::None));
        InvertedResidual { layers, residual: stride == 1 && c_in == c_out, name: path_name(&p) }
    }
}

impl Block for InvertedResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = xs.shallow_clone();
        for l in &self.layers {
            y = l.forward_t(&y, train);
        }
        if self.residual {
            y + xs
        } else {
            y
        }
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let mut y = x.to_string();
        for l in &self.layers {
            y = l.emit(g, &y)?;
        }
        Ok(if self.residual { g.add(&y, x, &format!("{}/add", self.name)) } else { y })
    }
}

/// A layer of the feature extractor: a plain conv-BN-ReLU6 (first and last) or an inverted residual.
#[derive(Debug)]
enum Layer {
    Conv(ConvBnAct),
    Inverted(InvertedResidual),
}

#[derive(Debug)]
pub struct MobileNetV2 {
    layers: Vec<Layer>,
    /// `(layer index, channels)` of the pyramid's outputs (empty for the classification backbone).
    taps: Vec<(usize, i64)>,
}

impl MobileNetV2 {
    pub const OUT_CHANNELS: i64 = 1280;

    /// The classification backbone; `output_stride` (32 as torchvision, or 16, 8) keeps the
    /// stride-2 layers that would pass it at stride 1, so small inputs keep a larger final map.
    pub fn new(p: &nn::Path, in_channels: i64, output_stride: i64) -> Self {
        Self::build(p, in_channels, output_stride, false)
    }

    /// The layers up to output stride 16 (`features.0..=13`, no final 1x1 conv) as a feature
    /// pyramid: the outputs of `features.3` (stride 4, 24 channels), `.6` (8, 32) and `.13` (16, 96).
    /// torchvision names, so a torchvision state dict loads (its later layers are not used).
    pub fn pyramid(p: &nn::Path, in_channels: i64) -> Self {
        Self::build(p, in_channels, 32, true)
    }

    fn build(p: &nn::Path, in_channels: i64, output_stride: i64, pyramid: bool) -> Self {
        let f = p / "features";
        let mut layers = vec![Layer::Conv(ConvBnAct::new(&f / 0 / 0, &f / 0 / 1, in_channels, 32, 3, 2, 1, Act::Relu6))];
        #[rustfmt::skip]
        let table: [(i64, i64, i64, i64); 7] = [
            // t, c, n, s
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ];
        let mut c_in = 32;
        let mut stride = 2;
        // (layer index, channels, output stride) of every inverted residual.
        let mut built = Vec::new();
        'table: for (t, c, n, s) in table {
            for i in 0..n {
                if pyramid && i == 0 && stride * s > 16 {
                    break 'table;
                }
                let st = if i == 0 && stride * s <= output_stride { s } else { 1 };
                let idx = layers.len();
                layers.push(Layer::Inverted(InvertedResidual::new(&f / idx as i64, c_in, c, st, t)));
                c_in = c;
                stride *= st;
                built.push((idx, c, stride));
            }
        }
        let mut taps = Vec::new();
        if pyramid {
            for want in [4, 8, 16] {
                let &(idx, c, _) = built.iter().rev().find(|l| l.2 == want).expect("MobileNetV2 reaches strides 4, 8 and 16");
                taps.push((idx, c));
            }
        } else {
            let idx = layers.len() as i64;
            layers.push(Layer::Conv(ConvBnAct::new(&f / idx / 0, &f / idx / 1, c_in, Self::OUT_CHANNELS, 1, 1, 1, Act::Relu6)));
        }
        MobileNetV2 { layers, taps }
    }

    /// Channels of the pyramid's outputs.
    pub fn tap_channels(&self) -> Vec<i64> {
        self.taps.iter().map(|t| t.1).collect()
    }

    /// # Shapes
    /// `[N, C, H, W]` → the pyramid's maps at strides 4, 8, 16 (a [`pyramid`](Self::pyramid) model).
    pub fn forward_taps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let mut y = xs.shallow_clone();
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            y = l.as_block().forward_t(&y, train);
            if self.taps.iter().any(|t| t.0 == i) {
                out.push(y.shallow_clone());
            }
        }
        out
    }

    /// As [`forward_taps`](Self::forward_taps).
    pub fn emit_taps(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<Vec<String>> {
        let mut y = x.to_string();
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            y = l.as_block().emit(g, &y)?;
            if self.taps.iter().any(|t| t.0 == i) {
                out.push(y.clone());
            }
        }
        Ok(out)
    }
}

impl Layer {
    fn as_block(&self) -> &dyn Block {
        match self {
            Layer::Conv(c) => c,
            Layer::Inverted(b) => b,
        }
    }
}

impl Block for MobileNetV2 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = xs.shallow_clone();
        for l in &self.layers {
            y = l.as_block().forward_t(&y, train);
        }
        y
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let mut y = x.to_string();
        for l in &self.layers {
            y = l.as_block().emit(g, &y)?;
        }
        Ok(y)
    }
}
