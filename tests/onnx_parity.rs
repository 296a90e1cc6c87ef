//! The exported graph computes what the trained model computes: for each backbone and head, the tch
//! model in eval mode, ONNX Runtime and tract on the exported file give the same `logits`, `probs`
//! (and `cam`, `confidence` where the model has them) on random inputs and on real faces, for batch
//! 1 and 8 (fp32 ≤ 1e-4, fp16 ≤ 1e-2), with the same argmax.

use fer_runtime::{Backend, Device as OrtDevice, Model};
use fer_tests::{assert_close, temp_dir};
use fer_train::models::{Arch, Classifier, Head, HeadSpec, ModelSpec, StreamArch, VitConfig};
use fer_train::nn::{AttentionKind, RbConfig};
use fer_export::Metadata;
use ndarray::{Array4, ArrayView4};
use tch::{nn, Device, Kind, Tensor};

/// Held while drawing weights and inputs: tests run in parallel and torch has one global
/// generator, so unguarded draws would interleave and each run would check different numbers.
fn draw_lock() -> std::sync::MutexGuard<'static, ()> {
    static DRAW: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DRAW.lock().unwrap_or_else(|e| e.into_inner())
}

/// A model with random weights and non-trivial BN statistics (so the BN folding is exercised).
/// γ is drawn in [0.2, 0.7] as in trained residual networks: with γ ≈ 1 a random 16-block ResNet-50
/// grows its activations (and so every backend's rounding) by orders of magnitude, which no trained
/// model does. The head keeps its own init (only its BN statistics are drawn).
fn random_model(spec: &ModelSpec) -> (nn::VarStore, Classifier) {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Classifier::build(&vs.root(), spec).expect("build");
    let head = spec.head.prefixes(spec.arch);
    tch::no_grad(|| {
        // In name order: a HashMap's order changes from run to run, and with it every draw.
        for (name, mut t) in fer_train::checkpoint::model_tensors(&vs) {
            let in_head = head.iter().any(|p| name.starts_with(p.as_str()));
            if name.ends_with("running_mean") {
                t.copy_(&(Tensor::rand_like(&t) * 0.4 - 0.2));
            } else if name.ends_with("running_var") {
                t.copy_(&(Tensor::rand_like(&t) + 0.5));
            } else if t.dim() == 1 && name.ends_with("weight") && !in_head {
                t.copy_(&(Tensor::rand_like(&t) * 0.5 + 0.2)); // BN γ
            } else if t.dim() == 1 && !in_head {
                t.copy_(&(Tensor::rand_like(&t) * 0.2 - 0.1)); // BN β, conv biases
            }
        }
    });
    (vs, model)
}

/// The parameters whose scaling scales the logits exactly (eval mode): the last affine layer.
fn logit_layer(model: &Classifier) -> Option<&'static str> {
    match (&model.head, model.arch) {
        (Head::Linear(_), Arch::Mbv2) => Some("classifier.1"),
        (Head::Linear(_), _) => Some("fc"),
        (Head::Fc3(_), _) => Some("classifier.6"),
        (Head::Dan(_), _) => Some("bn"),
        // ln of a probability: its scale is the model's own.
        (Head::Rb(_), _) => None,
    }
}

/// Scales the classifier so the largest |logit| on `x` is 10, as in a trained model: the fp32
/// tolerance (1e-4 absolute) is then checked at a realistic logit magnitude, not at a tiny one.
fn realistic_logits(vs: &nn::VarStore, model: &Classifier, x: &Tensor) {
    let Some(layer) = logit_layer(model) else { return };
    let (logits, _) = tch::no_grad(|| model.forward_t(x, false));
    let s = 10.0 / logits.abs().max().double_value(&[]);
    let vars = vs.variables();
    tch::no_grad(|| {
        for suffix in ["weight", "bias"] {
            let _ = vars[&format!("{layer}.{suffix}")].shallow_clone().g_mul_scalar_(s);
        }
    });
}

fn to_array(t: &Tensor) -> Array4<f32> {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let v = Vec::<f32>::try_from(t.contiguous().flatten(0, -1)).unwrap();
    Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), v).unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.contiguous().flatten(0, -1)).unwrap()
}

