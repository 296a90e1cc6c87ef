//! An exponential moving average of the weights (Polyak averaging; timm's `ModelEmaV2`, the "mean
//! teacher"): after each optimiser step every variable's shadow moves a little toward it,
//! `shadow ← d·shadow + (1 − d)·weight`. The averaged weights are what validation measures, what
//! `best.safetensors` and `model.onnx` hold; training itself goes on with the raw weights. The
//! average smooths the last epochs' noise (and the noisy labels' pull) out of the deployed model,
//! at the cost of one copy of the weights.
//!
//! BatchNorm's running statistics are averaged with the weights, as timm does, so the averaged
//! model carries statistics of the same span of training.
//!
//! Early on the shadow would be mostly the random initialisation, so the decay warms up as in
//! TensorFlow's `ExponentialMovingAverage(num_updates=...)`: `d = min(decay, (1 + n) / (10 + n))`
//! after `n` updates.
//!
//! Checkpoints keep the raw weights under their own names (what `--resume` trains on) and the
//! shadows under `ema.<name>`, with `ema.updates`; [`crate::checkpoint::deployed_weights`] picks the
//! shadows for `fer-train eval`, `export`, `model.init` and a distillation teacher. `best.safetensors`
//! holds the average of its epoch under the plain names, marked with `meta.averaged`.

use tch::{nn, Tensor};

/// The checkpoint prefix of the shadows.
pub const PREFIX: &str = "ema.";
/// The update count's entry (not a shadow).
pub const UPDATES: &str = "ema.updates";
/// The mark of a file whose plain names hold averaged weights (`best.safetensors` of such a run).
pub const AVERAGED: &str = "meta.averaged";

pub struct WeightEma {
    decay: f64,
    /// Updates so far (drives the warm-up).
    pub updates: i64,
    /// (name, the model's variable, its shadow), name-sorted.
    vars: Vec<(String, Tensor, Tensor)>,
}

impl WeightEma {
    /// Shadows start as copies of the model's current variables (weights and BN statistics).
    pub fn new(vs: &nn::VarStore, decay: f64) -> Self {
        let mut vars: Vec<(String, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(name, var)| {
                // `copy` keeps the memory format: a channels-last weight gets a channels-last shadow.
                let shadow = tch::no_grad(|| var.detach().copy());
                (name, var, shadow)
            })
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        WeightEma {
            decay,
            updates: 0,
            vars,
        }
    }

    /// The decay the next update uses.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// Moves every shadow toward its variable; call after each optimiser step.
    pub fn update(&mut self) {
        let d = self.current_decay();
        tch::no_grad(|| {
            for (_, var, shadow) in self.vars.iter_mut() {
                if var.is_floating_point() {
                    let _ = shadow.lerp_(var, 1.0 - d);
                } else {
                    shadow.copy_(var);
                }
            }
        });
        self.updates += 1;
    }

    /// Exchanges the model's variables with the shadows: call once to put the averaged weights in
    /// the model (to validate or export them), and again to get the raw weights back.
    pub fn swap(&mut self) {
        tch::no_grad(|| {
            for (_, var, shadow) in self.vars.iter_mut() {
                let raw = var.copy();
                var.copy_(shadow);
                shadow.copy_(&raw);
            }
        });
    }

    /// Runs `f` with the averaged weights in the model, then puts the raw ones back.
    pub fn with_averaged<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.swap();
        let out = f();
        self.swap();
        out
    }

    /// The shadows (`ema.<name>`) and the update count, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vars
            .iter()
            .map(|(name, _, shadow)| (format!("{PREFIX}{name}"), shadow.shallow_clone()))
            .collect();
        out.push((UPDATES.into(), Tensor::from(self.updates)));
        out
    }

    /// The shadows as plain model names (what `best.safetensors` holds for an averaged run).
    pub fn averaged_weights(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .map(|(name, _, shadow)| (name.clone(), shadow.shallow_clone()))
            .collect()
    }

    /// Restores what [`state`](Self::state) saved. `Ok(false)`: the checkpoint has no shadows (a run
    /// that averages from its resumption on); then the shadows stay copies of the loaded weights.
    pub fn load_state(
        &mut self,
        named: &std::collections::HashMap<String, Tensor>,
    ) -> Result<bool, String> {
        let Some(updates) = named.get(UPDATES) else {
            return Ok(false);
        };
        tch::no_grad(|| {
            for (name, _, shadow) in self.vars.iter_mut() {
                let key = format!("{PREFIX}{name}");
                let src = named
                    .get(&key)
                    .ok_or_else(|| format!("`{key}` missing from the checkpoint"))?;
                if src.size() != shadow.size() {
                    return Err(format!(
                        "`{key}` has shape {:?}, the model needs {:?}",
                        src.size(),
                        shadow.size()
                    ));
                }
                shadow.copy_(src);
            }
            Ok(())
        })?;
        self.updates = updates.int64_value(&[]);
        Ok(true)
    }
}

