//! Shared test fixtures: small contract-following ONNX models built with `fer-export` (known
//! pseudo-random weights), images written on the fly, and the skip rules for ONNX Runtime and
//! the assets directory.
#![allow(dead_code)]

use fer_export::{Attr, ColorMode, Dim, GraphBuilder, Metadata};
use std::path::{Path, PathBuf};

pub const LABELS: [&str; 4] = ["angry", "happy", "neutral", "sad"];

/// A fresh directory under cargo's per-target temp dir.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fer-runtime-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether ONNX Runtime can be loaded here; prints why a test is skipped when not.
pub fn ort_ready(test: &str) -> bool {
    if !cfg!(feature = "ort") {
        eprintln!("skipping {test}: fer-runtime built without the `ort` feature");
        return false;
    }
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if Path::new(&p).is_file() => true,
        _ => {
            eprintln!("skipping {test}: ORT_DYLIB_PATH is unset or missing (run scripts/setup.sh)");
            false
        }
    }
}

/// `$FER_ASSETS`, if it holds the astronaut photo and the cascade; prints why a test is skipped.
pub fn assets(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("FER_ASSETS")?);
    if dir.join("astronaut.png").is_file()
        && dir.join("haarcascade_frontalface_default.xml").is_file()
    {
        Some(dir)
    } else {
        eprintln!("skipping {test}: FER_ASSETS lacks astronaut.png or the Haar cascade");
        None
    }
}

/// The astronaut portrait from `$FER_ASSETS` (see [`assets`]).
pub fn astronaut() -> image::RgbImage {
    let dir = PathBuf::from(std::env::var_os("FER_ASSETS").expect("FER_ASSETS"));
    image::open(dir.join("astronaut.png")).unwrap().to_rgb8()
}

/// A webcam close-up: the astronaut's face (the portrait's 210 px square around it) at `side` px
/// with its corner at `at`, and optionally the face mirrored at 140 px at (490, 330), on a flat
/// 640x480 frame.
pub fn close_up(portrait: &image::RgbImage, side: u32, at: (i64, i64), second: bool) -> image::DynamicImage {
    use image::imageops::{flip_horizontal, overlay, resize, FilterType};
    let face = image::imageops::crop_imm(portrait, 118, 8, 210, 210).to_image();
    let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([96, 96, 96]));
    overlay(&mut frame, &resize(&face, side, side, FilterType::Triangle), at.0, at.1);
    if second {
        overlay(&mut frame, &flip_horizontal(&resize(&face, 140, 140, FilterType::Triangle)), 490, 330);
    }
    image::DynamicImage::ImageRgb8(frame)
}

/// Deterministic values in [-scale, scale).
pub fn lcg(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

pub fn meta(color: ColorMode, size: (usize, usize), mean: &[f32], std: &[f32]) -> Metadata {
    Metadata {
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        input_size: size,
        color,
        mean: mean.to_vec(),
        std: std.to_vec(),
        method: "eac".into(),
        backbone: "tiny".into(),
        data: "synthetic".into(),
        val_accuracy: Some(0.5),
        extra: Vec::new(),
    }
}

/// What to build into [`conv_model`].
pub struct ConvSpec {
    pub channels: usize,
    pub color: ColorMode,
    pub size: (usize, usize),
    pub cam: bool,
    pub confidence: bool,
    pub seed: u64,
}

impl ConvSpec {
    /// A gray model of `size` x `size` faces with neither a `cam` nor a `confidence` output; the
    /// tests set what they need on top (`ConvSpec { cam: true, ..ConvSpec::gray(16, 5) }`).
    pub fn gray(size: usize, seed: u64) -> Self {
        ConvSpec {
            channels: 1,
            color: ColorMode::Gray,
            size: (size, size),
            cam: false,
            confidence: false,
            seed,
        }
    }

    /// An RGB model of `(height, width)` faces with a `cam` output (the backends' parity tests).
    pub fn rgb_with_cam(size: (usize, usize), seed: u64) -> Self {
        ConvSpec {
            channels: 3,
            color: ColorMode::Rgb,
            size,
            cam: true,
            confidence: false,
            seed,
        }
    }
}

/// ONNX Runtime on the CPU.
pub const ORT_CPU: fer_runtime::Backend = fer_runtime::Backend::Ort {
    device: fer_runtime::Device::Cpu,
};

/// Conv 3x3 (8 filters) + ReLU = F; GAP + Gemm = logits; Softmax = probs; optionally
/// `cam` = the classifier applied at every position of F (EAC's M = W·F, a 1x1 Conv with the
/// Gemm's weights) and `confidence` = max probability.
pub fn conv_model(spec: &ConvSpec) -> fer_export::pb::ModelProto {
    let (c, d, k) = (spec.channels as i64, 8i64, LABELS.len() as i64);
    let (h, w) = (spec.size.0 as i64, spec.size.1 as i64);
    let mut g = GraphBuilder::new("tiny_conv");
    let x = g.input(
        "input",
        &[Dim::batch(), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)],
    );
    let cw = g
        .initializer(
            "conv.weight",
            &[d, c, 3, 3],
            &lcg((d * c * 9) as usize, spec.seed, 0.5),
        )
        .unwrap();
    let cb = g
        .initializer("conv.bias", &[d], &lcg(d as usize, spec.seed + 1, 0.1))
        .unwrap();
    let f = g.conv(&x, &cw, Some(&cb), [3, 3], [1, 1], [1, 1], 1, "conv");
    let f = g.relu(&f, "relu");
    let pooled = g.global_avg_pool_flat(&f, "pool");
    let fc_w = lcg((k * d) as usize, spec.seed + 2, 1.0);
    let fw = g.initializer("fc.weight", &[k, d], &fc_w).unwrap();
    let fb = g
        .initializer("fc.bias", &[k], &lcg(k as usize, spec.seed + 3, 0.2))
        .unwrap();
    let logits = g.linear(&pooled, &fw, Some(&fb), "fc");
    let probs = g.softmax(&logits, 1, "softmax");
    g.output("logits", &logits, &[Dim::batch(), Dim::Fixed(k)]);
    g.output("probs", &probs, &[Dim::batch(), Dim::Fixed(k)]);
    if spec.cam {
        let cam_w = g.const_f32("cam.weight", &[k, d, 1, 1], &fc_w);
        let cam = g.conv(&f, &cam_w, None, [1, 1], [1, 1], [0, 0], 1, "cam");
        g.output(
            "cam",
            &cam,
            &[Dim::batch(), Dim::Fixed(k), Dim::Fixed(h), Dim::Fixed(w)],
        );
    }
    if spec.confidence {
        let conf = g.op(
            "ReduceMax",
            &[&probs],
            &[Attr::ints("axes", &[1]), Attr::int("keepdims", 0)],
            "conf",
        );
        g.output("confidence", &conf, &[Dim::batch()]);
    }
    let mean = vec![0.5; spec.channels];
    let std = vec![0.25; spec.channels];
    g.finish(&meta(spec.color, spec.size, &mean, &std)).unwrap()
}

