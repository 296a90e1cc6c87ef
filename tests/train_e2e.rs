//! `fer-train` end to end on CPU with a synthetic image-folder dataset the test writes itself:
//! a short run learns, resuming from a checkpoint continues exactly where an uninterrupted run
//! goes. (CLI errors: trainer/tests/cli.rs.)

use fer_tests::temp_dir;
use fer_train::config::Config;
use fer_train::export::WeightStorage;
use fer_train::train::Trainer;
use std::path::{Path, PathBuf};

const CLASSES: [&str; 3] = ["dark", "bright", "stripes"];

/// Training seeds torch's one global generator: tests in this file take turns, or one test's
/// draws would land between another's seed and its use.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// 3 easy classes of 24x24 gray images with noise: dark, bright, vertical stripes.
fn write_dataset(root: &Path, per_class: usize) {
    let mut seed = 1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 64) as i32 - 32
    };
    for split in ["train", "val"] {
        for (c, name) in CLASSES.iter().enumerate() {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img = image::GrayImage::from_fn(24, 24, |x, _| {
                    let base = match c {
                        0 => 60,
                        1 => 190,
                        _ => if (x / 3) % 2 == 0 { 40 } else { 210 },
                    };
                    image::Luma([(base + rnd()).clamp(0, 255) as u8])
                });
                img.save(dir.join(format!("{i:03}.png"))).unwrap();
            }
        }
    }
}

fn config(root: &Path, out: &Path, name: &str, epochs: usize, method: &str) -> Config {
    config_with(root, out, name, epochs, "{ arch: resnet18, input_size: 32, in_channels: 3 }", method, ADAM)
}

const ADAM: &str = "{ name: adam, lr: 0.001, weight_decay: 0.0001 }";

/// A run on the synthetic set with any model, method and optimiser (YAML flow mappings).
fn config_with(root: &Path, out: &Path, name: &str, epochs: usize, model: &str, method: &str, optimizer: &str) -> Config {
    let yaml = format!(
        r#"
name: {name}
out_dir: '{out}'
data: {{ format: folder, root: '{root}', classes: [dark, bright, stripes], color: gray }}
splits: {{ train: train, val: val, cache_dir: null }}
model: {model}
method: {method}
train:
  epochs: {epochs}
  batch_size: 16
  eval_batch_size: 64
  optimizer: {optimizer}
  scheduler: {{ name: exponential, gamma: 0.9 }}
  crop_pad: 4
  device: cpu
  threads: 1
  export: false
"#,
        out = out.display(),
        root = root.display()
    );
    Config::from_yaml(&yaml, &[]).unwrap()
}

fn dataset(tag: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let root = dir.join("data");
    write_dataset(&root, 32);
    (root, dir.join("runs"))
}

#[test]
fn a_short_eac_run_learns() {
    let _turn = serial();
    let (root, out) = dataset("learns");
    let mut cfg = config(&root, &out, "eac", 4, "{ name: eac, lambda: 5.0 }");
    cfg.train.export = true;
    // Validated, exported and deployed with the centre-crop view (the other tests use resize).
    cfg.train.eval_view = fer_train::augment::EvalView::CentreCrop;
    let mut t = Trainer::new(cfg, false).unwrap();
    let s = t.fit().unwrap();
    let h = &t.state.history;
    assert!(h.last().unwrap().train_loss < h[0].train_loss, "loss did not fall: {:?}", h.iter().map(|r| r.train_loss).collect::<Vec<_>>());
    // Chance is 1/3 on this balanced 3-class set.
    assert!(s.final_val.accuracy > 0.6, "val accuracy {} is not above chance", s.final_val.accuracy);
    for f in ["last.safetensors", "best.safetensors", "state.json", "config.yaml", "metrics.csv", "summary.json"] {
        assert!(out.join("eac").join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("eac/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 epochs:\n{csv}");
    // `fer-train summarize` (for runs stopped before their end) rebuilds the same summary.json
    // from state.json alone.
    let written = std::fs::read_to_string(out.join("eac/summary.json")).unwrap();
    std::fs::remove_file(out.join("eac/summary.json")).unwrap();
    fer_train::eval::summarize_run(&out.join("eac")).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("eac/summary.json")).unwrap(), written);
    assert_eq!(s.device.as_deref(), Some("cpu"), "the summary says where the run trained");
    // `fit` exported the model: it is self-describing and classifies the val images as the
    // checkpoint does.
    let onnx = s.onnx.expect("fit exports model.onnx");
    let m = fer_runtime::Model::load(&onnx, fer_runtime::Backend::Tract).unwrap();
    assert_eq!(m.labels(), CLASSES);
    assert_eq!(m.metadata().input_size, (32, 32));
    assert_eq!((m.metadata().eval_view, m.metadata().crop_pad), (fer_runtime::EvalView::CentreCrop, Some(4)));
    let (mut right, mut total) = (0, 0);
    for (k, class) in CLASSES.iter().enumerate() {
        for f in std::fs::read_dir(root.join("val").join(class)).unwrap() {
            let img = image::open(f.unwrap().path()).unwrap();
            right += (m.predict_image(&img).unwrap().class_index == k) as usize;
            total += 1;
        }
    }
    let deployed = right as f64 / total as f64;
    // The runtime resizes 24→32 with its own filter, the trainer with torch's bilinear: allow a
    // few images of difference on this small set.
    assert!((deployed - s.final_val.accuracy).abs() <= 0.1, "deployed {deployed} vs trained {}", s.final_val.accuracy);
}