fn backends() -> Vec<(&'static str, Backend)> {
    let mut b = vec![("tract", Backend::Tract)];
    if fer_runtime::ort_available() {
        b.push(("ort", Backend::Ort { device: OrtDevice::Cpu }));
    } else {
        eprintln!("SKIP ort: ONNX Runtime library not found (ORT_DYLIB_PATH); run scripts/setup.sh");
    }
    b
}

fn argmax_rows(v: &[f32], k: usize) -> Vec<usize> {
    v.chunks(k)
        .map(|r| r.iter().enumerate().fold(0, |best, (i, x)| if *x > r[best] { i } else { best }))
        .collect()
}

/// What tch computes in eval mode for the contract's outputs.
struct Expected {
    logits: Vec<f32>,
    probs: Vec<f32>,
    cam: Option<Vec<f32>>,
    confidence: Option<Vec<f32>>,
}

fn expected(model: &Classifier, x: &Tensor) -> Expected {
    tch::no_grad(|| {
        let (logits, f) = model.forward_t(x, false);
        let (probs, confidence) = match &model.head {
            Head::Rb(rb) => {
                let p = rb.forward_parts(&f, false).final_dist;
                let c = fer_train::nn::rb_confidence(&p).squeeze_dim(1);
                (p, Some(to_vec(&c)))
            }
            _ => (logits.softmax(1, Kind::Float), None),
        };
        Expected { logits: to_vec(&logits), probs: to_vec(&probs), cam: model.head.cam(&f).map(|c| to_vec(&c)), confidence }
    })
}

/// Exports `model` and compares every backend with tch on `x`: logits, probs, and cam and
/// confidence where the model has them.
fn check_parity(model: &Classifier, name: &str, x: &Tensor, fp16: bool) {
    let size = x.size()[2] as usize;
    let k = model.num_classes as usize;
    let meta = Metadata {
        labels: (0..k).map(|i| format!("c{i}")).collect(),
        input_size: (size, size),
        mean: vec![0.5; model.in_channels as usize],
        std: vec![0.5; model.in_channels as usize],
        ..Default::default()
    };
    let mut proto = model.to_onnx(&meta, true).expect("export");
    if fp16 {
        proto = fer_export::fp16::to_fp16(proto).expect("fp16");
    }
    let path = temp_dir(&format!("parity_{name}_{}", if fp16 { "fp16" } else { "fp32" })).join("m.onnx");
    fer_export::save(&proto, &path).unwrap();
    onnx_checker(&path);

    let want = expected(model, x);
    let xa = to_array(x);
    let tol = if fp16 { 1e-2 } else { 1e-4 };
    for (bname, backend) in backends() {
        let m = Model::load(&path, backend).unwrap_or_else(|e| panic!("{bname} loading {name}: {e}"));
        let out = m.predict_tensor(ArrayView4::from(&xa)).unwrap_or_else(|e| panic!("{bname} on {name}: {e}"));
        let got: Vec<f32> = out.logits.iter().copied().collect();
        let what = format!("{name} {} batch {} {bname}", if fp16 { "fp16" } else { "fp32" }, x.size()[0]);
        let scale = want.logits.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_close(&got, &want.logits, tol, 0.0, &format!("{what} logits (max |logit| {scale:.2})"));
        assert_eq!(argmax_rows(&got, k), argmax_rows(&want.logits, k), "{what}: argmax differs");
        let got_probs: Vec<f32> = out.probs.iter().copied().collect();
        assert_close(&got_probs, &want.probs, tol, 0.0, &format!("{what} probs"));
        assert_eq!(argmax_rows(&got_probs, k), argmax_rows(&want.probs, k), "{what}: argmax of probs differs");
        match (&want.cam, &out.cam) {
            (Some(want_cam), Some(got_cam)) => {
                let got_cam: Vec<f32> = got_cam.iter().copied().collect();
                // The logit is the spatial mean of the CAM (plus bias), so single CAM positions can be far
                // larger than the logits: hold them to the same relative precision (tol per 10 units).
                let cam_scale = want_cam.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert_close(&got_cam, want_cam, tol * cam_scale.max(1.0) / 10.0, 0.0, &format!("{what} (cam, max |cam| {cam_scale:.1})"));
            }
            (None, None) => {}
            (w, g) => panic!("{what}: cam expected {} but the file has {}", w.is_some(), g.is_some()),
        }
        match (&want.confidence, &out.confidence) {
            (Some(w), Some(g)) => assert_close(&g.to_vec(), w, tol, 0.0, &format!("{what} confidence")),
            (None, None) => {}
            (w, g) => panic!("{what}: confidence expected {} but the file has {}", w.is_some(), g.is_some()),
        }
    }
}

