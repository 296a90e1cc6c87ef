//! The run configuration: one YAML file per recipe under `configs/`, overridable with
//! `--set key.path=value`. Unknown keys are errors (a typo must not silently train the wrong
//! recipe). The resolved config is written beside every checkpoint.

use crate::data::DataSpec;
use crate::distill::DistillConfig;
use crate::methods::MethodConfig;
use crate::models::{Arch, ModelSpec, VitConfig};
use crate::nn::AttentionKind;
use crate::optim::{OptimizerConfig, SchedulerConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run name; the run directory is `<out_dir>/<name>`.
    pub name: String,
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    pub data: DataSpec,
    #[serde(default)]
    pub splits: Splits,
    #[serde(default)]
    pub noise: Noise,
    pub model: ModelConfig,
    pub method: MethodConfig,
    pub train: TrainConfig,
    /// Knowledge distillation from a teacher's stored logits (`fer_train::distill`); none = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
}

fn default_out_dir() -> PathBuf {
    "runs".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Splits {
    pub train: String,
    pub val: String,
    /// Where decoded datasets are cached (safetensors); none = decode every run.
    pub cache_dir: Option<PathBuf>,
}

impl Default for Splits {
    fn default() -> Self {
        Splits { train: "train".into(), val: "val".into(), cache_dir: Some(".cache/data".into()) }
    }
}

/// Synthetic symmetric label noise on the training split only (the seeds' noisy-label tables).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    pub rate: f64,
    pub seed: u64,
}

