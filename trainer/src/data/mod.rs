//! Dataset layer: reads facial-expression datasets into one uint8 tensor, adds label noise,
//! orders epochs and caches decoded splits.
//!
//! Four on-disk formats are read by [`load_split`], chosen by [`DataSpec::format`]:
//! - `folder`: ImageFolder layout `<root>/<split>/<class>/*.png` (what the peer
//!   `reference/ref_train.py` reads with its `load`);
//! - `fer2013_csv`: Kaggle's `fer2013.csv` (`emotion,pixels,Usage`);
//! - `rafdb`: RAF-DB basic (`EmoLabel/list_patition_label.txt` + `Image/aligned`);
//! - `csv`: a generic `path,label` list (AffectNet style).
//!
//! Every reader goes through the same decode path (`to_chw` / `decode_files`), so
//! gray/rgb conversion and resizing are identical whatever the format. Images stay uint8 on
//! the CPU until the training loop moves them ([`Dataset::to_device`]); augmentation happens on
//! the device ([`crate::augment`]).
//!
//! Also here: symmetric label noise as the peer injects it ([`symmetric_noise`]), class-balanced
//! sampling ([`balanced_weights`], [`epoch_order`]) and a safetensors cache of decoded splits
//! ([`Dataset::save_cache`], [`load_split_cached`]) that ships a dataset to a GPU box in one file.

mod cache;
mod csv_list;
mod fer2013_csv;
mod folder;
mod noise;
mod rafdb;

pub use cache::{cache_path, load_split_cached, zst_path};
pub use fer2013_csv::FER2013_CLASSES;
pub use noise::{balanced_weights, epoch_order, symmetric_noise, symmetric_noise_peer, SplitMix64};
pub use rafdb::RAFDB_CLASSES;

use image::DynamicImage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Everything that can go wrong while reading data. Each variant names the file (and line,
/// where there is one) so a user can find the offending input.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot decode image: {source}", path.display())]
    Image { path: PathBuf, source: image::ImageError },
    #[error("{}: image is {}x{} but {} is {}x{}; set `size` to resize every image", path.display(), got.0, got.1, first.display(), expected.0, expected.1)]
    SizeMismatch { path: PathBuf, got: (u32, u32), first: PathBuf, expected: (u32, u32) },
    #[error("{}:{line}: {msg}", path.display())]
    Parse { path: PathBuf, line: usize, msg: String },
    #[error("{}: class folder `{folder}` is not one of the configured classes {classes:?}", dir.display())]
    UnknownClassFolder { dir: PathBuf, folder: String, classes: Vec<String> },
    #[error("{}: configured class `{class}` has no folder here", path.display())]
    MissingClass { path: PathBuf, class: String },
    /// `note`: where a relative root was looked for, empty for an absolute one.
    #[error("{}: no such folder: a folder dataset's `{split}` split is <data.root>/{split}{note}", path.display())]
    MissingSplit { path: PathBuf, split: String, note: String },
    #[error("{}: split `{split}` has no samples", path.display())]
    EmptySplit { path: PathBuf, split: String },
    #[error("invalid data spec: {0}")]
    Spec(String),
    #[error("{}: not a valid dataset cache: {msg}", path.display())]
    Cache { path: PathBuf, msg: String },
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

impl DataError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }
    fn parse(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        DataError::Parse { path: path.to_path_buf(), line, msg: msg.into() }
    }
}

/// On-disk dataset layout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// `<root>/<split>/<class>/*.{png,jpg,bmp,webp,gif,tiff}`
    Folder,
    /// Kaggle `fer2013.csv` (`<root>` itself or `<root>/fer2013.csv`)
    Fer2013Csv,
    /// RAF-DB basic: `<root>/EmoLabel/list_patition_label.txt`, `<root>/Image/aligned/`
    Rafdb,
    /// `<root>/<split>.csv` with rows `path,label`
    Csv,
}

/// Stored color mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    #[default]
    Gray,
    Rgb,
}

impl Color {
    pub fn channels(self) -> usize {
        match self {
            Color::Gray => 1,
            Color::Rgb => 3,
        }
    }
}

