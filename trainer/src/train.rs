//! The training loop: data on the device, GPU-side augmentation, the method's loss, the flat
//! optimiser, per-epoch evaluation, atomic checkpoints, `--resume`, metrics CSV, plots and the final
//! ONNX export.
//!
//! Determinism: the RNG is re-seeded at the start of every epoch from `(seed, epoch)`, so a run
//! resumed from the checkpoint of epoch `e` draws exactly the batches and augmentations an
//! uninterrupted run draws in epoch `e + 1`.

use crate::augment::{Augment, Erase};
use crate::checkpoint::{self, CheckpointError, RunLock};
use crate::config::Config;
use crate::data::{self, Dataset};
use crate::ema::WeightEma;
use crate::methods::training_loss;
use crate::metrics::{mean_of_last, Metrics};
use crate::models::Classifier;
use crate::optim::{FlatOptimizer, SchedulerState};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val: Metrics,
    /// A run with `train.ema_decay` validates the average (`val`); on its last epoch it also
    /// measures the raw weights it trained, so one run says what the average added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_raw_weights: Option<Metrics>,
    pub img_per_s: f64,
    pub seconds: f64,
}

/// A duration as people read one on a progress line: `42s`, `4m06s`, `3h05m`.
fn short_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// What `state.json` holds between epochs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub epochs_done: usize,
    pub history: Vec<EpochRecord>,
    pub scheduler: SchedulerState,
    pub noisy_labels: usize,
    /// The device the epochs ran on (`cpu`, `cuda:0`): `train.device: auto` does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// The end-of-run summary (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub epochs: usize,
    pub final_val: Metrics,
    pub best_val_accuracy: f64,
    pub best_epoch: usize,
    pub last5_val_accuracy_mean: f64,
    /// The last epoch's raw weights, beside `final_val`'s average (runs with `train.ema_decay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_val_raw_weights: Option<Metrics>,
    pub train_img_per_s: f64,
    pub onnx: Option<PathBuf>,
    /// Where it trained (from state.json; absent in runs from before 2026-12-04).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// `cpu` or `cuda:N`, as a config's `train.device` names it.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

pub fn select_device(spec: &str) -> Result<Device> {
    Ok(match spec {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => {
            if !tch::Cuda::is_available() {
                bail!("device `cuda` requested but CUDA is not available (libtorch_cuda not loaded or no GPU)");
            }
            Device::Cuda(0)
        }
        s => match s.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
            Some(i) if tch::Cuda::is_available() => Device::Cuda(i),
            Some(_) => bail!("device `{s}` requested but CUDA is not available"),
            None => bail!("unknown device `{s}` (expected auto, cpu, cuda or cuda:N)"),
        },
    })
}

/// Set by Ctrl-C (SIGINT; also `timeout --signal=INT`): `fit` stops at the next training step.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes Ctrl-C stop `fit` cleanly: the epoch in progress is dropped, the weights of the last
/// finished epoch are exported and summarized (summary.json, plots, model.onnx) as at a normal end,
/// and `Trainer::interrupted` is set. A second Ctrl-C exits at once (status 130). Call once, from
/// a binary; a library embedding the trainer leaves signals alone.
pub fn stop_on_ctrl_c() -> Result<()> {
    ctrlc::set_handler(|| {
        if STOP.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: stopping after this step; the last finished epoch is exported and summarized (Ctrl-C again quits now)");
    })
    .context("installing the Ctrl-C handler")
}

/// The training loop saw [`STOP`].
#[derive(Debug, thiserror::Error)]
#[error("training interrupted")]
struct Interrupted;

/// Everything a run holds.
pub struct Trainer {
    pub cfg: Config,
    pub device: Device,
    pub vs: nn::VarStore,
    pub model: Classifier,
    pub opt: FlatOptimizer,
    pub train: Dataset,
    pub val: Dataset,
    pub aug: Augment,
    /// The teacher's logits for each training face (`distill`), on the device.
    pub teacher: Option<Tensor>,
    /// The weights' moving average (`train.ema_decay`), which validation, `best` and the export use.
    pub ema: Option<WeightEma>,
    pub state: RunState,
    pub run_dir: PathBuf,
    /// `fit` ended early on Ctrl-C (see [`stop_on_ctrl_c`]); its summary is of the last finished epoch.
    pub interrupted: bool,
    /// This process's hold on `run_dir` while the trainer lives.
    lock: Option<RunLock>,
}

