//! `scripts/results.py` builds the generated section of docs/RESULTS.md from run directories:
//! the numbers come from summary.json, config.yaml (written by the trainer's own serialiser) and a
//! tiny hand-countable model.onnx; text outside the markers stays as it was; a corrupt run is
//! skipped with a warning naming its file; excluded and absent runs are handled.
//! `scripts/model_card.py` writes a shipped model's card from the same run files and fixture.
//! `scripts/compare_predictions.py` compares two models' `fer-run --json` outputs face by face.

use fer_tests::{python_or_skip, temp_dir};
use fer_train::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Conv 3→4, 3x3, pad 1 on 8x8 (no bias), then Reshape to [N, 256] and Gemm 256→7 with bias.
/// Params: 4·3·3·3 + 256·7 + 7 = 1,907 (the int64 Reshape shape is not a weight).
/// MACs at batch 1: 4·8·8 outputs × 3·3·3 = 6,912, plus 256·7 = 1,792: 8,704.
const TINY_ONNX: &str = r#"
import sys, numpy as np, onnx
from onnx import helper as h, numpy_helper as nh, TensorProto as T
inits = [nh.from_array(np.ones((4, 3, 3, 3), np.float32), "W"), nh.from_array(np.ones((256, 7), np.float32), "B"),
         nh.from_array(np.zeros(7, np.float32), "C"), nh.from_array(np.array([-1, 256], np.int64), "S")]
nodes = [h.make_node("Conv", ["input", "W"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Reshape", ["c", "S"], ["f"]),
         h.make_node("Gemm", ["f", "B", "C"], ["logits"])]
g = h.make_graph(nodes, "tiny", [h.make_tensor_value_info("input", T.FLOAT, ["N", 3, 8, 8])],
                 [h.make_tensor_value_info("logits", T.FLOAT, ["N", 7])], inits)
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
# The contract's metadata that scripts/model_card.py reads (the counts above ignore it).
h.set_model_props(m, {"fer.method": "eac", "fer.eac_lambda": "5", "fer.backbone": "resnet18", "fer.data": "fer2013",
                      "fer.noise_rate": "0", "fer.input_size": "8,8", "fer.color": "rgb", "fer.mean": "0.5",
                      "fer.std": "0.5", "fer.labels": "angry,happy", "fer.recipe": "fer2013_r18_eac"})
onnx.checker.check_model(m)
for p in sys.argv[1:]:
    onnx.save(m, p)
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Run<'a> {
    name: &'a str,
    method: &'a str,
    noise: f64,
    device: &'a str,
    acc: f64,
    epochs: usize,
}

/// A finished run directory as `fer-train` leaves it (less checkpoints and plots).
fn write_run(runs: &Path, r: &Run) -> PathBuf {
    let dir = runs.join(r.name);
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "name: {}\ndata: {{ format: folder, root: /nonexistent }}\nnoise: {{ rate: {}, seed: 1 }}\n\
         model: {{ arch: resnet18, input_size: 8 }}\nmethod: {}\ntrain:\n  epochs: {}\n  batch_size: 8\n  device: {}\n  optimizer: {{ name: adam, lr: 0.001 }}\n  scheduler: {{ name: exponential, gamma: 0.9 }}\n",
        r.name, r.noise, r.method, r.epochs, r.device
    );
    let cfg = Config::from_yaml(&yaml, &[]).expect("test config");
    std::fs::write(dir.join("config.yaml"), cfg.to_yaml()).unwrap();
    let fv = serde_json::json!({"accuracy": r.acc, "mean_class_accuracy": 0.5, "macro_f1": 0.45678, "confusion": [[1, 0], [0, 1]]});
    let summary = serde_json::json!({
        "name": r.name, "epochs": r.epochs, "final_val": fv, "best_val_accuracy": 0.625, "best_epoch": 1,
        "last5_val_accuracy_mean": 0.6, "train_img_per_s": 123.4, "onnx": dir.join("model.onnx"),
    });
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    let mut csv = String::from("epoch,lr,train_loss,train_accuracy,val_accuracy,val_mean_class_accuracy,val_macro_f1,img_per_s,seconds\n");
    for e in 1..=r.epochs {
        csv += &format!("{e},1.000000e-3,1.0,0.5,{},0.5,0.45678,123.4,1.0\n", r.acc);
    }
    std::fs::write(dir.join("metrics.csv"), csv).unwrap();
    dir
}

fn results(py: &Path, runs: &Path, page: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(py)
        .arg(repo().join("scripts/results.py"))
        .arg("--runs")
        .arg(runs)
        .arg("--out")
        .arg(page)
        .args(extra)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout).to_string();
    let se = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), so, se)
}

const HEAD: &str = "# Results\n\nHand-written intro.\n\n## Training runs\n<!-- results:begin -->";
const TAIL: &str = "<!-- results:end -->\n\n## Parity\nHand-written tail | with a table | 1.0 |\n";

