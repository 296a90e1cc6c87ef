//! Training objectives, selected by the config's `method` section.
//!
//! - `ce`: plain cross-entropy.
//! - `eac`: Erasing Attention Consistency (Zhang et al., ECCV 2022; seeds 001 and 000): the batch is
//!   randomly erased, and the class activation maps `M = W_fc · F` of each image and of its
//!   horizontal flip must agree: `L = CE(f(x), y) + λ · MSE(M(x), flip(M(flip(x))))`, CE on the
//!   original only. This follows `reference/ref_train.py` step for step (two forward passes, so BN
//!   sees each view separately, as in the peer).
//! - `dacfer`: DacFER (seed 000): as EAC, with the consistency in the seed's L2-norm form (eq. 4),
//!   `L = L_s + λ L_c`, λ = 1; meant for `se_resnet50` (the SE blocks are the local correction).
//! - `grefel_rb`: GReFEL's reliability balancing head (seed 002) on any backbone:
//!   `λ_cls NLL(L_final) + λ_a L_anchor + λ_c L_center` (eq. 20–23).
//! - `dan`: DAN + flip attention consistency (seed 003):
//!   `λ1 L_af + λ2 L_pt + L_cls + λ3 L_c` (eq. 3.8), 1, 1, 4.

mod dan;
mod eac;
mod grefel;

pub use dan::{affinity_loss, dan_loss, partition_loss};
pub use eac::{consistency_loss, eac_loss, flip_cam_loss, l2_consistency_loss};
pub use grefel::{anchor_loss, center_loss, grefel_loss};

use crate::models::{Arch, Classifier, HeadSpec};
use crate::nn::RbConfig;
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodConfig {
    Ce,
    Eac {
        /// Weight of the consistency term (the seeds use 5).
        #[serde(default = "five", rename = "lambda")]
        lambda: f64,
        /// Epochs over which the consistency weight ramps linearly from 0 to `lambda`, step by
        /// step (0, the seeds' recipe: the full weight from the first step). The seeds start from
        /// pretrained backbones; from scratch, the full weight on random CAMs can pin a network
        /// to a constant answer (docs/RESULTS.md, the CPU method table).
        #[serde(default, skip_serializing_if = "is_zero")]
        consistency_warmup: f64,
    },
    Dacfer {
        /// Weight of the L2-norm consistency term (seed 000: 1).
        #[serde(default = "one", rename = "lambda")]
        lambda: f64,
        /// As EAC's.
        #[serde(default, skip_serializing_if = "is_zero")]
        consistency_warmup: f64,
    },
    GrefelRb {
        #[serde(default = "one")]
        lambda_cls: f64,
        #[serde(default = "one")]
        lambda_anchor: f64,
        #[serde(default = "one")]
        lambda_center: f64,
        #[serde(default)]
        rb: RbConfig,
    },
    Dan {
        /// Cross-attention heads (seed 003: 4).
        #[serde(default = "four")]
        heads: i64,
        /// λ1, affinity loss.
        #[serde(default = "one")]
        lambda_affinity: f64,
        /// λ2, partition loss.
        #[serde(default = "one")]
        lambda_partition: f64,
        /// λ3, flip attention consistency.
        #[serde(default = "four_f")]
        lambda_consistency: f64,
        /// As EAC's, for λ3.
        #[serde(default, skip_serializing_if = "is_zero")]
        consistency_warmup: f64,
    },
}

fn five() -> f64 {
    5.0
}
fn one() -> f64 {
    1.0
}
fn four() -> i64 {
    4
}
fn four_f() -> f64 {
    4.0
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl MethodConfig {
    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::Ce => "ce",
            MethodConfig::Eac { .. } => "eac",
            MethodConfig::Dacfer { .. } => "dacfer",
            MethodConfig::GrefelRb { .. } => "grefel_rb",
            MethodConfig::Dan { .. } => "dan",
        }
    }

    /// Epochs over which the flip-consistency weight ramps up (0 for methods without one).
    pub fn consistency_warmup(&self) -> f64 {
        match self {
            MethodConfig::Eac { consistency_warmup, .. }
            | MethodConfig::Dacfer { consistency_warmup, .. }
            | MethodConfig::Dan { consistency_warmup, .. } => *consistency_warmup,
            MethodConfig::Ce | MethodConfig::GrefelRb { .. } => 0.0,
        }
    }

    /// The method as it trains `epochs` (fractional: steps done / steps per epoch) into the run:
    /// the flip-consistency weight scaled by `min(1, epochs / consistency_warmup)`.
    pub fn warmed_up(&self, epochs: f64) -> MethodConfig {
        let w = self.consistency_warmup();
        let f = if w > 0.0 { (epochs / w).clamp(0.0, 1.0) } else { 1.0 };
        let mut m = self.clone();
        match &mut m {
            MethodConfig::Eac { lambda, .. } | MethodConfig::Dacfer { lambda, .. } => *lambda *= f,
            MethodConfig::Dan { lambda_consistency, .. } => *lambda_consistency *= f,
            MethodConfig::Ce | MethodConfig::GrefelRb { .. } => {}
        }
        m
    }

    /// Whether the method's recipe applies random erasing to training batches.
    pub fn erases(&self) -> bool {
        matches!(self, MethodConfig::Eac { .. } | MethodConfig::Dacfer { .. } | MethodConfig::Dan { .. })
    }

    /// The head this method trains on `arch`, or why the pair does not fit.
    pub fn head_spec(&self, arch: Arch) -> Result<HeadSpec, String> {
        match self {
            MethodConfig::Ce => Ok(arch.default_head()),
            MethodConfig::Eac { .. } | MethodConfig::Dacfer { .. } => match arch.default_head() {
                HeadSpec::Linear => Ok(HeadSpec::Linear),
                _ => Err(format!(
                    "method {} needs class activation maps from a linear (pool → fc) head, and arch {} has none (its classifier is three FC layers on the flattened map); use resnet18, resnet50, se_resnet50 or mbv2",
                    self.name(),
                    arch.name()
                )),
            },
            MethodConfig::GrefelRb { rb, .. } => Ok(HeadSpec::Rb(rb.clone())),
            MethodConfig::Dan { heads, .. } => Ok(HeadSpec::Dan { heads: *heads }),
        }
    }

    /// Extra `fer.*` metadata describing the method's hyper-parameters.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let kv = |k: &str, v: f64| (format!("fer.{}_{k}", self.name()), v.to_string());
        match self {
            MethodConfig::Ce => vec![],
            MethodConfig::Eac { lambda, .. } | MethodConfig::Dacfer { lambda, .. } => vec![kv("lambda", *lambda)],
            MethodConfig::GrefelRb { lambda_cls, lambda_anchor, lambda_center, rb } => vec![
                kv("lambda_cls", *lambda_cls),
                kv("lambda_anchor", *lambda_anchor),
                kv("lambda_center", *lambda_center),
                (format!("fer.{}_rb", self.name()), serde_json::to_string(rb).expect("serialisable")),
            ],
            MethodConfig::Dan { heads, lambda_affinity, lambda_partition, lambda_consistency, .. } => vec![
                kv("heads", *heads as f64),
                kv("lambda_affinity", *lambda_affinity),
                kv("lambda_partition", *lambda_partition),
                kv("lambda_consistency", *lambda_consistency),
            ],
        }
    }
}