impl Trainer {
    /// Loads data, builds the model; with `resume`, restores the run directory's last checkpoint.
    pub fn new(cfg: Config, resume: bool) -> Result<Self> {
        let device = select_device(&cfg.train.device)?;
        if device.is_cuda() {
            // Fixed input shapes: let cuDNN time its algorithms once, as the peer's
            // `torch.backends.cudnn.benchmark = True`.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        // A method that the arch cannot carry is a config error, reported before any data loads.
        cfg.model_spec(1)?;
        if cfg.train.bf16 {
            crate::autocast::check(device)?;
        }
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads);
        }
        let run_dir = cfg.run_dir();
        let last = run_dir.join("last.safetensors");
        if !resume && last.exists() {
            bail!(
                "{0} already holds a run; continue it with `fer-train fit --resume {0}`, or choose another name (--set name=...)",
                run_dir.display()
            );
        }
        if resume && !last.exists() {
            bail!("--resume: {} has no checkpoint (last.safetensors) to continue; leave out --resume to start the run", run_dir.display());
        }
        // Made before the data loads, so an unwritable place fails in seconds, not after minutes
        // of decoding; and removed again if the start fails, so a typo leaves no empty run behind.
        let made = !run_dir.exists();
        std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        // Held until the trainer is dropped. Taken before the checks again: a fit started at the
        // same moment may have saved its first checkpoint since.
        let lock = RunLock::take(&run_dir)?;
        if !resume && last.exists() {
            bail!("{0} already holds a run (started by another fit meanwhile); continue it with `fer-train fit --resume {0}`", run_dir.display());
        }
        let started = Self::start(cfg, resume, device, run_dir.clone());
        match started {
            Ok(mut trainer) => {
                trainer.lock = Some(lock);
                Ok(trainer)
            }
            Err(e) => {
                if made {
                    lock.remove();
                    // remove_dir, not remove_dir_all: it only ever deletes an empty folder.
                    let _ = std::fs::remove_dir(&run_dir);
                }
                Err(e)
            }
        }
    }

    /// The part of [`Trainer::new`] after the run directory exists and is locked.
    fn start(cfg: Config, resume: bool, device: Device, run_dir: PathBuf) -> Result<Self> {
        let cache = cfg.splits.cache_dir.as_deref();
        let mut train = data::load_split_cached(&cfg.data, &cfg.splits.train, cache)?;
        // Targets are made for the whole split: checked against it, then subset with it.
        let mut teacher = cfg.distill.as_ref().map(|d| d.teacher_logits(&train, device)).transpose()?;
        if let Some(k) = cfg.train.subset_every.filter(|&k| k > 1) {
            train = train.every(k);
            teacher = teacher.map(|t| t.slice(0, 0, None, k as i64));
        }
        let val = data::load_split_cached(&cfg.data, &cfg.splits.val, cache)?;
        if train.classes != val.classes {
            bail!("train classes {:?} differ from val classes {:?}", train.classes, val.classes);
        }
        let k = train.num_classes();
        let noisy = if cfg.noise.rate > 0.0 {
            data::symmetric_noise(&mut train.labels, k, cfg.noise.rate, cfg.noise.seed).len()
        } else {
            0
        };
        // Whole datasets live on the device as uint8; batches are gathered and augmented there.
        train.images = train.images.to_device(device);
        let mut val = val;
        val.images = val.images.to_device(device);

        tch::manual_seed(cfg.train.seed as i64);
        let vs = nn::VarStore::new(device);
        let spec = cfg.model_spec(k as i64)?;
        let model = Classifier::build(&vs.root(), &spec)?;
        if cfg.model.init_member.is_some() && !cfg.model.init.as_deref().is_some_and(is_onnx) {
            bail!("model.init_member picks a member of an ensemble .onnx file given as model.init");
        }
        match &cfg.model.init {
            Some(init) if is_onnx(init) && !resume => {
                // The recording pass sees the eval views of up to 2,048 training faces spread over
                // the split (folder datasets come sorted by class).
                let n = train.len() as i64;
                let every = ((n + 2047) / 2048).max(1);
                let picked = Tensor::arange_start_step(0, n, every, (Kind::Int64, train.images.device()));
                let faces = augment_for(&cfg).eval(&train.images.index_select(0, &picked));
                let loaded = crate::onnx_init::load(&vs, &model, init, cfg.model.init_member, &train.classes, &faces, &spec.head.prefixes(spec.arch))?;
                tracing::info!(
                    "started from {}: {} convs unfolded, {} variables copied{} (the unfolding moved eval logits by {:.1e})",
                    init.display(),
                    loaded.unfolded,
                    loaded.copied,
                    if loaded.head_fresh { ", a fresh head" } else { "" },
                    loaded.worst_logit_change
                );
            }
            Some(init) if !is_onnx(init) => {
                let named = checkpoint::deployed_weights(checkpoint::load_tensors(init)?);
                checkpoint::load_into(&vs, &named, init, &spec.head.prefixes(spec.arch))?;
            }
            _ => {}
        }
        // GReFEL's streams: user-supplied weights (e.g. converted IR50 / landmark networks).
        if let Some(vit) = &cfg.model.vit {
            for (prefix, init) in [("image", &vit.image_init), ("landmark", &vit.landmark_init)] {
                if let Some(path) = init {
                    checkpoint::load_subtree(&vs, &checkpoint::load_tensors(path)?, path, prefix)?;
                }
            }
        }
        let mut opt = FlatOptimizer::with_layout(&vs, cfg.train.optimizer.clone(), cfg.train.channels_last);
        let aug = augment_for(&cfg);
        let mut state = RunState { noisy_labels: noisy, ..Default::default() };
        let mut ema = None;
        if resume {
            let ckpt = run_dir.join("last.safetensors");
            let named = checkpoint::load_tensors(&ckpt)?;
            checkpoint::load_into(&vs, &named, &ckpt, &[])?;
            opt.load_state(&named).map_err(|what| CheckpointError::Invalid { path: ckpt.clone(), what })?;
            let epochs_done = named
                .get("meta.epochs_done")
                .map(|t| t.int64_value(&[]) as usize)
                .context("checkpoint has no meta.epochs_done")?;
            let state_path = run_dir.join("state.json");
            let text = std::fs::read_to_string(&state_path).with_context(|| format!("reading {}", state_path.display()))?;
            state = serde_json::from_str(&text).with_context(|| format!("parsing {}", state_path.display()))?;
            if state.epochs_done < epochs_done {
                bail!("{}: state is older than the weights (epoch {} < {})", state_path.display(), state.epochs_done, epochs_done);
            }
            state.history.truncate(epochs_done);
            state.epochs_done = epochs_done;
            if let Some(lr) = cfg.train.scheduler.lr_after(cfg.train.optimizer.lr, epochs_done, cfg.train.epochs) {
                opt.lr = lr;
            }
            if let Some(decay) = cfg.train.ema_decay {
                let mut e = WeightEma::new(&vs, decay);
                if !e.load_state(&named).map_err(|what| CheckpointError::Invalid { path: ckpt.clone(), what })? {
                    tracing::info!("{} has no weight average: averaging from epoch {} on", ckpt.display(), epochs_done + 1);
                }
                ema = Some(e);
            }
        }
        // Shadows start from the weights training starts from (after `model.init`, or the resumed ones).
        let ema = ema.or_else(|| cfg.train.ema_decay.map(|decay| WeightEma::new(&vs, decay)));
        checkpoint::write_atomic(&run_dir.join("config.yaml"), cfg.to_yaml().as_bytes())?;
        checkpoint::write_atomic(&run_dir.join("classes.json"), serde_json::to_string(&train.classes)?.as_bytes())?;
        Ok(Trainer { cfg, device, vs, model, opt, train, val, aug, teacher, ema, state, run_dir, interrupted: false, lock: None })
    }

    /// Trains the remaining epochs, then plots and exports. Returns the summary.
    pub fn fit(&mut self) -> Result<Summary> {
        let epochs = self.cfg.train.epochs;
        tracing::info!(
            "training {} ({}) on {:?}: {} train / {} val images, {} classes, {} noisy labels",
            self.cfg.model.arch.name(),
            self.cfg.method.name(),
            self.device,
            self.train.len(),
            self.val.len(),
            self.train.num_classes(),
            self.state.noisy_labels
        );
        if let Some(d) = self.cfg.train.ema_decay {
            tracing::info!("validating and exporting a moving average of the weights (decay {d} per step)");
        }
        match self.state.epochs_done {
            0 => {}
            done if done >= epochs => tracing::info!(
                "{}: {done} epochs trained already, of {epochs}: nothing to train, summarizing and exporting again (--set train.epochs=<more> goes on)",
                self.run_dir.display()
            ),
            done => tracing::info!("going on from epoch {} of {epochs}", done + 1),
        }
        let (started, first) = (std::time::Instant::now(), self.state.epochs_done);
        for epoch in self.state.epochs_done..epochs {
            let rec = match self.train_epoch(epoch) {
                Err(e) if e.is::<Interrupted>() => return self.finish_interrupted(epoch),
                r => r?,
            };
            let lr_next = self.cfg.train.scheduler.next_lr(
                self.cfg.train.optimizer.lr,
                self.opt.lr,
                epoch,
                epochs,
                rec.val.accuracy,
                &mut self.state.scheduler,
            );
            // How long is left, at this process's pace so far (validation and checkpoints included).
            let per_epoch = started.elapsed().as_secs_f64() / (epoch + 1 - first) as f64;
            let left = match epochs - epoch - 1 {
                0 => String::new(),
                n => format!("  ~{} left", short_duration(per_epoch * n as f64)),
            };
            eprintln!(
                "epoch {:>3}/{epochs}  loss {:.4}  train acc {:.2}%  val acc {:.2}%  mean-class {:.2}%  macro-F1 {:.3}  {:.0} img/s  {}/epoch{left}",
                epoch + 1,
                rec.train_loss,
                100.0 * rec.train_accuracy,
                100.0 * rec.val.accuracy,
                100.0 * rec.val.mean_class_accuracy,
                rec.val.macro_f1,
                rec.img_per_s,
                short_duration(per_epoch),
            );
            self.opt.lr = lr_next;
            self.state.history.push(rec);
            self.state.epochs_done = epoch + 1;
            self.state.device = Some(device_name(self.device));
            self.save_checkpoint()?;
        }
        self.finish()
    }

    /// One epoch of training followed by validation.
    pub fn train_epoch(&mut self, epoch: usize) -> Result<EpochRecord> {
        let cfg = &self.cfg.train;
        tch::manual_seed(epoch_seed(cfg.seed, epoch) as i64);
        let n = self.train.len();
        let weights = cfg.balanced.then(|| data::balanced_weights(&self.train.labels, self.train.num_classes()));
        let order = data::epoch_order(n, weights.as_deref(), epoch_seed(cfg.seed, epoch));
        let order = Tensor::from_slice(&order).to_device(self.device);
        let labels = Tensor::from_slice(&self.train.labels).to_device(self.device);
        let bs = cfg.batch_size;
        let steps = n as i64 / bs; // drop the last partial batch, as the peer does
        if steps == 0 {
            bail!("the training split has {n} images, fewer than one batch of {bs}");
        }
        let bar = progress(steps as u64, &format!("epoch {}/{}", epoch + 1, cfg.epochs));
        let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        let mut correct = Tensor::zeros([], (Kind::Int64, self.device));
        let t0 = Instant::now();
        let mut skipped = 0;
        for s in 0..steps {
            if STOP.load(std::sync::atomic::Ordering::SeqCst) {
                bar.finish_and_clear();
                return Err(Interrupted.into());
            }
            let idx = order.narrow(0, s * bs, bs);
            let x = self.aug.train(&self.train.images.index_select(0, &idx));
            let x = if self.aug.erase.is_some() { self.aug.erase(&x) } else { x };
            let x = if cfg.channels_last { crate::augment::channels_last(&x) } else { x };
            let y = labels.index_select(0, &idx);
            self.opt.zero_grad();
            // The consistency weight's warm-up (method.consistency_warmup) counts steps, not epochs.
            let method = self.cfg.method.warmed_up(epoch as f64 + s as f64 / steps as f64);
            let mut out = crate::autocast::bf16(self.device, cfg.bf16, || training_loss(&method, &self.model, &x, &y));
            if let (Some(t), Some(d)) = (&self.teacher, &self.cfg.distill) {
                let kd = crate::distill::distill_loss(&out.logits, &t.index_select(0, &idx), d.temperature);
                out.loss = out.loss + kd * d.weight;
            }
            out.loss.backward();
            if self.opt.step(cfg.grad_clip) {
                if let Some(ema) = &mut self.ema {
                    ema.update();
                }
            } else {
                skipped += 1;
                if skipped > 10 {
                    // On the CPU, libtorch's bf16 weight gradient of a strided 3x3 conv on a 1x1
                    // map is sometimes not finite (tests/train_e2e.rs, the bf16 run).
                    let hint = if cfg.bf16 && self.device == Device::Cpu { ", or set train.bf16=false or a larger model.input_size (CPU bf16 convolutions on 1x1 maps)" } else { "" };
                    bail!("the loss or gradients were not finite for {skipped} steps (epoch {}); lower the learning rate{hint}", epoch + 1);
                }
                continue;
            }
            tch::no_grad(|| {
                loss_sum += out.loss.detach().to_kind(Kind::Float);
                correct += out.logits.argmax(1, false).eq_tensor(&y).sum(Kind::Int64);
            });
            if s % 20 == 19 || s + 1 == steps {
                let done = (s + 1) as f64;
                bar.set_message(format!(
                    "loss {:.4} acc {:.1}% {:.0} img/s",
                    loss_sum.double_value(&[]) / done,
                    100.0 * correct.double_value(&[]) / (done * bs as f64),
                    done * bs as f64 / t0.elapsed().as_secs_f64()
                ));
            }
            bar.inc(1);
        }
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        let seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let done = (steps - skipped) as f64;
        let last_epoch = epoch + 1 == cfg.epochs;
        let val = self.validate()?;
        let val_raw_weights = match self.ema.is_some() && last_epoch {
            true => Some(self.evaluate_split(&self.val)?),
            false => None,
        };
        Ok(EpochRecord {
            epoch: epoch + 1,
            lr: self.opt.lr,
            train_loss: loss_sum.double_value(&[]) / done.max(1.0),
            train_accuracy: correct.double_value(&[]) / (done.max(1.0) * bs as f64),
            val,
            val_raw_weights,
            img_per_s: (steps * bs) as f64 / seconds,
            seconds,
        })
    }

    /// Metrics on a dataset (eval mode, no augmentation beyond the eval view + normalise).
    pub fn evaluate_split(&self, ds: &Dataset) -> Result<Metrics> {
        let preds = predict(&self.model, &self.aug, ds, self.cfg.train.eval_batch_size, self.cfg.train.ten_crop_eval);
        Ok(Metrics::from_predictions(&ds.labels, &preds, ds.num_classes()))
    }

    /// Runs `f` on the weights this run deploys: the moving average where there is one.
    fn with_deployed_weights<T>(&mut self, f: impl FnOnce(&Self) -> T) -> T {
        match self.ema.take() {
            Some(mut ema) => {
                let out = ema.with_averaged(|| f(self));
                self.ema = Some(ema);
                out
            }
            None => f(self),
        }
    }

    /// Validation metrics of the deployed weights.
    pub fn validate(&mut self) -> Result<Metrics> {
        self.with_deployed_weights(|t| t.evaluate_split(&t.val))
    }

    fn save_checkpoint(&self) -> Result<()> {
        let mut named = checkpoint::model_tensors(&self.vs);
        named.extend(self.opt.state());
        if let Some(ema) = &self.ema {
            named.extend(ema.state());
        }
        named.push(("meta.epochs_done".into(), Tensor::from(self.state.epochs_done as i64)));
        // Weights first, then the state: on resume the weights' epoch is authoritative.
        checkpoint::save_tensors(&self.run_dir.join("last.safetensors"), &named)?;
        checkpoint::write_atomic(&self.run_dir.join("state.json"), serde_json::to_string_pretty(&self.state)?.as_bytes())?;
        let best = self.state.history.iter().map(|r| r.val.accuracy).fold(f64::MIN, f64::max);
        if self.state.history.last().is_some_and(|r| r.val.accuracy >= best) {
            // The weights that were validated: the average where there is one.
            let weights = match &self.ema {
                Some(e) => {
                    let mut w = e.averaged_weights();
                    w.push((crate::ema::AVERAGED.into(), Tensor::from(1i64)));
                    w
                }
                None => checkpoint::model_tensors(&self.vs),
            };
            checkpoint::save_tensors(&self.run_dir.join("best.safetensors"), &weights)?;
        }
        write_metrics_csv(&self.run_dir.join("metrics.csv"), &self.state.history)?;
        Ok(())
    }

    /// After Ctrl-C in `epoch` (0-based): back to the weights of the last finished epoch (its
    /// checkpoint), then the normal end (export, summary, plots).
    fn finish_interrupted(&mut self, epoch: usize) -> Result<Summary> {
        self.interrupted = true;
        if self.state.history.is_empty() {
            bail!("interrupted in epoch {} before any epoch finished: nothing to export or summarize", epoch + 1);
        }
        let ckpt = self.run_dir.join("last.safetensors");
        let named = checkpoint::load_tensors(&ckpt)?;
        checkpoint::load_into(&self.vs, &named, &ckpt, &[])?;
        if let Some(ema) = &mut self.ema {
            ema.load_state(&named).map_err(|what| CheckpointError::Invalid { path: ckpt.clone(), what })?;
        }
        tracing::warn!("interrupted in epoch {}: exporting and summarizing epoch {} (its checkpoint)", epoch + 1, self.state.epochs_done);
        self.finish()
    }

    fn finish(&mut self) -> Result<Summary> {
        let last = self.state.history.last().context("no epoch was trained (train.epochs is 0?)")?.val.accuracy;
        let onnx = if self.cfg.train.export {
            let path = self.run_dir.join("model.onnx");
            self.with_deployed_weights(|t| {
                crate::export::export_model(&t.model, &t.cfg, &t.val.classes, Some(last), &path, true, Default::default())
            })?;
            Some(path)
        } else {
            None
        };
        write_summary(&self.run_dir, &self.cfg, &self.state, &self.val.classes, onnx)
    }
}

