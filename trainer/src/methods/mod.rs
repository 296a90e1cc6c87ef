//! Training objectives, selected by the config's `method` section.
//!
//! - `ce`: plain cross-entropy.
//! - `eac`: Erasing Attention Consistency (Zhang et al., ECCV 2022; seeds 001 and 000): the batch is
//!   randomly erased, and the class activation maps `M = W_fc · F` of each image and of its
//!   horizontal flip must agree: `L = CE(f(x), y) + λ · MSE(M(x), flip(M(flip(x))))`, CE on the
//!   original only. This follows `reference/ref_train.py` step for step (two forward passes, so BN
//!   sees each view separately, as in the peer).

mod eac;

pub use eac::eac_loss;

use crate::models::Classifier;
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
    },
}

fn five() -> f64 {
    5.0
}

impl MethodConfig {
    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::Ce => "ce",
            MethodConfig::Eac { .. } => "eac",
        }
    }

    /// Whether the method's recipe applies random erasing to training batches.
    pub fn erases(&self) -> bool {
        matches!(self, MethodConfig::Eac { .. })
    }
}

/// What one training step produced: the loss to backpropagate, the logits on the original view
/// (for running accuracy) and the named loss terms (for logs).
pub struct StepLoss {
    pub loss: Tensor,
    pub logits: Tensor,
    pub terms: Vec<(&'static str, Tensor)>,
}

/// The method's loss on an (already augmented) batch.
pub fn training_loss(method: &MethodConfig, model: &Classifier, x: &Tensor, y: &Tensor) -> StepLoss {
    match method {
        MethodConfig::Ce => {
            let (logits, _) = model.forward_t(x, true);
            let ce = logits.cross_entropy_for_logits(y);
            StepLoss { loss: ce.shallow_clone(), logits, terms: vec![("ce", ce)] }
        }
        MethodConfig::Eac { lambda } => eac_loss(model, x, y, *lambda),
    }
}
