//! Loading a finished (or interrupted) run for `fer-train eval` and `fer-train export`.

use crate::augment::Augment;
use crate::checkpoint;
use crate::config::Config;
use crate::data;
use crate::metrics::Metrics;
use crate::models::Classifier;
use crate::train::{predict, select_device, RunState};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::nn;

/// A run's config and model with a checkpoint's weights.
pub struct LoadedRun {
    pub cfg: Config,
    pub vs: nn::VarStore,
    pub model: Classifier,
    pub classes: Vec<String>,
    pub run_dir: PathBuf,
    /// The checkpoint held a moving average of the weights (`train.ema_decay`), and the model has it.
    pub averaged: bool,
}

impl LoadedRun {
    /// Opens `<run>/config.yaml` and a checkpoint (default: best, else last); `overrides` change
    /// the config (typically the data section, to evaluate on another dataset). The model gets the
    /// weights the run deploys (a moving average where it keeps one), or with `raw_weights` the
    /// ones it trained (a checkpoint with `ema.*` entries only: `last.safetensors`).
    pub fn open(run: &Path, checkpoint_file: Option<&Path>, overrides: &[String], raw_weights: bool) -> Result<Self> {
        let cfg_path = run.join("config.yaml");
        let cfg = Config::load(&cfg_path, overrides).with_context(|| format!("{} is not a run directory?", run.display()))?;
        let ckpt = match checkpoint_file {
            Some(p) if p.is_absolute() || p.exists() => p.to_path_buf(),
            Some(p) => run.join(p),
            None if run.join("best.safetensors").exists() => run.join("best.safetensors"),
            None => run.join("last.safetensors"),
        };
        // A run that averages its weights (train.ema_decay) deploys the average.
        let named = checkpoint::load_tensors(&ckpt)?;
        let has_raw = named.keys().any(|k| k.starts_with(crate::ema::PREFIX));
        if raw_weights && !has_raw {
            anyhow::bail!(
                "{}: no raw weights beside an average (it holds {}); the raw weights of a run with train.ema_decay are in last.safetensors",
                ckpt.display(),
                if named.contains_key(crate::ema::AVERAGED) { "the average alone" } else { "one set of weights: its run does not average them" }
            );
        }
        let averaged = !raw_weights && (has_raw || named.contains_key(crate::ema::AVERAGED));
        let named = if raw_weights { named } else { checkpoint::deployed_weights(named) };
        // The number of classes is the head's output size, read from the checkpoint itself.
        let head = cfg.method.head_spec(cfg.model.arch).map_err(anyhow::Error::msg)?;
        let head_bias = head.class_param(cfg.model.arch);
        let k = named
            .get(&head_bias)
            .with_context(|| format!("{}: no `{head_bias}`, not a {} checkpoint", ckpt.display(), cfg.model.arch.name()))?
            .size()[0];
        let device = select_device(&cfg.train.device)?;
        let vs = nn::VarStore::new(device);
        let model = Classifier::build(&vs.root(), &cfg.model_spec(k)?)?;
        checkpoint::load_into(&vs, &named, &ckpt, &[])?;
        let classes = match &cfg.data.classes {
            Some(c) => c.clone(),
            None => read_classes(run).unwrap_or_else(|| (0..k).map(|i| format!("class{i}")).collect()),
        };
        Ok(LoadedRun { cfg, vs, model, classes, run_dir: run.to_path_buf(), averaged })
    }

    /// Accuracy & co. on a split of the configured dataset.
    pub fn evaluate(&self, split: &str) -> Result<(Metrics, Vec<String>)> {
        let mut ds = data::load_split_cached(&self.cfg.data, split, self.cfg.splits.cache_dir.as_deref())?;
        ds.images = ds.images.to_device(self.vs.device());
        let preds = predict(&self.model, &self.eval_augment(), &ds, self.cfg.train.eval_batch_size, self.cfg.train.ten_crop_eval);
        Ok((Metrics::from_predictions(&ds.labels, &preds, ds.num_classes()), ds.classes.clone()))
    }

    /// The preprocessing the run's model was validated with (its eval view, normalization,
    /// channels), as `fit` builds it.
    pub fn eval_augment(&self) -> Augment {
        crate::train::augment_for(&self.cfg)
    }

    /// The last validation accuracy recorded in the run's state.json, if any.
    pub fn recorded_val_accuracy(&self) -> Option<f64> {
        let text = std::fs::read_to_string(self.run_dir.join("state.json")).ok()?;
        let st: RunState = serde_json::from_str(&text).ok()?;
        st.history.last().map(|r| r.val.accuracy)
    }
}

/// `fer-train summarize`: writes summary.json, curves.png and confusion.png for a run from its
/// config.yaml and state.json alone (no checkpoint needed), as `fit` does at its end. For runs
/// stopped before their last epoch, e.g. at a GPU call's deadline; `onnx` names the run's
/// model.onnx when one is there.
pub fn summarize_run(run: &Path) -> Result<crate::train::Summary> {
    let cfg = Config::load(&run.join("config.yaml"), &[]).with_context(|| format!("{} is not a run directory?", run.display()))?;
    let state_path = run.join("state.json");
    let text = std::fs::read_to_string(&state_path).with_context(|| format!("reading {}", state_path.display()))?;
    let st: RunState = serde_json::from_str(&text).with_context(|| format!("{}: not a fer-train state file", state_path.display()))?;
    let k = st.history.last().map_or(0, |r| r.val.confusion.len());
    let classes = cfg
        .data
        .classes
        .clone()
        .or_else(|| read_classes(run))
        .unwrap_or_else(|| (0..k).map(|i| format!("class{i}")).collect());
    let onnx = Some(run.join("model.onnx")).filter(|p| p.is_file());
    crate::train::write_summary(run, &cfg, &st, &classes, onnx)
}

/// Class names as training saw them (kept in `classes.json` by `fit`).
fn read_classes(run: &Path) -> Option<Vec<String>> {
    serde_json::from_str(&std::fs::read_to_string(run.join("classes.json")).ok()?).ok()
}

/// The report `fer-train eval` prints: the scores, a row per class (faces, recall, precision, F1),
/// the confusion matrix. `fer-run eval` prints the same for a deployed file (its twin,
/// `fer_runtime::metrics::Scores::report`; tests/onnx_parity.rs pins the two together).
pub fn report(m: &Metrics, classes: &[String]) -> String {
    let c = &m.confusion;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| format!("class{i}"));
    let mut s = format!(
        "accuracy {:.2}%  mean class accuracy {:.2}%  macro-F1 {:.4}\n\n{:>10} {:>8} {:>8} {:>9} {:>8}\n",
        100.0 * m.accuracy,
        100.0 * m.mean_class_accuracy,
        m.macro_f1,
        "class",
        "faces",
        "recall",
        "precision",
        "F1"
    );
    for (i, k) in crate::metrics::class_scores(c).iter().enumerate() {
        let f1 = k.f1.map_or("-".to_string(), |v| format!("{v:.4}"));
        s += &format!("{:>10.10} {:>8} {:>8} {:>9} {f1:>8}\n", name(i), k.faces, pct(k.recall), pct(k.precision));
    }
    s += &format!("\nconfusion (rows: true, columns: predicted)\n{:>10}", "");
    for i in 0..c.len() {
        s += &format!(" {:>8.8}", name(i));
    }
    s.push('\n');
    for (i, row) in c.iter().enumerate() {
        s += &format!("{:>10.10}", name(i));
        for v in row {
            s += &format!(" {v:>8}");
        }
        s.push('\n');
    }
    s
}
