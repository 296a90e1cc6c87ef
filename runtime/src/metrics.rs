//! The scores `fer-run eval` prints: accuracy, mean class accuracy, macro-F1, each class's
//! recall / precision / F1, and the confusion matrix, all from the confusion matrix.
//!
//! The trainer scores its checkpoints the same way in `fer_train::metrics` and prints the same
//! report (`fer-train eval`), so a deployed file and its checkpoint can be compared line by line.
//! The runtime depends on no other fer crate (design.md), hence two copies; the workspace test
//! `tests/onnx_parity.rs` (`eval_reports_agree`) pins them to the same numbers and text.

use serde::Serialize;

/// One class's row of the report. `None` where the ratio has no denominator (no face of the class,
/// or none predicted as it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    pub label: String,
    /// Faces whose true class this is.
    pub faces: u64,
    /// Faces predicted as this class.
    pub predicted: u64,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub images: u64,
    pub accuracy: f64,
    /// Mean recall over the classes that have faces.
    pub mean_class_accuracy: f64,
    /// Mean F1 over the classes that have faces or predictions (a class absent from both has no
    /// F1; counting it as 0, as sklearn does with a warning, would punish small subsets).
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

impl Scores {
    /// `confusion` is square with one row per label (`confusion[true][predicted]`).
    pub fn from_confusion(labels: &[String], confusion: Vec<Vec<u64>>) -> Self {
        let k = confusion.len();
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let per_class: Vec<ClassScores> = (0..k)
            .map(|i| {
                let tp = confusion[i][i];
                let faces: u64 = confusion[i].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[i]).sum();
                ClassScores {
                    label: labels
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("class{i}")),
                    faces,
                    predicted,
                    recall: ratio(tp, faces),
                    precision: ratio(tp, predicted),
                    f1: ratio(2 * tp, faces + predicted),
                }
            })
            .collect();
        let mean = |v: Vec<f64>| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let images: u64 = confusion.iter().flatten().sum();
        let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
        Scores {
            images,
            accuracy: ratio(correct, images).unwrap_or(0.0),
            mean_class_accuracy: mean(per_class.iter().filter_map(|c| c.recall).collect()),
            macro_f1: mean(per_class.iter().filter_map(|c| c.f1).collect()),
            per_class,
            confusion,
        }
    }

    /// The report as text: the three scores, a row per class, then the confusion matrix.
    pub fn report(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
        let mut s = format!(
            "accuracy {:.2}%  mean class accuracy {:.2}%  macro-F1 {:.4}\n\n{:>10} {:>8} {:>8} {:>9} {:>8}\n",
            100.0 * self.accuracy,
            100.0 * self.mean_class_accuracy,
            self.macro_f1,
            "class",
            "faces",
            "recall",
            "precision",
            "F1"
        );
        for c in &self.per_class {
            let f1 = c.f1.map_or("-".to_string(), |v| format!("{v:.4}"));
            s += &format!(
                "{:>10.10} {:>8} {:>8} {:>9} {:>8}\n",
                c.label,
                c.faces,
                pct(c.recall),
                pct(c.precision),
                f1
            );
        }
        s += &format!("\nconfusion (rows: true, columns: predicted)\n{:>10}", "");
        for c in &self.per_class {
            s += &format!(" {:>8.8}", c.label);
        }
        s.push('\n');
        for (c, row) in self.per_class.iter().zip(&self.confusion) {
            s += &format!("{:>10.10}", c.label);
            for v in row {
                s += &format!(" {v:>8}");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(k: usize) -> Vec<String> {
        ["a", "b", "c", "d"][..k]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// true 0 0 0 1 1 2, predicted 0 0 1 1 2 2 (the trainer's hand-computed case).
    #[test]
    fn hand_computed_scores() {
        let s = Scores::from_confusion(
            &labels(3),
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]],
        );
        assert_eq!(s.images, 6);
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.mean_class_accuracy - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert!((s.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        let b = &s.per_class[1];
        assert_eq!((b.faces, b.predicted), (2, 2));
        assert_eq!(
            (b.recall, b.precision, b.f1),
            (Some(0.5), Some(0.5), Some(0.5))
        );
        assert_eq!(s.per_class[2].precision, Some(0.5));
    }

    /// A class with no faces has no recall (and does not drag the mean down); one never predicted
    /// has no precision; one absent from both has no F1. An empty folder scores 0, not NaN.
    #[test]
    fn classes_without_faces_or_predictions() {
        let s = Scores::from_confusion(
            &labels(3),
            vec![vec![3, 0, 1], vec![0, 0, 0], vec![0, 0, 0]],
        );
        assert_eq!(
            s.per_class[1],
            ClassScores {
                label: "b".into(),
                faces: 0,
                predicted: 0,
                recall: None,
                precision: None,
                f1: None
            }
        );
        assert_eq!(
            (
                s.per_class[2].recall,
                s.per_class[2].precision,
                s.per_class[2].f1
            ),
            (None, Some(0.0), Some(0.0))
        );
        assert!((s.mean_class_accuracy - 0.75).abs() < 1e-12);
        assert!((s.macro_f1 - (6.0 / 7.0 + 0.0) / 2.0).abs() < 1e-12);
        let text = s.report();
        assert!(
            text.contains("         b        0        -         -        -\n"),
            "{text}"
        );
        let empty = Scores::from_confusion(&labels(2), vec![vec![0, 0], vec![0, 0]]);
        assert_eq!(
            (empty.accuracy, empty.mean_class_accuracy, empty.macro_f1),
            (0.0, 0.0, 0.0)
        );
    }
}
