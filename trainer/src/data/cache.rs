//! Decoded-split cache: one safetensors file per (spec, split) holding `images` (uint8
//! `[N, C, H, W]`) and `labels` (int64 `[N]`), with `classes` (JSON) and `source` in the
//! header metadata. Decoding 30k PNGs takes a while; the cache makes reloads instant and ships a
//! dataset to a GPU box as one file. Files are written to a temporary name and renamed, so a
//! crash never leaves a half-written cache behind.
//!
//! A path ending in `.zst` is zstd-compressed (level 19: FER2013 train, 66 MB raw, becomes
//! 55 MB, which fits one device call; compressing takes about a minute on 2 cores).

use super::{load_split, DataError, DataSpec, Dataset};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Bumped whenever the cache layout or the decoding changes, so stale caches are not reused.
const CACHE_VERSION: &str = "fer-train-dataset-v1";

impl Dataset {
    /// Writes the dataset to `path` (safetensors), atomically.
    pub fn save_cache(&self, path: &Path) -> Result<(), DataError> {
        let bad = |msg: String| DataError::Cache { path: path.to_path_buf(), msg };
        let images = self.images.to_device(tch::Device::Cpu).contiguous();
        let shape: Vec<usize> = images.size().iter().map(|&d| d as usize).collect();
        let mut pixels = vec![0u8; images.numel()];
        images.f_copy_data(&mut pixels, images.numel())?;
        let labels: Vec<u8> = self.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        let views = [
            ("images", TensorView::new(Dtype::U8, shape, &pixels).map_err(|e| bad(e.to_string()))?),
            ("labels", TensorView::new(Dtype::I64, vec![self.labels.len()], &labels).map_err(|e| bad(e.to_string()))?),
        ];
        let meta = HashMap::from([
            ("format".to_string(), CACHE_VERSION.to_string()),
            ("classes".to_string(), serde_json::to_string(&self.classes).map_err(|e| bad(e.to_string()))?),
            ("source".to_string(), self.source.clone()),
        ]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| bad(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = if is_zst(path) { write_zst(&tmp, &bytes) } else { std::fs::write(&tmp, &bytes) };
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            DataError::io(&tmp, e)
        })?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            DataError::io(path, e)
        })
    }

    /// Reads a file written by [`Dataset::save_cache`], checking its layout.
    pub fn load_cache(path: &Path) -> Result<Dataset, DataError> {
        let bad = |msg: String| DataError::Cache { path: path.to_path_buf(), msg };
        let bytes = if is_zst(path) {
            std::fs::File::open(path).and_then(zstd::stream::decode_all)
        } else {
            std::fs::read(path)
        }
        .map_err(|e| DataError::io(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(CACHE_VERSION) {
            return Err(bad(format!("metadata `format` is {:?}, expected {CACHE_VERSION:?}", meta.get("format"))));
        }
        let classes: Vec<String> = serde_json::from_str(meta.get("classes").map_or("", String::as_str))
            .map_err(|e| bad(format!("metadata `classes`: {e}")))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let get = |name: &str, dtype: Dtype, rank: usize| {
            let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            if t.dtype() != dtype || t.shape().len() != rank {
                return Err(bad(format!(
                    "`{name}` is {:?} {:?}, expected {dtype:?} of rank {rank}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t)
        };
        let images = get("images", Dtype::U8, 4)?;
        let labels = get("labels", Dtype::I64, 1)?;
        let shape: Vec<i64> = images.shape().iter().map(|&d| d as i64).collect();
        let images = Tensor::f_from_data_size(images.data(), &shape, Kind::Uint8)?;
        let labels: Vec<i64> =
            labels.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
        let source = meta.get("source").cloned().unwrap_or_default();
        Dataset::new(images, labels, classes, source).map_err(|e| bad(e.to_string()))
    }
}

fn is_zst(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

fn write_zst(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut enc = zstd::stream::Encoder::new(std::fs::File::create(path)?, 19)?;
    enc.multithread(rayon::current_num_threads() as u32)?;
    enc.write_all(bytes)?;
    enc.finish()?.sync_all()
}

/// FNV-1a, 64 bit: a hash that is stable across Rust versions and platforms (unlike
/// `DefaultHasher`), so cache names survive a toolchain update or a move to another machine.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// `<cache_dir>/<split>-<hash of spec, split and cache version>.safetensors`. The spec's `root`
/// is hashed as written, so a relative root gives the same name on another machine.
pub fn cache_path(spec: &DataSpec, split: &str, cache_dir: &Path) -> PathBuf {
    let key = format!("{CACHE_VERSION}\n{}\n{split}", serde_json::to_string(spec).unwrap_or_default());
    let safe: String =
        split.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    cache_dir.join(format!("{safe}-{:016x}.safetensors", fnv1a(key.as_bytes())))
}

/// [`cache_path`] with `.zst` appended: the compressed twin that [`load_split_cached`] also
/// accepts (write it with [`Dataset::save_cache`], or `zstd -19` the plain file).
pub fn zst_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".zst");
    PathBuf::from(s)
}

/// [`load_split`] through a cache in `cache_dir` (none: no caching). A cache file that exists
/// ([`cache_path`], or its compressed twin [`zst_path`]) is used as is, even when the dataset
/// root is absent (a GPU box that received only the cache); an unreadable one is rebuilt. New
/// caches are written uncompressed (fast). The cache does not notice edits to the image files themselves:
/// delete it after changing a dataset in place.
pub fn load_split_cached(spec: &DataSpec, split: &str, cache_dir: Option<&Path>) -> Result<Dataset, DataError> {
    let Some(dir) = cache_dir else {
        return load_split(spec, split);
    };
    let path = cache_path(spec, split, dir);
    let zst = zst_path(&path);
    for p in [&path, &zst] {
        if p.is_file() {
            match Dataset::load_cache(p) {
                Ok(ds) => return Ok(ds),
                Err(e) => tracing::warn!("rebuilding dataset cache: {e}"),
            }
        }
    }
    let ds = load_split(spec, split)?;
    ds.save_cache(&path)?;
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Color, DataFormat};
    use super::*;

    #[test]
    fn round_trip_and_reuse() {
        let t = TempDir::new("cache");
        let data = t.path().join("data");
        for (c, v) in [("x", 7u8), ("y", 9)] {
            gray_png(&data.join(format!("train/{c}/0.png")), 3, 2, |i, j| v + (i + 3 * j) as u8);
        }
        let spec = DataSpec { color: Color::Rgb, ..DataSpec::new(DataFormat::Folder, &data) };
        let cache = t.path().join("cache");
        let a = load_split_cached(&spec, "train", Some(&cache)).unwrap();
        let file = cache_path(&spec, "train", &cache);
        assert!(file.is_file());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1, "no temporary file left behind");

        // the cache alone suffices once written
        std::fs::remove_dir_all(&data).unwrap();
        let b = load_split_cached(&spec, "train", Some(&cache)).unwrap();
        assert!(a.images.equal(&b.images));
        assert_eq!((&a.labels, &a.classes, &a.source), (&b.labels, &b.classes, &b.source));
        assert_eq!(b.images.size(), [2, 3, 2, 3]);

        // a different spec is a different file
        let other = DataSpec { every: Some(2), ..spec.clone() };
        assert_ne!(cache_path(&other, "train", &cache), file);
        assert_ne!(cache_path(&spec, "val", &cache), file);

        // compressed twin: same content, found by load_split_cached alone
        let zst = zst_path(&file);
        b.save_cache(&zst).unwrap();
        std::fs::remove_file(&file).unwrap();
        let c = load_split_cached(&spec, "train", Some(&cache)).unwrap();
        assert!(c.images.equal(&b.images) && c.labels == b.labels && c.classes == b.classes);
        assert_eq!(&std::fs::read(&zst).unwrap()[..4], [0x28, 0xB5, 0x2F, 0xFD]); // zstd magic
        b.save_cache(&file).unwrap();

        std::fs::write(&file, b"nonsense").unwrap();
        let e = Dataset::load_cache(&file).unwrap_err().to_string();
        assert!(e.contains("not a valid dataset cache"), "{e}");
    }
}