/// The reference ONNX checker (full check: types and shapes inferred through the whole graph).
fn onnx_checker(path: &std::path::Path) {
    let Some(python) = fer_tests::python_or_skip() else { return };
    let out = std::process::Command::new(python)
        .args(["-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "onnx.checker rejects {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn export_refuses_what_it_cannot_convert() {
    // A graph with a Cast cannot be converted to fp16 faithfully by our pass: refused by name.
    let mut g = fer_export::GraphBuilder::new("t");
    let x = g.input("input", &[fer_export::Dim::batch(), fer_export::Dim::Fixed(3)]);
    let y = g.op("Cast", &[&x], &[fer_export::Attr::int("to", 1)], "cast_me");
    g.output("logits", &y, &[fer_export::Dim::batch(), fer_export::Dim::Fixed(3)]);
    let m = g.finish(&Metadata::default()).unwrap();
    let e = fer_export::fp16::to_fp16(m).unwrap_err().to_string();
    assert!(e.contains("cannot export `cast_me/Cast`"), "{e}");
    // A graph without outputs is not written.
    let g = fer_export::GraphBuilder::new("empty");
    assert!(g.finish(&Metadata::default()).unwrap_err().to_string().contains("no outputs"));
}

/// The spec of an arch with its default head at `size` px, 3 channels, 7 classes.
fn spec(arch: Arch, size: i64) -> ModelSpec {
    ModelSpec { input_size: size, ..ModelSpec::new(arch, 3, 7, 0.0) }
}

/// Random inputs at batch 1 and 8 (fp32) and batch 2 in float16 (for models whose fp16 export is
/// not refused, see `Classifier::fp16_faithful`).
fn random_inputs(spec: &ModelSpec, name: &str) {
    let (c, size) = (spec.in_channels, spec.input_size);
    let (model, inputs) = {
        let _turn = draw_lock();
        let (vs, model) = random_model(spec);
        realistic_logits(&vs, &model, &Tensor::randn([8, c, size, size], (Kind::Float, Device::Cpu)));
        let inputs: Vec<(Tensor, bool)> = [(1, false), (8, false), (2, true)]
            .into_iter()
            .filter(|&(_, fp16)| !fp16 || model.fp16_faithful())
            .map(|(batch, fp16)| (Tensor::randn([batch, c, size, size], (Kind::Float, Device::Cpu)), fp16))
            .collect();
        (model, inputs)
    };
    for (x, fp16) in &inputs {
        check_parity(&model, name, x, *fp16);
    }
}

#[test]
fn resnet18_parity_random_inputs() {
    random_inputs(&spec(Arch::Resnet18, 64), "resnet18");
}

#[test]
fn mobilenet_v2_parity_random_inputs() {
    random_inputs(&spec(Arch::Mbv2, 64), "mbv2");
}

/// The 48 px edge recipe's MobileNetV2 at output stride 16 (a 3x3 map) and a ResNet-18 at 8.
#[test]
fn output_stride_parity_random_inputs() {
    random_inputs(&ModelSpec { output_stride: Some(16), ..spec(Arch::Mbv2, 48) }, "mbv2_os16");
    random_inputs(&ModelSpec { output_stride: Some(8), ..spec(Arch::Resnet18, 48) }, "resnet18_os8");
}

#[test]
fn resnet50_parity_random_inputs() {
    random_inputs(&spec(Arch::Resnet50, 64), "resnet50");
}

#[test]
fn se_resnet50_parity_random_inputs() {
    random_inputs(&spec(Arch::SeResnet50, 64), "se_resnet50");
}

/// IVSA at the seed's 48x48 gray input, with each attention of the ablation.
#[test]
fn ivsa_parity_random_inputs() {
    for (att, name) in [(AttentionKind::Sab, "ivsa_sab"), (AttentionKind::Cbam, "ivsa_cbam"), (AttentionKind::None, "ivsa_none")] {
        let s = ModelSpec { in_channels: 1, attention: Some(att), ..spec(Arch::Ivsa, 48) };
        random_inputs(&s, name);
    }
}

/// GReFEL's reliability balancing head on ResNet-18: `probs` is the corrected distribution and
/// the file has `confidence`.
#[test]
fn grefel_rb_parity_random_inputs() {
    let s = ModelSpec { head: HeadSpec::Rb(RbConfig::default()), ..spec(Arch::Resnet18, 64) };
    random_inputs(&s, "grefel_rb_r18");
}

/// DAN's MAN (4 heads) + AFN on ResNet-18, with its CAM.
#[test]
fn dan_parity_random_inputs() {
    let s = ModelSpec { head: HeadSpec::Dan { heads: 4 }, ..spec(Arch::Resnet18, 64) };
    random_inputs(&s, "dan_r18");
}

/// GReFEL's cross-attention ViT (ResNet-18 image stream, MobileNetV2 landmark stream) at 48 px
/// (3x3 windows; 4x4, 2x2 and 1 window per level) with the linear head and its CAM, and with the
/// reliability balancing head on a MobileNetV2 image stream at 32 px. float32 only (see
/// `Classifier::fp16_faithful`).
#[test]
fn grefel_vit_parity_random_inputs() {
    random_inputs(&spec(Arch::GrefelVit, 48), "grefel_vit");
    // Its float16 export measured 0.4–1.3e-2 against tch (layer norms, softmaxes): refused.
    let (_, vit) = {
        let _turn = draw_lock();
        random_model(&spec(Arch::GrefelVit, 48))
    };
    assert!(vit.head.fp16_faithful() && !vit.fp16_faithful());
    let vit = VitConfig { image: StreamArch::Mbv2, landmark: StreamArch::Resnet18, cross_heads: [2, 4, 4], dim: 64, heads: 4, ..Default::default() };
    let rb = RbConfig { tokens: 4, heads: 2, ..Default::default() };
    let s = ModelSpec { vit: Some(vit), head: HeadSpec::Rb(rb), ..spec(Arch::GrefelVit, 32) };
    random_inputs(&s, "grefel_vit_rb");
}

/// Real faces: FER2013 val images preprocessed by the trainer's eval path.
#[test]
fn parity_on_real_faces() {
    let Some(root) = fer_tests::fer2013_or_skip() else { return };
    let data: fer_train::data::DataSpec = serde_yaml::from_str(&format!(
        "{{format: folder, root: '{}', classes: [angry, disgust, fear, happy, neutral, sad, surprise], every: 400}}",
        root.display()
    ))
    .unwrap();
    let ds = fer_train::data::load_split(&data, "val").unwrap();
    assert!(ds.len() >= 8, "need 8 faces, got {}", ds.len());
    let aug = fer_train::augment::Augment {
        size: 112,
        pad: 0,
        flip: false,
        erase: None,
        affine: None,
        mean: vec![0.5; 3],
        std: vec![0.5; 3],
        channels: 3,
        eval_view: fer_train::augment::EvalView::Resize,
    };
    let x8 = aug.eval(&ds.images.narrow(0, 0, 8));
    for (arch, name) in [(Arch::Mbv2, "mbv2_faces"), (Arch::Resnet18, "resnet18_faces")] {
        let (vs, model) = {
            let _turn = draw_lock();
            random_model(&spec(arch, 112))
        };
        realistic_logits(&vs, &model, &x8);
        check_parity(&model, name, &x8.narrow(0, 0, 1), false);
        check_parity(&model, name, &x8, false);
    }
}

/// The runtime's preprocessing of an image file is the trainer's eval view of the same pixels, for
/// both views (`fer.eval_view` resize / centre_crop, at the native size and upsampled) and for the
/// ten-crop views (`fer-run --tta ten-crop` against `train.ten_crop_eval`). The trainer resizes in
/// float (torch's bilinear), the runtime in 8 bits (the image crate's Triangle filter, the same
/// interpolation when upsampling): they differ by the rounding, at most half a grey level.
#[test]
fn runtime_views_match_the_trainers() {
    use fer_runtime::{ColorMode, EvalView as RtView, Preprocessor, Tta};
    use fer_train::augment::{Augment, EvalView};
    let (w, h) = (48u32, 48u32);
    let faces: Vec<image::GrayImage> = (0..3u32)
        .map(|k| image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 37 + y * 101 + k * 59) * (x + k + 1) % 256) as u8])))
        .collect();
    let raw: Vec<u8> = faces.iter().flat_map(|f| f.as_raw().clone()).collect();
    let x_u8 = Tensor::from_slice(&raw).view([3, 1, h as i64, w as i64]);
    // Half a grey level in normalised units (std 0.5), plus float slack.
    let tol = 0.5 / 255.0 / 0.5 + 1e-5;
    for (size, pad, view) in [(48, 4, EvalView::CentreCrop), (48, 4, EvalView::Resize), (56, 8, EvalView::CentreCrop), (56, 8, EvalView::Resize)] {
        let aug = Augment { size, pad, eval_view: view, ..Augment::peer(size) };
        let pre = Preprocessor {
            size: (size as usize, size as usize),
            color: ColorMode::Gray,
            channels: 3,
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
            crop_pad: pad as usize,
            view: if view == EvalView::CentreCrop { RtView::CentreCrop } else { RtView::Resize },
        };
        let what = format!("size {size}, pad {pad}, {}", view.name());
        let imgs: Vec<image::DynamicImage> = faces.iter().cloned().map(image::DynamicImage::ImageLuma8).collect();
        let trainer = to_array(&aug.eval(&x_u8));
        let runtime = pre.batch(&imgs);
        let diff = (&trainer - &runtime).iter().fold(0f32, |m, d| m.max(d.abs()));
        assert!(diff <= tol, "{what}: eval views differ by {diff}");
        // Ten-crop: the trainer's corners, centre, then mirrors; the runtime's centre first.
        let tv: Vec<Array4<f32>> = aug.ten_crop(&x_u8).iter().map(to_array).collect();
        let rv = pre.views_batch(&imgs, Tta::TenCrop);
        let order = [4, 0, 1, 2, 3, 9, 5, 6, 7, 8];
        for (i, _) in imgs.iter().enumerate() {
            for (k, &t) in order.iter().enumerate() {
                let a = tv[t].index_axis(ndarray::Axis(0), i);
                let b = rv.index_axis(ndarray::Axis(0), i * 10 + k);
                let diff = (&a - &b).iter().fold(0f32, |m, d| m.max(d.abs()));
                assert!(diff <= tol, "{what}: image {i}, ten-crop view {k} (trainer's {t}) differs by {diff}");
            }
        }
    }
}

