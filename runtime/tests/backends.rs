//! Both backends against each other and against hand computations, through the public API.

mod common;

use common::*;
use fer_export::ColorMode;
use fer_runtime::{entropy_confidence, Backend, Device, FerError, Model};
use image::{DynamicImage, Rgb, RgbImage};
use ndarray::{Array4, ArrayView, Dimension};

fn assert_close<D: Dimension>(a: ArrayView<f32, D>, b: ArrayView<f32, D>, atol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let worst = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= atol, "{what}: max |diff| = {worst} > {atol}");
}

fn random_batch(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Array4<f32> {
    Array4::from_shape_vec((n, c, h, w), lcg(n * c * h * w, seed, 2.0)).unwrap()
}

#[test]
fn ort_and_tract_agree_for_batch_1_and_8() {
    if !ort_ready("ort_and_tract_agree_for_batch_1_and_8") {
        return;
    }
    let dir = tmpdir("parity");
    let spec = ConvSpec::rgb_with_cam((20, 16), 11);
    let path = save(&conv_model(&spec), &dir.join("conv.onnx"));
    let ort = Model::load(&path, ORT_CPU).unwrap();
    let tract = Model::load(&path, Backend::Tract).unwrap();
    assert!(
        ort.backend_name().starts_with("onnxruntime"),
        "{}",
        ort.backend_name()
    );
    assert_eq!(tract.backend_name(), "tract");
    // 8, then 1, then 8 again: tract's per-batch-size plans must not get mixed up.
    for (n, seed) in [(8, 1), (1, 2), (8, 3)] {
        let x = random_batch(n, 3, 20, 16, seed);
        let (a, b) = (
            ort.predict_tensor(x.view()).unwrap(),
            tract.predict_tensor(x.view()).unwrap(),
        );
        assert_close(a.logits.view(), b.logits.view(), 1e-4, "logits");
        assert_close(a.probs.view(), b.probs.view(), 1e-4, "probs");
        assert_close(
            a.cam.as_ref().unwrap().view(),
            b.cam.as_ref().unwrap().view(),
            1e-4,
            "cam",
        );
        assert_eq!(a.cam.unwrap().dim(), (n, 4, 20, 16));
        // Rows are independent: row 0 of the batch equals the same image run alone.
        if n == 8 {
            let one = tract
                .predict_tensor(x.slice(ndarray::s![0..1, .., .., ..]))
                .unwrap();
            assert_close(
                one.probs.row(0),
                b.probs.row(0),
                1e-5,
                "batch row 0 vs alone",
            );
        }
    }
    // Same images through the whole image path on both backends.
    let imgs: Vec<DynamicImage> = (0..8)
        .map(|i| DynamicImage::ImageRgb8(pattern(30 + i, 25 + 2 * i, i)))
        .collect();
    let (pa, pb) = (
        ort.predict_batch(&imgs).unwrap(),
        tract.predict_batch(&imgs).unwrap(),
    );
    for (a, b) in pa.iter().zip(&pb) {
        assert_eq!(a.label, b.label);
        for ((la, va), (lb, vb)) in a.probs.iter().zip(&b.probs) {
            assert_eq!(la, lb);
            assert!((va - vb).abs() <= 1e-4, "{la}: {va} vs {vb}");
        }
    }
}

/// A file whose weights are int8 behind DequantizeLinear (`fer_export::int8`): the model says so,
/// both backends fold them into the same float32 weights (they agree as on float32 files), and
/// the answers stay within int8 rounding of the float32 original's.
#[test]
fn int8_weight_files_agree_across_backends_and_with_their_float32_original() {
    if !ort_ready("int8_weight_files_agree_across_backends_and_with_their_float32_original") {
        return;
    }
    let dir = tmpdir("int8");
    let spec = ConvSpec::rgb_with_cam((20, 16), 21);
    let original = save(&conv_model(&spec), &dir.join("f32.onnx"));
    let (q, report) = fer_export::int8::quantize_weights(conv_model(&spec), 1).unwrap();
    assert_eq!(report.tensors, 3, "{report:?}: the conv, the classifier and the CAM's 1x1 conv");
    let path = save(&q, &dir.join("int8.onnx"));
    let ort = Model::load(&path, ORT_CPU).unwrap();
    let tract = Model::load(&path, Backend::Tract).unwrap();
    assert_eq!(ort.info().int8_weights, 3);
    let reference = Model::load(&original, ORT_CPU).unwrap();
    assert_eq!(reference.info().int8_weights, 0);
    let x = random_batch(4, 3, 20, 16, 5);
    let (a, b, r) = (
        ort.predict_tensor(x.view()).unwrap(),
        tract.predict_tensor(x.view()).unwrap(),
        reference.predict_tensor(x.view()).unwrap(),
    );
    assert_close(a.logits.view(), b.logits.view(), 1e-4, "int8 file: ORT vs tract logits");
    assert_close(a.cam.as_ref().unwrap().view(), b.cam.as_ref().unwrap().view(), 1e-4, "cam");
    let scale = r.logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a
        .logits
        .iter()
        .zip(r.logits.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        scale > 1.0 && worst > 0.0 && worst <= 0.02 * scale,
        "int8 vs float32 logits: {worst} (largest {scale})"
    );
}

/// softmax(W · ((v / 255 − mean) / std) + b) for a solid-colour image, by hand.
fn hand_probs(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let k = b.len();
    let logits: Vec<f32> = (0..k)
        .map(|i| {
            b[i] + x
                .iter()
                .enumerate()
                .map(|(c, v)| w[i * x.len() + c] * v)
                .sum::<f32>()
        })
        .collect();
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Tract];
    if ort_ready("hand computation on ONNX Runtime") {
        v.push(ORT_CPU);
    }
    v
}