/// `method.consistency_warmup` reaches the training step: with a warm-up far longer than the run,
/// EAC's consistency weight stays ~0, so the run trains as EAC with λ 0 does (same erasing, same
/// draws) and not as the seed's λ 5 from the first step.
#[test]
fn consistency_warmup_scales_the_weight_the_step_uses() {
    let _turn = serial();
    let (root, out) = dataset("warmup");
    let loss = |name: &str, method: &str| {
        let mut t = Trainer::new(config(&root, &out, name, 1, method), false).unwrap();
        t.fit().unwrap();
        t.state.history[0].train_loss
    };
    let warming = loss("warming", "{ name: eac, lambda: 5.0, consistency_warmup: 1.0e9 }");
    let zero = loss("zero", "{ name: eac, lambda: 0.0 }");
    let full = loss("full", "{ name: eac, lambda: 5.0 }");
    assert!((warming - zero).abs() < 1e-6, "warm-up run {warming} vs λ 0 run {zero}");
    assert!((full - zero).abs() > 1e-3, "the full weight changes the loss: {full} vs {zero}");
}

#[test]
fn resume_continues_exactly() {
    let _turn = serial();
    let (root, out) = dataset("resume");
    // The channels-last pass also averages its weights: the shadows resume exactly too.
    for channels_last in [false, true] {
        let cfg = |name: &str, epochs| {
            let mut c = config(&root, &out, name, epochs, "{ name: ce }");
            c.train.channels_last = channels_last;
            c.train.ema_decay = channels_last.then_some(0.9);
            c
        };
        let (a, b) = if channels_last { ("a_cl", "b_cl") } else { ("a", "b") };
        // Uninterrupted: 2 epochs.
        let mut ta = Trainer::new(cfg(a, 2), false).unwrap();
        ta.fit().unwrap();
        // Interrupted after 1 epoch, then resumed for the second.
        Trainer::new(cfg(b, 1), false).unwrap().fit().unwrap();
        let mut tb = Trainer::new(cfg(b, 2), true).unwrap();
        assert_eq!(tb.state.epochs_done, 1);
        tb.fit().unwrap();
        let wa = fer_train::checkpoint::load_tensors(&out.join(a).join("last.safetensors")).unwrap();
        let wb = fer_train::checkpoint::load_tensors(&out.join(b).join("last.safetensors")).unwrap();
        assert_eq!(wa.len(), wb.len());
        for (k, t) in &wa {
            let diff = (t.to_kind(tch::Kind::Double) - wb[k].to_kind(tch::Kind::Double)).abs().max().double_value(&[]);
            assert!(diff <= 1e-6, "{k} differs by {diff} after resume (channels_last {channels_last})");
        }
        assert_eq!(ta.state.history[1].val, tb.state.history[1].val);
    }
    // A finished run extended with more epochs and a warm restart takes its lr from the new
    // schedule (the base lr at the restart), not the annealed lr saved at the old end.
    let mut c = config(&root, &out, "b", 4, "{ name: ce }");
    c.train.scheduler = fer_train::optim::SchedulerConfig::Cosine { min_lr: 0.0, restarts: vec![2] };
    let extended = Trainer::new(c.clone(), true).unwrap();
    assert_eq!((extended.state.epochs_done, extended.opt.lr), (2, c.train.optimizer.lr), "lr after a restart at epoch 2");
    // The optimizer's moments are stored in the layout's order: resuming in the other layout is refused.
    let mut c = config(&root, &out, "b_cl", 3, "{ name: ce }");
    c.train.channels_last = false;
    let e = Trainer::new(c, true).err().expect("a layout switch on resume is refused").to_string();
    assert!(e.contains("train.channels_last=true"), "{e}");
}

/// One run, one trainer: a second trainer of a run another one holds is refused, naming the
/// holder's process; once the first is gone (dropped, as when its process ends, however it ends)
/// the run goes on.
#[test]
fn a_run_is_trained_by_one_trainer_at_a_time() {
    let _turn = serial();
    let (root, out) = dataset("lock");
    let cfg = config(&root, &out, "held", 1, "{ name: ce }");
    let mut first = Trainer::new(cfg.clone(), false).unwrap();
    first.fit().unwrap();
    let mut longer = cfg.clone();
    longer.train.epochs = 2;
    let e = Trainer::new(longer.clone(), true).err().expect("the run is held").to_string();
    let holder = format!("process {}", std::process::id());
    assert!(e.contains("held is being trained by another fer-train") && e.contains(&holder), "{e}");
    drop(first);
    let mut second = Trainer::new(longer, true).expect("free once the first is gone");
    second.fit().unwrap();
    assert_eq!(second.state.epochs_done, 2);
}