/// `fer_export::ensemble` of two exported ResNet-18s, at 64 and 32 px, with the same parameter
/// names: ONNX Runtime and tract on the joined file give what tch gives for the mean of the two
/// models' probabilities, the small one on the input halved by the graph's bilinear Resize (at
/// scale 1/2 with half-pixel centres that is a 2x2 average pool), and the mean of their maps (the
/// small one's 1x1 map enlarged to 2x2 is its value everywhere); softmax of the logits is probs.
#[test]
fn an_ensemble_computes_the_mean_of_its_members() {
    let meta = |size: usize| Metadata {
        labels: (0..7).map(|i| format!("c{i}")).collect(),
        input_size: (size, size),
        mean: vec![0.5; 3],
        std: vec![0.5; 3],
        ..Default::default()
    };
    let (big, small, x) = {
        let _turn = draw_lock();
        let (vs_big, big) = random_model(&spec(Arch::Resnet18, 64));
        let x = Tensor::randn([3, 3, 64, 64], (Kind::Float, Device::Cpu));
        realistic_logits(&vs_big, &big, &x);
        let (vs_small, small) = random_model(&spec(Arch::Resnet18, 32));
        // random_model draws from one seed: the small one's classifier redrawn, so the two differ.
        let _ = tch::no_grad(|| vs_small.variables()["fc.weight"].shallow_clone().normal_(0.0, 0.05));
        realistic_logits(&vs_small, &small, &x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>));
        (big, small, x)
    };
    let members = [("big.onnx", big.to_onnx(&meta(64), true).unwrap()), ("small.onnx", small.to_onnx(&meta(32), true).unwrap())];
    let (joined, built) = fer_export::ensemble::ensemble(&members).expect("ensemble");
    assert_eq!((built.input_size, built.cam.clone()), ((64, 64), Ok((2, 2))));
    let path = temp_dir("parity_ensemble").join("pair.onnx");
    fer_export::save(&joined, &path).unwrap();
    onnx_checker(&path);

    let halved = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
    let (a, b) = (expected(&big, &x), expected(&small, &halved));
    let probs: Vec<f32> = a.probs.iter().zip(&b.probs).map(|(p, q)| (p + q) / 2.0).collect();
    let (cam_a, cam_b) = (a.cam.unwrap(), b.cam.unwrap());
    assert_eq!((cam_a.len(), cam_b.len()), (3 * 7 * 4, 3 * 7));
    let cam: Vec<f32> = cam_a.iter().enumerate().map(|(i, v)| (v + cam_b[i / 4]) / 2.0).collect();
    // Guards that make the comparison mean something: the members differ, and the small one's maps
    // on every other pixel (what a nearest-neighbour Resize would feed it) are far from those on
    // the 2x2 mean (a random MobileNetV2 was too insensitive to its input for this, a ResNet is not).
    let apart = a.logits.iter().zip(&b.logits).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(apart > 1.0, "the members must differ for the test to mean anything ({apart})");
    let nearest = expected(&small, &x.slice(2, 0, 64, 2).slice(3, 0, 64, 2)).cam.unwrap();
    let moved = cam_b.iter().zip(&nearest).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(moved > 1e-2, "the small member barely sees its input ({moved})");
    let xa = to_array(&x);
    for (bname, backend) in backends() {
        let m = Model::load(&path, backend).unwrap_or_else(|e| panic!("{bname} loading the ensemble: {e}"));
        let out = m.predict_tensor(ArrayView4::from(&xa)).unwrap_or_else(|e| panic!("{bname} on the ensemble: {e}"));
        let got: Vec<f32> = out.probs.iter().copied().collect();
        assert_close(&got, &probs, 1e-5, 0.0, &format!("ensemble {bname} probs"));
        let softmax: Vec<f32> = out.logits.rows().into_iter().flat_map(|r| {
            let e: Vec<f32> = r.iter().map(|v| v.exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        }).collect();
        assert_close(&softmax, &probs, 1e-5, 0.0, &format!("ensemble {bname} softmax(logits)"));
        let got_cam: Vec<f32> = out.cam.expect("cam").iter().copied().collect();
        let cam_scale = cam.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_close(&got_cam, &cam, 1e-4 * cam_scale.max(1.0) / 10.0, 0.0, &format!("ensemble {bname} cam"));
    }
}