#[test]
fn probs_match_a_hand_computation_rgb_gray_and_gray_replicated() {
    let dir = tmpdir("hand");
    let (r, g, b) = (200u8, 40u8, 90u8);
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(37, 23, Rgb([r, g, b])));
    let gray = (0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32).round();
    let bias = [0.1, -0.2, 0.05, 0.0];
    // (channels, colour, mean, std, expected per-channel pixel value)
    type Case = (usize, ColorMode, Vec<f32>, Vec<f32>, Vec<f32>);
    let cases: Vec<Case> = vec![
        (
            3,
            ColorMode::Rgb,
            vec![0.485, 0.456, 0.406],
            vec![0.229, 0.224, 0.225],
            vec![r as f32, g as f32, b as f32],
        ),
        (1, ColorMode::Gray, vec![0.5], vec![0.5], vec![gray]),
        (
            3,
            ColorMode::Gray,
            vec![0.1, 0.5, 0.9],
            vec![0.2, 0.5, 1.0],
            vec![gray; 3],
        ),
    ];
    for (i, (c, color, mean, std, v)) in cases.into_iter().enumerate() {
        let w = lcg(4 * c, 40 + i as u64, 1.5);
        let path = save(
            &linear_model(c, color, (6, 5), &w, &bias, &mean, &std),
            &dir.join(format!("lin{i}.onnx")),
        );
        let x: Vec<f32> = (0..c)
            .map(|ch| (v[ch] / 255.0 - mean[ch]) / std[ch])
            .collect();
        let want = hand_probs(&x, &w, &bias);
        for backend in backends() {
            let model = Model::load(&path, backend).unwrap();
            assert_eq!(model.info().channels, c);
            let p = model.predict_image(&img).unwrap();
            let got: Vec<f32> = p.probs.iter().map(|(_, v)| *v).collect();
            for (gv, wv) in got.iter().zip(&want) {
                assert!(
                    (gv - wv).abs() <= 1e-5,
                    "case {i} on {}: {got:?} vs {want:?}",
                    model.backend_name()
                );
            }
            let best = want
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            assert_eq!((p.class_index, p.label.as_str()), (best, LABELS[best]));
            // No `confidence` output: 1 − H(p)/ln K of these probabilities.
            let h: f32 = want.iter().map(|q| -q * q.ln()).sum();
            assert!((p.confidence - (1.0 - h / 4f32.ln())).abs() < 1e-5);
            assert!((p.confidence - entropy_confidence(&got)).abs() < 1e-6);
        }
    }
}