#[test]
fn tables_come_from_the_runs_and_only_the_marked_section_changes() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("results_script");
    let runs = dir.join("runs");
    let ce = write_run(&runs, &Run { name: "r18_ce", method: "{ name: ce }", noise: 0.0, device: "cpu", acc: 0.6125, epochs: 2 });
    let rb = write_run(
        &runs,
        &Run { name: "r18_rb_n30", method: "{ name: grefel_rb, rb: { tokens: 7 } }", noise: 0.3, device: "auto", acc: 0.55, epochs: 1 },
    );
    let bench = write_run(&runs, &Run { name: "bench_r18", method: "{ name: ce }", noise: 0.1, device: "cpu", acc: 0.3, epochs: 1 });
    let bad = write_run(&runs, &Run { name: "r18_bad", method: "{ name: eac }", noise: 0.2, device: "cpu", acc: 0.4, epochs: 1 });
    std::fs::write(bad.join("summary.json"), "{ \"name\": \"r18_bad\", truncated").unwrap();
    // A run stopped at a deadline: 1 of its 3 planned epochs done (summary from `fer-train summarize`).
    let cut = write_run(&runs, &Run { name: "r18_ce_cut", method: "{ name: ce }", noise: 0.2, device: "cpu", acc: 0.5, epochs: 1 });
    let mut cfg = Config::from_yaml(&std::fs::read_to_string(cut.join("config.yaml")).unwrap(), &[]).unwrap();
    cfg.train.epochs = 3;
    std::fs::write(cut.join("config.yaml"), cfg.to_yaml()).unwrap();
    // A run distilled from a teacher's logits is its own method row (here also validated on the
    // weights' moving average, which says so too).
    let kd = write_run(&runs, &Run { name: "r18_ce_kd", method: "{ name: ce }", noise: 0.1, device: "cpu", acc: 0.4, epochs: 2 });
    let mut cfg = Config::from_yaml(&std::fs::read_to_string(kd.join("config.yaml")).unwrap(), &[]).unwrap();
    cfg.distill = Some(fer_train::distill::DistillConfig { teacher: None, targets: Some("teacher.safetensors".into()), weight: 1.0, temperature: 4.0 });
    cfg.train.ema_decay = Some(0.999);
    std::fs::write(kd.join("config.yaml"), cfg.to_yaml()).unwrap();
    // So is a run with the random affine augmentation.
    let aff = write_run(&runs, &Run { name: "r18_ce_aff", method: "{ name: ce }", noise: 0.2, device: "cpu", acc: 0.42, epochs: 2 });
    let mut cfg = Config::from_yaml(&std::fs::read_to_string(aff.join("config.yaml")).unwrap(), &[]).unwrap();
    cfg.train.affine = Some(Default::default());
    std::fs::write(aff.join("config.yaml"), cfg.to_yaml()).unwrap();
    // EAC with its consistency weight ramped up is a row of its own.
    let wu = write_run(&runs, &Run { name: "r18_eac_wu", method: "{ name: eac, consistency_warmup: 3 }", noise: 0.3, device: "cpu", acc: 0.45, epochs: 2 });
    // So is EAC with a consistency weight other than the seed's 5.
    let l0 = write_run(&runs, &Run { name: "r18_eac_l0", method: "{ name: eac, lambda: 0 }", noise: 0.3, device: "cpu", acc: 0.35, epochs: 2 });
    // The seeds' ablations are rows of their own: GReFEL's RB with one correction, DAN with 2 heads
    // (here also without its flip consistency, λ3 0, a weight other than the seed's 4).
    let rb_anchors = write_run(
        &runs,
        &Run { name: "r18_rb_anchors_n30", method: "{ name: grefel_rb, rb: { use_mhsa: false } }", noise: 0.3, device: "cpu", acc: 0.5, epochs: 1 },
    );
    let rb_lc = write_run(
        &runs,
        &Run { name: "r18_rb_lc_n30", method: "{ name: grefel_rb, lambda_center: 0.002 }", noise: 0.3, device: "cpu", acc: 0.52, epochs: 1 },
    );
    let dan2 = write_run(
        &runs,
        &Run { name: "r18_dan_h2_n30", method: "{ name: dan, heads: 2, lambda_consistency: 0 }", noise: 0.3, device: "cpu", acc: 0.25, epochs: 2 },
    );
    // A CPU-budget pair on every 10th training face: the CE baseline and DacFER on its own
    // SE-ResNet-50, the seeds' methods side by side (Table 3), apart from the full-train runs.
    let subset_run = |name: &str, method: &str, noise: f64, arch: fer_train::models::Arch| {
        let d = write_run(&runs, &Run { name, method, noise, device: "cpu", acc: 0.3125, epochs: 2 });
        let mut cfg = Config::from_yaml(&std::fs::read_to_string(d.join("config.yaml")).unwrap(), &[]).unwrap();
        cfg.train.subset_every = Some(10);
        cfg.model.arch = arch;
        std::fs::write(d.join("config.yaml"), cfg.to_yaml()).unwrap();
        d
    };
    let ce_sub = subset_run("sub_r18_ce", "{ name: ce }", 0.0, fer_train::models::Arch::Resnet18);
    let dac_sub = subset_run("sub_se50_dacfer_n30", "{ name: dacfer }", 0.3, fer_train::models::Arch::SeResnet50);
    // A method's own recipe comes before its variants, though "dan (2 heads) (…)" sorts first as text.
    let dan_sub = subset_run("sub_r18_dan_n30", "{ name: dan }", 0.3, fer_train::models::Arch::Resnet18);
    let dan2_sub = subset_run("sub_r18_dan_h2_n30", "{ name: dan, heads: 2 }", 0.3, fer_train::models::Arch::Resnet18);
    let onnx_paths: Vec<PathBuf> = [&ce, &rb, &bench, &bad, &cut, &kd, &aff, &wu, &l0, &rb_anchors, &rb_lc, &dan2, &ce_sub, &dac_sub, &dan_sub, &dan2_sub].iter().map(|d| d.join("model.onnx")).collect();
    let st = Command::new(&py).arg("-c").arg(TINY_ONNX).args(&onnx_paths).status().unwrap();
    assert!(st.success(), "building the tiny ONNX file");

    let page = dir.join("RESULTS.md");
    std::fs::write(&page, format!("{HEAD}\nstale hand edits\n{TAIL}")).unwrap();
    let (rc, _, err) = results(&py, &runs, &page, &[]);
    assert_eq!(rc, 0, "{err}");
    let text = std::fs::read_to_string(&page).unwrap();
    eprintln!("{text}\n--- stderr:\n{err}");
    assert!(text.starts_with(&format!("{HEAD}\n")) && text.ends_with(&format!("\n{TAIL}")), "outside the markers changed:\n{text}");
    assert!(!text.contains("stale hand edits"));

    // Table 1: numbers from summary.json, params and MACs counted from the graph by hand (above).
    let cfg = runs.join("r18_ce/config.yaml");
    let row = format!(
        "| r18_ce | ce | resnet18 | 8 | 0 % | 2 | 61.25 % | 60.00 % | 62.50 % (1) | 50.00 % | 0.4568 | 1,907 | 8.70 k | — | 123.4 | cpu | \
         `fer-train fit --config {} --set name=r18_ce_repro` |",
        cfg.display()
    );
    assert!(text.contains(&row), "want row\n{row}\nin\n{text}");
    assert!(text.contains("| r18_rb_n30 | grefel_rb | resnet18 | 8 | 30 % | 1 | 55.00 % |"), "{text}");
    assert!(text.contains("| 1,907 | 8.70 k | — | 123.4 | ? |"), "device `auto` is reported as unknown: {text}");
    // Table 2: one table per budget (backbone, input, epochs), method rows in the seeds' order,
    // noise columns 0/10/20/30 %; the 2-epoch CE run and the 1-epoch RB run do not share a table.
    assert!(text.contains("| method | 0 % | 10 % | 20 % | 30 % |"), "{text}");
    let header = "| method | 0 % | 10 % | 20 % | 30 % |\n| --- | --- | --- | --- | --- |";
    assert!(
        text.contains(&format!("**resnet18, 8 px, 1 epoch**\n\n{header}\n| grefel_rb | — | — | — | 55.00 % |\n| grefel_rb (anchors only) | — | — | — | 50.00 % |\n| grefel_rb (λ_c 0.002) | — | — | — | 52.00 % |\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "**resnet18, 8 px, 2 epochs**\n\n{header}\n| ce | 61.25 % | — | — | — |\n| ce + KD + EMA | — | 40.00 % | — | — |\n| ce + affine | — | — | 42.00 % | — |\n| eac (λ 0) | — | — | — | 35.00 % |\n| eac + warm-up 3 ep. | — | — | — | 45.00 % |\n| dan (2 heads) (λ3 0) | — | — | — | 25.00 % |\n"
        )),
        "{text}"
    );
    assert!(text.contains("| r18_ce_kd | ce + KD + EMA | resnet18 | 8 | 10 % | 2 | 40.00 % |"), "{text}");
    // The cut run: its epochs in Table 1, and in Table 2 its budget's table says how far it got.
    assert!(text.contains("| r18_ce_cut | ce | resnet18 | 8 | 20 % | 1 of 3 | 50.00 % |"), "{text}");
    assert!(text.contains(&format!("**resnet18, 8 px, 3 epochs**\n\n{header}\n| ce | — | — | 50.00 % (1 of 3 ep.) | — |\n")), "{text}");
    // The subset runs: Table 1 says so, Table 2 keeps them out of the full-train 2-epoch table,
    // and Table 3 puts the two backbones side by side (no Table 3 for the all-resnet18 budgets).
    assert!(text.contains("| sub_r18_ce | ce | resnet18 | 8 | 0 % | 2, 1/10 of train | 31.25 % |"), "{text}");
    assert!(text.contains(&format!("**resnet18, 8 px, 2 epochs, 1/10 of train**\n\n{header}\n| ce | 31.25 % | — | — | — |\n")), "{text}");
    assert!(text.contains(&format!("**se_resnet50, 8 px, 2 epochs, 1/10 of train**\n\n{header}\n| dacfer | — | — | — | 31.25 % |\n")), "{text}");
    let table3 = format!(
        "### Table 3: the seeds' methods side by side (each on its own backbone; one table per input size and epoch budget)\n\n\
         **8 px, 2 epochs, 1/10 of train**\n\n{header}\n| ce (resnet18) | 31.25 % | — | — | — |\n| dacfer (se_resnet50) | — | — | — | 31.25 % |\n\
         | dan (resnet18) | — | — | — | 31.25 % |\n| dan (2 heads) (resnet18) | — | — | — | 31.25 % |\n\n"
    );
    assert!(text.contains(&table3), "{text}");
    assert_eq!(text.matches("**8 px,").count(), 1, "only the mixed budget gets a Table 3 entry: {text}");
    // The corrupt run is skipped and named; the bench fixture is excluded by default.
    assert!(!text.contains("r18_bad") && !text.contains("bench_r18") && !text.contains("| eac |"), "{text}");
    let bad_file = bad.join("summary.json");
    assert!(err.contains(&format!("{}: not valid JSON", bad_file.display())), "{err}");

    // --check: clean now; a hand edit inside the markers is reported and left alone.
    assert_eq!(results(&py, &runs, &page, &["--check"]).0, 0);
    let edited = text.replace("61.25 %", "99.99 %");
    std::fs::write(&page, &edited).unwrap();
    let (rc, _, err) = results(&py, &runs, &page, &["--check"]);
    assert_ne!(rc, 0, "--check must fail on a stale page: {err}");
    assert_eq!(std::fs::read_to_string(&page).unwrap(), edited, "--check wrote the page");

    // --exclude replaces the default: with none, the bench run appears (at 10 % noise).
    results(&py, &runs, &page, &["--exclude", ""]);
    let all = std::fs::read_to_string(&page).unwrap();
    assert!(all.contains("| bench_r18 | ce |"), "{all}");
    // It is a 1-epoch run, so it joins the RB run's table, not the 2-epoch CE run's row.
    assert!(all.contains("| ce | — | 30.00 % | — | — |\n| grefel_rb | — | — | — | 55.00 % |"), "{all}");
    assert!(all.contains("| ce | 61.25 % | — | — | — |"), "{all}");

    // No runs at all: one sentence, no crash.
    let empty = dir.join("no_runs");
    std::fs::create_dir_all(&empty).unwrap();
    let (rc, _, err) = results(&py, &empty, &page, &[]);
    assert_eq!(rc, 0, "{err}");
    let none = std::fs::read_to_string(&page).unwrap();
    assert!(none.contains("No training runs to report yet") && !none.contains("Table 1"), "{none}");
    assert!(none.starts_with(&format!("{HEAD}\n")) && none.ends_with(&format!("\n{TAIL}")));
}