impl Default for Noise {
    fn default() -> Self {
        Noise { rate: 0.0, seed: 1234 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Side of the square network input (FER2013's 48x48 faces are upsampled to it).
    pub input_size: i64,
    /// Channels the network takes; gray data is replicated to 3 as the peer does.
    #[serde(default = "three")]
    pub in_channels: i64,
    #[serde(default)]
    pub dropout: f64,
    /// Attention after every stage of arch `ivsa`: `sab` (default), `cbam` or `none`; an error
    /// with any other arch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionKind>,
    /// GReFEL's cross-attention ViT (arch `grefel_vit`): its streams, their optional weights and
    /// its sizes; the defaults when absent, an error with any other arch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vit: Option<VitConfig>,
    /// Input pixels per pixel of the last feature map for the ResNets and MobileNetV2: 32
    /// (torchvision's, the default), 16 or 8. The stride-2 layers past it run at stride 1 (same
    /// weights, larger maps): at FER2013's native 48 px, 16 gives a 3x3 map (and 3x3 CAMs for
    /// EAC) instead of 2x2 (docs/RESULTS.md, "The shipped edge model").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_stride: Option<i64>,
    /// Optional initial weights: safetensors with torchvision names (the head may be absent), a
    /// run's checkpoint, or an ONNX file fer-train exported (`models-onnx/eac_mbv2.onnx`: its
    /// folded batch norms are unfolded, `crate::onnx_init`).
    pub init: Option<PathBuf>,
    /// With an ensemble file as `init` (`fer_export::ensemble`), which member to start from: 0 for
    /// the first (its metadata `fer.member0.*` describes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_member: Option<usize>,
    #[serde(default = "default_mean")]
    pub mean: Vec<f64>,
    #[serde(default = "default_mean")]
    pub std: Vec<f64>,
}

fn three() -> i64 {
    3
}
fn default_mean() -> Vec<f64> {
    vec![0.5]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: i64,
    #[serde(default = "default_eval_bs")]
    pub eval_batch_size: i64,
    pub optimizer: OptimizerConfig,
    pub scheduler: SchedulerConfig,
    /// Resize to `input_size + crop_pad`, then random-crop `input_size` (peer: 8).
    #[serde(default = "eight")]
    pub crop_pad: i64,
    #[serde(default = "yes")]
    pub flip: bool,
    /// Random rescale / shift / rotation of each face (`fer_train::augment::Affine`; `{}` takes
    /// IVSA's defaults: p 0.5 each, ±20 % scale, ±20 % shift, ±10°); none = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<crate::augment::Affine>,
    /// Train on every k-th training image only (quick runs); validation always uses the whole split.
    pub subset_every: Option<usize>,
    /// Class-balanced sampling (with replacement, weights 1/count).
    #[serde(default)]
    pub balanced: bool,
    #[serde(default)]
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
    #[serde(default = "auto")]
    pub device: String,
    /// bf16 autocast for the forward pass and the loss (PyTorch's `torch.autocast(device,
    /// dtype=torch.bfloat16)`; `fer_train::autocast`): convolutions and matrix products in bf16,
    /// weights, optimiser and validation in float32. Pays off on GPUs with bf16 tensor cores; on
    /// CPUs without bf16 instructions (AVX2-only x86) it is slower than float32.
    #[serde(default)]
    pub bf16: bool,
    /// Channels-last batches and conv weights (PyTorch's `memory_format=torch.channels_last`, as
    /// the peer trains): the same numbers through other kernels; measure which is faster on your
    /// device (`fer-train bench --channels-last`). A run resumes only with the setting it began with.
    #[serde(default)]
    pub channels_last: bool,
    /// Max global gradient norm; none = no clipping.
    pub grad_clip: Option<f64>,
    /// CPU threads for tch (0 = libtorch's default).
    #[serde(default)]
    pub threads: i32,
    /// Validate with ten-crop averaging (IVSA, seed 004): the corner and centre crops of the
    /// `input_size + crop_pad` image and their flips. The exported model sees a single view.
    #[serde(default)]
    pub ten_crop_eval: bool,
    /// What validation and the exported model see of a face: `resize` (the whole face resized to
    /// `model.input_size`, the peer's validation) or `centre_crop` (the centre crop of the
    /// `input_size + crop_pad` resize that training crops at random; for recipes whose training
    /// never sees raw pixels, such as 48 px faces at 48 px). Exported as `fer.eval_view`.
    #[serde(default)]
    pub eval_view: crate::augment::EvalView,
    /// Validate, keep as best and export an exponential moving average of the weights with this
    /// decay per step (`fer_train::ema`; e.g. 0.999: an average over the last ~1,000 steps);
    /// none = the raw weights. Training itself goes on with the raw weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
    /// Export `model.onnx` (with CAM) at the end of `fit`.
    #[serde(default = "yes")]
    pub export: bool,
}

fn default_eval_bs() -> i64 {
    512
}
fn eight() -> i64 {
    8
}
fn yes() -> bool {
    true
}
fn auto() -> String {
    "auto".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("--set {0}: expected key.path=value")]
    BadOverride(String),
    #[error("--set {key}: `{segment}` is not a section of the config")]
    NotASection { key: String, segment: String },
    /// Valid YAML with a wrong value or an unknown key, named by its key path and by where it
    /// came from: the `--set` that wrote it, else the file.
    #[error("{origin}: {}{source}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Field { origin: String, key: Option<String>, source: serde_yaml::Error },
    /// Sections that parse but do not fit together (a method and an arch).
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads a YAML config and applies `key.path=value` overrides (values parsed as YAML).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.to_path_buf(), e))?;
        Self::from_yaml(&text, overrides).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_path_buf(), source },
            ConfigError::Field { origin, key, source } if origin == CONFIG_TEXT => {
                ConfigError::Field { origin: path.display().to_string(), key, source }
            }
            e => e,
        })
    }

    pub fn from_yaml(text: &str, overrides: &[String]) -> Result<Config, ConfigError> {
        let parse_err = |source| ConfigError::Parse { path: PathBuf::from(CONFIG_TEXT), source };
        let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(parse_err)?;
        let before_overrides = value.clone();
        for o in overrides {
            let (key, raw) = o.split_once('=').ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
            let new: serde_yaml::Value = serde_yaml::from_str(raw).map_err(parse_err)?;
            set_path(&mut value, key, new)?;
        }
        let cfg: Config = serde_path_to_error::deserialize(value).map_err(|e| field_error(e, before_overrides, overrides))?;
        cfg.check_sizes()?;
        Ok(cfg)
    }

    /// Sizes that parse but cannot run (tch would panic deep inside a kernel, or a division by
    /// zero would): refused here, by key, for every entry point that reads a config.
    fn check_sizes(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, want: &str, got: i64| Err(ConfigError::Invalid(format!("{key} must be {want}, got {got}")));
        if self.train.batch_size < 2 {
            return bad("train.batch_size", "at least 2 (BatchNorm needs two images per training batch)", self.train.batch_size);
        }
        if self.train.eval_batch_size < 1 {
            return bad("train.eval_batch_size", "at least 1", self.train.eval_batch_size);
        }
        if self.model.input_size < 1 {
            return bad("model.input_size", "at least 1 pixel", self.model.input_size);
        }
        if self.model.in_channels < 1 {
            return bad("model.in_channels", "at least 1", self.model.in_channels);
        }
        if self.train.eval_view == crate::augment::EvalView::CentreCrop && self.train.crop_pad < 1 {
            return bad("train.crop_pad", "at least 1 for train.eval_view centre_crop", self.train.crop_pad);
        }
        if let Some(d) = self.train.ema_decay {
            crate::ema::check_decay(d).map_err(ConfigError::Invalid)?;
        }
        let warmup = self.method.consistency_warmup();
        if !(warmup >= 0.0 && warmup.is_finite()) {
            return Err(ConfigError::Invalid(format!("method.consistency_warmup must be 0 or more epochs, got {warmup}")));
        }
        self.train.scheduler.check(self.train.epochs).map_err(ConfigError::Invalid)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a Config always serialises")
    }

    /// The model this config trains with `num_classes` classes; the method picks the head, and an
    /// arch that cannot carry it is an error here (e.g. `dacfer` on `ivsa`, which has no CAMs).
    pub fn model_spec(&self, num_classes: i64) -> Result<ModelSpec, ConfigError> {
        let head = self.method.head_spec(self.model.arch).map_err(ConfigError::Invalid)?;
        Ok(ModelSpec {
            arch: self.model.arch,
            in_channels: self.model.in_channels,
            num_classes,
            dropout: self.model.dropout,
            input_size: self.model.input_size,
            attention: self.model.attention,
            vit: self.model.vit.clone(),
            output_stride: self.model.output_stride,
            head,
        })
    }

    pub fn run_dir(&self) -> PathBuf {
        self.out_dir.join(&self.name)
    }

    /// The config the run in `run_dir` trains with (its `config.yaml`, then `overrides`), placed
    /// in that folder whatever name it started under: a run folder copied to a new name (to try
    /// another continuation) goes on there, not in the original.
    pub fn of_run(run_dir: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let mut cfg = Config::load(&run_dir.join("config.yaml"), overrides)?;
        let name = run_dir.file_name().ok_or_else(|| ConfigError::Invalid(format!("{}: not a run folder's path", run_dir.display())))?;
        cfg.name = name.to_string_lossy().into_owned();
        cfg.out_dir = run_dir.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(cfg)
    }

    /// What differs from `before`, one entry per key (its dotted path), in the config's order.
    pub fn changes_from(&self, before: &Config) -> Vec<Change> {
        let yaml = |c: &Config| serde_yaml::to_value(c).expect("a Config always serialises");
        let mut out = Vec::new();
        changes("", Some(&yaml(before)), Some(&yaml(self)), &mut out);
        out
    }
}