/// Writes a run's `summary.json`, `curves.png` and `confusion.png` from its epoch history: at the
/// end of `fit`, and by `fer-train summarize` for a run stopped before its last epoch (its
/// state.json holds every finished epoch).
pub fn write_summary(run_dir: &Path, cfg: &Config, state: &RunState, classes: &[String], onnx: Option<PathBuf>) -> Result<Summary> {
    let h = &state.history;
    let last = h.last().with_context(|| format!("{}: no finished epoch to summarize", run_dir.display()))?;
    let (best_epoch, best) = h
        .iter()
        .map(|r| (r.epoch, r.val.accuracy))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    // A run with train.ema_decay validates the averaged weights, not the ones train accuracy saw.
    let val_label = if cfg.train.ema_decay.is_some() { "val (weight average)" } else { "val" };
    if let Err(e) = crate::plots::training_curves(&run_dir.join("curves.png"), h, val_label) {
        tracing::warn!("could not draw curves.png: {e:#}");
    }
    if let Err(e) = crate::plots::confusion_matrix(&run_dir.join("confusion.png"), &last.val.confusion, classes) {
        tracing::warn!("could not draw confusion.png: {e:#}");
    }
    let accs: Vec<f64> = h.iter().map(|r| r.val.accuracy).collect();
    let total_imgs: f64 = h.iter().map(|r| r.img_per_s * r.seconds).sum();
    let total_s: f64 = h.iter().map(|r| r.seconds).sum();
    let summary = Summary {
        name: cfg.name.clone(),
        epochs: h.len(),
        final_val: last.val.clone(),
        best_val_accuracy: best,
        best_epoch,
        last5_val_accuracy_mean: mean_of_last(&accs, 5),
        final_val_raw_weights: last.val_raw_weights.clone(),
        train_img_per_s: total_imgs / total_s.max(1e-9),
        onnx,
        device: state.device.clone(),
    };
    checkpoint::write_atomic(&run_dir.join("summary.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    Ok(summary)
}

fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The run's augmentation recipe (training views, erasing for the methods that erase, and the
/// eval view) from its config.
pub fn augment_for(cfg: &Config) -> Augment {
    let channels = cfg.model.in_channels;
    Augment {
        size: cfg.model.input_size,
        pad: cfg.train.crop_pad,
        flip: cfg.train.flip,
        erase: cfg.method.erases().then(Erase::default),
        affine: cfg.train.affine.clone(),
        mean: broadcast(&cfg.model.mean, channels),
        std: broadcast(&cfg.model.std, channels),
        channels,
        eval_view: cfg.train.eval_view,
    }
}

/// Predicted class per image, in eval mode; with `ten_crop`, the argmax of the class
/// probabilities averaged over [`Augment::ten_crop`]'s views.
pub fn predict(model: &Classifier, aug: &Augment, ds: &Dataset, batch: i64, ten_crop: bool) -> Vec<i64> {
    tch::no_grad(|| {
        let n = ds.len() as i64;
        let mut preds = Vec::with_capacity(n as usize);
        let mut i = 0;
        while i < n {
            let b = batch.min(n - i);
            let images = ds.images.narrow(0, i, b);
            let logits = if ten_crop {
                let views = aug.ten_crop(&images);
                let n = views.len() as f64;
                let probs = views.iter().map(|v| model.forward_t(v, false).0.softmax(1, Kind::Float)).reduce(|a, b| a + b).expect("ten views");
                probs / n
            } else {
                model.forward_t(&aug.eval(&images), false).0
            };
            preds.extend(Vec::<i64>::try_from(logits.argmax(1, false).to_device(Device::Cpu)).expect("int64 predictions"));
            i += b;
        }
        preds
    })
}

fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)
}

