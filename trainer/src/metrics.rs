//! Classification metrics: accuracy, mean per-class accuracy, macro-F1, confusion matrix, and the
//! seeds' "mean of the last 5 epochs".

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub accuracy: f64,
    pub mean_class_accuracy: f64,
    pub macro_f1: f64,
    /// `confusion[true][pred]`.
    pub confusion: Vec<Vec<u64>>,
}

impl Metrics {
    pub fn from_predictions(labels: &[i64], preds: &[i64], num_classes: usize) -> Self {
        let mut confusion = vec![vec![0u64; num_classes]; num_classes];
        for (&y, &p) in labels.iter().zip(preds) {
            confusion[y as usize][p as usize] += 1;
        }
        Self::from_confusion(confusion)
    }

    pub fn from_confusion(confusion: Vec<Vec<u64>>) -> Self {
        let total: u64 = confusion.iter().flatten().sum();
        let classes = class_scores(&confusion);
        let correct: u64 = classes.iter().map(|c| c.correct).sum();
        let mean = |v: Vec<f64>| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        Metrics {
            accuracy: if total == 0 { 0.0 } else { correct as f64 / total as f64 },
            mean_class_accuracy: mean(classes.iter().filter_map(|c| c.recall).collect()),
            macro_f1: mean(classes.iter().filter_map(|c| c.f1).collect()),
            confusion,
        }
    }
}

/// One class's counts and ratios from a confusion matrix; a ratio without a denominator is `None`.
/// A class absent from both labels and predictions has no F1 and is left out of macro-F1 (sklearn
/// would warn and count 0; leaving it out keeps small subsets meaningful).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub correct: u64,
    /// Faces whose true class this is.
    pub faces: u64,
    /// Faces predicted as this class.
    pub predicted: u64,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
}

/// Each class's row of `confusion[true][predicted]`, in class order.
pub fn class_scores(confusion: &[Vec<u64>]) -> Vec<ClassScores> {
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    (0..confusion.len())
        .map(|i| {
            let correct = confusion[i][i];
            let faces: u64 = confusion[i].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[i]).sum();
            ClassScores {
                correct,
                faces,
                predicted,
                recall: ratio(correct, faces),
                precision: ratio(correct, predicted),
                f1: ratio(2 * correct, faces + predicted),
            }
        })
        .collect()
}

/// Mean of the last `n` values (all of them if fewer).
pub fn mean_of_last(values: &[f64], n: usize) -> f64 {
    let tail = &values[values.len().saturating_sub(n)..];
    if tail.is_empty() {
        0.0
    } else {
        tail.iter().sum::<f64>() / tail.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_metrics() {
        // true:  0 0 0 1 1 2
        // pred:  0 0 1 1 2 2
        let m = Metrics::from_predictions(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!(m.confusion, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.mean_class_accuracy - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        // F1: class0 2*2/(3+2)=0.8, class1 2*1/(2+2)=0.5, class2 2*1/(1+2)=2/3
        assert!((m.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((mean_of_last(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 5) - 4.0).abs() < 1e-12);
    }
}
