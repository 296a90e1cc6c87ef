//! `fer-train` reports bad input clearly (the file, the key, the class), exits non-zero, never panics.

use std::path::PathBuf;
use std::process::Command;

fn workdir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fer_train(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fer-train")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains("panicked"), "fer-train panicked:\n{err}");
    (o.status.success(), err)
}

/// `<dir>/data/{train,val}/{a,b}/<i>.png`: `per_class` 8x8 gray images of different shades.
fn write_data(dir: &PathBuf, per_class: u8) -> PathBuf {
    let data = dir.join("data");
    for split in ["train", "val"] {
        for class in ["a", "b"] {
            std::fs::create_dir_all(data.join(split).join(class)).unwrap();
            for i in 0..per_class {
                let img = image::GrayImage::from_pixel(8, 8, image::Luma([60 * i + 30]));
                img.save(data.join(split).join(class).join(format!("{i}.png"))).unwrap();
            }
        }
    }
    data
}

fn write_config(dir: &PathBuf, data_root: &PathBuf) -> PathBuf {
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: x\nout_dir: '{}'\ndata: {{ format: folder, root: '{}', classes: [a, b] }}\nsplits: {{ train: train, val: val, cache_dir: null }}\nmodel: {{ arch: resnet18, input_size: 32 }}\nmethod: {{ name: ce }}\ntrain: {{ epochs: 1, batch_size: 2, device: cpu, optimizer: {{ name: adam, lr: 0.001 }}, scheduler: {{ name: constant }} }}\n",
            dir.join("runs").display(),
            data_root.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn bad_configs_and_data_are_named() {
    let dir = workdir("errors");
    let data = write_data(&dir, 1);
    let cfg = write_config(&dir, &data);
    let c = cfg.to_str().unwrap();

    let (ok, err) = fer_train(&["fit", "--config", c, "--set", "train.epoch=3"]);
    assert!(!ok && err.contains("--set train.epoch=3: train.epoch: unknown field `epoch`"), "{err}");

    // The OS's reason is in the message; the report does not repeat it under "Caused by".
    let (ok, err) = fer_train(&["fit", "--config", "/nonexistent/c.yaml"]);
    assert!(!ok && err.contains("/nonexistent/c.yaml"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    let (ok, err) = fer_train(&["fit", "--config", c, "--set", "train.optimizer.name=adagrad"]);
    assert!(!ok && err.contains("adagrad"), "{err}");

    std::fs::create_dir_all(data.join("train/contempt")).unwrap();
    let (ok, err) = fer_train(&["fit", "--config", c]);
    assert!(!ok && err.contains("contempt"), "{err}");
    std::fs::remove_dir_all(data.join("train/contempt")).unwrap();

    std::fs::write(data.join("train/a/1.png"), b"not a png at all").unwrap();
    let (ok, err) = fer_train(&["fit", "--config", c]);
    assert!(!ok && err.contains("1.png"), "{err}");

    // A context line over the file's error: both are said, each once.
    let (ok, err) = fer_train(&["eval", "--run", dir.join("nothing").to_str().unwrap()]);
    assert!(!ok && err.contains("nothing"), "{err}");
    assert!(err.contains("Caused by:\n    ") && err.contains("nothing/config.yaml"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// `fer-train doctor` runs a kernel on every device libtorch sees, also under bf16 autocast, and
/// the binary really links libtorch_cuda (the linker's --as-needed would otherwise drop it and CUDA
/// would silently vanish).
#[test]
fn doctor_runs_and_libtorch_cuda_is_linked() {
    let out = Command::new(env!("CARGO_BIN_EXE_fer-train")).arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Cpu: 256x256 matmul ok") && stdout.contains("Cpu: bf16 autocast ok"), "{stdout}");
    // main() flushes subnormal floats before libtorch starts (fpenv); FER_KEEP_SUBNORMALS=1 does not.
    assert!(stdout.contains("Cpu: subnormal floats flushed to zero"), "{stdout}");
    let kept = Command::new(env!("CARGO_BIN_EXE_fer-train")).arg("doctor").env("FER_KEEP_SUBNORMALS", "1").output().unwrap();
    let kept = String::from_utf8_lossy(&kept.stdout);
    assert!(kept.contains("Cpu: subnormal floats kept"), "{kept}");
    let exe = env!("CARGO_BIN_EXE_fer-train");
    let lib = std::env::var("LIBTORCH").map(PathBuf::from).ok();
    if lib.as_ref().is_some_and(|l| l.join("lib/libtorch_cuda.so").exists()) {
        let out = Command::new("readelf").args(["-d", exe]).output();
        match out {
            Ok(o) => assert!(String::from_utf8_lossy(&o.stdout).contains("libtorch_cuda.so"), "libtorch_cuda.so is not NEEDED by {exe}"),
            Err(_) => eprintln!("SKIP: readelf not found"),
        }
    }
}

/// A reader that goes away (`fer-train doctor | head -1`) ends fer-train quietly, by SIGPIPE as
/// other Unix tools end, not by a panic about a broken pipe.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_fer_train_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // The reader is gone before fer-train starts, so its first line meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_fer-train")).arg("doctor").stdout(writer).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}\n{stderr}", out.status);
}

/// `fer-train bench` times a real training step (its loss is finite) and reports img/s as JSON,
/// also under bf16 autocast;
/// an unknown method is named with the valid ones.
#[test]
fn bench_times_a_training_step() {
    let o = Command::new(env!("CARGO_BIN_EXE_fer-train"))
        .args(["bench", "--arch", "mbv2", "--method", "eac", "--size", "32", "--batch", "4", "--warmup", "1", "--iters", "2", "--device", "cpu", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["arch"].as_str(), v["method"].as_str(), v["batch"].as_i64()), (Some("mobilenet_v2"), Some("eac"), Some(4)));
    let (ms, img_s) = (v["ms_per_step"].as_f64().unwrap(), v["img_per_s"].as_f64().unwrap());
    assert!(ms > 0.0 && (img_s - 4.0 * 1e3 / ms).abs() < 1e-6 * img_s, "{v}");
    assert!(v["loss"].as_f64().unwrap().is_finite());
    assert_eq!(v["bf16"].as_bool(), Some(false));
    // The peer's `amp` rows: the same step under bf16 autocast.
    let o = Command::new(env!("CARGO_BIN_EXE_fer-train"))
        .args(["bench", "--arch", "mbv2", "--size", "32", "--batch", "4", "--warmup", "1", "--iters", "2", "--device", "cpu", "--bf16", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["bf16"].as_bool() == Some(true) && v["loss"].as_f64().unwrap().is_finite(), "{v}");
    let (ok, err) = fer_train(&["bench", "--method", "mixup", "--device", "cpu"]);
    assert!(!ok && err.contains("unknown variant `mixup`") && err.contains("grefel_rb"), "{err}");
    // Sizes no kernel can run: a named error, not a panic inside libtorch.
    for (flag, value) in [("--batch", "0"), ("--size", "0")] {
        let (ok, err) = fer_train(&["bench", "--device", "cpu", flag, value]);
        assert!(!ok && err.contains(&format!("{flag} must be at least")) && !err.contains("panicked"), "{flag} {value}: {err}");
    }
}

/// Ctrl-C (SIGINT) stops `fit` at the next step: the last finished epoch is exported and
/// summarized as at a normal end, the process says so and exits 130, and the run can resume.
#[test]
fn ctrl_c_stops_fit_and_keeps_the_last_epoch() {
    let dir = workdir("ctrl_c");
    let data = write_data(&dir, 2);
    let cfg = write_config(&dir, &data);
    let run = dir.join("runs/x");
    let child = Command::new(env!("CARGO_BIN_EXE_fer-train"))
        .args(["fit", "--config", cfg.to_str().unwrap(), "--set", "train.epochs=100000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first finished epoch (its state.json), then interrupt.
    let t0 = std::time::Instant::now();
    while !run.join("state.json").exists() {
        assert!(t0.elapsed().as_secs() < 300, "no epoch finished in 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let st = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!se.contains("panicked"), "{se}");
    assert_eq!(out.status.code(), Some(130), "stdout:\n{so}\nstderr:\n{se}");
    assert!(so.contains("stopped by Ctrl-C after epoch") && so.contains(&format!("of 100000 (`fer-train fit --resume {}` continues it)", run.display())), "{so}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], state["epochs_done"], "the summary is of the last finished epoch");
    for f in ["model.onnx", "curves.png", "confusion.png", "last.safetensors"] {
        assert!(run.join(f).is_file(), "{f} missing after Ctrl-C");
    }
    // It resumes from there.
    let done = summary["epochs"].as_u64().unwrap();
    let want = (done + 1).to_string();
    let (ok, err) = fer_train(&["fit", "--config", cfg.to_str().unwrap(), "--set", &format!("train.epochs={want}"), "--resume"]);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"].as_u64(), Some(done + 1));
    // `eval` (or its alias `val`) says which view its numbers are for, then scores every class.
    for (cmd, set, view) in [("eval", "train.eval_view=centre_crop", "view centre_crop"), ("val", "train.ten_crop_eval=true", "view ten-crop")] {
        let out = Command::new(env!("CARGO_BIN_EXE_fer-train")).args([cmd, "--run", run.to_str().unwrap(), "--set", set]).output().unwrap();
        let so = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(so.lines().next().is_some_and(|l| l.contains("on val (4 images, ") && l.contains(view)), "{so}");
        assert!(so.contains("     class    faces   recall precision       F1\n"), "{so}");
    }
}

/// `fit --resume <run dir>` goes on with the run's own config (config.yaml), changed only by the
/// command's --set (logged), also in a run folder copied to a new name; `--resume` after
/// --config refuses a difference from the run's config.yaml that no --set asks for.
#[test]
fn resume_goes_on_with_the_runs_own_config() {
    let dir = workdir("resume");
    let data = write_data(&dir, 1);
    let cfg = write_config(&dir, &data);
    let c = cfg.to_str().unwrap();
    let (run, copy) = (dir.join("runs/x"), dir.join("runs/y"));
    let epochs_done = |run: &PathBuf| -> u64 {
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
        state["epochs_done"].as_u64().unwrap()
    };
    let (ok, err) = fer_train(&["fit", "--config", c, "--set", "train.seed=3"]);
    assert!(ok, "{err}");
    // Started again without --resume: refused, with the command that goes on.
    let (ok, err) = fer_train(&["fit", "--config", c, "--set", "train.seed=3"]);
    assert!(!ok && err.contains(&format!("already holds a run; continue it with `fer-train fit --resume {}`", run.display())), "{err}");

    // The seed's --set left out: refused, with the key, both values and the way to go on.
    let (ok, err) = fer_train(&["fit", "--config", c, "--set", "train.epochs=2", "--resume"]);
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("differs from {}, the config the run trains with", run.join("config.yaml").display())), "{err}");
    assert!(err.contains("\n  train.seed: 3 -> 0\n") && !err.contains("train.epochs"), "only the unasked change: {err}");
    assert!(err.contains(&format!("fer-train fit --resume {} [--set", run.display())), "{err}");
    assert_eq!(epochs_done(&run), 1, "nothing trained");

    // By its folder: its own config, with more epochs.
    let (ok, err) = fer_train(&["fit", "--resume", run.to_str().unwrap(), "--set", "train.epochs=2"]);
    assert!(ok, "{err}");
    assert!(err.contains("with changes from its config.yaml:\n  train.epochs: 1 -> 2"), "{err}");
    assert_eq!(epochs_done(&run), 2);
    let saved = std::fs::read_to_string(run.join("config.yaml")).unwrap();
    assert!(saved.contains("epochs: 2") && saved.contains("seed: 3"), "{saved}");
    // The same sets after --config as at the start (and the new length) are no difference.
    let (ok, err) = fer_train(&["fit", "--config", c, "--set", "train.seed=3", "--set", "train.epochs=3", "--resume"]);
    assert!(ok && err.contains("going on from epoch 3 of 3"), "{err}");
    assert_eq!(epochs_done(&run), 3);
    // A finished run resumed as it is: said so, summarized and exported again.
    let (ok, err) = fer_train(&["fit", "--resume", run.to_str().unwrap()]);
    assert!(ok && err.contains("3 epochs trained already, of 3: nothing to train"), "{err}");

    // A copy of the folder goes on in the copy.
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&run).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
    }
    let (ok, err) = fer_train(&["fit", "--resume", copy.to_str().unwrap(), "--set", "train.epochs=4"]);
    assert!(ok, "{err}");
    assert_eq!((epochs_done(&run), epochs_done(&copy)), (3, 4));

    // What cannot be resumed says why.
    let nothing = dir.join("nothing");
    for (args, want) in [
        (vec!["fit", "--resume", nothing.to_str().unwrap()], "no config.yaml there, so not a run folder"),
        (vec!["fit"], "fit needs a recipe: --config <FILE.yaml>"),
        (vec!["fit", "--resume"], "fit needs a recipe"),
        (vec!["fit", "--config", c, "--resume", run.to_str().unwrap()], "leave out --config"),
        (vec!["fit", "--resume", run.to_str().unwrap(), "--set", "name=z"], "--set name=z: a resumed run goes on in its own folder"),
    ] {
        let (ok, err) = fer_train(&args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }
}

/// `fer-train summarize` on what is not a run, a run without state.json, a corrupt state.json and
/// one with no finished epoch: each error names the folder or file, and nothing is written.
#[test]
fn summarize_names_what_is_missing_or_broken() {
    let dir = workdir("summarize");
    let (ok, err) = fer_train(&["summarize", "--run", dir.join("nothing").to_str().unwrap()]);
    assert!(!ok && err.contains("nothing") && err.contains("not a run directory"), "{err}");

    let data = write_data(&dir, 1);
    let cfg = write_config(&dir, &data);
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(&cfg, run.join("config.yaml")).unwrap();
    let r = run.to_str().unwrap();
    let (ok, err) = fer_train(&["summarize", "--run", r]);
    assert!(!ok && err.contains(&run.join("state.json").display().to_string()), "{err}");

    std::fs::write(run.join("state.json"), "{ \"epochs_done\": 3, truncated").unwrap();
    let (ok, err) = fer_train(&["summarize", "--run", r]);
    assert!(!ok && err.contains("state.json: not a fer-train state file"), "{err}");

    std::fs::write(run.join("state.json"), r#"{"epochs_done": 0, "history": [], "scheduler": {"best": null, "bad_epochs": 0}, "noisy_labels": 0}"#).unwrap();
    let (ok, err) = fer_train(&["summarize", "--run", r]);
    assert!(!ok && err.contains("no finished epoch to summarize"), "{err}");
    assert!(!run.join("summary.json").exists(), "a failed summarize wrote summary.json");
}