/// What one training step produced: the loss to backpropagate, the logits on the original view
/// (for running accuracy) and the named loss terms (for logs).
pub struct StepLoss {
    pub loss: Tensor,
    pub logits: Tensor,
    pub terms: Vec<(&'static str, Tensor)>,
}

/// The method's loss on an (already augmented) batch. `model` must have been built with the
/// method's [`head_spec`](MethodConfig::head_spec).
pub fn training_loss(method: &MethodConfig, model: &Classifier, x: &Tensor, y: &Tensor) -> StepLoss {
    match method {
        MethodConfig::Ce => {
            let (logits, _) = model.forward_t(x, true);
            let ce = logits.cross_entropy_for_logits(y);
            StepLoss { loss: ce.shallow_clone(), logits, terms: vec![("ce", ce)] }
        }
        MethodConfig::Eac { lambda, .. } => eac_loss(model, x, y, *lambda),
        MethodConfig::Dacfer { lambda, .. } => flip_cam_loss(model, x, y, *lambda, l2_consistency_loss),
        MethodConfig::GrefelRb { lambda_cls, lambda_anchor, lambda_center, .. } => {
            grefel_loss(model, x, y, [*lambda_cls, *lambda_anchor, *lambda_center])
        }
        MethodConfig::Dan { lambda_affinity, lambda_partition, lambda_consistency, .. } => {
            dan_loss(model, x, y, [*lambda_affinity, *lambda_partition, *lambda_consistency])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cam_methods_refuse_a_head_without_cams() {
        let e = MethodConfig::Dacfer { lambda: 1.0, consistency_warmup: 0.0 }.head_spec(Arch::Ivsa).unwrap_err();
        assert!(e.contains("method dacfer needs class activation maps") && e.contains("arch ivsa"), "{e}");
        assert_eq!(MethodConfig::Dacfer { lambda: 1.0, consistency_warmup: 0.0 }.head_spec(Arch::SeResnet50).unwrap(), HeadSpec::Linear);
        assert_eq!(MethodConfig::Ce.head_spec(Arch::Ivsa).unwrap(), HeadSpec::Fc3 { hidden: 1000 });
    }

    #[test]
    fn consistency_warmup_ramps_the_consistency_weight_step_by_step() {
        let eac = MethodConfig::Eac { lambda: 5.0, consistency_warmup: 2.0 };
        let lambda = |m: MethodConfig| match m {
            MethodConfig::Eac { lambda, .. } | MethodConfig::Dacfer { lambda, .. } => lambda,
            MethodConfig::Dan { lambda_consistency, lambda_affinity, lambda_partition, .. } => {
                // Only the consistency weight ramps; the DAN losses keep theirs.
                assert_eq!((lambda_affinity, lambda_partition), (1.0, 1.0));
                lambda_consistency
            }
            _ => unreachable!(),
        };
        assert_eq!(lambda(eac.warmed_up(0.0)), 0.0);
        assert_eq!(lambda(eac.warmed_up(0.5)), 1.25);
        assert_eq!(lambda(eac.warmed_up(1.5)), 3.75);
        assert_eq!(lambda(eac.warmed_up(2.0)), 5.0);
        assert_eq!(lambda(eac.warmed_up(7.0)), 5.0);
        let dan = MethodConfig::Dan { heads: 4, lambda_affinity: 1.0, lambda_partition: 1.0, lambda_consistency: 4.0, consistency_warmup: 1.0 };
        assert_eq!(lambda(dan.warmed_up(0.25)), 1.0);
        // No warm-up (the seeds' recipe): the full weight from the first step.
        let plain = MethodConfig::Dacfer { lambda: 1.0, consistency_warmup: 0.0 };
        assert_eq!(lambda(plain.warmed_up(0.0)), 1.0);
        assert_eq!(MethodConfig::Ce.warmed_up(0.0), MethodConfig::Ce);
    }
}
