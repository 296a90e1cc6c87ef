//! Optimisers and learning-rate schedules, on one flat parameter buffer.
//!
//! All trainable parameters are re-pointed (`set_data`) at views of one contiguous buffer, so an
//! optimiser step is a handful of kernels over the whole model instead of several per parameter
//! (the effect PyTorch gets from its foreach/fused paths), and the optimiser state is three plain
//! tensors that a checkpoint saves and `--resume` restores exactly.
//!
//! The update rules follow `torch.optim` step for step: Adam (L2 weight decay added to the
//! gradient), AdamW (decoupled decay), SGD with momentum / Nesterov.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    pub name: OptimizerKind,
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// SGD momentum.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
}

fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn default_eps() -> f64 {
    1e-8
}
fn default_momentum() -> f64 {
    0.9
}

/// The optimiser: flat parameters, flat state, and the live learning rate.
pub struct FlatOptimizer {
    cfg: OptimizerConfig,
    params: Vec<Tensor>,
    flat: Tensor,
    /// Adam: first moment; SGD: momentum buffer.
    exp_avg: Tensor,
    /// Adam: second moment (unused by SGD).
    exp_avg_sq: Tensor,
    pub step: i64,
    pub lr: f64,
}

impl std::fmt::Debug for FlatOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlatOptimizer({:?}, {} params, step {})", self.cfg.name, self.params.len(), self.step)
    }
}

impl FlatOptimizer {
    /// Takes over the trainable variables of `vs` (in a fixed, name-sorted order).
    pub fn new(vs: &nn::VarStore, cfg: OptimizerConfig) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut params: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
        let flat = tch::no_grad(|| Tensor::cat(&params.iter().map(|p| p.detach().flatten(0, -1)).collect::<Vec<_>>(), 0));
        let mut offset = 0;
        for p in params.iter_mut() {
            let n = p.numel() as i64;
            let view = flat.narrow(0, offset, n).view(p.size().as_slice());
            p.set_data(&view);
            offset += n;
        }
        let exp_avg = flat.zeros_like();
        let exp_avg_sq = flat.zeros_like();
        let lr = cfg.lr;
        FlatOptimizer { cfg, params, flat, exp_avg, exp_avg_sq, step: 0, lr }
    }

    pub fn zero_grad(&mut self) {
        for p in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// The global gradient L2 norm (after `backward`), for logging and clipping.
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| self.flat_grad().norm().double_value(&[]))
    }

    fn flat_grad(&self) -> Tensor {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| {
                let g = p.grad();
                if g.defined() {
                    g.flatten(0, -1)
                } else {
                    Tensor::zeros([p.numel() as i64], (Kind::Float, p.device()))
                }
            })
            .collect();
        Tensor::cat(&grads, 0)
    }

    /// One update. Returns `false` (and changes nothing) when the gradient is not finite.
    /// `clip`: optional max global gradient norm.
    pub fn step(&mut self, clip: Option<f64>) -> bool {
        tch::no_grad(|| {
            let mut g = self.flat_grad();
            let norm = g.norm();
            if norm.isfinite().int64_value(&[]) == 0 {
                return false;
            }
            if let Some(max) = clip {
                let n = norm.double_value(&[]);
                if n > max {
                    g *= max / (n + 1e-6);
                }
            }
            self.step += 1;
            let c = &self.cfg;
            let lr = self.lr;
            match c.name {
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    if c.name == OptimizerKind::Adamw {
                        let _ = self.flat.g_mul_scalar_(1.0 - lr * c.weight_decay);
                    } else if c.weight_decay != 0.0 {
                        g = g + &self.flat * c.weight_decay;
                    }
                    let (b1, b2) = c.betas;
                    let _ = self.exp_avg.lerp_(&g, 1.0 - b1);
                    let _ = self.exp_avg_sq.g_mul_scalar_(b2);
                    let _ = self.exp_avg_sq.addcmul_(&(&g * (1.0 - b2)), &g);
                    let bc1 = 1.0 - b1.powi(self.step as i32);
                    let bc2 = 1.0 - b2.powi(self.step as i32);
                    let denom = (self.exp_avg_sq.sqrt() / bc2.sqrt()) + c.eps;
                    let _ = self.flat.addcdiv_(&(&self.exp_avg * (-lr / bc1)), &denom);
                }
                OptimizerKind::Sgd => {
                    if c.weight_decay != 0.0 {
                        g = g + &self.flat * c.weight_decay;
                    }
                    if c.momentum != 0.0 {
                        if self.step == 1 {
                            self.exp_avg.copy_(&g);
                        } else {
                            let _ = self.exp_avg.g_mul_scalar_(c.momentum);
                            let _ = self.exp_avg.g_add_(&g);
                        }
                        g = if c.nesterov { g + &self.exp_avg * c.momentum } else { self.exp_avg.shallow_clone() };
                    }
                    let _ = self.flat.g_add_(&(g * -lr));
                }
            }
            true
        })
    }

    /// Optimiser state for checkpoints: tensors by name, plus `step` and `lr`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("optim.exp_avg".into(), self.exp_avg.shallow_clone()),
            ("optim.exp_avg_sq".into(), self.exp_avg_sq.shallow_clone()),
            ("optim.step".into(), Tensor::from(self.step)),
            ("optim.lr".into(), Tensor::from(self.lr)),
        ]
    }

    /// Restores what [`state`](Self::state) saved; errors name the missing or mis-sized entry.
    pub fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Result<(), String> {
        let get = |k: &str| named.get(k).ok_or_else(|| format!("optimizer state `{k}` missing from checkpoint"));
        for (k, dst) in [("optim.exp_avg", &mut self.exp_avg), ("optim.exp_avg_sq", &mut self.exp_avg_sq)] {
            let src = get(k)?;
            if src.size() != dst.size() {
                return Err(format!("optimizer state `{k}` has shape {:?}, model needs {:?}", src.size(), dst.size()));
            }
            tch::no_grad(|| dst.copy_(src));
        }
        self.step = get("optim.step")?.int64_value(&[]);
        self.lr = get("optim.lr")?.double_value(&[]);
        Ok(())
    }
}

