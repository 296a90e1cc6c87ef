//! The tch backbones load torchvision state dicts by name (strictly: every tch variable must be in
//! the file) and compute the same eval-mode logits as torchvision on the same weights.
//! The reference comes from `fixtures/torchvision_ref.py`, run with the set-up's Python.

use fer_tests::{assert_close, python_or_skip, temp_dir};
use fer_train::checkpoint::{load_into, load_tensors};
use fer_train::models::{Arch, Classifier, ModelSpec};
use tch::{nn, Device};

fn check(arch: Arch, tv_name: &str, size: i64) {
    check_output_stride(arch, tv_name, size, 32);
}

/// As `check`, with the late stride-2 convs at stride 1 on both sides (`model.output_stride`).
fn check_output_stride(arch: Arch, tv_name: &str, size: i64, output_stride: i64) {
    let Some(python) = python_or_skip() else { return };
    let dir = temp_dir(&format!("tv_{tv_name}_os{output_stride}"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/torchvision_ref.py");
    let status = std::process::Command::new(&python)
        .args([script, tv_name, "7", &size.to_string(), dir.to_str().unwrap(), &output_stride.to_string()])
        .status()
        .expect("running the reference script");
    assert!(status.success(), "torchvision_ref.py failed for {tv_name}");

    let vs = nn::VarStore::new(Device::Cpu);
    let spec = ModelSpec { input_size: size, output_stride: Some(output_stride), ..ModelSpec::new(arch, 3, 7, 0.0) };
    let model = Classifier::build(&vs.root(), &spec).expect("a valid spec");
    let weights = dir.join("weights.safetensors");
    load_into(&vs, &load_tensors(&weights).unwrap(), &weights, &[]).expect("strict load of torchvision weights");
    let io = load_tensors(&dir.join("io.safetensors")).unwrap();
    let (logits, _) = tch::no_grad(|| model.forward_t(&io["input"], false));
    let got = Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap();
    let want = Vec::<f32>::try_from(io["logits"].flatten(0, -1)).unwrap();
    assert_close(&got, &want, 1e-4, 1e-4, &format!("{tv_name} logits vs torchvision"));
}

#[test]
fn resnet18_matches_torchvision() {
    check(Arch::Resnet18, "resnet18", 64);
}

#[test]
fn resnet50_matches_torchvision() {
    check(Arch::Resnet50, "resnet50", 64);
}

#[test]
fn mobilenet_v2_matches_torchvision() {
    check(Arch::Mbv2, "mobilenet_v2", 64);
}

/// At 48 px an output stride of 16 leaves MobileNetV2 a 3x3 map (torchvision's is 2x2), 8 a 6x6.
#[test]
fn mobilenet_v2_output_stride_matches_torchvision() {
    check_output_stride(Arch::Mbv2, "mobilenet_v2", 48, 16);
    check_output_stride(Arch::Mbv2, "mobilenet_v2", 48, 8);
}

#[test]
fn resnet_output_stride_matches_torchvision() {
    check_output_stride(Arch::Resnet18, "resnet18", 48, 16);
    check_output_stride(Arch::Resnet50, "resnet50", 48, 8);
}