/// A start that fails (a data root that is not there, `--resume` of a run that never saved) leaves
/// no empty run folder behind, and never touches a folder that was there before it.
#[test]
fn a_failed_start_leaves_no_run_folder() {
    let (root, out) = dataset("failed-start");
    let missing = root.with_file_name("no-such-data");
    let e = Trainer::new(config(&missing, &out, "typo", 1, "{ name: ce }"), false).err().expect("no data").to_string();
    assert!(e.contains("no-such-data"), "{e}");
    assert!(!out.join("typo").exists(), "the failed start left {}", out.join("typo").display());

    let e = Trainer::new(config(&root, &out, "never_ran", 1, "{ name: ce }"), true).err().expect("nothing to resume").to_string();
    assert!(e.contains("--resume") && e.contains("never_ran") && e.contains("no checkpoint"), "{e}");
    assert!(!out.join("never_ran").exists());

    let kept = out.join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    assert!(Trainer::new(config(&missing, &out, "kept", 1, "{ name: ce }"), false).is_err());
    assert!(kept.is_dir(), "a folder that was there before the start is left as it was");
}

/// `train.ema_decay`: the checkpoint keeps the raw weights (to train on) and their average;
/// validation, `fer-train eval` of the checkpoint and the exported graph all use the average.
#[test]
fn an_averaged_run_validates_and_exports_its_average() {
    use fer_train::checkpoint::{load_into, load_tensors};
    let _turn = serial();
    let (root, out) = dataset("ema");
    let mut cfg = config(&root, &out, "ema", 2, "{ name: ce }");
    cfg.train.ema_decay = Some(0.9);
    cfg.train.export = true;
    let mut t = Trainer::new(cfg, false).unwrap();
    let s = t.fit().unwrap();
    let run = out.join("ema");
    let last = load_tensors(&run.join("last.safetensors")).unwrap();
    let diff = |a: &tch::Tensor, b: &tch::Tensor| (a - b).abs().max().double_value(&[]);
    // The trainer goes on with the raw weights, which the checkpoint holds under their own names.
    for (name, var) in t.vs.variables() {
        assert_eq!(diff(&var, &last[&name]), 0.0, "{name}: the raw weight");
    }
    let head = "fc.weight";
    assert!(diff(&last[head], &last[&format!("ema.{head}")]) > 1e-4, "12 steps at decay <= 0.9 leave the average behind");
    // `fer-train eval` of the checkpoint loads the average and reproduces what `fit` validated.
    let loaded = fer_train::eval::LoadedRun::open(&run, Some(Path::new("last.safetensors")), &[], false).unwrap();
    for (name, var) in loaded.vs.variables() {
        assert_eq!(diff(&var, &last[&format!("ema.{name}")]), 0.0, "{name}: eval loads the average");
    }
    assert_eq!(loaded.evaluate("val").unwrap().0, s.final_val);
    // The last epoch also measured the raw weights, as --raw-weights does (checked below).
    let raw_val = s.final_val_raw_weights.clone().expect("the summary has the raw weights' metrics");
    assert_eq!(t.state.history[1].val_raw_weights.as_ref(), Some(&raw_val));
    assert!(t.state.history[0].val_raw_weights.is_none(), "only the last epoch pays for a second validation");
    // best.safetensors is the average of the best epoch.
    let best = load_tensors(&run.join("best.safetensors")).unwrap();
    let best_epoch = if s.final_val.accuracy >= t.state.history[0].val.accuracy { 2 } else { 1 };
    if best_epoch == 2 {
        assert_eq!(diff(&best[head], &last[&format!("ema.{head}")]), 0.0);
    }
    let best_run = fer_train::eval::LoadedRun::open(&run, None, &[], false).unwrap();
    assert!(best_run.averaged && loaded.averaged, "eval says it measures the average, from best and from last");
    // --raw-weights: the trained weights, from last; best has none to give.
    let raw_run = fer_train::eval::LoadedRun::open(&run, Some(Path::new("last.safetensors")), &[], true).unwrap();
    assert!(!raw_run.averaged);
    assert_eq!(raw_run.evaluate("val").unwrap().0, raw_val);
    for (name, var) in raw_run.vs.variables() {
        assert_eq!(diff(&var, &last[&name]), 0.0, "{name}: --raw-weights loads the raw weight");
    }
    let e = fer_train::eval::LoadedRun::open(&run, None, &[], true).err().expect("best has no raw weights").to_string();
    assert!(!fer_train::checkpoint::deployed_weights(load_tensors(&run.join("last.safetensors")).unwrap()).contains_key("updates"), "the update count is not a weight");
    assert!(e.contains("best.safetensors") && e.contains("the average alone") && e.contains("last.safetensors"), "{e}");
    // The exported graph computes the averaged model, not the raw one.
    tch::manual_seed(7);
    let x = tch::Tensor::rand([4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
    let logits = |model: &fer_train::models::Classifier| tch::no_grad(|| model.forward_t(&x, false).0);
    let averaged = logits(&loaded.model);
    load_into(&loaded.vs, &last, &run.join("last.safetensors"), &[]).unwrap();
    let raw = logits(&loaded.model);
    let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
    let xs = ndarray::Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), Vec::<f32>::try_from(x.flatten(0, -1)).unwrap()).unwrap();
    let m = fer_runtime::Model::load(s.onnx.expect("fit exports model.onnx"), fer_runtime::Backend::Tract).unwrap();
    let deployed = m.predict_tensor(xs.view()).unwrap().logits;
    let deployed = tch::Tensor::from_slice(deployed.as_slice().unwrap()).view([4, 3]);
    assert!(diff(&deployed, &averaged) < 1e-4, "model.onnx vs the average: {}", diff(&deployed, &averaged));
    assert!(diff(&raw, &averaged) > 1e-3, "the raw and averaged models differ: {}", diff(&raw, &averaged));
}