/// Where a dataset lives and how to decode it; part of a training config (YAML/JSON).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub format: DataFormat,
    pub root: PathBuf,
    /// Class names in label order; `None` = the format's own order (sorted folder names,
    /// Kaggle order, RAF-DB order, sorted CSV names). Matched case-insensitively, with the
    /// usual synonyms folded (`Happiness` = `happy`, see [`class_key`]).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    #[serde(default)]
    pub color: Color,
    /// Stored square size (bilinear resize on decode); `None` keeps the native size, which all
    /// images must then share.
    #[serde(default)]
    pub size: Option<u32>,
    /// Keep every k-th sample (the peer's `LIMIT`), applied after reading.
    #[serde(default)]
    pub every: Option<usize>,
}

impl DataSpec {
    /// A spec with the defaults: native classes, gray, native size, all samples.
    pub fn new(format: DataFormat, root: impl Into<PathBuf>) -> Self {
        DataSpec { format, root: root.into(), classes: None, color: Color::Gray, size: None, every: None }
    }
}

/// One split in memory.
pub struct Dataset {
    /// uint8 `[N, C, H, W]`, `C` = 1 (gray) or 3 (rgb), on the CPU.
    pub images: Tensor,
    pub labels: Vec<i64>,
    pub classes: Vec<String>,
    /// Human-readable origin (path, split), carried into run logs and ONNX metadata.
    pub source: String,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("images", &self.images.size())
            .field("classes", &self.classes)
            .field("source", &self.source)
            .finish()
    }
}

impl Dataset {
    /// Checks that `images` is uint8 `[N, C, H, W]` with `N = labels.len()` and every label
    /// indexes `classes`.
    pub fn new(
        images: Tensor,
        labels: Vec<i64>,
        classes: Vec<String>,
        source: impl Into<String>,
    ) -> Result<Self, DataError> {
        let size = images.size();
        if images.kind() != Kind::Uint8 || size.len() != 4 || size[0] != labels.len() as i64 {
            return Err(DataError::Spec(format!(
                "dataset images must be uint8 [N, C, H, W] with N = {} labels, got {:?} {size:?}",
                labels.len(),
                images.kind()
            )));
        }
        if let Some(&l) = labels.iter().find(|&&l| l < 0 || l >= classes.len() as i64) {
            return Err(DataError::Spec(format!("label {l} out of range for {} classes", classes.len())));
        }
        Ok(Dataset { images, labels, classes, source: source.into() })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
    /// Stored channels (1 gray, 3 rgb).
    pub fn channels(&self) -> i64 {
        self.images.size()[1]
    }
    /// Stored `(height, width)`.
    pub fn image_size(&self) -> (i64, i64) {
        let s = self.images.size();
        (s[2], s[3])
    }
    /// Labels as an int64 CPU tensor `[N]`.
    pub fn labels_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.labels)
    }
    /// `(images uint8 [N, C, H, W], labels int64 [N])` on `device`, for GPU-resident training.
    pub fn to_device(&self, device: Device) -> (Tensor, Tensor) {
        (self.images.to_device(device), self.labels_tensor().to_device(device))
    }
    /// The samples at `indices`, in that order.
    ///
    /// # Panics
    /// If an index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            panic!("Dataset::subset: index {i} out of range for {} samples", self.len());
        }
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        Dataset {
            images: self.images.index_select(0, &Tensor::from_slice(&idx)),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            source: self.source.clone(),
        }
    }
    /// Every `k`-th sample starting at 0, as the peer's `x[::LIMIT]`. `k = 0` is treated as 1.
    pub fn every(&self, k: usize) -> Dataset {
        let idx: Vec<usize> = (0..self.len()).step_by(k.max(1)).collect();
        self.subset(&idx)
    }
    /// Samples per class, indexed like `classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

