//! Times `fer_runtime::resize` against `image::imageops::resize` (Triangle), which it reproduces
//! bit for bit, on the resizes fer-run does most: a 48 px FER2013 face to 112 px, gray and RGB,
//! and a 640x480 photo crop down to 112 px.
//!
//! `cargo run --release -p fer-runtime --example resize_bench [iterations]`
use image::imageops::{resize, FilterType};
use std::time::Instant;

fn time_us(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let cases = [((48, 48), 112), ((48, 48), 224), ((640, 480), 112)];
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "resize", "image (us)", "fer (us)", "speedup"
    );
    for ((w, h), n) in cases {
        let bytes: Vec<u8> = (0..w * h * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let gray = image::GrayImage::from_raw(w, h, bytes[..(w * h) as usize].to_vec()).unwrap();
        let rgb = image::RgbImage::from_raw(w, h, bytes).unwrap();
        assert_eq!(
            fer_runtime::resize::gray(&gray, n, n),
            resize(&gray, n, n, FilterType::Triangle)
        );
        let row = |what: &str, a: f64, b: f64| {
            println!(
                "{:<22} {a:>12.1} {b:>12.1} {:>7.1}x",
                format!("{what} {w}x{h}->{n}"),
                a / b
            )
        };
        let a = time_us(iters, || drop(resize(&gray, n, n, FilterType::Triangle)));
        let b = time_us(iters, || drop(fer_runtime::resize::gray(&gray, n, n)));
        row("gray", a, b);
        let a = time_us(iters, || drop(resize(&rgb, n, n, FilterType::Triangle)));
        let b = time_us(iters, || drop(fer_runtime::resize::rgb(&rgb, n, n)));
        row("rgb", a, b);
    }
}