/// Trains `cfg` and checks that the loss fell and, with `beats_chance`, that the model beats
/// chance (1/3) on val.
fn learns(cfg: Config, beats_chance: bool) -> (Trainer, fer_train::train::Summary) {
    let name = cfg.name.clone();
    let mut t = Trainer::new(cfg, false).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let s = t.fit().unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let losses: Vec<f64> = t.state.history.iter().map(|r| r.train_loss).collect();
    eprintln!("{name}: losses {losses:?}, val accuracy {}", s.final_val.accuracy);
    assert!(losses.last().unwrap() < &losses[0], "{name}: loss did not fall: {losses:?}");
    if beats_chance {
        assert!(s.final_val.accuracy > 0.5, "{name}: val accuracy {} is not above chance", s.final_val.accuracy);
    }
    (t, s)
}

/// `train.bf16`: a run under bf16 autocast learns, and it did compute in bf16: its first step's
/// loss (one step per epoch here) differs from the float32 run's of the same seed, by bf16
/// rounding only.
#[test]
fn a_short_bf16_autocast_run_learns() {
    let _turn = serial();
    // Tiny: on CPUs without bf16 instructions libtorch's bf16 convolutions are ~7x slower than
    // float32 ones (PyTorch's own CPU autocast too). 24 images, batch 16: one step per epoch.
    // 32 px, not 16: at 16 px ResNet-18's layer4 sees a 1x1 map, and libtorch's CPU bf16 weight
    // gradient of a strided 3x3 conv on a 1x1 map is sometimes non-finite in the right-hand
    // padding tap (8 of 30 steps here; PyTorch's own torch.autocast with its parameters in one
    // flat buffer too), so those steps were skipped. 24 px and up: 0 of 30.
    let dir = temp_dir("bf16");
    let (root, out) = (dir.join("data"), dir.join("runs"));
    write_dataset(&root, 8);
    let run = |name| config_with(&root, &out, name, 3, "{ arch: resnet18, input_size: 32, in_channels: 3 }", "{ name: ce }", ADAM);
    let (f32_run, _) = learns(run("ce_fp32"), false);
    let mut cfg = run("ce_bf16");
    cfg.train.bf16 = true;
    let (bf16_run, _) = learns(cfg, false);
    let (a, b) = (f32_run.state.history[0].train_loss, bf16_run.state.history[0].train_loss);
    assert!(a != b && (a - b).abs() < 0.02 * a, "first-step loss fp32 {a} vs bf16 {b}");
}

#[test]
fn a_short_dacfer_run_on_se_resnet50_learns() {
    let _turn = serial();
    let (root, out) = dataset("dacfer");
    learns(config_with(&root, &out, "dacfer", 3, "{ arch: se_resnet50, input_size: 32 }", "{ name: dacfer, lambda: 1.0 }", ADAM), true);
}

