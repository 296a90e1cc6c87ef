//! RAF-DB basic (Li, Deng & Du, CVPR 2017): labels in `<root>/EmoLabel/list_patition_label.txt`
//! (sic, the dataset's spelling), lines `train_00001.jpg 5`, labels 1..7 = Surprise, Fear,
//! Disgust, Happiness, Sadness, Anger, Neutral; aligned 100x100 faces in
//! `<root>/Image/aligned/<stem>_aligned.jpg`. The split is the filename prefix: `train` ->
//! `train_*`, `val` and `test` -> `test_*` (RAF-DB has no separate validation set).

use super::csv_list::read_lines;
use super::{decode_files, map_native, DataError, DataSpec, Dataset};

/// RAF-DB's label order (label `i + 1`), named like FER2013's classes.
pub const RAFDB_CLASSES: [&str; 7] = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"];

pub(super) fn load(spec: &DataSpec, split: &str) -> Result<Dataset, DataError> {
    let list = spec.root.join("EmoLabel").join("list_patition_label.txt");
    let prefix = match split {
        "train" => "train_",
        "val" | "test" => "test_",
        other => return Err(DataError::Spec(format!("RAF-DB has splits train, val (= test), test; not `{other}`"))),
    };
    let (classes, map) = map_native(&RAFDB_CLASSES, spec.classes.as_deref(), &list)?;
    let aligned = spec.root.join("Image").join("aligned");
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (n, line) in read_lines(&list)? {
        let mut f = line.split_whitespace();
        let (Some(name), Some(label), None) = (f.next(), f.next(), f.next()) else {
            return Err(DataError::parse(&list, n, format!("expected `<file> <label>`, found `{line}`")));
        };
        if !name.starts_with(prefix) {
            continue;
        }
        let raf: usize = label
            .parse()
            .ok()
            .filter(|l| (1..=7).contains(l))
            .ok_or_else(|| DataError::parse(&list, n, format!("label `{label}` is not 1..7")))?;
        let label = map[raf - 1].ok_or_else(|| {
            DataError::parse(
                &list,
                n,
                format!("class `{}` is not one of the configured classes {classes:?}", RAFDB_CLASSES[raf - 1]),
            )
        })?;
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        paths.push(aligned.join(format!("{stem}_aligned.jpg")));
        labels.push(label as i64);
    }
    if paths.is_empty() {
        return Err(DataError::EmptySplit { path: list, split: split.into() });
    }
    let source = format!("rafdb:{}:{split}", spec.root.display());
    let images = decode_files(&paths, spec.color, spec.size, &source)?;
    Dataset::new(images, labels, classes, source)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load_split, Color, DataFormat};
    use super::*;

    /// Three constant-color aligned JPEGs (flat blocks survive JPEG exactly) and their list.
    fn fixture() -> TempDir {
        let t = TempDir::new("rafdb");
        let dir = t.path().join("Image/aligned");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(t.path().join("EmoLabel")).unwrap();
        for (name, v) in
            [("train_00001", [200u8, 40, 40]), ("train_00002", [16, 128, 240]), ("test_0001", [80, 80, 80])]
        {
            let img = image::RgbImage::from_pixel(16, 16, image::Rgb(v));
            let f = std::fs::File::create(dir.join(format!("{name}_aligned.jpg"))).unwrap();
            image::codecs::jpeg::JpegEncoder::new_with_quality(f, 100).encode_image(&img).unwrap();
        }
        std::fs::write(
            t.path().join("EmoLabel/list_patition_label.txt"),
            "train_00001.jpg 6\ntrain_00002.jpg 4\ntest_0001.jpg 7\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn reads_layout_and_labels() {
        let t = fixture();
        let spec = DataSpec { color: Color::Rgb, ..DataSpec::new(DataFormat::Rafdb, t.path()) };
        let ds = load_split(&spec, "train").unwrap();
        assert_eq!(ds.classes, RAFDB_CLASSES);
        assert_eq!(ds.labels, [5, 3]); // Anger, Happiness
        assert_eq!(ds.images.size(), [2, 3, 16, 16]);
        let b = bytes(&ds.images);
        // JPEG's YCbCr round trip moves saturated colors by a level or two; check per channel
        for (i, want) in [[200i32, 40, 40], [16, 128, 240]].iter().enumerate() {
            for (c, &w) in want.iter().enumerate() {
                let plane = &b[(i * 3 + c) * 256..(i * 3 + c + 1) * 256];
                assert!(
                    plane.iter().all(|&v| (v as i32 - w).abs() <= 2),
                    "sample {i} channel {c}: {:?} vs {w}",
                    &plane[..4]
                );
            }
        }

        // val = test split; gray; relabel by FER names
        let spec = DataSpec {
            classes: Some(vec!["angry".into(), "happy".into(), "neutral".into()]),
            ..DataSpec::new(DataFormat::Rafdb, t.path())
        };
        let ds = load_split(&spec, "val").unwrap();
        assert_eq!(ds.labels, [2]);
        assert_eq!(bytes(&ds.images), vec![80u8; 256]); // a gray flat block is exact
        assert_eq!(load_split(&spec, "train").unwrap().labels, [0, 1]);
    }

    #[test]
    fn bad_label_and_missing_class() {
        let t = fixture();
        let list = t.path().join("EmoLabel/list_patition_label.txt");
        std::fs::write(&list, "train_00001.jpg 6\ntrain_00002.jpg 9\n").unwrap();
        let e = load_split(&DataSpec::new(DataFormat::Rafdb, t.path()), "train").unwrap_err().to_string();
        assert!(e.contains("list_patition_label.txt:2: label `9`"), "{e}");
        let e = load_split(&DataSpec::new(DataFormat::Rafdb, t.path()), "test").unwrap_err().to_string();
        assert!(e.contains("list_patition_label.txt") && e.contains("no samples"), "{e}");
        let spec = DataSpec { classes: Some(vec!["contempt".into()]), ..DataSpec::new(DataFormat::Rafdb, t.path()) };
        let e = load_split(&spec, "train").unwrap_err().to_string();
        assert!(e.contains("class `contempt` does not exist"), "{e}");
    }
}
