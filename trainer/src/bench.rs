//! `fer-train bench`: the training step alone, on random data, timed the way the peer's
//! `reference/peer_bench.py` times PyTorch eager: a batch of `[N, 3, S, S]` noise and random
//! labels, the method's full loss (EAC: two forward passes and the CAM consistency), backward and
//! an Adam step (lr 2e-4, weight decay 1e-4); `warmup` untimed steps, then `iters` timed ones,
//! synchronised with the device at both ends. `bench/train_vs_pytorch.py` runs both side by side.

use crate::methods::{training_loss, MethodConfig};
use crate::models::{Arch, Classifier, ModelSpec};
use crate::optim::{FlatOptimizer, OptimizerConfig};
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// What to time.
#[derive(Debug, Clone)]
pub struct StepBench {
    pub arch: Arch,
    pub method: MethodConfig,
    pub size: i64,
    pub batch: i64,
    pub warmup: usize,
    pub iters: usize,
    pub device: Device,
    /// Channels-last input batches (`train.channels_last`).
    pub channels_last: bool,
    /// bf16 autocast (`train.bf16`), as the peer's `amp` rows.
    pub bf16: bool,
}

/// The result, as `fer-train bench --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    pub arch: &'static str,
    pub method: &'static str,
    pub size: i64,
    pub batch: i64,
    pub iters: usize,
    pub device: String,
    pub channels_last: bool,
    pub bf16: bool,
    pub ms_per_step: f64,
    pub img_per_s: f64,
    /// The last step's loss (finite: the step computed something).
    pub loss: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

pub fn time_training_step(b: &StepBench) -> Result<StepTiming> {
    anyhow::ensure!(b.batch >= 2, "--batch must be at least 2 (BatchNorm needs two images per training batch), got {}", b.batch);
    anyhow::ensure!(b.size >= 1, "--size must be at least 1 pixel, got {}", b.size);
    if b.bf16 {
        crate::autocast::check(b.device)?;
    }
    let iters = b.iters.max(1);
    tch::manual_seed(0);
    if b.device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true); // as the peer
    }
    let vs = nn::VarStore::new(b.device);
    let head = b.method.head_spec(b.arch).map_err(anyhow::Error::msg)?;
    let spec = ModelSpec { input_size: b.size, head, ..ModelSpec::new(b.arch, 3, 7, 0.0) };
    let model = Classifier::build(&vs.root(), &spec)?;
    let adam: OptimizerConfig = serde_yaml::from_str("{name: adam, lr: 2.0e-4, weight_decay: 1.0e-4}").expect("a valid optimiser config");
    let mut opt = FlatOptimizer::with_layout(&vs, adam, b.channels_last);
    let x = Tensor::randn([b.batch, 3, b.size, b.size], (Kind::Float, b.device));
    let x = if b.channels_last { crate::augment::channels_last(&x) } else { x };
    let y = Tensor::randint(7, [b.batch], (Kind::Int64, b.device));
    let mut step = || {
        opt.zero_grad();
        let out = crate::autocast::bf16(b.device, b.bf16, || training_loss(&b.method, &model, &x, &y));
        out.loss.backward();
        opt.step(None);
        out.loss
    };
    for _ in 0..b.warmup {
        let _ = step();
    }
    sync(b.device);
    let t0 = Instant::now();
    let mut loss = Tensor::zeros([], (Kind::Float, b.device));
    for _ in 0..iters {
        loss = step();
    }
    sync(b.device);
    let s = t0.elapsed().as_secs_f64() / iters as f64;
    let loss = loss.double_value(&[]);
    anyhow::ensure!(loss.is_finite(), "the benchmarked step's loss is {loss}");
    Ok(StepTiming {
        arch: b.arch.name(),
        method: b.method.name(),
        size: b.size,
        batch: b.batch,
        iters,
        device: format!("{:?}", b.device),
        channels_last: b.channels_last,
        bf16: b.bf16,
        ms_per_step: 1e3 * s,
        img_per_s: b.batch as f64 / s,
        loss,
    })
}

/// `eac`, `ce`, ... with the method's default hyper-parameters.
pub fn method_by_name(name: &str) -> Result<MethodConfig> {
    serde_yaml::from_str(&format!("name: {name}")).with_context(|| format!("--method {name}"))
}
