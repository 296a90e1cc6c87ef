//! Times the Haar face detector (`HaarCascade::detect` with fer-run's default parameters, the same
//! as OpenCV's `detectMultiScale(scaleFactor=1.1, minNeighbors=3, minSize=(30, 30))`) on images,
//! and prints one JSON line per image: its size, the median and minimum milliseconds per
//! detection, the median milliseconds of converting the decoded picture to gray (`to_gray`, which
//! every search starts with), and the boxes. `bench/detect_vs_opencv.py` runs it beside OpenCV on the same images.
//!
//! `cargo run --release -p fer-runtime --example detect_bench -- <cascade.xml> <iters> <image>...`
//! (`DETECT_MAX_SIDE=0` scans large images whole, as OpenCV does, instead of shrinking them to
//! 800 px first).
use fer_runtime::{load_image, preprocess::to_gray, HaarCascade, HaarParams, ImageLimits};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cascade, iters, images @ ..] = &args[..] else {
        return Err("usage: detect_bench <cascade.xml> <iters> <image>...".into());
    };
    let cascade = HaarCascade::load(cascade.as_ref())?;
    let iters: usize = iters.parse()?;
    let mut params = HaarParams::default();
    if let Ok(v) = std::env::var("DETECT_MAX_SIDE") {
        params.max_side = v.parse()?;
    }
    for path in images {
        let picture = load_image(path.as_ref(), &ImageLimits::default())?;
        let gray = to_gray(&picture);
        let gray_ms = median_ms(iters, || {
            std::hint::black_box(to_gray(&picture));
        });
        let boxes = cascade.detect(&gray, &params); // warm-up (and the answer)
        let ms = sorted_ms(iters, || {
            std::hint::black_box(cascade.detect(&gray, &params));
        });
        let boxes: Vec<[u32; 4]> = boxes.iter().map(|b| [b.x, b.y, b.w, b.h]).collect();
        println!(
            "{{\"image\": {:?}, \"size\": [{}, {}], \"p50_ms\": {:.3}, \"min_ms\": {:.3}, \"gray_ms\": {:.3}, \"boxes\": {:?}}}",
            path,
            gray.width(),
            gray.height(),
            ms[ms.len() / 2],
            ms[0],
            gray_ms,
            boxes
        );
    }
    Ok(())
}

/// Milliseconds of `iters` calls of `f` (at least one), fastest first.
fn sorted_ms(iters: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut ms: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

fn median_ms(iters: usize, f: impl FnMut()) -> f64 {
    let ms = sorted_ms(iters, f);
    ms[ms.len() / 2]
}
