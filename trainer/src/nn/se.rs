//! Squeeze-and-excitation (Hu et al., 2018), the channel attention of DacFER's SE-ResNet-50
//! (seed 000, the "local attention correction"): `x · σ(fc2(ReLU(fc1(GAP(x)))))`.
//!
//! `fc1` / `fc2` are 1x1 convolutions with bias, as torchvision's `ops.SqueezeExcitation`, so the
//! parameters are `<block>.se.fc1.weight` `[C/r, C, 1, 1]` and `<block>.se.fc2.weight` `[C, C/r, 1, 1]`.

use super::{emit_conv, path_name, torch_conv, Block};
use fer_export::GraphBuilder;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct SqueezeExcite {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
    name: String,
}

impl SqueezeExcite {
    /// `channels` in and out, `channels / reduction` (at least 1) in the bottleneck (Hu et al.: r = 16).
    pub fn new(p: nn::Path, channels: i64, reduction: i64) -> Self {
        let squeeze = (channels / reduction).max(1);
        SqueezeExcite {
            fc1: torch_conv(&p / "fc1", channels, squeeze, 1, true),
            fc2: torch_conv(&p / "fc2", squeeze, channels, 1, true),
            name: path_name(&p),
        }
    }

    /// The per-channel gate `[N, C, 1, 1]` in (0, 1).
    pub fn gate(&self, xs: &Tensor) -> Tensor {
        xs.adaptive_avg_pool2d([1, 1]).apply(&self.fc1).relu().apply(&self.fc2).sigmoid()
    }
}

impl Block for SqueezeExcite {
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs * self.gate(xs)
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> fer_export::Result<String> {
        let n = &self.name;
        let s = g.op("GlobalAveragePool", &[x], &[], &format!("{n}/squeeze"));
        let s = emit_conv(g, &s, &self.fc1, &format!("{n}.fc1"))?;
        let s = g.relu(&s, &format!("{n}/relu"));
        let s = emit_conv(g, &s, &self.fc2, &format!("{n}.fc2"))?;
        let s = g.sigmoid(&s, &format!("{n}/gate"));
        Ok(g.mul(x, &s, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn se_keeps_the_shape_gates_in_unit_interval_and_passes_gradients() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        // r = 4 on 64 channels: 16 squeeze units, so that not all of their ReLUs are dead.
        let se = SqueezeExcite::new(vs.root() / "se", 64, 4);
        let x = Tensor::randn([2, 64, 5, 5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = se.forward_t(&x, true);
        assert_eq!(y.size(), [2, 64, 5, 5]);
        let gate = se.gate(&x);
        assert_eq!(gate.size(), [2, 64, 1, 1]);
        assert!(gate.min().double_value(&[]) > 0.0 && gate.max().double_value(&[]) < 1.0);
        (&y * Tensor::randn_like(&y)).sum(Kind::Float).backward();
        crate::nn::assert_all_have_gradients(&vs, &[]);
        assert!(x.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        // The squeeze bottleneck is C/r wide: fc1 is [16, 64, 1, 1].
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.contains(&"se.fc1.weight".to_string()) && names.contains(&"se.fc2.bias".to_string()), "{names:?}");
        assert_eq!(vs.variables()["se.fc1.weight"].size(), [16, 64, 1, 1]);
    }
}