/// `fer-run eval` and `fer-train eval` score a confusion matrix with two copies of the same code
/// (the runtime depends on no other fer crate): the same accuracy, mean class accuracy and
/// macro-F1, and the same report text, line for line, so a deployed file's report can be diffed
/// against its checkpoint's. Pseudo-random matrices, including classes with no faces, no
/// predictions, or neither, and an all-zero matrix.
#[test]
fn eval_reports_agree() {
    let labels: Vec<String> = ["angry", "disgust", "fear", "happy", "a-long-label"].iter().map(|s| s.to_string()).collect();
    let mut state = 12345u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    for case in 0..50 {
        let k = 2 + case % 4;
        let mut confusion: Vec<Vec<u64>> = (0..k).map(|_| (0..k).map(|_| next() % 40).collect()).collect();
        match case % 5 {
            1 => confusion[0].iter_mut().for_each(|v| *v = 0), // no faces of class 0
            2 => confusion.iter_mut().for_each(|row| row[1] = 0), // class 1 never predicted
            3 => {
                confusion[1].iter_mut().for_each(|v| *v = 0);
                confusion.iter_mut().for_each(|row| row[1] = 0); // class 1 absent from both
            }
            4 if case == 4 => confusion.iter_mut().flatten().for_each(|v| *v = 0),
            _ => {}
        }
        let trained = fer_train::metrics::Metrics::from_confusion(confusion.clone());
        let deployed = fer_runtime::metrics::Scores::from_confusion(&labels[..k], confusion.clone());
        for (what, a, b) in [
            ("accuracy", trained.accuracy, deployed.accuracy),
            ("mean class accuracy", trained.mean_class_accuracy, deployed.mean_class_accuracy),
            ("macro-F1", trained.macro_f1, deployed.macro_f1),
        ] {
            assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b} on {confusion:?}");
        }
        assert_eq!(fer_train::eval::report(&trained, &labels[..k]), deployed.report(), "{confusion:?}");
    }
}
