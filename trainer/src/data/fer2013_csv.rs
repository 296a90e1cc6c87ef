//! Kaggle FER2013 (`fer2013.csv`, Goodfellow et al. 2013): columns `emotion,pixels,Usage`, one
//! 48x48 gray face per row as 2304 space-separated values.
//!
//! Kaggle's label order is 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral
//! ([`FER2013_CLASSES`], the default class list). Note this differs from the alphabetical order of
//! the ImageFolder export the peer reads (… happy, neutral, sad, surprise); give `classes` in the
//! spec to relabel by name. Splits: `train` = Training, `val` = PublicTest, `test` = PrivateTest;
//! the Usage string itself is accepted too.

use super::csv_list::split_record;
use super::{map_native, progress, stack, to_chw, DataError, DataSpec, Dataset};
use image::{DynamicImage, GrayImage};
use rayon::prelude::*;
use std::io::BufRead;
use std::path::PathBuf;

/// Kaggle's label order.
pub const FER2013_CLASSES: [&str; 7] = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const SIDE: u32 = 48;

fn usage(split: &str) -> &str {
    match split {
        "train" => "Training",
        "val" => "PublicTest",
        "test" => "PrivateTest",
        other => other,
    }
}

pub(super) fn load(spec: &DataSpec, split: &str) -> Result<Dataset, DataError> {
    let path = if spec.root.is_dir() { spec.root.join("fer2013.csv") } else { spec.root.clone() };
    let (classes, map) = map_native(&FER2013_CLASSES, spec.classes.as_deref(), &path)?;
    let want = usage(split);
    let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let mut cols = None; // (emotion, pixels, usage) column indices, from the header
    let mut rows: Vec<(usize, Vec<u8>)> = Vec::new(); // (line, pixels)
    let mut labels = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| DataError::io(&path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let f = split_record(&line).map_err(|m| DataError::parse(&path, n, m))?;
        let Some((ce, cp, cu)) = cols else {
            let col = |name: &str| f.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
            match (col("emotion"), col("pixels"), col("usage")) {
                (Some(e), Some(p), Some(u)) => cols = Some((e, p, u)),
                _ => return Err(DataError::parse(&path, n, "expected a header with columns emotion, pixels, Usage")),
            }
            continue;
        };
        if f.len() <= ce.max(cp).max(cu) {
            return Err(DataError::parse(&path, n, format!("expected 3 columns, found {}", f.len())));
        }
        if f[cu].trim() != want {
            continue;
        }
        let emotion: usize = f[ce]
            .trim()
            .parse()
            .ok()
            .filter(|&e| e < FER2013_CLASSES.len())
            .ok_or_else(|| DataError::parse(&path, n, format!("emotion `{}` is not a label 0..6", f[ce].trim())))?;
        let label = map[emotion].ok_or_else(|| {
            DataError::parse(
                &path,
                n,
                format!("class `{}` is not one of the configured classes {classes:?}", FER2013_CLASSES[emotion]),
            )
        })?;
        let pixels: Vec<u8> = f[cp]
            .split_ascii_whitespace()
            .map(|v| v.parse::<u8>())
            .collect::<Result<_, _>>()
            .map_err(|e| DataError::parse(&path, n, format!("bad pixel value: {e}")))?;
        if pixels.len() != (SIDE * SIDE) as usize {
            return Err(DataError::parse(
                &path,
                n,
                format!("expected {} pixels (48x48), found {}", SIDE * SIDE, pixels.len()),
            ));
        }
        rows.push((n, pixels));
        labels.push(label as i64);
    }
    if rows.is_empty() {
        return Err(DataError::EmptySplit {
            path: PathBuf::from(format!("{} (Usage {want})", path.display())),
            split: split.into(),
        });
    }
    let source = format!("fer2013_csv:{}:{want}", path.display());
    let pb = progress(rows.len(), &source);
    let planes: Vec<_> = rows
        .par_iter()
        .map(|(_, px)| {
            pb.inc(1);
            let img = GrayImage::from_raw(SIDE, SIDE, px.clone()).expect("2304 pixels checked above");
            to_chw(DynamicImage::ImageLuma8(img), spec.color, spec.size)
        })
        .collect();
    pb.finish_and_clear();
    let images = stack(planes, spec.color, |i| PathBuf::from(format!("{}:{}", path.display(), rows[i].0)))?;
    Dataset::new(images, labels, classes, source)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load_split, DataFormat};
    use super::*;

    /// A 3-row CSV: pixel j of a row is (base + j) mod 256.
    fn row(emotion: usize, base: usize, usage: &str, n: usize) -> String {
        let px: Vec<String> = (0..n).map(|j| ((base + j) % 256).to_string()).collect();
        format!("{emotion},{},{usage}\n", px.join(" "))
    }

    #[test]
    fn reads_rows_of_the_split() {
        let t = TempDir::new("fer2013");
        let text = format!(
            "emotion,pixels,Usage\n{}{}{}",
            row(3, 0, "Training", 2304),
            row(6, 7, "PublicTest", 2304),
            row(4, 9, "Training", 2304)
        );
        std::fs::write(t.path().join("fer2013.csv"), text).unwrap();
        let ds = load_split(&DataSpec::new(DataFormat::Fer2013Csv, t.path()), "train").unwrap();
        assert_eq!(ds.classes, FER2013_CLASSES);
        assert_eq!(ds.labels, [3, 4]);
        assert_eq!(ds.images.size(), [2, 1, 48, 48]);
        let b = bytes(&ds.images);
        assert_eq!(&b[..3], [0, 1, 2]);
        assert_eq!(b[2303], (2303 % 256) as u8);
        assert_eq!(&b[2304..2307], [9, 10, 11]);

        // named classes relabel: Kaggle 6 = neutral; the file path itself as root; Usage string as split
        let spec = DataSpec {
            classes: Some(vec!["neutral".into(), "happy".into(), "sad".into()]),
            ..DataSpec::new(DataFormat::Fer2013Csv, t.path().join("fer2013.csv"))
        };
        let ds = load_split(&spec, "PublicTest").unwrap();
        assert_eq!(ds.labels, [0]);
        assert_eq!(&bytes(&ds.images)[..2], [7, 8]);
        let e = load_split(&spec, "test").unwrap_err().to_string();
        assert!(e.contains("fer2013.csv") && e.contains("PrivateTest") && e.contains("no samples"), "{e}");
    }

    #[test]
    fn short_row_names_file_and_line() {
        let t = TempDir::new("fer2013-bad");
        let text = format!("emotion,pixels,Usage\n{}{}", row(0, 0, "Training", 2304), row(1, 0, "Training", 2303));
        std::fs::write(t.path().join("fer2013.csv"), text).unwrap();
        let e = load_split(&DataSpec::new(DataFormat::Fer2013Csv, t.path()), "train").unwrap_err().to_string();
        assert!(e.contains("fer2013.csv:3:") && e.contains("expected 2304 pixels (48x48), found 2303"), "{e}");
        std::fs::write(t.path().join("fer2013.csv"), format!("emotion,pixels,Usage\n{}", row(7, 0, "Training", 2304)))
            .unwrap();
        let e = load_split(&DataSpec::new(DataFormat::Fer2013Csv, t.path()), "train").unwrap_err().to_string();
        assert!(e.contains("fer2013.csv:2: emotion `7`"), "{e}");
    }
}
