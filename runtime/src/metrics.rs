//! The scores `fer-run eval` prints: accuracy, mean class accuracy, macro-F1, each class's
//! recall / precision / F1, and the confusion matrix, all from the confusion matrix; and the
//! confusion matrix as a picture (`fer-run eval --confusion-png`).
//!
//! The trainer scores its checkpoints the same way in `fer_train::metrics` and prints the same
//! report (`fer-train eval`), so a deployed file and its checkpoint can be compared line by line.
//! The runtime depends on no other fer crate (design.md), hence two copies; the workspace test
//! `tests/onnx_parity.rs` (`eval_reports_agree`) pins them to the same numbers and text.

use crate::draw;
use image::{Rgb, RgbImage};
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

/// Size of one cell of the confusion picture, in pixels.
const CELL: u32 = 80;
/// Longest class name drawn (as in the text report).
const NAME_CHARS: usize = 10;

impl Scores {
    /// The confusion matrix as a picture: true classes down, predictions across, each cell shaded
    /// by its share of its row (white 0 % to deep blue 100 %; the diagonal is the class's recall)
    /// with that share and the count in it, under a line with the three scores. The text is in
    /// the crate's built-in bitmap font (its `draw` module), so this works on a device without font files.
    pub fn confusion_image(&self) -> RgbImage {
        let k = self.confusion.len() as u32;
        let names: Vec<String> = self
            .per_class
            .iter()
            .enumerate()
            .map(|(i, c)| draw::class_name(&c.label, i).chars().take(NAME_CHARS).collect())
            .collect();
        let pad = 12;
        let left = names.iter().map(|n| draw::text_width(n)).max().unwrap_or(0) + 2 * pad;
        let top = pad + 3 * (draw::CHAR_HEIGHT + 6) + pad;
        let title = format!(
            "accuracy {:.2}%  mean class {:.2}%  macro-F1 {:.4}",
            100.0 * self.accuracy,
            100.0 * self.mean_class_accuracy,
            self.macro_f1
        );
        let width = (left + k * CELL + pad).max(draw::text_width(&title) + 2 * pad);
        let height = top + k * CELL + pad;
        let black = Rgb([0, 0, 0]);
        let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
        let line = |i: u32| (pad + i * (draw::CHAR_HEIGHT + 6)) as i32;
        draw::text(&mut img, &title, (pad as i32, line(0)), black, true);
        draw::text(
            &mut img,
            "rows: true class, columns: predicted",
            (pad as i32, line(1)),
            black,
            false,
        );
        // Column names, centred over their cells (eight characters fit a cell).
        for (j, name) in names.iter().enumerate() {
            let name: String = name
                .chars()
                .take((CELL / draw::CHAR_WIDTH) as usize)
                .collect();
            let x = left + j as u32 * CELL + (CELL - draw::text_width(&name)) / 2;
            draw::text(&mut img, &name, (x as i32, line(2)), black, false);
        }
        for (i, row) in self.confusion.iter().enumerate() {
            let y0 = top + i as u32 * CELL;
            let name = &names[i];
            let name_x = left - pad - draw::text_width(name);
            draw::text(
                &mut img,
                name,
                (name_x as i32, (y0 + (CELL - draw::CHAR_HEIGHT) / 2) as i32),
                black,
                false,
            );
            let total = row.iter().sum::<u64>();
            for (j, &count) in row.iter().enumerate() {
                let share = if total > 0 {
                    count as f64 / total as f64
                } else {
                    0.0
                };
                let x0 = left + j as u32 * CELL;
                let fill = cell_color(share);
                // One pixel left white on the top and left: the grid between the cells.
                draw::fill_rect(&mut img, (x0 + 1, y0 + 1), (CELL - 1, CELL - 1), fill);
                let ink = draw::ink_on(fill);
                let share_text = match (total, count) {
                    (0, _) => "-".to_string(),
                    (_, 0) => "0%".to_string(),
                    _ if count == total => "100%".to_string(),
                    _ => draw::percent(share as f32),
                };
                for (n, (text, bold)) in [(share_text, true), (count.to_string(), false)]
                    .into_iter()
                    .enumerate()
                {
                    let x = x0 + CELL.saturating_sub(draw::text_width(&text)) / 2;
                    let y =
                        y0 + CELL / 2 - draw::CHAR_HEIGHT - 2 + n as u32 * (draw::CHAR_HEIGHT + 4);
                    draw::text(&mut img, &text, (x as i32, y as i32), ink, bold);
                }
            }
        }
        img
    }