/// A key whose value differs between two configs ([`Config::changes_from`]): its dotted path, and
/// its value before and now, each on one line (`(not set)` where a section is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub was: String,
    pub now: String,
}

impl Change {
    /// The last of `overrides` that wrote this key: a `--set` of the key, of a section holding
    /// it, or of a part of it (the key is a section one side lacks).
    pub fn written_by<'a>(&self, overrides: &'a [String]) -> Option<&'a String> {
        overrides.iter().rev().find(|o| {
            let set = set_key(o);
            set == self.key || self.key.starts_with(&format!("{set}.")) || set.starts_with(&format!("{}.", self.key))
        })
    }
}

/// The key of a `--set key=value`.
fn set_key(o: &str) -> &str {
    o.split_once('=').map_or(o, |(k, _)| k)
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.key, self.was, self.now)
    }
}

fn changes(key: &str, was: Option<&serde_yaml::Value>, now: Option<&serde_yaml::Value>, out: &mut Vec<Change>) {
    use serde_yaml::Value;
    let join = |k: &Value| {
        let k = k.as_str().map_or_else(|| one_line(Some(k)), str::to_string);
        if key.is_empty() { k } else { format!("{key}.{k}") }
    };
    match (was, now) {
        (Some(Value::Mapping(a)), Some(Value::Mapping(b))) => {
            for (k, va) in a {
                changes(&join(k), Some(va), b.get(k), out);
            }
            for (k, vb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                changes(&join(k), None, Some(vb), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change { key: key.to_string(), was: one_line(a), now: one_line(b) }),
    }
}

/// A YAML value on one line: scalars as YAML writes them, sections and lists in flow style.
fn one_line(v: Option<&serde_yaml::Value>) -> String {
    match v {
        None => "(not set)".into(),
        Some(v @ (serde_yaml::Value::Mapping(_) | serde_yaml::Value::Sequence(_))) => serde_json::to_string(v).unwrap_or_default(),
        Some(v) => serde_yaml::to_string(v).unwrap_or_default().trim_end().to_string(),
    }
}

/// Where a config's text came from, before [`Config::load`] names the file.
const CONFIG_TEXT: &str = "<config>";

/// The error of a config that is valid YAML but not a valid config, with the key path that was
/// wrong (an unknown key's path ends in the key itself, `train.epochz`), blamed on the `--set`
/// that wrote it, else on the config's text (`text`: the config before the overrides).
///
/// The last `--set` of that key or of a section holding it wrote the value. A path can also name a
/// section (`method`: the name-tagged ones report no deeper key) of which a `--set` wrote only a
/// part: that `--set` is blamed when the text alone has no error there.
fn field_error(e: serde_path_to_error::Error<serde_yaml::Error>, text: serde_yaml::Value, overrides: &[String]) -> ConfigError {
    let path = e.path().to_string();
    let key = (path != ".").then_some(path);
    let k = key.clone().unwrap_or_default();
    let wrote_all = overrides.iter().rev().find(|o| {
        let set = set_key(o);
        k == set || k.starts_with(&format!("{set}."))
    });
    let wrote_part = || {
        let part = overrides.iter().rev().find(|o| set_key(o).starts_with(&format!("{k}.")))?;
        let alone = serde_path_to_error::deserialize::<_, Config>(text);
        let text_wrong_there = alone.err().is_some_and(|e| e.path().to_string() == k);
        (!text_wrong_there).then_some(part)
    };
    let origin = match wrote_all.or_else(|| key.as_ref().and_then(|_| wrote_part())) {
        Some(o) => format!("--set {o}"),
        None => CONFIG_TEXT.to_string(),
    };
    ConfigError::Field { origin, key, source: e.into_inner() }
}

fn set_path(root: &mut serde_yaml::Value, key: &str, new: serde_yaml::Value) -> Result<(), ConfigError> {
    let mut cur = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = cur.as_mapping_mut().ok_or_else(|| ConfigError::NotASection {
            key: key.into(),
            segment: parts[..i].join("."),
        })?;
        let k = serde_yaml::Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, new);
            return Ok(());
        }
        cur = map.entry(k).or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
name: t
data: { format: folder, root: /nonexistent }
model: { arch: resnet18, input_size: 112 }
method: { name: eac, lambda: 5.0 }
train:
  epochs: 2
  batch_size: 8
  optimizer: { name: adam, lr: 0.001, weight_decay: 0.0001 }
  scheduler: { name: exponential, gamma: 0.9 }
"#;

    #[test]
    fn overrides_apply_and_unknown_keys_fail() {
        let c = Config::from_yaml(YAML, &["train.epochs=7".into(), "method.lambda=2.5".into()]).unwrap();
        assert_eq!(c.train.epochs, 7);
        assert_eq!(c.method, MethodConfig::Eac { lambda: 2.5, consistency_warmup: 0.0 });
        let e = Config::from_yaml(YAML, &["train.epochz=7".into()]).unwrap_err().to_string();
        assert!(e.contains("epochz"), "{e}");
        let e = Config::from_yaml(YAML, &["train.epochs".into()]).unwrap_err().to_string();
        assert!(e.contains("expected key.path=value"), "{e}");
    }

    /// Two configs' differences come key by key, in the config's order, nested sections by their
    /// dotted path, lists and added sections on one line; each is traced to the `--set` that
    /// wrote it, if one did.
    #[test]
    fn changes_between_configs_are_listed_by_key() {
        let before = Config::from_yaml(YAML, &[]).unwrap();
        assert!(before.changes_from(&before).is_empty());
        let sets: Vec<String> = [
            "train.epochs=96",
            "train.scheduler={name: cosine, min_lr: 0.0, restarts: [32, 64]}",
            "distill={targets: t.safetensors}",
        ]
        .map(String::from)
        .to_vec();
        let now = Config::from_yaml(YAML, &sets).unwrap();
        let mut changed = Config::from_yaml(&YAML.replace("arch: resnet18", "arch: mbv2"), &sets).unwrap();
        let shown: Vec<String> = now.changes_from(&before).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "train.epochs: 2 -> 96",
                "train.scheduler.name: exponential -> cosine",
                "train.scheduler.gamma: 0.9 -> (not set)",
                "train.scheduler.min_lr: (not set) -> 0.0",
                "train.scheduler.restarts: (not set) -> [32,64]",
                "distill: (not set) -> {\"targets\":\"t.safetensors\",\"weight\":1.0,\"temperature\":4.0}",
            ]
        );
        assert!(now.changes_from(&before).iter().all(|c| c.written_by(&sets).is_some()));
        // A change the --set list does not explain: the file's own.
        changed.train.epochs = 96;
        let unexplained: Vec<_> = changed.changes_from(&before).into_iter().filter(|c| c.written_by(&sets).is_none()).collect();
        assert_eq!(unexplained.iter().map(|c| c.to_string()).collect::<Vec<_>>(), ["model.arch: resnet18 -> mbv2"]);
        // The last --set of a key, of a section above it, or of a part of a section it names.
        let c = Change { key: "distill".into(), was: "(not set)".into(), now: "{}".into() };
        let parts = ["distill.weight=2".to_string(), "train.epochs=1".to_string()];
        assert_eq!(c.written_by(&parts), Some(&parts[0]));
        let c = Change { key: "train.epochs".into(), was: "1".into(), now: "2".into() };
        assert_eq!(c.written_by(&["train=x".into(), "train.epochs=2".into()]).map(String::as_str), Some("train.epochs=2"));
        assert_eq!(c.written_by(&["train.epochs_x=2".into()]), None, "a key that only starts the same");
    }

    #[test]
    fn every_shipped_config_parses_and_builds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let cfg = Config::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                let spec = cfg.model_spec(7).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let vs = tch::nn::VarStore::new(tch::Device::Cpu);
                crate::models::Classifier::build(&vs.root(), &spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 10, "only {n} configs in {}", dir.display());
    }

    /// A value of the wrong kind, or an unknown key, is named by its key path and blamed on the
    /// `--set` that wrote it, or else on the config's text (the file, through `load`).
    #[test]
    fn wrong_values_name_their_key_and_where_they_came_from() {
        for (sets, want) in [
            (&["model.arch=resnet99"][..], "--set model.arch=resnet99: model.arch: unknown variant `resnet99`"),
            (&["train.epochs=-1"], "--set train.epochs=-1: train.epochs: invalid value: integer `-1`"),
            (&["train.epochz=7"], "--set train.epochz=7: train.epochz: unknown field `epochz`"),
            (&["train.optimizer={name: adam, lr: fast}"], "--set train.optimizer={name: adam, lr: fast}: train.optimizer.lr: invalid type"),
            // The last --set of a key is the one that counts.
            (&["train.epochs=-1", "train.epochs=x"], "--set train.epochs=x: train.epochs: invalid type"),
            // A --set below the key named: an unknown section, a name-tagged section's field.
            (&["bogus.key=1"], "--set bogus.key=1: bogus: unknown field `bogus`"),
            (&["method.lambda=x"], "--set method.lambda=x: method: invalid type: string \"x\""),
            // Another key's --set is not blamed for the text's mistake.
            (&["train.epochs=3", "model.input_size=big"], "--set model.input_size=big: model.input_size: invalid type"),
        ] {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let e = Config::from_yaml(YAML, &sets).unwrap_err().to_string();
            assert!(e.starts_with(want), "{sets:?}: {e}");
        }
        let wrong = YAML.replace("input_size: 112", "input_size: large");
        let e = Config::from_yaml(&wrong, &["train.epochs=3".into()]).unwrap_err().to_string();
        assert!(e.starts_with("<config>: model.input_size: invalid type"), "{e}");
        // Nor a --set inside a section whose mistake is the text's.
        let wrong_method = YAML.replace("lambda: 5.0", "lambda: much");
        let e = Config::from_yaml(&wrong_method, &["method.name=eac".into()]).unwrap_err().to_string();
        assert!(e.starts_with("<config>: method: invalid type"), "{e}");
        let dir = std::env::temp_dir().join(format!("fer_config_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wrong.yaml");
        std::fs::write(&file, &wrong).unwrap();
        let e = Config::load(&file, &[]).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.starts_with(&format!("{}: model.input_size: invalid type", file.display())), "{e}");
    }

    /// Sizes no kernel can run are refused by key (they used to panic: batch 0 divided by zero).
    #[test]
    fn sizes_that_cannot_run_are_named_errors() {
        for (set, key) in [
            ("train.batch_size=0", "train.batch_size"),
            ("train.batch_size=1", "train.batch_size"),
            ("train.eval_batch_size=0", "train.eval_batch_size"),
            ("model.input_size=0", "model.input_size"),
            ("model.in_channels=-1", "model.in_channels"),
            ("train.scheduler={name: cosine, restarts: [99]}", "train.scheduler.restarts"),
            ("method.consistency_warmup=-1", "method.consistency_warmup"),
            ("train.ema_decay=1.0", "train.ema_decay"),
        ] {
            let e = Config::from_yaml(YAML, &[set.into()]).unwrap_err().to_string();
            assert!(e.starts_with(key), "--set {set}: {e}");
        }
        // A centre crop needs a margin to crop from.
        let e = Config::from_yaml(YAML, &["train.eval_view=centre_crop".into(), "train.crop_pad=0".into()]).unwrap_err().to_string();
        assert!(e.starts_with("train.crop_pad"), "{e}");
        Config::from_yaml(YAML, &["train.batch_size=2".into(), "model.input_size=1".into()]).unwrap();
    }

    /// Methods and archs that do not fit together, and unknown attention kinds, are named errors.
    #[test]
    fn bad_method_arch_pairs_are_errors_not_panics() {
        let c = Config::from_yaml(YAML, &["model.arch=ivsa".into(), "model.input_size=48".into(), "method={name: dacfer}".into()]).unwrap();
        let e = c.model_spec(7).unwrap_err().to_string();
        assert!(e.contains("method dacfer needs class activation maps") && e.contains("arch ivsa"), "{e}");
        let e = Config::from_yaml(YAML, &["model.attention=sa".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown variant `sa`") && e.contains("sab"), "{e}");
        let c = Config::from_yaml(YAML, &["model.attention=cbam".into()]).unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let e = crate::models::Classifier::build(&vs.root(), &c.model_spec(7).unwrap()).unwrap_err().to_string();
        assert!(e.contains("model.attention is only for arch ivsa"), "{e}");
        let c = Config::from_yaml(YAML, &["model.arch=ivsa".into(), "model.input_size=40".into(), "method={name: ce}".into()]).unwrap();
        let e = crate::models::Classifier::build(&vs.root(), &c.model_spec(7).unwrap()).unwrap_err().to_string();
        assert!(e.contains("multiple of 16"), "{e}");
        let c = Config::from_yaml(YAML, &["method={name: grefel_rb, rb: {tokens: 7}}".into()]).unwrap();
        let e = crate::models::Classifier::build(&vs.root(), &c.model_spec(7).unwrap()).unwrap_err().to_string();
        assert!(e.contains("cannot be cut into 7 tokens"), "{e}");
        let e = Config::from_yaml(YAML, &["method={name: dan, head: 4}".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown field `head`"), "{e}");
        let c = Config::from_yaml(YAML, &["model.output_stride=12".into()]).unwrap();
        let e = crate::models::Classifier::build(&vs.root(), &c.model_spec(7).unwrap()).unwrap_err().to_string();
        assert!(e.contains("model.output_stride must be 32, 16 or 8, got 12"), "{e}");
        let c = Config::from_yaml(YAML, &["model.arch=ivsa".into(), "model.input_size=48".into(), "method={name: ce}".into(), "model.output_stride=16".into()]).unwrap();
        let e = crate::models::Classifier::build(&vs.root(), &c.model_spec(7).unwrap()).unwrap_err().to_string();
        assert!(e.contains("model.output_stride is for arch") && e.contains("not ivsa"), "{e}");
    }
}
