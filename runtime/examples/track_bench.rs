//! Times finding the faces of each frame of a stream, as `fer-run -` does
//! ([`FaceTracker::find`]: the gray conversion, the searches and the crops; not the decoding nor
//! the model), and prints one JSON line per `--detect-every` value: the milliseconds of the
//! median, 95th-percentile and slowest frame, the whole stream's, the faces found and the number
//! of full searches. The frames are decoded before the clock starts; each value runs `rounds`
//! times over the stream and the per-frame times are pooled. `bench/stream_track.py` runs it on its
//! stream.
//!
//! `cargo run --release -p fer-runtime --example track_bench -- <stream.mjpeg> <rounds> <every>...`
//! (the cascade is found as fer-run finds it: `$FER_ASSETS`).
use fer_runtime::{decode_image, stream::FrameStream, track::FaceTracker, Detect, FaceFinder, ImageLimits};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [stream, rounds, everys @ ..] = &args[..] else {
        return Err("usage: track_bench <stream.mjpeg> <rounds> <every>...".into());
    };
    let rounds: usize = rounds.parse()?;
    let frames = FrameStream::new(std::fs::File::open(stream)?, "stream")
        .map(|f| {
            let f = f?;
            decode_image(&f.bytes, f.name.as_ref(), &ImageLimits::default())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let finder = FaceFinder::new(&Detect::Auto, (48, 48))?;
    if finder.cascade().is_none() {
        return Err("no face detector: set FER_ASSETS to the folder of haarcascade_frontalface_default.xml".into());
    }
    for every in everys {
        let every: usize = every.parse()?;
        let (mut ms, mut faces, mut full, mut total) = (Vec::new(), 0, 0, 0.0);
        for _ in 0..rounds.max(1) {
            let mut tracker = FaceTracker::new(&finder, every);
            faces = 0;
            let start = Instant::now();
            for img in &frames {
                let t = Instant::now();
                let found = std::hint::black_box(tracker.find(img));
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                faces += found.faces.iter().filter(|f| f.bbox.is_some()).count();
            }
            total += start.elapsed().as_secs_f64() * 1e3;
            full = tracker.full_searches();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        println!(
            "{{\"every\": {every}, \"frames\": {}, \"p50_ms\": {:.2}, \"p95_ms\": {:.2}, \"max_ms\": {:.2}, \"stream_ms\": {:.1}, \"faces\": {faces}, \"full_searches\": {full}}}",
            frames.len(),
            at(0.5),
            at(0.95),
            ms[ms.len() - 1],
            total / rounds.max(1) as f64,
        );
    }
    Ok(())
}
