//! Images a second when several threads share one loaded model (`&Model` in scoped threads), the
//! way an app serving many cameras or requests would use it. A maintainer's tool for how
//! concurrent calls share the backend's threads (`fer_runtime::intra_op` for tract):
//!
//!     cargo run --release -p fer-runtime --example shared_model_bench -- model.onnx [threads] [images-per-thread] [backend]
//!
//! Each thread runs the same face crop (the sample photo, resized to the model's input) after a
//! warm-up; `backend` is `tract` (default) or `ort`.

use anyhow::{bail, Context, Result};
use fer_runtime::{Backend, Model};
use std::time::Instant;

fn main() -> Result<()> {
    // The kernel choice `fer-run` makes. SAFETY: no other thread exists yet.
    unsafe { fer_runtime::prefer_tile_use_kernels() };
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: shared_model_bench <model.onnx> [threads] [images-per-thread] [tract|ort]";
    let path = args.get(1).context(usage)?;
    let number = |i: usize, default: usize| -> Result<usize> {
        match args.get(i) {
            None => Ok(default),
            Some(v) => match v.parse() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("`{v}` is not a positive whole number\n{usage}"),
            },
        }
    };
    let (threads, per_thread) = (number(2, 2)?, number(3, 1000)?);
    let backend: Backend = args.get(4).map_or("tract", String::as_str).parse()?;
    let model = Model::load(path, backend)?;
    let assets = std::env::var("FER_ASSETS").unwrap_or_else(|_| ".cache/assets".into());
    let photo = format!("{assets}/astronaut.png");
    let (h, w) = model.metadata().input_size;
    let img = image::open(&photo)
        .with_context(|| format!("{photo} (made by scripts/setup.sh; FER_ASSETS names its folder)"))?
        .resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    for _ in 0..20 {
        model.predict_image(&img)?;
    }
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let runs: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| (0..per_thread).try_for_each(|_| model.predict_image(&img).map(drop))))
            .collect();
        runs.into_iter().try_for_each(|r| r.join().expect("a bench thread panicked").map_err(Into::into))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{path} ({}): {threads} threads x {per_thread} images: {:.0} images/s",
        model.backend_name(),
        (threads * per_thread) as f64 / seconds
    );
    Ok(())
}