#[test]
fn confidence_output_is_used_when_present_and_cam_is_the_predicted_class() {
    let dir = tmpdir("confidence");
    let spec = ConvSpec {
        cam: true,
        confidence: true,
        ..ConvSpec::gray(12, 5)
    };
    let path = save(&conv_model(&spec), &dir.join("conf.onnx"));
    for backend in backends() {
        let model = Model::load(&path, backend).unwrap();
        assert!(model.info().has_cam() && model.info().has_confidence());
        let imgs: Vec<DynamicImage> = (0..3)
            .map(|i| DynamicImage::ImageRgb8(pattern(40, 40, i + 1)))
            .collect();
        let x = model.preprocessor().batch(&imgs);
        let raw = model.predict_tensor(x.view()).unwrap();
        for (i, p) in model.predict_batch(&imgs).unwrap().iter().enumerate() {
            let max_p = p.probs.iter().map(|(_, v)| *v).fold(0.0, f32::max);
            // The model's confidence is max(probs), which differs from the entropy formula.
            assert!(
                (p.confidence - max_p).abs() < 1e-6,
                "{} vs {max_p}",
                p.confidence
            );
            assert!(
                (p.confidence
                    - entropy_confidence(&p.probs.iter().map(|(_, v)| *v).collect::<Vec<_>>()))
                .abs()
                    > 1e-3
            );
            let cam = p.cam.as_ref().unwrap();
            let want = raw
                .cam
                .as_ref()
                .unwrap()
                .slice(ndarray::s![i, p.class_index, .., ..])
                .to_owned();
            assert_close(cam.view(), want.view(), 1e-6, "cam of predicted class");
        }
    }
}

#[test]
fn metadata_drives_the_model_description() {
    let dir = tmpdir("meta");
    let spec = ConvSpec {
        channels: 3,
        color: ColorMode::Gray,
        size: (14, 10),
        cam: false,
        confidence: false,
        seed: 1,
    };
    let path = save(&conv_model(&spec), &dir.join("m.onnx"));
    let model = Model::load(&path, Backend::Tract).unwrap();
    let m = model.metadata();
    assert_eq!(m.labels, LABELS);
    assert_eq!(m.input_size, (14, 10));
    assert_eq!(m.color, fer_runtime::ColorMode::Gray);
    assert_eq!(
        (m.mean.clone(), m.std.clone()),
        (vec![0.5; 3], vec![0.25; 3])
    );
    assert_eq!(
        (m.method.as_deref(), m.val_accuracy),
        (Some("eac"), Some(0.5))
    );
    assert_eq!(
        model.preprocess(&DynamicImage::new_luma8(50, 50)).shape(),
        &[3, 14, 10]
    );
    assert!(model.info().notices.is_empty());
}

/// Subnormal weights (slow on Intel CPUs) are reported with the fix, and change no output.
#[test]
fn subnormal_weights_get_a_notice() {
    let dir = tmpdir("subnormal");
    let (mut weight, bias) = (lcg(LABELS.len() * 3, 3, 1.0), lcg(LABELS.len(), 4, 0.1));
    (weight[0], weight[5]) = (0.0, 0.0);
    let mut proto = linear_model(3, ColorMode::Rgb, (4, 4), &weight, &bias, &[0.5; 3], &[0.5; 3]);
    let clean = Model::load(save(&proto, &dir.join("clean.onnx")), Backend::Tract).unwrap();
    assert!(clean.info().notices.is_empty(), "{:?}", clean.info().notices);
    // Those two zero weights become subnormal, as BatchNorm folding can leave them.
    let fc = proto.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name == "fc.weight").unwrap();
    let mut values: Vec<f32> = fc.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(values.len(), weight.len(), "the builder stores weights as raw data");
    values[0] = 1e-40;
    values[5] = -3e-39;
    fc.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = save(&proto, &dir.join("subnormal.onnx"));
    let model = Model::load(&path, Backend::Tract).unwrap();
    let notice = model.info().notices.iter().find(|n| n.contains("subnormal")).expect("a notice");
    assert!(notice.starts_with(&format!("2 of {} float32 weights are subnormal", weight.len() + bias.len())), "{notice}");
    assert!(notice.contains("flush_subnormals"), "{notice}");
    assert_eq!((clean.info().subnormal_weights, model.info().subnormal_weights), (0, 2));
    let x = random_batch(2, 3, 4, 4, 9);
    let (a, b) = (clean.predict_tensor(x.view()).unwrap(), model.predict_tensor(x.view()).unwrap());
    assert_close(a.probs.view(), b.probs.view(), 1e-6, "probs with subnormal weights");
}