/// Reads one split (`train`, `val`, `test`, or a format-specific name) of `spec`.
pub fn load_split(spec: &DataSpec, split: &str) -> Result<Dataset, DataError> {
    if spec.every == Some(0) {
        return Err(DataError::Spec("`every` must be at least 1".into()));
    }
    if spec.size == Some(0) {
        return Err(DataError::Spec("`size` must be at least 1".into()));
    }
    let ds = match spec.format {
        DataFormat::Folder => folder::load(spec, split)?,
        DataFormat::Fer2013Csv => fer2013_csv::load(spec, split)?,
        DataFormat::Rafdb => rafdb::load(spec, split)?,
        DataFormat::Csv => csv_list::load(spec, split)?,
    };
    Ok(match spec.every {
        Some(k) if k > 1 => ds.every(k),
        _ => ds,
    })
}

// ---- shared decode path ----------------------------------------------------------------------

/// One decoded image: planar (CHW) uint8 bytes.
pub(crate) struct Planar {
    pub w: u32,
    pub h: u32,
    pub chw: Vec<u8>,
}

/// Converts to the spec's color, resizes to `size` x `size` if set (bilinear, image's
/// `Triangle` filter, which like PIL/torchvision widens its support when shrinking), and lays
/// the pixels out channel-first.
pub(crate) fn to_chw(img: DynamicImage, color: Color, size: Option<u32>) -> Planar {
    let img = match size {
        Some(s) if img.width() != s || img.height() != s => {
            img.resize_exact(s, s, image::imageops::FilterType::Triangle)
        }
        _ => img,
    };
    let (w, h) = (img.width(), img.height());
    let chw = match color {
        Color::Gray => img.into_luma8().into_raw(),
        Color::Rgb => {
            let hwc = img.into_rgb8().into_raw();
            let plane = (w * h) as usize;
            let mut chw = vec![0u8; 3 * plane];
            for (p, px) in hwc.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    chw[c * plane + p] = px[c];
                }
            }
            chw
        }
    };
    Planar { w, h, chw }
}

/// Decodes one file whatever its extension says (the format is sniffed from the bytes).
fn decode_file(path: &Path, color: Color, size: Option<u32>) -> Result<Planar, DataError> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| DataError::Image { path: path.to_path_buf(), source: e })?;
    Ok(to_chw(img, color, size))
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub(crate) fn progress(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{elapsed} < {eta}]") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

/// Decodes `paths` in parallel (rayon) into one uint8 `[N, C, H, W]` tensor, in order.
pub(crate) fn decode_files(
    paths: &[PathBuf],
    color: Color,
    size: Option<u32>,
    what: &str,
) -> Result<Tensor, DataError> {
    let pb = progress(paths.len(), what);
    let planes = paths
        .par_iter()
        .map(|p| {
            let r = decode_file(p, color, size);
            pb.inc(1);
            r
        })
        .collect::<Result<Vec<_>, _>>();
    pb.finish_and_clear();
    stack(planes?, color, |i| paths[i].clone())
}

/// Stacks decoded images into `[N, C, H, W]`; all must share one size (`name` names sample i
/// in the error otherwise).
pub(crate) fn stack(planes: Vec<Planar>, color: Color, name: impl Fn(usize) -> PathBuf) -> Result<Tensor, DataError> {
    let c = color.channels() as i64;
    let Some(first) = planes.first() else {
        return Ok(Tensor::zeros([0, c, 0, 0], (Kind::Uint8, Device::Cpu)));
    };
    let (w, h) = (first.w, first.h);
    if let Some(i) = planes.iter().position(|p| (p.w, p.h) != (w, h)) {
        return Err(DataError::SizeMismatch {
            path: name(i),
            got: (planes[i].w, planes[i].h),
            first: name(0),
            expected: (w, h),
        });
    }
    let mut buf = Vec::with_capacity(planes.len() * first.chw.len());
    for p in &planes {
        buf.extend_from_slice(&p.chw);
    }
    Ok(Tensor::from_slice(&buf).view([planes.len() as i64, c, h as i64, w as i64]))
}

// ---- class names -------------------------------------------------------------------------------

