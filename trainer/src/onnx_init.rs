//! `model.init: FILE.onnx`: a run that starts from a model fer-train exported (a shipped file in
//! `models-onnx/`, or one member of an ensemble file with `model.init_member`), to fine-tune it on
//! other data or train it on with another teacher or schedule, when its run folder is gone.
//!
//! The file holds the deployed weights ([`fer_export::weights`]: float32, float16 or int8, all read
//! as float32), with every conv's batch norm folded in. Linear layers and anything else stored
//! under its variable's own name are copied; each conv + BN ([`crate::nn::ConvBnAct`]) is unfolded:
//! the folded weight becomes the conv's, and the BN gets the statistics of the conv's output on
//! real faces (one eval pass over `faces`), so that the model computes what the file computes in
//! eval mode and normalises as the original did in training mode. Afterwards the logits on `faces`
//! must match the pass before the statistics were set (an internal check; a mismatch is an error).
//!
//! What cannot be unfolded is refused, naming it: a file made for another architecture (variables
//! missing or of another shape), batch norms folded some other way (the 1-d ones of the GReFEL and
//! DAN heads), a class list other than the data's (then the head starts fresh, as with a
//! safetensors `model.init` without one).

use crate::checkpoint::{self, CheckpointError};
use crate::models::Classifier;
use crate::nn::{identity_bn, unfolded_bn, Recorder};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// What [`load`] did, for the run's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Convs whose batch norm was unfolded.
    pub unfolded: usize,
    /// Variables copied as they were stored (linear layers, biases, non-folded weights).
    pub copied: usize,
    /// Whether the file's head was left out (its classes differ from the data's).
    pub head_fresh: bool,
    /// The largest |logit difference| of the check (see the module docs).
    pub worst_logit_change: f64,
}

/// The weights of `path` (member `member` of an ensemble file) into `vs`, whose model is `model`.
/// `classes` are the data's; `faces` a float batch of eval views (the recording pass's input).
pub fn load(
    vs: &nn::VarStore,
    model: &Classifier,
    path: &Path,
    member: Option<usize>,
    classes: &[String],
    faces: &Tensor,
    head_prefixes: &[String],
) -> Result<Loaded> {
    let proto = fer_export::load(path)?;
    let props: HashMap<&str, &str> = proto.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
    let members = props.get("fer.members").map(|m| m.split(',').count()).unwrap_or(0);
    let (prefix, meta_prefix) = match (member, members) {
        (None, 0) => (String::new(), "fer.".to_string()),
        (Some(k), n) if k < n => (format!("m{k}/"), format!("fer.member{k}.")),
        (None, n) => bail!(
            "{}: an ensemble of {n} models ({}); say which one to start from with model.init_member (0 to {})",
            path.display(),
            props["fer.members"],
            n - 1
        ),
        (Some(k), 0) => bail!("{}: model.init_member is {k}, but the file is a single model, not an ensemble", path.display()),
        (Some(k), n) => bail!("{}: model.init_member is {k}; the ensemble has members 0 to {}", path.display(), n - 1),
    };
    let meta = |key: &str| props.get(format!("{meta_prefix}{key}").as_str()).copied();
    let file_classes: Vec<&str> = meta("labels").map(|l| l.split(',').collect()).unwrap_or_default();
    let head_fresh = file_classes != classes.iter().map(String::as_str).collect::<Vec<_>>();
    if head_fresh {
        tracing::info!(
            "{}: its classes {:?} are not the data's {:?}; its head is left out and starts fresh",
            path.display(),
            file_classes,
            classes
        );
    }
    let stored = fer_export::weights::float_weights(&proto).with_context(|| format!("reading the weights of {}", path.display()))?;
    let device = vs.device();
    let weight = |name: &str| -> Option<Tensor> {
        stored.get(&format!("{prefix}{name}")).map(|w| Tensor::from_slice(&w.data).reshape(w.dims.as_slice()).to_device(device))
    };

    // Which variables belong to a conv + BN: one eval pass on a couple of faces lists them.
    let convs = tch::no_grad(|| {
        let rec = Recorder::start();
        let _ = model.forward_t(&faces.narrow(0, 0, faces.size()[0].min(2)), false);
        rec.finish()
    });
    let skip: Vec<String> = if head_fresh { head_prefixes.to_vec() } else { Vec::new() };
    let mut named: HashMap<String, Tensor> = HashMap::new();
    let mut folded_bias = HashMap::new();
    for c in &convs {
        let Some(bias) = weight(&format!("{}.bias", c.conv_name)) else {
            if skip.iter().any(|p| c.bn_name.starts_with(p.as_str())) {
                continue;
            }
            bail!(
                "{}: no folded bias `{prefix}{}.bias` for the conv `{}` (the file's backbone is `{}`, the config's `{}`)",
                path.display(),
                c.conv_name,
                c.conv_name,
                meta("backbone").unwrap_or("not recorded"),
                model.arch.name()
            );
        };
        for (var, t) in ["weight", "bias", "running_mean", "running_var"].iter().zip(identity_bn(&bias, c.eps)) {
            named.insert(format!("{}.{var}", c.bn_name), t);
        }
        folded_bias.insert(c.conv_name.clone(), bias);
    }
    let bn_vars = named.len();
    for name in vs.variables().into_keys() {
        if named.contains_key(&name) || skip.iter().any(|p| name.starts_with(p.as_str())) {
            continue;
        }
        if let Some(t) = weight(&name) {
            named.insert(name, t);
        }
    }
    let copied = named.len() - bn_vars;
    checkpoint::load_into(vs, &named, path, &skip).map_err(|e| match e {
        CheckpointError::Invalid { path, what } => anyhow::anyhow!(
            "{}: {what} (the file's backbone is `{}`; a file made for another architecture, or with batch norms folded outside a conv, cannot start this model)",
            path.display(),
            meta("backbone").unwrap_or("not recorded")
        ),
        e => e.into(),
    })?;

    // The statistics pass; the logits before it (identity BNs, eval-exact) are the reference.
    let (before, seen) = tch::no_grad(|| {
        let rec = Recorder::start();
        let logits = eval_logits(model, faces);
        (logits, rec.finish())
    });
    let mut bn_named = HashMap::new();
    for o in &seen {
        let Some(bias) = folded_bias.get(&o.conv_name) else { continue };
        let (mean, var) = o.mean_var();
        for (var_name, t) in ["weight", "bias", "running_mean", "running_var"].iter().zip(unfolded_bn(bias, &mean, &var, o.eps)) {
            bn_named.insert(format!("{}.{var_name}", o.bn_name), t);
        }
    }
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            if let Some(t) = bn_named.get(&name) {
                var.copy_(t);
            }
        }
    });
    let after = tch::no_grad(|| eval_logits(model, faces));
    let worst = (&after - &before).abs().max().double_value(&[]);
    let scale = before.abs().max().double_value(&[]).max(1.0);
    if worst.is_nan() || worst > 1e-3 * scale {
        bail!("{}: unfolding its batch norms changed the logits by {worst:.3e} (of {scale:.3}); this is a bug, please report it", path.display());
    }
    Ok(Loaded { unfolded: folded_bias.len(), copied, head_fresh, worst_logit_change: worst })
}

fn eval_logits(model: &Classifier, faces: &Tensor) -> Tensor {
    let mut out = Vec::new();
    let n = faces.size()[0];
    let mut i = 0;
    while i < n {
        let b = 256.min(n - i);
        out.push(model.forward_t(&faces.narrow(0, i, b), false).0.to_kind(Kind::Float));
        i += b;
    }
    Tensor::cat(&out, 0)
}