/// GAP + Gemm + Softmax: probs are computable by hand from the mean of each input channel.
pub fn linear_model(
    channels: usize,
    color: ColorMode,
    size: (usize, usize),
    weight: &[f32],
    bias: &[f32],
    mean: &[f32],
    std: &[f32],
) -> fer_export::pb::ModelProto {
    let (c, k) = (channels as i64, LABELS.len() as i64);
    let mut g = GraphBuilder::new("linear");
    let x = g.input(
        "input",
        &[
            Dim::batch(),
            Dim::Fixed(c),
            Dim::Fixed(size.0 as i64),
            Dim::Fixed(size.1 as i64),
        ],
    );
    let pooled = g.global_avg_pool_flat(&x, "pool");
    let w = g.initializer("fc.weight", &[k, c], weight).unwrap();
    let b = g.initializer("fc.bias", &[k], bias).unwrap();
    let logits = g.linear(&pooled, &w, Some(&b), "fc");
    let probs = g.softmax(&logits, 1, "softmax");
    g.output("logits", &logits, &[Dim::batch(), Dim::Fixed(k)]);
    g.output("probs", &probs, &[Dim::batch(), Dim::Fixed(k)]);
    g.finish(&meta(color, size, mean, std)).unwrap()
}

/// A model whose input is `[N, 4]`: breaks the contract's rank-4 input.
pub fn rank2_model() -> fer_export::pb::ModelProto {
    let mut g = GraphBuilder::new("rank2");
    let x = g.input("input", &[Dim::batch(), Dim::Fixed(4)]);
    let w = g
        .initializer("fc.weight", &[4, 4], &lcg(16, 7, 1.0))
        .unwrap();
    let logits = g.linear(&x, &w, None, "fc");
    let probs = g.softmax(&logits, 1, "softmax");
    g.output("logits", &logits, &[Dim::batch(), Dim::Fixed(4)]);
    g.output("probs", &probs, &[Dim::batch(), Dim::Fixed(4)]);
    g.finish(&meta(ColorMode::Gray, (2, 2), &[0.5], &[0.5]))
        .unwrap()
}

/// `model` with extra metadata_props entries (keys [`meta`] does not write).
pub fn with_props(mut model: fer_export::pb::ModelProto, kv: &[(&str, &str)]) -> fer_export::pb::ModelProto {
    for (key, value) in kv {
        model.metadata_props.push(fer_export::pb::StringStringEntryProto {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    model
}

pub fn save(model: &fer_export::pb::ModelProto, path: &Path) -> PathBuf {
    fer_export::save(model, path).unwrap();
    path.to_path_buf()
}

/// A colourful test pattern (different per seed), so predictions differ between images.
pub fn pattern(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 40) % 256) as u8,
            ((y * 5 + x * seed) % 256) as u8,
            ((x * y + seed * 91) % 256) as u8,
        ])
    })
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG whose (valid, CRC-checked) header claims `width` x `height` RGB pixels, followed by a
/// token IDAT: tiny on disk, enormous if anything tried to decode it.
pub fn huge_png_header(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, adaptive filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A valid PNG cut in half.
pub fn truncated_png(path: &Path) {
    let full = path.with_extension("full.png");
    pattern(64, 64, 3).save(&full).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::remove_file(full).unwrap();
}