/// Canonical key for matching class names across datasets: lowercase, with the synonyms the
/// common FER datasets use folded onto FER2013's names (`Happiness` -> `happy`, `Anger` ->
/// `angry`, `Sadness` -> `sad`, `Surprised` -> `surprise`, ...).
pub fn class_key(name: &str) -> String {
    let l = name.trim().to_lowercase();
    match l.as_str() {
        "happiness" | "happy" => "happy",
        "sadness" | "sad" => "sad",
        "anger" | "angry" => "angry",
        "surprised" | "surprise" => "surprise",
        "fearful" | "fear" => "fear",
        "disgusted" | "disgust" => "disgust",
        "neutrality" | "neutral" => "neutral",
        "contemptuous" | "contempt" => "contempt",
        _ => return l,
    }
    .to_string()
}

/// Index of `name` in `classes` by [`class_key`].
pub(crate) fn find_class(classes: &[String], name: &str) -> Option<usize> {
    let k = class_key(name);
    classes.iter().position(|c| class_key(c) == k)
}

/// For formats with a fixed native label list: the output classes and, per native label, its
/// output index (`None` = not in `spec.classes`). A configured class the format does not have
/// is an error.
pub(crate) fn map_native(
    native: &[&str],
    wanted: Option<&[String]>,
    what: &Path,
) -> Result<(Vec<String>, Vec<Option<usize>>), DataError> {
    match wanted {
        None => Ok((native.iter().map(|s| s.to_string()).collect(), (0..native.len()).map(Some).collect())),
        Some(w) => {
            if let Some(c) = w.iter().find(|c| !native.iter().any(|n| class_key(n) == class_key(c))) {
                return Err(DataError::Spec(format!(
                    "{}: class `{c}` does not exist in this dataset (it has {native:?})",
                    what.display()
                )));
            }
            let idx = native.iter().map(|n| find_class(w, n)).collect();
            Ok((w.to_vec(), idx))
        }
    }
}