#[test]
fn archived_runs_outlive_their_run_directory() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("results_archive");
    let scratch = dir.join("runs");
    let archive = dir.join("docs_runs");
    let run = write_run(&scratch, &Run { name: "r18_eac", method: "{ name: eac }", noise: 0.0, device: "cpu", acc: 0.65, epochs: 3 });
    let st = Command::new(&py).arg("-c").arg(TINY_ONNX).arg(run.join("model.onnx")).status().unwrap();
    assert!(st.success(), "building the tiny ONNX file");
    let page = dir.join("RESULTS.md");
    std::fs::write(&page, format!("{HEAD}\n{TAIL}")).unwrap();
    // A stand-in for `fer-run bench --json` whose p50 changes with each call: ORT rounds 1, 3, 5
    // ms, tract 2, 4, 6 (calls alternate), so the medians over the three rounds are 3 and 4.
    let fake = dir.join("fake-fer-run");
    let calls = dir.join("calls");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> {calls}\nn=$(wc -l < {calls})\necho \"{{\\\"p50_ms\\\": $n, \\\"p95_ms\\\": $((n * 2))}}\"\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let (rc, out, err) = results(&py, &archive, &page, &["--archive", run.to_str().unwrap(), "--fer-run", fake.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    let kept = archive.join("r18_eac");
    let bench_calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(bench_calls.lines().count(), 6, "three rounds of two backends: {bench_calls}");
    assert!(bench_calls.lines().next().unwrap().contains("--backend ort") && bench_calls.lines().nth(1).unwrap().contains("--backend tract"));
    let lat: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(kept.join("latency.json")).unwrap()).unwrap();
    assert_eq!((lat["ort"]["p50_ms"].as_f64(), lat["tract"]["p95_ms"].as_f64()), (Some(3.0), Some(8.0)), "{lat}");
    for f in ["config.yaml", "summary.json", "metrics.csv", "model_stats.json"] {
        assert!(kept.join(f).is_file(), "{f} not archived");
    }
    assert!(!kept.join("model.onnx").exists(), "the archive keeps the small files only");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(kept.join("model_stats.json")).unwrap()).unwrap();
    assert_eq!((stats["params"].as_u64(), stats["macs"].as_u64()), (Some(1907), Some(8704)), "{stats}");
    // Re-archiving replaces the whole folder: a stray file from before does not survive.
    std::fs::write(kept.join("stale.txt"), "old").unwrap();
    let (rc, out, err) = results(&py, &archive, &page, &["--archive", run.to_str().unwrap(), "--fer-run", "/nonexistent/fer-run"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(err.contains("/nonexistent/fer-run is not built"), "{err}");
    assert!(!kept.join("latency.json").exists(), "a latency.json from the earlier archive survived");
    // A fer-run that prints no latency line: the run is named and nothing is written.
    let mute = dir.join("mute-fer-run");
    std::fs::write(&mute, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&mute, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let spec = format!("{}={}", kept.display(), run.join("model.onnx").display());
    let (rc, _, err) = results(&py, &archive, &page, &["--latency", &spec, "--fer-run", mute.to_str().unwrap()]);
    assert!(rc != 0 && err.contains("printed no latency line") && !kept.join("latency.json").exists(), "{err}");
    // --latency measures an archived run later, from a deployed copy of its model.
    let (rc, out, err) = results(&py, &archive, &page, &["--latency", &format!("{}={}", kept.display(), run.join("model.onnx").display()), "--fer-run", fake.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(kept.join("latency.json").is_file(), "{out}{err}");
    assert!(!kept.join("stale.txt").exists() && kept.join("summary.json").is_file(), "re-archiving left old files");

    // The scratch run is gone (a new machine); the page is rebuilt from the archive alone, with the
    // graph's counts from model_stats.json and the reproduce command at the archived config.
    std::fs::remove_dir_all(&scratch).unwrap();
    std::fs::write(&page, format!("{HEAD}\n{TAIL}")).unwrap();
    let (rc, _, err) = results(&py, &archive, &page, &[]);
    assert_eq!(rc, 0, "{err}");
    let text = std::fs::read_to_string(&page).unwrap();
    let row = format!(
        "| r18_eac | eac | resnet18 | 8 | 0 % | 3 | 65.00 % | 60.00 % | 62.50 % (1) | 50.00 % | 0.4568 | 1,907 | 8.70 k | 9.00 / 10.00 | 123.4 | cpu | \
         `fer-train fit --config {} --set name=r18_eac_repro` |",
        kept.join("config.yaml").display()
    );
    assert!(text.contains(&row), "want row\n{row}\nin\n{text}");
    let cfg = std::fs::read_to_string(kept.join("config.yaml")).unwrap();
    assert!(Config::from_yaml(&cfg, &[]).is_ok(), "the archived config must still load in the trainer");

    // A broken run is refused, named, and leaves no half-archived folder.
    let bad = write_run(&dir.join("runs2"), &Run { name: "r18_bad", method: "{ name: ce }", noise: 0.0, device: "cpu", acc: 0.5, epochs: 1 });
    std::fs::write(bad.join("metrics.csv"), "epoch,val_accuracy\n1,not-a-number\n").unwrap();
    let (rc, _, err) = results(&py, &archive, &page, &["--archive", bad.to_str().unwrap(), "--fer-run", fake.to_str().unwrap()]);
    assert_ne!(rc, 0);
    assert!(err.contains(&format!("cannot archive {}", bad.display())) && err.contains("metrics.csv"), "{err}");
    assert!(!archive.join("r18_bad").exists() && !archive.join("r18_bad.partial").exists(), "a broken run entered the archive");
}

/// The card's numbers come from the run, the ONNX metadata and the `fer-run` reports; `--recipe`
/// overrides the config named by `fer.recipe` (runs renamed with `--set name=`), and
/// `--bench-note` lands under the latency table.
#[test]
fn model_card_comes_from_the_run_and_the_reports() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("model_card_script");
    let run = write_run(&dir.join("runs"), &Run { name: "r18_eac_x", method: "{ name: eac }", noise: 0.0, device: "cpu", acc: 0.65, epochs: 3 });
    let onnx = run.join("model.onnx");
    let st = Command::new(&py).arg("-c").arg(TINY_ONNX).arg(&onnx).status().unwrap();
    assert!(st.success(), "building the tiny ONNX file");
    let bench = dir.join("bench_ort.json");
    std::fs::write(&bench, r#"{"backend": "ort", "batch": 1, "p50_ms": 0.5, "p95_ms": 0.714, "throughput": 1987.6}"#).unwrap();
    let eval = dir.join("eval_tract.json");
    std::fs::write(&eval, r#"{"backend": "tract", "accuracy": 0.65, "images": 3589}"#).unwrap();
    let eval_tta = dir.join("eval_tta.json");
    std::fs::write(&eval_tta, r#"{"backend": "ort", "tta": "ten-crop", "accuracy": 0.6812, "images": 3589, "mean_class_accuracy": 0.6501, "macro_f1": 0.66237}"#).unwrap();
    let card = |extra: &[&str]| -> String {
        let path = dir.join("card.md");
        let out = Command::new(&py)
            .arg(repo().join("scripts/model_card.py"))
            .args([&run, &onnx, &path])
            .arg("--bench")
            .arg(&bench)
            .arg("--fer-run-eval")
            .arg(&eval)
            .arg("--fer-run-eval")
            .arg(&eval_tta)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&path).unwrap()
    };

    let plain = card(&[]);
    eprintln!("{plain}");
    assert!(plain.starts_with("# model.onnx\n\n| | |"), "no --note, no quote: {plain}");
    assert!(plain.contains("| method | eac (λ = 5) |") && plain.contains("| backbone | resnet18 |"), "{plain}");
    assert!(plain.contains("| recipe | `configs/fer2013_r18_eac.yaml`, 3 epochs |"), "recipe from fer.recipe: {plain}");
    assert!(plain.contains("| input | `input` float32 [N, 3, 8, 8], rgb, (x/255 − 0.5) / 0.5, whole face resized |"), "{plain}");
    assert!(plain.contains("| accuracy (final epoch, `fer-train`) | 65.00 % |"), "{plain}");
    assert!(plain.contains("| best epoch accuracy | 62.50 % (epoch 1) |"), "{plain}");
    assert!(
        plain.contains(
            "| accuracy of this file in `fer-run eval` (tract) | 65.00 % on 3589 images |\n\
             | accuracy of this file in `fer-run eval` (ort, `--tta ten-crop`) | 68.12 % on 3589 images (mean class 65.01 %, macro-F1 0.6624) |"
        ),
        "one row per eval report, in order: {plain}"
    );
    assert!(plain.contains("| ort | inference | 1 | 0.50 | 0.71 | 1988 |\n\n## License and use"), "no --bench-note, nothing under the table: {plain}");
    assert_eq!(plain.matches("| 1.00e-03 | 1.0000 | 50.00 % | 65.00 % |").count(), 3, "one row per epoch: {plain}");

    let noted = card(&["--recipe", "configs/cpu_r18.yaml", "--note", "Trained on a CPU.", "--bench-note", "500 calls, 3 rounds."]);
    assert!(noted.starts_with("# model.onnx\n\n> Trained on a CPU.\n\n| | |"), "{noted}");
    assert!(noted.contains("| recipe | `configs/cpu_r18.yaml`, 3 epochs |") && !noted.contains("fer2013_r18_eac.yaml"), "{noted}");
    assert!(noted.contains("| ort | inference | 1 | 0.50 | 0.71 | 1988 |\n\n500 calls, 3 rounds.\n\n## License and use"), "{noted}");
}

/// `scripts/device_return.py`: a GPU call returns at most 8 files of 16 MiB, 64 MiB in all (here
/// scaled down to 1,000-byte parts and 10,000 bytes), so `pack` splits the models into parts,
/// returns every run in its smallest form first (an int8-weight export for runs over one part), then
/// upgrades to float32 in run order while the budget lasts; `unpack` rebuilds them bit for bit and
/// names a missing or corrupt part.
#[test]
fn device_call_returns_as_many_models_as_fit_and_they_rebuild_exactly() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("device_return");
    let (device, out) = (dir.join("device"), dir.join("out"));
    let runs = device.join("runs");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("doctor.log"), vec![b'd'; 100]).unwrap(); // already in $OUT: counts
    let bytes = |n: usize, seed: u8| -> Vec<u8> { (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect() };
    for (name, size, seed) in [("big1", 3000, 1), ("big2", 3000, 2), ("small", 800, 3)] {
        std::fs::create_dir_all(runs.join(name)).unwrap();
        std::fs::write(runs.join(name).join("model.onnx"), bytes(size, seed)).unwrap();
        std::fs::write(runs.join(name).join("summary.json"), "{}").unwrap();
    }
    std::fs::create_dir_all(runs.join("none")).unwrap();
    // The stand-in for `fer-train export --int8-weights`: a smaller file, distinct content.
    let export = "python3 -c \"import sys; open(sys.argv[1], 'wb').write(bytes(range(250)) * 6)\" {out}";
    let script = repo().join("scripts/device_return.py");
    let o = Command::new(&py)
        .current_dir(&device)
        .arg(&script)
        .args(["pack", out.to_str().unwrap(), "big1", "big2", "small", "none"])
        .args(["--part-bytes", "1000", "--max-total", "10000", "--tar-reserve", "500", "--export-small", export])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // Budget: 8 − 1 (doctor.log) − 1 (runs.tar.gz) = 6 files, 10,000 − 100 − 500 bytes. Smallest
    // forms: big1 int8 (2 parts), big2 int8 (2), small (1); then big1 upgrades to float32 (3 parts).
    let mut got: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    got.sort();
    let want = ["big1.model.onnx.part1of3", "big1.model.onnx.part2of3", "big1.model.onnx.part3of3", "big2.model_int8.onnx.part1of2",
                "big2.model_int8.onnx.part2of2", "doctor.log", "small.model.onnx"];
    assert_eq!(got, want, "{err}");
    assert!(err.contains("none: no model.onnx to return"), "{err}");
    assert!(!runs.join("small").join("model_int8.onnx").exists(), "a model that fits one part needs no int8 export");

    // The call packs the manifest and the small files (not the models) as gpu_runs.sh does; here
    // they are unpacked and the models rebuilt from their parts.
    let packed = ["runs/returned_models.json", "runs/big1/summary.json", "runs/big2/summary.json", "runs/small/summary.json"];
    let st = Command::new("tar").current_dir(&device).arg("czf").arg(out.join("runs.tar.gz")).args(packed).status().unwrap();
    assert!(st.success());
    let unpack = |dest: &Path| {
        let o = Command::new(&py).arg(&script).args(["unpack", out.to_str().unwrap(), "--dest", dest.to_str().unwrap()]).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    };
    let here = dir.join("here");
    let (ok, log) = unpack(&here);
    assert!(ok, "{log}");
    for (run, file) in [("big1", "model.onnx"), ("big2", "model_int8.onnx"), ("small", "model.onnx")] {
        let a = std::fs::read(runs.join(run).join(file)).unwrap();
        let b = std::fs::read(here.join("runs").join(run).join(file)).unwrap_or_default();
        assert!(a == b, "{run}/{file} not rebuilt bit for bit\n{log}");
    }
    assert!(here.join("runs/big1/summary.json").is_file(), "runs.tar.gz not unpacked");

    // A corrupt part and a missing one: named, that model skipped, the others rebuilt, exit non-zero.
    std::fs::write(out.join("big2.model_int8.onnx.part2of2"), b"corrupt").unwrap();
    std::fs::remove_file(out.join("small.model.onnx")).unwrap();
    let again = dir.join("again");
    let (ok, log) = unpack(&again);
    assert!(!ok, "{log}");
    assert!(log.contains("big2: model_int8.onnx rebuilt from") && log.contains("sha256"), "{log}");
    assert!(log.contains("small: part(s) small.model.onnx missing"), "{log}");
    assert!(again.join("runs/big1/model.onnx").is_file() && !again.join("runs/big2/model_int8.onnx").exists(), "{log}");

    // A truncated runs.tar.gz (a transfer that broke off): named, nothing unpacked.
    let tar = std::fs::read(out.join("runs.tar.gz")).unwrap();
    std::fs::write(out.join("runs.tar.gz"), &tar[..tar.len() / 2]).unwrap();
    let (ok, log) = unpack(&dir.join("truncated"));
    assert!(!ok && log.contains("runs.tar.gz: not a readable tar.gz"), "{log}");
}

/// An int8-weight file (`fer-train export --int8-weights`, as a GPU call now returns large models)
/// has the parameters and MACs of its float32 original in the tables: its int8 values count, its
/// DequantizeLinear's scales and zero points do not (Conv W 108 + Gemm B 1,792 + bias 7 = 1,907).
#[test]
fn an_int8_weight_file_counts_as_its_float32_original() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("int8_stats");
    let (f32_path, int8_path) = (dir.join("tiny.onnx"), dir.join("tiny_int8.onnx"));
    let st = Command::new(&py).arg("-c").arg(TINY_ONNX).arg(&f32_path).status().unwrap();
    assert!(st.success(), "building the tiny ONNX file");
    let (q, report) = fer_export::int8::quantize_weights(fer_export::load(&f32_path).unwrap(), 1).unwrap();
    assert_eq!(report.tensors, 2);
    fer_export::save(&q, &int8_path).unwrap();
    let count = "import sys, onnx; sys.path.insert(0, sys.argv[1]); import runinfo\n\
                 m = onnx.load(sys.argv[2]); print(runinfo.onnx_params(m), runinfo.onnx_macs(m))";
    let stats = |p: &Path| {
        let o = Command::new(&py).arg("-c").arg(count).arg(repo().join("scripts")).arg(p).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(stats(&f32_path), "1907 8704");
    assert_eq!(stats(&int8_path), "1907 8704");
}

/// `scripts/set_metadata.py` sets and removes `fer.*` keys and leaves everything else as it was;
/// a pair that is not `fer.<key>=<value>`, a file that is not ONNX and a change fer-run refuses
/// are refused by name, the file untouched.
#[test]
fn set_metadata_changes_only_the_named_keys() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("set_metadata_script");
    let onnx = dir.join("m.onnx");
    let st = Command::new(&py).arg("-c").arg(TINY_ONNX).arg(&onnx).status().unwrap();
    assert!(st.success(), "building the tiny ONNX file");
    let script = repo().join("scripts/set_metadata.py");
    // Stand-ins for fer-run (the checks of the values are the runtime's, tested there): one that
    // accepts every file, one that refuses it naming the file it was given, as fer-run does.
    let accept = dir.join("accepting-fer-run");
    std::fs::write(&accept, "#!/bin/sh\nexit 0\n").unwrap();
    let refuse = dir.join("refusing-fer-run");
    std::fs::write(&refuse, "#!/bin/sh\necho 'Error: cannot read the model' >&2\necho \"    $3: metadata fer.crop_pad = x: expected a whole number\" >&2\nexit 1\n").unwrap();
    for f in [&accept, &refuse] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let run_with = |fer_run: &Path, args: &[&str]| Command::new(&py).arg(&script).arg("--fer-run").arg(fer_run).args(args).output().unwrap();
    let run = |args: &[&str]| run_with(&accept, args);
    let props = |p: &Path| -> String {
        let code = "import sys, json, onnx; m = onnx.load(sys.argv[1]); \
                    print(json.dumps({p.key: p.value for p in m.metadata_props}, sort_keys=True)); \
                    print(len(m.graph.node), [i.name for i in m.graph.initializer])";
        let out = Command::new(&py).arg("-c").arg(code).arg(p).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let before = props(&onnx);
    let o = run(&[onnx.to_str().unwrap(), "fer.crop_pad=4", "fer.eval_view=centre_crop", "fer.recipe="]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = props(&onnx);
    assert!(after.contains(r#""fer.crop_pad": "4""#) && after.contains(r#""fer.eval_view": "centre_crop""#), "{after}");
    assert!(!after.contains("fer.recipe") && before.contains("fer.recipe"), "fer.recipe= removes the key: {after}");
    assert!(after.contains(r#""fer.labels": "angry,happy""#), "other keys stay: {after}");
    assert_eq!(after.lines().nth(1), before.lines().nth(1), "the graph is untouched");

    let bytes = std::fs::read(&onnx).unwrap();
    // A value fer-run refuses: the file stays as it was, no temporary file is left, and the
    // message names the model (not the temporary file fer-run was given) and the reason.
    let o = run_with(&refuse, &[onnx.to_str().unwrap(), "fer.crop_pad=x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("m.onnx: left as it was") && err.contains("m.onnx: metadata fer.crop_pad = x: expected a whole number") && !err.contains(".tmp"), "{err}");
    assert_eq!(std::fs::read(&onnx).unwrap(), bytes);
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")), "a temporary file was left");
    // Without a built fer-run the change is made, with a warning that it was not checked.
    let o = run_with(&dir.join("no-such-fer-run"), &[onnx.to_str().unwrap(), "fer.note=x"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not checked"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(props(&onnx).contains(r#""fer.note": "x""#));
    let o = run(&[onnx.to_str().unwrap(), "fer.note="]);
    assert!(o.status.success());
    let bytes = std::fs::read(&onnx).unwrap();
    for bad in ["crop_pad=4", "fer.=1", "fer.crop_pad"] {
        let o = run(&[onnx.to_str().unwrap(), bad]);
        assert!(!o.status.success(), "{bad} accepted");
        assert!(String::from_utf8_lossy(&o.stderr).contains("expected fer.<key>=<value>"), "{bad}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(std::fs::read(&onnx).unwrap(), bytes, "refused pairs leave the file as it was");
    let text = dir.join("not.onnx");
    std::fs::write(&text, "not a model").unwrap();
    let o = run(&[text.to_str().unwrap(), "fer.crop_pad=4"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not.onnx: cannot read it as ONNX"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "not a model");
}

/// results.py names a run after what departs from its seed's recipe, so its table of the seeds'
/// loss weights and DAN's heads must be the trainer's defaults (a method named with no weights
/// gets exactly those): a change to one without the other fails here.
#[test]
fn results_seed_values_are_the_trainers_defaults() {
    let Some(py) = python_or_skip() else { return };
    let code = "import sys, json; sys.path.insert(0, sys.argv[1]); import results as r; \
                print(json.dumps({'weights': r.SEED_WEIGHTS, 'dan_heads': r.SEED_DAN_HEADS}))";
    let out = Command::new(&py).arg("-c").arg(code).arg(repo().join("scripts")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seeds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let defaults = |name: &str| -> serde_json::Value {
        let m: fer_train::methods::MethodConfig = serde_yaml::from_str(&format!("name: {name}")).unwrap();
        serde_json::to_value(m).unwrap()
    };
    let weights = seeds["weights"].as_object().unwrap();
    assert_eq!(weights.len(), 4, "eac, dacfer, dan, grefel_rb: {weights:?}");
    for (name, entries) in weights {
        let d = defaults(name);
        for e in entries.as_array().unwrap() {
            let (key, value) = (e[0].as_str().unwrap(), e[1].as_f64().unwrap());
            assert_eq!(d[key].as_f64(), Some(value), "{name}.{key}: results.py says {value}, the trainer's default is {}", d[key]);
        }
    }
    assert_eq!(defaults("dan")["heads"].as_i64(), seeds["dan_heads"].as_i64(), "DAN's heads");
}

/// An ensemble file's card lists its members from the file's `fer.member<i>.*` keys and their runs,
/// and the ensemble's own `fer-run eval` rows, with no training table (the members' runs hold them);
/// runs that do not match the members in number are refused.
#[test]
fn model_card_of_an_ensemble_lists_its_members() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("model_card_ensemble");
    let runs: Vec<PathBuf> = [("edge48", 96), ("edge64", 64)]
        .iter()
        .map(|(name, epochs)| write_run(&dir.join("runs"), &Run { name, method: "{ name: eac }", noise: 0.0, device: "cpu", acc: 0.6, epochs: *epochs }))
        .collect();
    let onnx = dir.join("pair.onnx");
    let st = Command::new(&py).arg("-c").arg(TINY_ONNX).arg(&onnx).status().unwrap();
    assert!(st.success(), "building the tiny ONNX file");
    let retag = r#"
import sys, onnx
m = onnx.load(sys.argv[1])
keep = {p.key: p.value for p in m.metadata_props if p.key in ("fer.labels", "fer.input_size", "fer.color", "fer.mean", "fer.std", "fer.data")}
keep.update({"fer.method": "ensemble", "fer.backbone": "mobilenet_v2+mobilenet_v2", "fer.members": "a.onnx,b.onnx",
             "fer.eval_view": "centre_crop", "fer.crop_pad": "5",
             "fer.member0.method": "eac", "fer.member0.backbone": "mobilenet_v2", "fer.member0.input_size": "48,48",
             "fer.member0.eval_view": "centre_crop", "fer.member0.crop_pad": "4", "fer.member0.recipe": "cpu_mbv2_eac_kd96",
             "fer.member0.val_accuracy": "0.6453",
             "fer.member1.method": "eac", "fer.member1.backbone": "mobilenet_v2", "fer.member1.input_size": "64,64",
             "fer.member1.recipe": "cpu_mbv2_eac_64"})
del m.metadata_props[:]
onnx.helper.set_model_props(m, keep)
onnx.save(m, sys.argv[1])
"#;
    let st = Command::new(&py).arg("-c").arg(retag).arg(&onnx).status().unwrap();
    assert!(st.success(), "retagging it as an ensemble");
    let eval = dir.join("eval.json");
    std::fs::write(&eval, r#"{"backend": "tract", "accuracy": 0.6634, "images": 3589}"#).unwrap();
    let card_path = dir.join("pair.md");
    let card = |run_dirs: &str| {
        Command::new(&py)
            .arg(repo().join("scripts/model_card.py"))
            .arg(run_dirs)
            .args([&onnx, &card_path])
            .arg("--fer-run-eval")
            .arg(&eval)
            .output()
            .unwrap()
    };
    let both = format!("{},{}", runs[0].display(), runs[1].display());
    let out = card(&both);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&card_path).unwrap();
    eprintln!("{text}");
    assert!(text.contains("| method | ensemble: the mean of 2 models' probabilities, in one graph |"), "{text}");
    assert!(text.contains("| backbones | mobilenet_v2+mobilenet_v2 |"), "{text}");
    let row0 = format!(
        "| 0 | a.onnx | eac, mobilenet_v2 | 48x48 px, centre crop of a 4 px larger resize | 96 | 64.53 % | `{}` |",
        runs[0].display()
    );
    let row1 = format!("| 1 | b.onnx | eac, mobilenet_v2 | 64x64 px, whole face resized | 64 | - | `{}` |", runs[1].display());
    assert!(text.contains(&row0) && text.contains(&row1), "{text}");
    assert!(text.contains("centre crop of a 5 px larger resize |"), "the ensemble's own view: {text}");
    assert!(text.contains("| accuracy of this file in `fer-run eval` (tract) | 66.34 % on 3589 images |"), "{text}");
    assert!(!text.contains("fer-train") && !text.contains("| epoch | lr |"), "no training rows: {text}");

    let out = card(&runs[0].display().to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("joins a.onnx,b.onnx: give one run per member"), "{err}");
}

/// One `fer-run --no-detect --json` line for a face in `dir/<class>/`, labels angry and happy.
fn prediction(dir: &Path, class: &str, n: usize, angry: f64) -> String {
    let (file, label) = (dir.join(class).join(format!("{n}.png")), if angry >= 0.5 { "angry" } else { "happy" });
    serde_json::json!({"file": file, "face": 0, "box": null, "label": label, "class_index": 0, "confidence": 0.5,
                       "probs": {"angry": angry, "happy": 1.0 - angry}})
    .to_string()
}

fn compare_predictions(py: &Path, a: &Path, b: &Path) -> (i32, String, String) {
    let out = Command::new(py).arg(repo().join("scripts/compare_predictions.py")).arg(a).arg(b).arg("--json").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Five faces counted by hand: A is right on 1, 3, 5; B on 2, 3; the mean of the two on 1, 2, 3
/// (face 5: 0.3 and 0.8 angry average 0.55, wrong; face 2: 0.45 and 0.7, right).
#[test]
fn compare_predictions_counts_faces_mcnemar_and_the_ensemble() {
    let Some(py) = python_or_skip() else { return };
    let dir = temp_dir("compare_predictions");
    let faces = [("angry", 1, 0.9, 0.4), ("angry", 2, 0.45, 0.7), ("happy", 3, 0.2, 0.1), ("happy", 4, 0.6, 0.9), ("happy", 5, 0.3, 0.8)];
    let write = |name: &str, lines: Vec<String>| {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let a = write("a.jsonl", faces.iter().map(|f| prediction(&dir, f.0, f.1, f.2)).collect());
    // B's lines in another order: faces are matched by file, not by line.
    let b = write("b.jsonl", faces.iter().rev().map(|f| prediction(&dir, f.0, f.1, f.3)).collect());
    let (code, out, err) = compare_predictions(&py, &a, &b);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let close = |v: &serde_json::Value, want: f64| assert!((v.as_f64().unwrap() - want).abs() < 1e-9, "{v} != {want}\n{out}");
    assert_eq!(r["faces"], 5);
    close(&r["a"]["accuracy"], 0.6);
    close(&r["b"]["accuracy"], 0.4);
    close(&r["a"]["mean_class_accuracy"], (0.5 + 2.0 / 3.0) / 2.0);
    close(&r["b"]["mean_class_accuracy"], (0.5 + 1.0 / 3.0) / 2.0);
    assert_eq!((&r["both_right"], &r["only_a_right"], &r["only_b_right"], &r["both_wrong"]), (&1.into(), &2.into(), &1.into(), &1.into()));
    assert_eq!(r["different_labels"], 3);
    close(&r["mcnemar_z"], -1.0 / 3f64.sqrt());
    close(&r["standard_error_points"], 100.0 * 3f64.sqrt() / 5.0);
    close(&r["ensemble"]["accuracy"], 0.6);
    close(&r["ensemble"]["mean_class_accuracy"], (1.0 + 1.0 / 3.0) / 2.0);

    // Bad input: an error naming the file (and line), never a traceback.
    let short = write("short.jsonl", faces[..4].iter().map(|f| prediction(&dir, f.0, f.1, f.3)).collect());
    let broken = write("broken.jsonl", vec![prediction(&dir, "angry", 1, 0.4), "{not json".into()]);
    let loose = write("loose.jsonl", vec![prediction(&dir, "faces", 1, 0.4)]);
    for (other, says) in [
        (&short, format!("{} and {} hold different faces (1 only in the first, 0 only in the second)", a.display(), short.display())),
        (&broken, format!("{}:2: not a fer-run --json line", broken.display())),
        (&dir.join("missing.jsonl"), format!("{}: cannot read it", dir.join("missing.jsonl").display())),
    ] {
        let (code, _, err) = compare_predictions(&py, &a, other);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&says) && !err.contains("Traceback"), "wanted {says:?} in:\n{err}");
    }
    let (code, _, err) = compare_predictions(&py, &loose, &loose);
    assert_eq!(code, 1);
    assert!(err.contains("faces/1.png is not in a folder named after a label"), "{err}");
}
