//! ImageFolder reader: `<root>/<split>/<class>/*.{png,jpg,bmp,webp,gif,tiff}`, the layout the peer's
//! `load` reads. Samples are ordered class by class (in class order), files sorted by name
//! within a class, so the order — and hence `every` and seeded permutations — is the peer's.

use super::{decode_files, find_class, DataError, DataSpec, Dataset};
use std::path::{Path, PathBuf};

/// Sorted entries of `dir` that are directories (`true`) or image files (`false`: an extension of a
/// format the `image` crate decodes in this build, as fer-run's), skipping hidden names.
fn list(dir: &Path, dirs: bool) -> Result<Vec<(String, PathBuf)>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let keep = if dirs {
            path.is_dir()
        } else {
            path.is_file() && image::ImageFormat::from_path(&path).is_ok_and(|f| f.reading_enabled())
        };
        if keep {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

pub(super) fn load(spec: &DataSpec, split: &str) -> Result<Dataset, DataError> {
    let dir = spec.root.join(split);
    if !dir.is_dir() {
        // A relative root (the shipped configs' ../shared/...) is read from where fer-train runs.
        let note = match (spec.root.is_relative(), std::env::current_dir()) {
            (true, Ok(cwd)) => format!(" (data.root is relative: read from the working directory, {})", cwd.display()),
            _ => String::new(),
        };
        return Err(DataError::MissingSplit { path: dir, split: split.into(), note });
    }
    let folders = list(&dir, true)?;
    // folder index per class, in class order
    let (classes, order): (Vec<String>, Vec<usize>) = match &spec.classes {
        None => (folders.iter().map(|f| f.0.clone()).collect(), (0..folders.len()).collect()),
        Some(cl) => {
            if let Some((name, _)) = folders.iter().find(|(n, _)| find_class(cl, n).is_none()) {
                return Err(DataError::UnknownClassFolder { dir, folder: name.clone(), classes: cl.clone() });
            }
            let mut order = Vec::with_capacity(cl.len());
            for c in cl {
                match folders.iter().position(|(n, _)| find_class(std::slice::from_ref(c), n).is_some()) {
                    Some(i) => order.push(i),
                    None => return Err(DataError::MissingClass { path: dir.join(c), class: c.clone() }),
                }
            }
            (cl.clone(), order)
        }
    };
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (label, &fi) in order.iter().enumerate() {
        for (_, p) in list(&folders[fi].1, false)? {
            paths.push(p);
            labels.push(label as i64);
        }
    }
    if paths.is_empty() {
        return Err(DataError::EmptySplit { path: dir, split: split.into() });
    }
    let source = format!("folder:{}", dir.display());
    let images = decode_files(&paths, spec.color, spec.size, &source)?;
    Dataset::new(images, labels, classes, source)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load_split, Color, DataFormat};
    use super::*;

    /// train/{b,a}/ with 2x2 gray images whose pixels encode (class, file, position): PNGs, but
    /// b's second one is a (lossless) WebP, so the listing and decoding of other formats is tested.
    fn fixture() -> TempDir {
        let t = TempDir::new("folder");
        for (ci, c) in ["a", "b"].iter().enumerate() {
            for fi in 0..2u32 {
                let v = (ci as u32 * 100 + fi * 10) as u8;
                let ext = if (ci, fi) == (1, 1) { "webp" } else { "png" };
                gray_png(&t.path().join(format!("train/{c}/img{fi}.{ext}")), 2, 2, |x, y| v + (y * 2 + x) as u8);
            }
        }
        std::fs::write(t.path().join("train/a/notes.txt"), "ignored").unwrap();
        t
    }

    #[test]
    fn reads_pixels_and_labels_in_order() {
        let t = fixture();
        let ds = load_split(&DataSpec::new(DataFormat::Folder, t.path()), "train").unwrap();
        assert_eq!(ds.classes, ["a", "b"]);
        assert_eq!(ds.labels, [0, 0, 1, 1]);
        assert_eq!(ds.images.size(), [4, 1, 2, 2]);
        assert_eq!(bytes(&ds.images), [0, 1, 2, 3, 10, 11, 12, 13, 100, 101, 102, 103, 110, 111, 112, 113]);

        // explicit class order relabels; rgb replicates gray; size resizes
        let spec = DataSpec {
            classes: Some(vec!["B".into(), "a".into()]),
            color: Color::Rgb,
            size: Some(4),
            ..DataSpec::new(DataFormat::Folder, t.path())
        };
        let ds = load_split(&spec, "train").unwrap();
        assert_eq!(ds.classes, ["B", "a"]);
        assert_eq!(ds.labels, [0, 0, 1, 1]);
        assert_eq!(ds.images.size(), [4, 3, 4, 4]);
        let first = ds.images.get(0); // class b, img0: values 100..103
        assert!(first.min().int64_value(&[]) >= 100 && first.max().int64_value(&[]) <= 103);
        assert!(first.get(0).equal(&first.get(2)));
    }

    #[test]
    fn errors_name_the_culprit() {
        let t = fixture();
        let root = t.path();
        let spec = |cl: &[&str]| DataSpec {
            classes: Some(cl.iter().map(|s| s.to_string()).collect()),
            ..DataSpec::new(DataFormat::Folder, root)
        };

        let e = load_split(&spec(&["a"]), "train").unwrap_err().to_string();
        assert!(e.contains("class folder `b` is not one of the configured classes"), "{e}");
        let e = load_split(&spec(&["a", "b", "c"]), "train").unwrap_err().to_string();
        assert!(e.contains("configured class `c` has no folder") && e.contains("train/c"), "{e}");

        std::fs::create_dir_all(root.join("val/a")).unwrap();
        let e = load_split(&DataSpec::new(DataFormat::Folder, root), "val").unwrap_err().to_string();
        assert!(e.contains("split `val` has no samples") && e.contains("val"), "{e}");

        let e = load_split(&DataSpec::new(DataFormat::Folder, root), "test").unwrap_err().to_string();
        assert!(e.contains("test: no such folder: a folder dataset's `test` split is <data.root>/test"), "{e}");
        assert!(!e.contains("relative"), "an absolute root needs no note: {e}");
        let e = load_split(&DataSpec::new(DataFormat::Folder, Path::new("no/such/root")), "train").unwrap_err().to_string();
        let cwd = std::env::current_dir().unwrap();
        assert!(e.starts_with("no/such/root/train: no such folder") && e.contains(&cwd.display().to_string()), "{e}");

        gray_png(&root.join("train/b/big.png"), 3, 3, |_, _| 0);
        let e = load_split(&DataSpec::new(DataFormat::Folder, root), "train").unwrap_err().to_string();
        assert!(e.contains("big.png: image is 3x3 but") && e.contains("set `size`"), "{e}");

        std::fs::write(root.join("train/b/broken.png"), b"\x89PNG garbage, not an image").unwrap();
        let e = load_split(&DataSpec { size: Some(2), ..DataSpec::new(DataFormat::Folder, root) }, "train")
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.png") && e.contains("cannot decode image"), "{e}");
    }
}