/// Held by tests that seed torch's global generator (`tch::manual_seed`), so that tests running
/// in parallel threads do not draw from each other's streams.
#[cfg(test)]
pub(crate) static TORCH_RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the ignored test `name` (its full path) alone, in a child process of this test binary,
/// and fails if it fails. For checks of exact draws from torch's global generator: every test
/// that builds a model draws from it too, which the lock above cannot keep out (a CI run once got
/// the peer's noisy indices with other label shifts).
#[cfg(test)]
pub(crate) fn run_alone(name: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--ignored", "--test-threads=1"])
        .output()
        .expect("running the test binary again");
    let log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("1 passed"), "{name} alone:\n{log}");
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Throw-away fixture directories under the system temp dir.
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TempDir(PathBuf);
    impl TempDir {
        pub fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "fer-train-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a w x h gray image whose pixel (x, y) is `f(x, y)`, in the format `path`'s extension
    /// names (a PNG in most tests).
    pub fn gray_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)])).save(path).unwrap();
    }

    /// Flattened uint8 contents of a tensor.
    pub fn bytes(t: &tch::Tensor) -> Vec<u8> {
        Vec::<u8>::try_from(&t.flatten(0, -1)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn spec_unknown_key_is_an_error() {
        let e = serde_json::from_str::<DataSpec>(r#"{"format": "folder", "root": "x", "colour": "rgb"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let e = serde_yaml::from_str::<DataSpec>("format: csv\nroot: x\nsize: 48\nlimit: 3\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `limit`"), "{e}");
        let s: DataSpec = serde_yaml::from_str("format: fer2013_csv\nroot: /d\ncolor: rgb\nevery: 5\n").unwrap();
        assert_eq!(s.format, DataFormat::Fer2013Csv);
        assert_eq!((s.color, s.every, s.size, s.classes), (Color::Rgb, Some(5), None, None));
        let s: DataSpec = serde_json::from_str(r#"{"format": "rafdb", "root": "r"}"#).unwrap();
        assert_eq!(s, DataSpec::new(DataFormat::Rafdb, "r"));
    }

    #[test]
    fn rgb_is_planar_and_resize_applies() {
        let img = image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([10 + x as u8, 20 + x as u8, 30 + x as u8]));
        let p = to_chw(DynamicImage::ImageRgb8(img.clone()), Color::Rgb, None);
        assert_eq!(p.chw, vec![10, 11, 20, 21, 30, 31]);
        let p = to_chw(DynamicImage::ImageRgb8(img), Color::Gray, Some(3));
        assert_eq!((p.w, p.h, p.chw.len()), (3, 3, 9));
    }

    #[test]
    fn dataset_subset_every_counts() {
        let imgs = Tensor::arange(6, (Kind::Uint8, Device::Cpu)).view([6, 1, 1, 1]);
        let ds = Dataset::new(imgs, vec![0, 1, 1, 2, 0, 1], vec!["a".into(), "b".into(), "c".into()], "t").unwrap();
        assert_eq!(ds.class_counts(), vec![2, 3, 1]);
        let e = ds.every(4);
        assert_eq!((bytes(&e.images), e.labels.clone()), (vec![0, 4], vec![0, 0]));
        let s = ds.subset(&[5, 1]);
        assert_eq!((bytes(&s.images), s.labels.clone()), (vec![5, 1], vec![1, 1]));
        let (x, y) = ds.to_device(Device::Cpu);
        assert_eq!((x.size(), Vec::<i64>::try_from(&y).unwrap()), (vec![6, 1, 1, 1], ds.labels.clone()));
        assert!(Dataset::new(
            Tensor::zeros([2, 1, 1, 1], (Kind::Uint8, Device::Cpu)),
            vec![0, 3],
            vec!["a".into()],
            "t"
        )
        .is_err());
    }

    #[test]
    fn class_keys_fold_synonyms() {
        let cl: Vec<String> = ["angry", "happy", "sad"].iter().map(|s| s.to_string()).collect();
        assert_eq!(find_class(&cl, "Happiness"), Some(1));
        assert_eq!(find_class(&cl, "ANGER"), Some(0));
        assert_eq!(find_class(&cl, "contempt"), None);
    }

    #[test]
    fn real_fer2013_val_every_50() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/fer2013");
        if !root.join("val").is_dir() {
            eprintln!("skipping real_fer2013_val_every_50: {} not found", root.display());
            return;
        }
        let spec = DataSpec { every: Some(50), ..DataSpec::new(DataFormat::Folder, &root) };
        let ds = load_split(&spec, "val").unwrap();
        assert_eq!(ds.classes, ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]);
        assert_eq!(ds.images.size()[1..], [1, 48, 48]);
        assert_eq!(ds.len(), 3589usize.div_ceil(50));
        let c = ds.class_counts();
        assert!(c.iter().all(|&n| n > 0), "{c:?}");
        // labels are sorted by class like the peer's `load`
        assert!(ds.labels.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Full FER2013 train split through a compressed cache; slow, run on demand:
    /// `cargo test -p fer-train --lib real_fer2013_train_zst -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn real_fer2013_train_zst() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/fer2013");
        if !root.join("train").is_dir() {
            eprintln!("skipping real_fer2013_train_zst: {} not found", root.display());
            return;
        }
        let t0 = std::time::Instant::now();
        let ds = load_split(&DataSpec::new(DataFormat::Folder, &root), "train").unwrap();
        eprintln!("decoded {} images in {:.1} s, counts {:?}", ds.len(), t0.elapsed().as_secs_f64(), ds.class_counts());
        let dir = testutil::TempDir::new("zst");
        let f = dir.path().join("train.safetensors.zst");
        let t0 = std::time::Instant::now();
        ds.save_cache(&f).unwrap();
        let size = std::fs::metadata(&f).unwrap().len();
        eprintln!("wrote {} bytes in {:.1} s", size, t0.elapsed().as_secs_f64());
        let t0 = std::time::Instant::now();
        let back = Dataset::load_cache(&f).unwrap();
        eprintln!("read back in {:.1} s", t0.elapsed().as_secs_f64());
        assert!(back.images.equal(&ds.images) && back.labels == ds.labels);
    }
}