/// Learning-rate schedules, stepped once per epoch (as the peer's `ExponentialLR(0.9)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum SchedulerConfig {
    Constant,
    Exponential { gamma: f64 },
    Step { step_size: usize, gamma: f64 },
    Cosine { #[serde(default)] min_lr: f64 },
    /// ReduceLROnPlateau on validation accuracy (mode max).
    Plateau { #[serde(default = "half")] factor: f64, #[serde(default = "five")] patience: usize, #[serde(default)] min_lr: f64 },
}

fn half() -> f64 {
    0.5
}
fn five() -> usize {
    5
}

/// Scheduler state that must survive a resume (plateau bookkeeping).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SchedulerState {
    pub best: Option<f64>,
    pub bad_epochs: usize,
}

impl SchedulerConfig {
    /// The learning rate for the epoch after `epoch` (0-based) has finished, given the current one.
    pub fn next_lr(&self, base_lr: f64, current: f64, epoch: usize, epochs: usize, val_acc: f64, st: &mut SchedulerState) -> f64 {
        let e = (epoch + 1) as f64;
        match *self {
            SchedulerConfig::Constant => base_lr,
            SchedulerConfig::Exponential { gamma } => base_lr * gamma.powf(e),
            SchedulerConfig::Step { step_size, gamma } => base_lr * gamma.powi(((epoch + 1) / step_size.max(1)) as i32),
            SchedulerConfig::Cosine { min_lr } => {
                min_lr + (base_lr - min_lr) * (1.0 + (std::f64::consts::PI * e / epochs.max(1) as f64).cos()) / 2.0
            }
            SchedulerConfig::Plateau { factor, patience, min_lr } => {
                if st.best.is_none_or(|b| val_acc > b) {
                    st.best = Some(val_acc);
                    st.bad_epochs = 0;
                    current
                } else {
                    st.bad_epochs += 1;
                    if st.bad_epochs > patience {
                        st.bad_epochs = 0;
                        (current * factor).max(min_lr)
                    } else {
                        current
                    }
                }
            }
        }
    }
}