#[test]
fn broken_models_and_inputs_give_clear_errors() {
    let dir = tmpdir("broken-models");
    let rank2 = save(&rank2_model(), &dir.join("rank2.onnx"));
    let e = Model::load(&rank2, Backend::Tract).unwrap_err();
    assert!(matches!(e, FerError::Contract { .. }), "{e:?}");
    assert!(
        e.to_string().contains("rank 2") && e.to_string().contains("rank2.onnx"),
        "{e}"
    );

    let text = dir.join("notes.onnx");
    std::fs::write(&text, "this is not a protobuf, just some text\n").unwrap();
    let e = Model::load(&text, Backend::Tract).unwrap_err();
    assert!(matches!(e, FerError::NotOnnx { .. }), "{e:?}");
    assert!(e.to_string().contains("notes.onnx"), "{e}");

    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Model::load(&empty, Backend::Tract),
        Err(FerError::NotOnnx { .. })
    ));

    let e = Model::load(dir.join("absent.onnx"), Backend::Tract).unwrap_err();
    assert!(
        matches!(e, FerError::Io { .. }) && e.to_string().contains("absent.onnx"),
        "{e}"
    );

    let spec = ConvSpec::gray(8, 2);
    let model = Model::load(
        save(&conv_model(&spec), &dir.join("ok.onnx")),
        Backend::Tract,
    )
    .unwrap();
    let e = model
        .predict_tensor(Array4::zeros((2, 3, 8, 8)).view())
        .unwrap_err();
    assert!(matches!(e, FerError::InputShape { .. }), "{e:?}");
    assert!(matches!(
        model.predict_batch(&[]),
        Err(FerError::EmptyBatch)
    ));
}

