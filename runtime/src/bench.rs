//! Latency benchmarks: inference alone on a fixed random batch, or decode + preprocess + inference
//! on real files. Reports percentiles of per-call latency and throughput in images per second.

use crate::error::{FerError, Result};
use crate::model::Model;
use crate::preprocess::{load_image, ImageLimits, Tta};
use ndarray::Array4;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Summary of timed calls.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// What was timed: `inference` or `decode+preprocess+inference` (with `, tta <mode>` when the
    /// model averages several views of each face).
    pub what: String,
    pub backend: String,
    pub batch: usize,
    pub iters: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Images per second over the timed calls.
    pub throughput: f64,
}

/// Nearest-rank percentile (`q` in [0, 100]) of sorted samples.
///
/// ```
/// let v = [1.0, 2.0, 3.0, 4.0];
/// assert_eq!(fer_runtime::bench::percentile(&v, 50.0), 2.0);
/// assert_eq!(fer_runtime::bench::percentile(&v, 99.0), 4.0);
/// ```
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl BenchReport {
    /// Summarises per-call durations for batches of `batch` images.
    pub fn from_samples(
        what: &str,
        backend: String,
        batch: usize,
        samples: &[Duration],
    ) -> BenchReport {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let total: f64 = ms.iter().sum();
        BenchReport {
            what: what.into(),
            backend,
            batch,
            iters: ms.len(),
            mean_ms: total / ms.len().max(1) as f64,
            p50_ms: percentile(&ms, 50.0),
            p95_ms: percentile(&ms, 95.0),
            p99_ms: percentile(&ms, 99.0),
            min_ms: ms.first().copied().unwrap_or(f64::NAN),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
            throughput: if total > 0.0 {
                (batch * ms.len()) as f64 / (total / 1e3)
            } else {
                f64::NAN
            },
        }
    }
}

fn timed(
    warmup: usize,
    iters: usize,
    mut call: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<Duration>> {
    for i in 0..warmup {
        call(i)?;
    }
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters {
        let t = Instant::now();
        call(warmup + i)?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// Times `predict_tensor` on one fixed pseudo-random batch.
pub fn bench_tensor(
    model: &Model,
    batch: usize,
    warmup: usize,
    iters: usize,
) -> Result<BenchReport> {
    let (h, w) = model.metadata().input_size;
    let c = model.info().channels;
    // Fixed LCG: the same input every run, no RNG dependency.
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let x = Array4::from_shape_simple_fn((batch.max(1), c, h, w), || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    });
    let samples = timed(warmup, iters.max(1), |_| {
        model.predict_tensor(x.view()).map(|_| ())
    })?;
    Ok(BenchReport::from_samples(
        "inference",
        model.backend_name(),
        batch.max(1),
        &samples,
    ))
}

/// Times decode + preprocess + inference on `files`, `batch` files per call, cycling through them.
pub fn bench_images(
    model: &Model,
    files: &[PathBuf],
    batch: usize,
    warmup: usize,
    iters: usize,
) -> Result<BenchReport> {
    if files.is_empty() {
        return Err(FerError::EmptyBatch);
    }
    let batch = batch.max(1);
    let limits = ImageLimits::default();
    let samples = timed(warmup, iters.max(1), |i| {
        let imgs = (0..batch)
            .map(|j| load_image(&files[(i * batch + j) % files.len()], &limits))
            .collect::<Result<Vec<_>>>()?;
        model.predict_batch(&imgs).map(|_| ())
    })?;
    let what = match model.tta() {
        Tta::None => "decode+preprocess+inference".to_string(),
        tta => format!("decode+preprocess+inference, tta {tta}"),
    };
    Ok(BenchReport::from_samples(
        &what,
        model.backend_name(),
        batch,
        &samples,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_statistics() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let r = BenchReport::from_samples("inference", "x".into(), 4, &samples);
        assert_eq!(
            (r.p50_ms, r.p95_ms, r.p99_ms, r.min_ms, r.max_ms),
            (50.0, 95.0, 99.0, 1.0, 100.0)
        );
        assert!((r.mean_ms - 50.5).abs() < 1e-9);
        // 400 images in 5.05 s.
        assert!((r.throughput - 400.0 / 5.05).abs() < 1e-6);
    }
}
