//! What `models-onnx/` ships is what its cards say, and it runs: every `.onnx` there has a card
//! naming its digest and its recorded val accuracy, stays small enough for git, follows the input
//! contract, and gives the same answer through tract and ONNX Runtime on a real photo. The README's
//! first command runs `eac_mbv2.onnx`, so a broken or mismatched upload fails here, not for users.

mod common;

use common::*;
use fer_runtime::{Backend, Model, ModelInfo};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The design's limit for files kept in git.
const MAX_BYTES: u64 = 20 * 1000 * 1000;

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models-onnx");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_edge_default_is_shipped() {
    let names: Vec<_> = shipped()
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "eac_mbv2.onnx"),
        "models-onnx/ lacks eac_mbv2.onnx: {names:?}"
    );
}

#[test]
fn every_shipped_model_matches_its_card() {
    for onnx in shipped() {
        let card_path = onnx.with_extension("md");
        let card = std::fs::read_to_string(&card_path)
            .unwrap_or_else(|e| panic!("{}: no model card ({e})", card_path.display()));
        let bytes = std::fs::read(&onnx).unwrap();
        assert!(
            bytes.len() as u64 <= MAX_BYTES,
            "{}: {} bytes, over the {MAX_BYTES} limit",
            onnx.display(),
            bytes.len()
        );
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            card.contains(&format!("sha256 {}", &digest[..16])),
            "{}: the card does not name this file's sha256 {}… (stale card?)",
            card_path.display(),
            &digest[..16]
        );
        let info = ModelInfo::read(&onnx).unwrap();
        // Subnormal weights make ONNX Runtime 14x slower on Intel CPUs (fer_export::flush_subnormal).
        assert_eq!(info.subnormal_weights, 0, "{}: subnormal weights (run the flush_subnormals example on it)", onnx.display());
        let acc = info
            .metadata
            .val_accuracy
            .unwrap_or_else(|| panic!("{}: no recorded val accuracy", onnx.display()));
        let shown = format!("{:.2} %", 100.0 * acc);
        assert!(
            card.contains(&shown),
            "{}: the file records val accuracy {shown}, the card does not say so",
            card_path.display()
        );
        assert_eq!(info.inputs.len(), 1, "{}: one input", onnx.display());
        assert_eq!(
            info.num_classes(),
            info.metadata.labels.len(),
            "{}: logits vs labels",
            onnx.display()
        );
    }
}

#[test]
fn shipped_models_agree_across_backends_on_a_photo() {
    let Some(assets) = assets("shipped_models_agree_across_backends_on_a_photo") else {
        return;
    };
    let photo = image::open(assets.join("astronaut.png")).unwrap();
    for onnx in shipped() {
        let tract = Model::load(&onnx, Backend::Tract).unwrap();
        let p = tract.predict_image(&photo).unwrap();
        let sum: f32 = p.probs.iter().map(|(_, v)| v).sum();
        assert!(
            (sum - 1.0).abs() < 1e-4,
            "{}: probabilities sum to {sum}",
            onnx.display()
        );
        if !ort_ready("shipped_models_agree_across_backends_on_a_photo (ORT half)") {
            continue;
        }
        let ort = Model::load(&onnx, ORT_CPU).unwrap();
        let q = ort.predict_image(&photo).unwrap();
        assert_eq!(p.label, q.label, "{}", onnx.display());
        for ((name, a), (_, b)) in p.probs.iter().zip(&q.probs) {
            assert!(
                (a - b).abs() <= 1e-4,
                "{}: P({name}) tract {a} vs ORT {b}",
                onnx.display()
            );
        }
    }
}