impl std::fmt::Debug for WeightEma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WeightEma(decay {}, {} variables, {} updates)",
            self.decay,
            self.vars.len(),
            self.updates
        )
    }
}

/// Checks a configured decay: in (0, 1).
pub fn check_decay(decay: f64) -> Result<(), String> {
    if decay > 0.0 && decay < 1.0 {
        Ok(())
    } else {
        Err(format!(
            "train.ema_decay must be between 0 and 1 (e.g. 0.999), got {decay}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn store() -> (nn::VarStore, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(0.0));
        (vs, w)
    }

    #[test]
    fn shadows_follow_the_weights_with_the_warmed_up_decay() {
        let (vs, mut w) = store();
        let mut ema = WeightEma::new(&vs, 0.9);
        let mut expect = 0.0f64;
        for step in 1..=30 {
            tch::no_grad(|| {
                let _ = w.fill_(step as f64);
            });
            let d = ema.current_decay();
            // warm-up: (1+n)/(10+n) until it reaches the configured decay
            let n = (step - 1) as f64;
            assert!((d - 0.9f64.min((1.0 + n) / (10.0 + n))).abs() < 1e-12);
            ema.update();
            expect = d * expect + (1.0 - d) * step as f64;
        }
        let shadow = &ema.averaged_weights()[0].1;
        assert!(
            (shadow.double_value(&[0]) - expect).abs() < 1e-4,
            "{} vs {expect}",
            shadow.double_value(&[0])
        );
        // the raw weight is untouched by the average
        assert_eq!(w.double_value(&[0]), 30.0);
    }

    #[test]
    fn swap_puts_the_average_in_and_back_out() {
        let (vs, mut w) = store();
        let mut ema = WeightEma::new(&vs, 0.5);
        tch::no_grad(|| {
            let _ = w.fill_(4.0);
        });
        ema.update(); // first decay: min(0.5, 0.1) = 0.1 -> 0.1*0 + 0.9*4
        let seen = ema.with_averaged(|| w.double_value(&[1]));
        assert!((seen - 3.6).abs() < 1e-6, "{seen}");
        assert_eq!(w.double_value(&[1]), 4.0);
    }

    #[test]
    fn state_round_trips_and_a_checkpoint_without_shadows_is_not_an_error() {
        let (vs, mut w) = store();
        let mut ema = WeightEma::new(&vs, 0.99);
        tch::no_grad(|| {
            let _ = w.fill_(2.0);
        });
        ema.update();
        ema.update();
        let named: std::collections::HashMap<String, Tensor> = ema.state().into_iter().collect();
        assert!(named.contains_key("ema.w"));
        let (vs2, _) = store();
        let mut other = WeightEma::new(&vs2, 0.99);
        assert!(other.load_state(&named).unwrap());
        assert_eq!(other.updates, 2);
        assert!(other.averaged_weights()[0].1.allclose(
            &ema.averaged_weights()[0].1,
            0.0,
            0.0,
            false
        ));
        assert!(!other.load_state(&Default::default()).unwrap());
        let mut bad = named;
        bad.insert(
            "ema.w".into(),
            Tensor::zeros([4], (Kind::Float, Device::Cpu)),
        );
        assert!(other.load_state(&bad).unwrap_err().contains("ema.w"));
    }

    #[test]
    fn decay_outside_zero_one_is_refused() {
        assert!(check_decay(0.999).is_ok());
        for d in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(
                check_decay(d).unwrap_err().contains("train.ema_decay"),
                "{d}"
            );
        }
    }
}