/// A 1-value mean/std (gray) repeated for every input channel.
pub fn broadcast(v: &[f64], channels: i64) -> Vec<f64> {
    if v.len() == 1 {
        vec![v[0]; channels as usize]
    } else {
        v.to_vec()
    }
}

fn progress(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

pub fn write_metrics_csv(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut s = String::from("epoch,lr,train_loss,train_accuracy,val_accuracy,val_mean_class_accuracy,val_macro_f1,img_per_s,seconds\n");
    for r in history {
        s += &format!(
            "{},{:.6e},{:.5},{:.5},{:.5},{:.5},{:.5},{:.1},{:.2}\n",
            r.epoch, r.lr, r.train_loss, r.train_accuracy, r.val.accuracy, r.val.mean_class_accuracy, r.val.macro_f1, r.img_per_s, r.seconds
        );
    }
    checkpoint::write_atomic(path, s.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_on_a_progress_line() {
        for (s, want) in [(0.4, "0s"), (42.0, "42s"), (59.6, "1m00s"), (246.0, "4m06s"), (3599.0, "59m59s"), (11100.0, "3h05m"), (-1.0, "0s")] {
            assert_eq!(super::short_duration(s), want, "{s}");
        }
    }

    /// state.json is the record `fer-train summarize` and `--resume` rebuild from, so its floats
    /// must read back exactly (serde_json's `float_roundtrip`; its default parser is sometimes one
    /// unit in the last place off, which once made a rebuilt summary differ from fit's).
    #[test]
    fn json_floats_read_back_exactly() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((x % 12) as i32 - 4);
            let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} read back as {back:e}");
        }
    }
}