    /// [`Scores::confusion_image`] written as a PNG at `path`.
    pub fn save_confusion_png(&self, path: &std::path::Path) -> crate::Result<()> {
        self.confusion_image()
            .save_with_format(path, image::ImageFormat::Png)
            .map_err(|e| match e {
                image::ImageError::IoError(source) => crate::FerError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                e => e.into(),
            })
    }
}

/// White at share 0 to matplotlib's "Blues" deep end (8, 48, 107) at 1.
pub(crate) fn cell_color(share: f64) -> Rgb<u8> {
    let s = share.clamp(0.0, 1.0);
    let mix = |full: f64| (255.0 + (full - 255.0) * s).round() as u8;
    Rgb([mix(8.0), mix(48.0), mix(107.0)])
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

    /// Labels the font cannot draw are written as their class numbers.
    #[test]
    fn confusion_picture_names_undrawable_labels_by_number() {
        let confusion = vec![vec![1, 0], vec![0, 1]];
        let named = |labels: &[&str]| {
            let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
            Scores::from_confusion(&labels, confusion.clone()).confusion_image()
        };
        assert_eq!(named(&["愤怒", "happy"]), named(&["class 0", "happy"]));
        assert_ne!(named(&["angry", "happy"]), named(&["class 0", "happy"]));
    }

    /// The picture: each cell is shaded by its share of its row (the hand-computed case: row 0 is
    /// 2/3, 1/3, 0; row 2 is all in the last cell), with that share and the count drawn in the
    /// cell's ink; a class without faces has white cells. Saving to a missing folder names it.
    #[test]
    fn confusion_picture_shades_cells_by_row_share() {
        let s = Scores::from_confusion(
            &labels(4),
            vec![
                vec![2, 1, 0, 0],
                vec![0, 1, 1, 0],
                vec![0, 0, 1, 0],
                vec![0; 4],
            ],
        );
        let img = s.confusion_image();
        let white = Rgb([255, 255, 255]);
        let top = img.height() - 12 - 4 * CELL;
        // The matrix starts at the first shaded pixel of row 0 (its first cell holds 2/3).
        let left = (0..img.width())
            .find(|&x| *img.get_pixel(x, top + 3) != white)
            .unwrap();
        let cell = |i: u32, j: u32| *img.get_pixel(left + j * CELL + 3, top + i * CELL + 3);
        for (i, j, share) in [
            (0, 0, 2.0 / 3.0),
            (0, 1, 1.0 / 3.0),
            (0, 2, 0.0),
            (1, 1, 0.5),
            (1, 2, 0.5),
            (2, 2, 1.0),
            (2, 0, 0.0),
            (3, 3, 0.0),
        ] {
            assert_eq!(cell(i, j), cell_color(share), "cell ({i}, {j})");
        }
        assert_eq!(cell_color(1.0), Rgb([8, 48, 107]));
        assert!(
            left > draw::text_width("a"),
            "class names sit left of the matrix"
        );
        // The numbers: white ink on the deep diagonal cell of row 2, black on the pale (0, 1).
        let inked = |i: u32, j: u32, ink: Rgb<u8>| {
            (0..CELL)
                .flat_map(|dy| (0..CELL).map(move |dx| (dx, dy)))
                .filter(|&(dx, dy)| {
                    *img.get_pixel(left + j * CELL + dx, top + i * CELL + dy) == ink
                })
                .count()
        };
        assert!(inked(2, 2, white) > 20 && inked(0, 1, Rgb([0, 0, 0])) > 20);
        assert_eq!(
            inked(2, 1, Rgb([0, 0, 0])),
            inked(2, 0, Rgb([0, 0, 0])),
            "two cells with \"0%\" and \"0\" look alike"
        );

        let dir = std::env::temp_dir().join(format!("fer_confusion_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("c.png");
        s.save_confusion_png(&png).unwrap();
        assert_eq!(image::open(&png).unwrap().to_rgb8(), img);
        let err = s
            .save_confusion_png(&dir.join("no/such/c.png"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no/such/c.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