/// GReFEL's loss has a negative anchor term, so a falling loss alone proves little: the run must
/// also classify, and its exported file must carry the corrected distribution and `confidence`.
#[test]
fn a_short_grefel_rb_run_learns_and_exports_confidence() {
    let _turn = serial();
    let (root, out) = dataset("grefel");
    let method = "{ name: grefel_rb, rb: { anchors: 2, tokens: 8, heads: 2 } }";
    let mut cfg = config_with(&root, &out, "grefel", 3, "{ arch: resnet18, input_size: 32 }", method, ADAM);
    cfg.train.export = true;
    let (t, s) = learns(cfg, true);
    let m = fer_runtime::Model::load(s.onnx.expect("exported"), fer_runtime::Backend::Tract).unwrap();
    assert!(m.info().has_confidence(), "the GReFEL file has no confidence output");
    // Its float16 export is refused by name (it would not match the trained model).
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let e = fer_train::export::export_model(&t.model, &t.cfg, &classes, None, &out.join("h.onnx"), true, WeightStorage::Float16);
    assert!(e.unwrap_err().to_string().contains("the grefel_rb head does not export faithfully in float16"));
    // With int8 weights it exports, and answers as the float32 file does up to the weights' rounding.
    let (f32_path, int8_path) = (out.join("f32.onnx"), out.join("int8.onnx"));
    fer_train::export::export_model(&t.model, &t.cfg, &classes, None, &f32_path, true, WeightStorage::Float32).unwrap();
    fer_train::export::export_model(&t.model, &t.cfg, &classes, None, &int8_path, true, WeightStorage::Int8).unwrap();
    let load = |p: &Path| fer_runtime::Model::load(p, fer_runtime::Backend::Tract).unwrap();
    let (a, b) = (load(&f32_path), load(&int8_path));
    assert!(b.info().int8_weights > 0 && a.info().int8_weights == 0);
    assert!(std::fs::metadata(&int8_path).unwrap().len() * 3 < std::fs::metadata(&f32_path).unwrap().len());
    let x = ndarray::Array4::from_shape_fn((4, 3, 32, 32), |(n, c, h, w)| ((n * 7 + c * 5 + h * 3 + w) % 11) as f32 / 5.5 - 1.0);
    let (pa, pb) = (a.predict_tensor(x.view()).unwrap(), b.predict_tensor(x.view()).unwrap());
    let worst = pa.probs.iter().zip(pb.probs.iter()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(worst > 0.0 && worst < 0.05, "int8 vs float32 probabilities differ by {worst}");
}

/// The seed's SGD (Nesterov) from scratch needs more than the few steps a CI run has to move the
/// val accuracy of a BN-heavy VGG off chance: this checks that the loss falls.
#[test]
fn a_short_ivsa_run_learns() {
    let _turn = serial();
    let (root, out) = dataset("ivsa");
    let sgd = "{ name: sgd, lr: 0.01, momentum: 0.9, nesterov: true, weight_decay: 0.0001 }";
    let model = "{ arch: ivsa, attention: sab, input_size: 32, in_channels: 1, dropout: 0.5 }";
    let mut cfg = config_with(&root, &out, "ivsa", 3, model, "{ name: ce }", sgd);
    cfg.train.scheduler = serde_yaml::from_str("{ name: plateau, factor: 0.5, patience: 1 }").unwrap();
    cfg.train.ten_crop_eval = true;
    // The seed's augmentation: random rescale, shift and rotation (p = 0.5 each).
    cfg.train.affine = Some(fer_train::augment::Affine::default());
    learns(cfg, false);
}

#[test]
fn a_short_dan_run_learns() {
    let _turn = serial();
    let (root, out) = dataset("dan");
    learns(config_with(&root, &out, "dan", 3, "{ arch: resnet18, input_size: 32 }", "{ name: dan, heads: 2 }", ADAM), true);
}

/// GReFEL's full model (cross-attention ViT + reliability balancing) learns; the landmark stream
/// starts from a user-supplied weight file (torchvision names, no prefix), and a file that lacks
/// one of the stream's weights is refused by name.
#[test]
fn a_short_grefel_vit_run_learns_from_given_stream_weights() {
    let _turn = serial();
    let (root, out) = dataset("grefel_vit");
    // "Pre-trained" landmark weights: a standalone MobileNetV2 pyramid, saved as its own file.
    tch::manual_seed(3);
    let lm_vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _lm = fer_train::models::MobileNetV2::pyramid(&lm_vs.root(), 3);
    let lm_file = out.parent().unwrap().join("landmark.safetensors");
    fer_train::checkpoint::save_tensors(&lm_file, &fer_train::checkpoint::model_tensors(&lm_vs)).unwrap();
    let model = format!(
        "{{ arch: grefel_vit, input_size: 32, vit: {{ image: resnet18, landmark: mbv2, landmark_init: '{}', dim: 32, heads: 4 }} }}",
        lm_file.display()
    );
    let method = "{ name: grefel_rb, rb: { anchors: 2, tokens: 4, heads: 2 } }";
    let cfg = config_with(&root, &out, "grefel_vit", 3, &model, method, ADAM);
    let t = Trainer::new(cfg.clone(), false).unwrap();
    let want = lm_vs.variables();
    let got = t.vs.variables();
    for name in ["features.0.0.weight", "features.13.conv.2.weight", "features.6.conv.1.1.running_var"] {
        assert_eq!(got[&format!("landmark.{name}")], want[name], "{name} was not loaded");
    }
    drop(t);
    learns(cfg.clone(), true);

    let mut partial: Vec<(String, tch::Tensor)> = fer_train::checkpoint::model_tensors(&lm_vs);
    partial.retain(|(k, _)| !k.starts_with("features.13."));
    fer_train::checkpoint::save_tensors(&lm_file, &partial).unwrap();
    let mut cfg = cfg;
    cfg.name = "grefel_vit_partial".into();
    let e = Trainer::new(cfg, false).err().expect("a stream file without features.13 is refused").to_string();
    assert!(e.contains("landmark.safetensors") && e.contains("missing") && e.contains("landmark.features.13."), "{e}");
}

/// `distill`: a teacher exported by fer-train gives its logits for the training split
/// (scripts/teacher_targets.py, from the trainer's own cache of the split), the same as its run
/// directory gives in tch; a student trains with them added to its loss and learns; two models
/// (teacher and student) give the face-by-face mean of their own logits; targets made
/// for other faces (here the val split, which has as many faces) are refused with the file named,
/// not paired with the wrong images.
#[test]
fn a_short_distilled_run_learns_from_stored_teacher_logits() {
    use fer_train::distill::DistillConfig;
    let Some(py) = fer_tests::python_or_skip() else { return };
    let _turn = serial();
    let (root, out) = dataset("distill");
    let mut teacher = config(&root, &out, "teacher", 3, "{ name: ce }");
    teacher.train.export = true;
    let onnx = learns(teacher.clone(), true).1.onnx.expect("the teacher exports model.onnx");

    // Several models make an ensemble teacher (the script averages their logits).
    let targets_of = |models: &[&Path], split: &str, name: &str, extra: &[&str]| {
        let ds = fer_train::data::load_split(&teacher.data, split).unwrap();
        let cache = out.join(format!("{split}.safetensors"));
        ds.save_cache(&cache).unwrap();
        let dest = out.join(format!("{name}.safetensors"));
        let mut cmd = std::process::Command::new(&py);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/teacher_targets.py"));
        for m in models {
            cmd.arg("--model").arg(m);
        }
        let o = cmd.args(["--cache", cache.to_str().unwrap(), "--out", dest.to_str().unwrap()]).args(extra).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dest
    };
    let targets = |split: &str| targets_of(&[onnx.as_path()], split, &format!("targets_{split}"), &[]);
    let student = |name: &str, targets: &Path| {
        let mut cfg = config(&root, &out, name, 3, "{ name: ce }");
        cfg.distill = Some(DistillConfig { teacher: None, targets: Some(targets.to_path_buf()), weight: 1.0, temperature: 4.0 });
        cfg
    };

    // The two sources of teacher logits agree: the run's checkpoint in tch, and its exported ONNX
    // file through ONNX Runtime (stored by the script), face by face.
    let train = fer_train::data::load_split(&teacher.data, "train").unwrap();
    let stored = targets("train");
    let from_file = fer_train::distill::load_targets(&stored, &train).unwrap();
    let from_run = DistillConfig { teacher: Some(out.join("teacher")), targets: None, weight: 1.0, temperature: 4.0 }
        .teacher_logits(&train, tch::Device::Cpu)
        .unwrap();
    let (a, b) = (Vec::<f32>::try_from(from_run.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(from_file.flatten(0, -1)).unwrap());
    fer_tests::assert_close(&a, &b, 1e-3, 1e-3, "teacher logits, run (tch) vs ONNX file (ORT)");
    // The other views agree too: a run validated on ten crops labels with their mean, as the script's
    // --tta ten-crop; a centre-crop run (its file retagged by set_metadata.py) with its centre crop.
    let variant = |name: &str, from: &str, to: &str| {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(out.join("teacher")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let yaml = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
        assert!(yaml.contains(from), "{yaml}");
        std::fs::write(dir.join("config.yaml"), yaml.replace(from, to)).unwrap();
        let logits = DistillConfig { teacher: Some(dir.clone()), targets: None, weight: 1.0, temperature: 4.0 }.teacher_logits(&train, tch::Device::Cpu).unwrap();
        (dir, Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap())
    };
    let read = |file: &Path| Vec::<f32>::try_from(fer_train::distill::load_targets(file, &train).unwrap().flatten(0, -1)).unwrap();
    let (_, ten_run) = variant("teacher_ten", "ten_crop_eval: false", "ten_crop_eval: true");
    let ten_file = read(&targets_of(&[onnx.as_path()], "train", "targets_ten", &["--tta", "ten-crop"]));
    assert!(ten_run.iter().zip(&a).any(|(x, y)| (x - y).abs() > 1e-2), "ten crops changed nothing: the check would prove nothing");
    fer_tests::assert_close(&ten_run, &ten_file, 1e-3, 1e-3, "ten-crop teacher logits, run (tch) vs ONNX file (ORT)");
    let (centre_dir, centre_run) = variant("teacher_centre", "eval_view: resize", "eval_view: centre_crop");
    let centre_onnx = centre_dir.join("model.onnx");
    let o = std::process::Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/set_metadata.py"))
        .args([centre_onnx.to_str().unwrap(), "fer.eval_view=centre_crop"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let centre_file = read(&targets_of(&[centre_onnx.as_path()], "train", "targets_centre", &[]));
    assert!(centre_run.iter().zip(&a).any(|(x, y)| (x - y).abs() > 1e-2), "the centre crop changed nothing");
    fer_tests::assert_close(&centre_run, &centre_file, 1e-3, 1e-3, "centre-crop teacher logits, run (tch) vs ONNX file (ORT)");
    // Flip: the mean of the plain view's logits and its mirror's, here from the run in tch.
    let flip_file = read(&targets_of(&[onnx.as_path()], "train", "targets_flip", &["--tta", "flip"]));
    let run = fer_train::eval::LoadedRun::open(&out.join("teacher"), None, &[], false).unwrap();
    let view = run.eval_augment().eval(&train.images);
    let flip_run = tch::no_grad(|| (run.model.forward_t(&view, false).0 + run.model.forward_t(&view.flip([3]), false).0) / 2.0);
    let flip_run = Vec::<f32>::try_from(flip_run.flatten(0, -1)).unwrap();
    assert!(flip_run.iter().zip(&a).any(|(x, y)| (x - y).abs() > 1e-2), "the mirror changed nothing");
    fer_tests::assert_close(&flip_run, &flip_file, 1e-3, 1e-3, "flip teacher logits, run (tch) vs ONNX file (ORT)");
    let neither = DistillConfig { teacher: None, targets: None, weight: 1.0, temperature: 4.0 };
    let e = neither.teacher_logits(&train, tch::Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("exactly one of `teacher`"), "{e}");
    let cold = DistillConfig { teacher: None, targets: Some(stored.clone()), weight: 1.0, temperature: 0.0 };
    let e = cold.teacher_logits(&train, tch::Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("temperature must be positive"), "{e}");
    // A truncated targets file is refused by name, not read past its end.
    let cut = out.join("cut.safetensors");
    let bytes = std::fs::read(&stored).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = format!("{:#}", fer_train::distill::load_targets(&cut, &train).unwrap_err());
    assert!(e.contains("cut.safetensors"), "{e}");

    let mut exported = student("student", &stored);
    exported.train.export = true;
    let (t, s) = learns(exported, true);
    let plain = learns(config(&root, &out, "plain", 3, "{ name: ce }"), false).0;
    // Same seed, same batches: only the added term separates the first epoch's losses.
    let (kd, ce) = (t.state.history[0].train_loss, plain.state.history[0].train_loss);
    assert!(kd > ce + 1e-3, "the distillation term added nothing: {kd} vs {ce}");
    assert!(s.final_val.accuracy > 0.5);
    // Teacher and student as a two-model ensemble: the stored logits are their face-by-face mean.
    let student_onnx = s.onnx.clone().expect("the student exports model.onnx");
    let alone = targets_of(&[student_onnx.as_path()], "train", "student_alone", &[]);
    let pair = targets_of(&[onnx.as_path(), student_onnx.as_path()], "train", "pair", &[]);
    let alone = Vec::<f32>::try_from(fer_train::distill::load_targets(&alone, &train).unwrap().flatten(0, -1)).unwrap();
    let pair = Vec::<f32>::try_from(fer_train::distill::load_targets(&pair, &train).unwrap().flatten(0, -1)).unwrap();
    let teacher_alone = &b; // the teacher's stored logits, read above
    let mean: Vec<f32> = teacher_alone.iter().zip(&alone).map(|(x, y)| (x + y) / 2.0).collect();
    assert!(alone.iter().zip(teacher_alone).any(|(x, y)| (x - y).abs() > 1e-2), "the student's logits equal the teacher's: the ensemble check would prove nothing");
    fer_tests::assert_close(&pair, &mean, 1e-6, 1e-6, "ensemble targets vs the mean of the two teachers' own");
    // A missing second teacher is named before the first one's work starts, and nothing is written.
    let lost = out.join("lost.safetensors");
    let o = std::process::Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/teacher_targets.py"))
        .args(["--model", onnx.to_str().unwrap(), "--model", "no_such_teacher.onnx"])
        .args(["--cache", out.join("train.safetensors").to_str().unwrap(), "--out", lost.to_str().unwrap()])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("no_such_teacher.onnx: no such file") && !e.contains("agrees with"), "{e}");
    assert!(!lost.exists());
    let yaml = std::fs::read_to_string(out.join("student/config.yaml")).unwrap();
    assert!(yaml.contains("distill:") && yaml.contains("targets_train.safetensors"), "{yaml}");

    let wrong = targets("val");
    let e = Trainer::new(student("wrong", &wrong), false).map(|_| ()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("targets_val.safetensors") && msg.contains("faces differ"), "{msg}");
}

/// `model.init: FILE.onnx` (trainer/src/onnx_init.rs): a run starts from an exported MobileNetV2
/// (batch norms folded into its convs) computing what the file computes, in eval mode to float
/// rounding and in training mode as the original did; one member of an int8 ensemble file to the
/// int8 rounding; and files it cannot use are refused with the reason.
#[test]
fn a_run_starts_from_an_exported_onnx_file() {
    let _turn = serial();
    let (root, out) = dataset("onnx_init");
    let mbv2 = "{ arch: mbv2, input_size: 32, in_channels: 3, output_stride: 16 }";
    let cfg = config_with(&root, &out, "source", 2, mbv2, "{ name: ce }", ADAM);
    let mut source = Trainer::new(cfg.clone(), false).unwrap();
    source.fit().unwrap();
    let onnx = out.join("source.onnx");
    fer_train::export::export_model(&source.model, &cfg, &source.train.classes, None, &onnx, true, WeightStorage::Float32).unwrap();
    let started = |name: &str, init: &Path, member: Option<usize>| {
        let mut c = cfg.clone();
        c.name = name.into();
        c.model.init = Some(init.to_path_buf());
        c.model.init_member = member;
        Trainer::new(c, false)
    };
    tch::manual_seed(5);
    let x = tch::Tensor::rand([8, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
    let logits = |t: &Trainer, train: bool| tch::no_grad(|| t.model.forward_t(&x, train).0);
    let diff = |a: &tch::Tensor, b: &tch::Tensor| (a - b).abs().max().double_value(&[]);
    let want = logits(&source, false);
    let scale = want.abs().max().double_value(&[]);
    assert!(scale > 0.1, "logits {scale}: the comparison would prove nothing");

    let t = started("from_onnx", &onnx, None).unwrap();
    assert!(diff(&logits(&t, false), &want) < 1e-4 * scale.max(1.0), "eval mode: {}", diff(&logits(&t, false), &want));
    // Training mode on the faces the import recorded its statistics on (the training split's eval
    // views, all 96 here): their batch statistics are the recorded ones, so the model computes what
    // the file computes and fine-tuning starts from the deployed model (γ = 1 would put every
    // channel at unit variance; conv_bn's unit test shows that).
    let faces = source.aug.eval(&source.train.images);
    let want_faces = tch::no_grad(|| source.model.forward_t(&faces, false).0);
    let got = tch::no_grad(|| t.model.forward_t(&faces, true).0);
    let faces_scale = want_faces.abs().max().double_value(&[]);
    assert!(diff(&got, &want_faces) < 1e-3 * faces_scale.max(1.0), "training mode: {} of {faces_scale}", diff(&got, &want_faces));
    // The folded weight is the conv's; BN statistics are the recorded ones, not 0 / 1.
    let vars = t.vs.variables();
    assert!(diff(&vars["features.0.1.running_mean"], &vars["features.0.1.running_mean"].zeros_like()) > 1e-3);

    // An int8 ensemble of the model with itself: member 1, to the int8 rounding.
    let m = fer_export::load(&onnx).unwrap();
    let (pair, _) = fer_export::ensemble::ensemble(&[("a.onnx", m.clone()), ("b.onnx", m)]).unwrap();
    let (pair, _) = fer_export::int8::quantize_weights(pair, 256).unwrap();
    let pair_path = out.join("pair.onnx");
    fer_export::save(&pair, &pair_path).unwrap();
    let t = started("from_pair", &pair_path, Some(1)).unwrap();
    let d = diff(&logits(&t, false), &want);
    assert!(d > 0.0 && d < 0.05 * scale.max(1.0), "int8 member: {d} of {scale}");

    // Data whose classes differ from the file's (here: the same ones in another order): the body
    // comes from the file, the head starts fresh (it would have put each class's score elsewhere).
    let mut other = cfg.clone();
    other.name = "reordered".into();
    other.data.classes = Some(vec!["bright".into(), "dark".into(), "stripes".into()]);
    other.model.init = Some(onnx.clone());
    let t = Trainer::new(other, false).unwrap();
    let features = |t: &Trainer| tch::no_grad(|| t.model.forward_t(&x, false).1);
    let (got, want_f) = (features(&t), features(&source));
    assert!(diff(&got, &want_f) < 1e-4 * want_f.abs().max().double_value(&[]).max(1.0), "the body is the file's: {}", diff(&got, &want_f));
    let (vars, src) = (t.vs.variables(), source.vs.variables());
    assert!(diff(&vars["classifier.1.weight"], &src["classifier.1.weight"]) > 1e-3, "the head is not the file's");

    let err = |r: anyhow::Result<Trainer>| format!("{:#}", r.map(|_| ()).unwrap_err());
    let e = err(started("which", &pair_path, None));
    assert!(e.contains("pair.onnx") && e.contains("ensemble of 2") && e.contains("model.init_member"), "{e}");
    let e = err(started("none_such", &pair_path, Some(2)));
    assert!(e.contains("members 0 to 1"), "{e}");
    let e = err(started("single", &onnx, Some(0)));
    assert!(e.contains("not an ensemble"), "{e}");
    let e = err(started("checkpoint", &out.join("source/last.safetensors"), Some(0)));
    assert!(e.contains("model.init_member") && e.contains(".onnx"), "{e}");
    // Another architecture: the file's backbone is named.
    let mut r18 = cfg.clone();
    r18.name = "r18".into();
    r18.model.arch = fer_train::models::Arch::Resnet18;
    r18.model.output_stride = None;
    r18.model.init = Some(onnx.clone());
    let e = err(Trainer::new(r18, false));
    assert!(e.contains("source.onnx") && e.contains("`mobilenet_v2`, the config's `resnet18`"), "{e}");
    let e = err(started("not_onnx", &out.join("no_such.onnx"), None));
    assert!(e.contains("no_such.onnx"), "{e}");
}
