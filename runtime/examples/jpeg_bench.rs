//! Times encoding one frame as `fer-run -`'s videos do ([`stream::encode_jpeg`], the
//! `jpeg-encoder` crate, 4:4:4) against the `image` crate's JPEG encoder that wrote them before,
//! at the same quality, and prints for each the milliseconds a frame (median of `rounds`), the
//! bytes and the PSNR of the decoded frame against the original. A third row is `jpeg-encoder` at
//! 4:2:0 (colour at half resolution), faster but not used: it washes out thin coloured lines
//! (`stream::tests::a_frames_jpeg_keeps_thin_coloured_lines`). The crate's AVX2 code is used where
//! the CPU has it; to time the portable code an ARM build runs, drop `simd` from its features in
//! the workspace `Cargo.toml`.
//!
//! `cargo run --release -p fer-runtime --example jpeg_bench -- <picture> [width height] [rounds]`
//! (default 640 480 50; the picture is resized to that size first, as a camera frame).
use fer_runtime::stream::{self, MJPEG_QUALITY};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(picture) = args.first() else {
        return Err("usage: jpeg_bench <picture> [width height] [rounds]".into());
    };
    let number = |i: usize, default: u32| args.get(i).map_or(Ok(default), |a| a.parse::<u32>());
    let (width, height, rounds) = (number(1, 640)?, number(2, 480)?, number(3, 50)?.max(1));
    let frame = image::open(picture)?.to_rgb8();
    let frame = image::imageops::resize(&frame, width, height, image::imageops::FilterType::Triangle);
    type Encode = dyn Fn(&image::RgbImage) -> Result<Vec<u8>, Box<dyn std::error::Error>>;
    let by_fer: &Encode = &|f| Ok(stream::encode_jpeg(f)?);
    let by_image: &Encode = &|f| {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, MJPEG_QUALITY).encode_image(f)?;
        Ok(jpeg)
    };
    let by_fer_420: &Encode = &|f| {
        let mut jpeg = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, MJPEG_QUALITY);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
        encoder.encode(f.as_raw(), f.width() as u16, f.height() as u16, jpeg_encoder::ColorType::Rgb)?;
        Ok(jpeg)
    };
    let encoders = [("jpeg-encoder (fer-run)", by_fer), ("image", by_image), ("jpeg-encoder 4:2:0 (not used)", by_fer_420)];
    for (name, encode) in encoders {
        let mut times = Vec::new();
        let mut jpeg = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            jpeg = encode(&frame)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let back = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)?.to_rgb8();
        let squared: f64 = frame.as_raw().iter().zip(back.as_raw()).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
        let psnr = 10.0 * (255.0f64.powi(2) / (squared / frame.as_raw().len() as f64)).log10();
        println!(
            "{name}: {:.2} ms a {width}x{height} frame (median of {rounds}), {} bytes, {psnr:.2} dB",
            times[times.len() / 2],
            jpeg.len()
        );
    }
    Ok(())
}
