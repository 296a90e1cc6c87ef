//! Checkpoints: `<run>/last.safetensors` (weights, BN statistics and optimiser state, plus the
//! epoch it ends), `<run>/state.json` (history and scheduler state), `<run>/config.yaml` (the
//! resolved config). Every file is written to a temporary name and renamed, so a crash leaves the
//! previous checkpoint intact, never half a file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Tch(PathBuf, #[source] tch::TchError),
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// The run folder held by one training process: `<run>/.lock`, locked (`flock`) while the
/// [`RunLock`] lives and released by the kernel when the process ends however it ends, so a
/// crashed run never leaves a stale lock. Two `fit`s of one run would write over each other's
/// checkpoints; the second is refused instead.
#[derive(Debug)]
pub struct RunLock {
    file: std::fs::File,
    path: PathBuf,
}

impl RunLock {
    pub const FILE: &'static str = ".lock";

    /// Takes the run folder `run_dir` (which exists), or says which process has it.
    pub fn take(run_dir: &Path) -> anyhow::Result<RunLock> {
        use std::io::{Read, Seek, Write};
        let path = run_dir.join(Self::FILE);
        let io = |e| CheckpointError::Io(path.clone(), e);
        let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder.trim();
                let pid = if pid.is_empty() { "its process".to_string() } else { format!("process {pid}") };
                anyhow::bail!(
                    "{} is being trained by another fer-train ({pid}); two would overwrite each other's checkpoints: wait for it to end, or stop it first (Ctrl-C, or kill -INT, keeps its last finished epoch)",
                    run_dir.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e).into()),
        }
        // Who holds it, for the message above.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(RunLock { file, path })
    }

    /// Lets the folder go and removes the lock file: for a start that failed in a folder it made.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// Writes `bytes` to `path` atomically (tmp file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let tmp = tmp_name(path);
    std::fs::write(&tmp, bytes).map_err(|e| CheckpointError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| CheckpointError::Io(path.to_path_buf(), e))
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Saves named tensors as safetensors, atomically.
pub fn save_tensors(path: &Path, named: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let tmp = tmp_name(path);
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(k, t)| (k.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&cpu, &tmp).map_err(|e| CheckpointError::Tch(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| CheckpointError::Io(path.to_path_buf(), e))
}

/// Reads every tensor of a safetensors file.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>, CheckpointError> {
    if !path.exists() {
        return Err(CheckpointError::Invalid { path: path.into(), what: "no such checkpoint".into() });
    }
    let named = Tensor::read_safetensors(path).map_err(|e| CheckpointError::Tch(path.to_path_buf(), e))?;
    Ok(named.into_iter().collect())
}

/// The model's variables (weights and BN statistics) by VarStore name.
pub fn model_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The weights a checkpoint deploys: for a run with `train.ema_decay`, the averaged weights
/// (`ema.<name>`, [`crate::ema`]) in place of the raw ones the run trains on; otherwise `named` as it is.
pub fn deployed_weights(mut named: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let averaged: Vec<(String, Tensor)> = named
        .iter()
        .filter(|(k, _)| k.as_str() != crate::ema::UPDATES)
        .filter_map(|(k, t)| k.strip_prefix(crate::ema::PREFIX).map(|name| (name.to_string(), t.shallow_clone())))
        .collect();
    named.extend(averaged);
    named
}

/// Copies `named` into the model's variables. Strict: every model variable must be present with
/// its shape (torchvision's `num_batches_tracked` and our `optim.*`/`meta.*` entries are ignored);
/// variables under any of `skip_prefixes` may be absent (the head, when fine-tuning a new class set).
pub fn load_into(
    vs: &nn::VarStore,
    named: &HashMap<String, Tensor>,
    path: &Path,
    skip_prefixes: &[String],
) -> Result<(), CheckpointError> {
    let mut vars = vs.variables();
    let mut missing = Vec::new();
    tch::no_grad(|| -> Result<(), CheckpointError> {
        for (name, var) in vars.iter_mut() {
            match named.get(name) {
                Some(src) if src.size() == var.size() => var.copy_(src),
                Some(src) => {
                    return Err(CheckpointError::Invalid {
                        path: path.into(),
                        what: format!("`{name}` has shape {:?}, the model needs {:?}", src.size(), var.size()),
                    })
                }
                None if skip_prefixes.iter().any(|p| name.starts_with(p.as_str())) => {}
                None => missing.push(name.clone()),
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        missing.sort();
        return Err(CheckpointError::Invalid {
            path: path.into(),
            what: format!("{} model variables missing, e.g. {}", missing.len(), missing[..missing.len().min(5)].join(", ")),
        });
    }
    Ok(())
}

/// Copies the weights of one sub-model (a stream of GReFEL's extractor) from a file whose names
/// have no prefix (`layer1.0.conv1.weight`) into the variables under `prefix` (`image.layer1.0...`).
/// Strict for that sub-model (every variable under `prefix.` must be in the file, with its shape);
/// entries the sub-model does not have (a torchvision `fc`, later stages) are ignored.
pub fn load_subtree(vs: &nn::VarStore, named: &HashMap<String, Tensor>, path: &Path, prefix: &str) -> Result<(), CheckpointError> {
    let dotted = format!("{prefix}.");
    let renamed: HashMap<String, Tensor> = named.iter().map(|(k, t)| (format!("{dotted}{k}"), t.shallow_clone())).collect();
    let others: Vec<String> = vs
        .variables()
        .into_keys()
        .filter(|k| !k.starts_with(&dotted))
        .collect();
    if others.len() == vs.variables().len() {
        return Err(CheckpointError::Invalid { path: path.into(), what: format!("the model has no variables under `{prefix}`") });
    }
    load_into(vs, &renamed, path, &others)
}