#[test]
fn one_model_serves_many_threads() {
    let dir = tmpdir("threads");
    let spec = ConvSpec {
        cam: false,
        ..ConvSpec::rgb_with_cam((10, 10), 9)
    };
    let path = save(&conv_model(&spec), &dir.join("m.onnx"));
    for backend in backends() {
        let model = Model::load(&path, backend).unwrap();
        let imgs: Vec<DynamicImage> = (0..4)
            .map(|i| DynamicImage::ImageRgb8(pattern(20, 20, i)))
            .collect();
        // Probabilities, compared exactly: a backend that keeps run state between calls (tract
        // keeps its plan's states) must not carry anything from one image into the next.
        let probs = |im: &DynamicImage| model.predict_image(im).unwrap().probs;
        let serial: Vec<_> = imgs.iter().map(probs).collect();
        let parallel: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = imgs.iter().map(|im| s.spawn(move || probs(im))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(serial, parallel, "{backend:?}");
        let mut reversed: Vec<_> = imgs.iter().rev().map(probs).collect();
        reversed.reverse();
        assert_eq!(serial, reversed, "{backend:?}");
        assert_ne!(serial[0], serial[1], "the test images must give different outputs");
    }
}

#[test]
fn cuda_request_without_a_cuda_provider_falls_back_to_cpu() {
    if !ort_ready("cuda_request_without_a_cuda_provider_falls_back_to_cpu") {
        return;
    }
    let dir = tmpdir("cuda-fallback");
    let spec = ConvSpec::gray(8, 4);
    let path = save(&conv_model(&spec), &dir.join("m.onnx"));
    let cpu = Model::load(&path, ORT_CPU).unwrap();
    for device in [Device::Cuda, Device::TensorRt] {
        let model = Model::load(&path, Backend::Ort { device }).unwrap();
        // The PyPI wheel here is CPU-only; on a CUDA build the name says CUDA instead.
        eprintln!("{device} -> {}", model.backend_name());
        assert!(
            model.backend_name().contains("CPU"),
            "{}",
            model.backend_name()
        );
        let x = random_batch(2, 1, 8, 8, 1);
        let (a, b) = (
            model.predict_tensor(x.view()).unwrap(),
            cpu.predict_tensor(x.view()).unwrap(),
        );
        assert_close(a.probs.view(), b.probs.view(), 1e-5, "fallback probs");
    }
}

/// `Model::with_tta`: flip averages the face's and its mirror's outputs (and keeps the plain
/// view's CAM); ten-crop averages the ten views `Preprocessor::views` cuts, and is refused, by the
/// key it needs, on a file without `fer.crop_pad`.
#[test]
fn tta_averages_the_views_and_ten_crop_needs_the_crop_pad() {
    use fer_runtime::Tta;
    let dir = tmpdir("tta");
    let spec = ConvSpec {
        cam: true,
        confidence: true,
        ..ConvSpec::gray(16, 5)
    };
    let plain = save(&conv_model(&spec), &dir.join("plain.onnx"));
    let padded = save(&with_props(conv_model(&spec), &[("fer.crop_pad", "4")]), &dir.join("padded.onnx"));
    for backend in backends() {
        let e = Model::load(&plain, backend)
            .unwrap()
            .with_tta(Tta::TenCrop)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fer.crop_pad"), "{e}");

        // At the input size the resize is the identity, so the mirror view is exactly the
        // mirrored image.
        let img = DynamicImage::ImageRgb8(pattern(16, 16, 3));
        let m = Model::load(&plain, backend).unwrap();
        let a = m.predict_image(&img).unwrap();
        let b = m.predict_image(&img.fliph()).unwrap();
        let f = Model::load(&plain, backend)
            .unwrap()
            .with_tta(Tta::Flip)
            .unwrap()
            .predict_image(&img)
            .unwrap();
        for (i, (name, p)) in f.probs.iter().enumerate() {
            let want = (a.probs[i].1 + b.probs[i].1) / 2.0;
            assert!((p - want).abs() < 1e-6, "{backend:?} flip: P({name}) {p} vs {want}");
        }
        assert!((f.confidence - (a.confidence + b.confidence) / 2.0).abs() < 1e-6);
        assert_ne!(a.probs, b.probs, "the pattern is not symmetric: the test needs two views that differ");
        let x = m.preprocess(&img).insert_axis(ndarray::Axis(0));
        let plain_cam = m.predict_tensor(x.view()).unwrap().cam.unwrap();
        let plain_cam = plain_cam.slice(ndarray::s![0, f.class_index, .., ..]);
        assert_eq!(f.cam.as_ref().unwrap().view(), plain_cam, "the CAM is the plain view's");

        let ten = Model::load(&padded, backend).unwrap().with_tta(Tta::TenCrop).unwrap();
        let big = DynamicImage::ImageRgb8(pattern(24, 24, 4));
        let views = ten.preprocessor().views(&big, Tta::TenCrop);
        let x = ndarray::stack(ndarray::Axis(0), &views.iter().map(|v| v.view()).collect::<Vec<_>>()).unwrap();
        let want = ten.predict_tensor(x.view()).unwrap().probs.mean_axis(ndarray::Axis(0)).unwrap();
        let got = ten.predict_image(&big).unwrap();
        for (i, (name, p)) in got.probs.iter().enumerate() {
            assert!((p - want[i]).abs() < 1e-6, "{backend:?} ten-crop: P({name}) {p} vs {}", want[i]);
        }
    }
}
