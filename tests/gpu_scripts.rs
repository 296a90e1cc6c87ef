//! The lent-GPU call's scripts, run here against stand-ins for the device's programs (a stub
//! `scripts/device_run.sh` and a fake `fer-train` on PATH), so what they decide is tested without a
//! GPU: `bench/gpu_session.sh` with `SPEED_ARCHS=layout` gives each fit the layout whose step was
//! faster (one timing pair per architecture and size; a failed channels-last step means NCHW), and
//! `bench/gpu_runs.sh` resumes a run the machine already holds instead of failing on it, and packs
//! the session's logs into runs.tar.gz (a call returns at most 8 files: those slots are the models').
//! `bench/cpu_methods.sh` (the CPU method table, hours of fits on this box) is tested the same way.

use fer_tests::temp_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch checkout holding the given repo files (same relative paths).
fn checkout(name: &str, files: &[&str]) -> PathBuf {
    let dir = temp_dir(name);
    for f in files {
        let dest = dir.join(f);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(f), &dest).unwrap_or_else(|e| panic!("copying {f}: {e}"));
    }
    dir
}

fn write_exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    let st = Command::new("chmod").arg("+x").arg(path).status().unwrap();
    assert!(st.success());
}

/// Stands in for scripts/device_run.sh: `fer-train doctor` passes, `fer-train bench` prints the JSON
/// line the real one prints, with the rates given per layout (FAIL: that variant exits 1), and
/// anything else (the fits) is recorded in calls.log instead of run.
const STUB_DEVICE_RUN: &str = r#"#!/usr/bin/env bash
cd "$(dirname "$0")/.."
if [ "$1 $2" = "fer-train doctor" ]; then echo "doctor ok"; exit 0; fi
if [ "$1 $2" = "fer-train bench" ]; then
  shift 2; cl=false
  while [ $# -gt 0 ]; do
    case $1 in --arch) arch=$2; shift;; --size) size=$2; shift;; --batch) batch=$2; shift;; --method) method=$2; shift;; --channels-last) cl=true;; esac
    shift
  done
  [ "$arch" = mbv2 ] && arch=mobilenet_v2
  echo "bench $arch $size $batch $cl $method" >>calls.log
  rate=$(eval echo "\${RATE_${arch}_${cl}}")
  [ "$rate" = FAIL ] && { echo "CUDA error: misaligned address" >&2; exit 1; }
  echo "{\"arch\":\"$arch\",\"method\":\"eac\",\"size\":$size,\"batch\":$batch,\"iters\":40,\"device\":\"Cuda(0)\",\"channels_last\":$cl,\"bf16\":false,\"ms_per_step\":1.0,\"img_per_s\":$rate,\"loss\":1.0}"
  exit 0
fi
echo "run $*" >>calls.log
"#;

#[test]
fn gpu_session_layout_mode_picks_each_fits_faster_layout() {
    let files = [
        "bench/gpu_session.sh",
        "configs/fer2013_r18_ce.yaml",
        "configs/fer2013_r18_eac.yaml",
        "configs/fer2013_mbv2_eac.yaml",
        "configs/fer2013_ivsa_sab.yaml",
    ];
    let dir = checkout("gpu_session_layout", &files);
    write_exe(&dir.join("scripts/device_run.sh"), STUB_DEVICE_RUN);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let session = |rates: &[(&str, &str)]| {
        let _ = std::fs::remove_file(dir.join("calls.log"));
        let mut cmd = Command::new("bash");
        cmd.current_dir(&dir)
            .env("SPEED_ARCHS", "layout")
            .env("OUT", &out)
            .args([
                "bench/gpu_session.sh",
                "600",
                "ce_n30 configs/fer2013_r18_ce.yaml noise.rate=0.3",
                "eac_n30 configs/fer2013_r18_eac.yaml noise.rate=0.3",
                "edge configs/fer2013_mbv2_eac.yaml",
                "ivsa configs/fer2013_ivsa_sab.yaml",
            ]);
        for (k, v) in rates {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        (std::fs::read_to_string(dir.join("calls.log")).unwrap(), err)
    };

    // ResNet-18 faster channels-last, MobileNetV2 faster NCHW.
    let (calls, err) = session(&[
        ("RATE_resnet18_false", "3572.2"),
        ("RATE_resnet18_true", "4459.4"),
        ("RATE_mobilenet_v2_false", "1331.0"),
        ("RATE_mobilenet_v2_true", "1200.5"),
        ("RATE_ivsa_false", "900.0"),
        ("RATE_ivsa_true", "1000.0"),
    ]);
    let benches: Vec<&str> = calls.lines().filter(|l| l.starts_with("bench")).collect();
    // Two fits share ResNet-18 at 112 px, batch 64: one pair of timings for both.
    assert_eq!(
        benches,
        [
            "bench resnet18 112 64 false ce",
            "bench resnet18 112 64 true ce",
            "bench mobilenet_v2 112 64 false eac",
            "bench mobilenet_v2 112 64 true eac",
            // IVSA's step is timed with its recipe's cross-entropy: its 3-FC head has no EAC
            "bench ivsa 48 64 false ce",
            "bench ivsa 48 64 true ce"
        ],
        "{err}"
    );
    let fits = calls
        .lines()
        .find(|l| l.starts_with("run bash bench/gpu_runs.sh"))
        .unwrap_or_else(|| panic!("no fits run\n{calls}\n{err}"));
    assert!(
        fits.contains("ce_n30 configs/fer2013_r18_ce.yaml train.channels_last=true noise.rate=0.3"),
        "{fits}"
    );
    assert!(
        fits.contains(
            "eac_n30 configs/fer2013_r18_eac.yaml train.channels_last=true noise.rate=0.3"
        ),
        "{fits}"
    );
    assert!(
        fits.contains("edge configs/fer2013_mbv2_eac.yaml train.channels_last=false"),
        "{fits}"
    );
    assert!(fits.contains("ivsa configs/fer2013_ivsa_sab.yaml train.channels_last=true"), "{fits}");
    // The logs and timings wait in runs/session/ for runs.tar.gz, so $OUT's 8 file slots go to models.
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in $OUT: {left:?}");
    let timed = std::fs::read_to_string(dir.join("runs/session/layout.jsonl")).unwrap();
    assert_eq!(timed.lines().count(), 6, "{timed}");
    assert!(dir.join("runs/session/doctor.log").is_file());

    // A channels-last step that fails (the first session's misaligned address) means NCHW, and says so.
    let (calls, err) = session(&[
        ("RATE_resnet18_false", "3572.2"),
        ("RATE_resnet18_true", "FAIL"),
        ("RATE_mobilenet_v2_false", "1331.0"),
        ("RATE_mobilenet_v2_true", "1400.0"),
        ("RATE_ivsa_false", "900.0"),
        ("RATE_ivsa_true", "800.0"),
    ]);
    assert!(
        err.contains("fer-train bench --arch resnet18 --size 112 --channels-last failed"),
        "{err}"
    );
    let fits = calls
        .lines()
        .find(|l| l.starts_with("run bash bench/gpu_runs.sh"))
        .unwrap();
    assert!(
        fits.contains("ce_n30 configs/fer2013_r18_ce.yaml train.channels_last=false"),
        "{fits}"
    );
    assert!(
        fits.contains("edge configs/fer2013_mbv2_eac.yaml train.channels_last=true"),
        "{fits}"
    );
}

/// A fake `fer-train`: `fit` records its arguments and leaves a run directory with a checkpoint,
/// as a fit stopped at a deadline does; nothing else is called in these runs.
const FAKE_FER_TRAIN: &str = r#"#!/usr/bin/env bash
echo "$*" >>"$FIT_LOG"
if [ "$1" = fit ]; then
  name=$(printf '%s\n' "$@" | sed -n 's/^name=//p')
  mkdir -p "runs/$name" && echo weights >"runs/$name/last.safetensors" && echo '{}' >"runs/$name/summary.json"
fi
"#;

#[test]
fn gpu_runs_resumes_a_run_the_machine_already_holds() {
    let dir = checkout(
        "gpu_runs_resume",
        &["bench/gpu_runs.sh", "scripts/device_return.py"],
    );
    let bin = dir.join("bin");
    write_exe(&bin.join("fer-train"), FAKE_FER_TRAIN);
    let log = dir.join("fit.log");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let call = || {
        let o = Command::new("bash")
            .current_dir(&dir)
            .env("PATH", &path)
            .env("FIT_LOG", &log)
            .env("OUT", dir.join("out"))
            .args(["bench/gpu_runs.sh", "60", "a configs/x.yaml noise.rate=0.3"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::create_dir_all(dir.join("runs/session")).unwrap();
    std::fs::write(dir.join("runs/session/doctor.log"), "doctor ok\n").unwrap();
    call();
    call(); // the second call of a session, on the still-warm machine that kept runs/
    let text = std::fs::read_to_string(&log).unwrap();
    let fits: Vec<&str> = text.lines().filter(|l| l.starts_with("fit")).collect();
    assert_eq!(
        fits,
        [
            "fit --config configs/x.yaml --set name=a --set noise.rate=0.3",
            "fit --config configs/x.yaml --set name=a --set noise.rate=0.3 --resume"
        ]
    );
    let o = Command::new("tar")
        .arg("tzf")
        .arg(dir.join("out/runs.tar.gz"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&o.stdout);
    for f in [
        "runs/a/summary.json",
        "runs/a.log",
        "runs/session/doctor.log",
    ] {
        assert!(
            listed.lines().any(|l| l == f),
            "{f} not in runs.tar.gz:\n{listed}"
        );
    }
}

/// bench/cache_to_folder.py turns a `fer-train cache` file back into class folders that the
/// trainer's folder reader (and the peer's ImageFolder loading) reads as exactly the cached faces,
/// gray and colour: the device's whole-epoch comparison depends on both sides seeing the same data.
#[test]
fn cache_to_folder_writes_back_exactly_the_cached_faces() {
    use fer_train::data::{load_split, Color, DataFormat, DataSpec, Dataset};
    use tch::{Kind, Tensor};
    let Some(py) = fer_tests::python_or_skip() else { return };
    let dir = temp_dir("cache_to_folder");
    let classes: Vec<String> = ["angry", "happy", "sad"].iter().map(|s| s.to_string()).collect();
    for (color, c) in [(Color::Gray, 1), (Color::Rgb, 3)] {
        tch::manual_seed(c);
        let n = 10i64;
        let images = Tensor::randint(256, [n, c, 6, 5], (Kind::Uint8, tch::Device::Cpu));
        let labels: Vec<i64> = (0..n).map(|i| (i * 7 + 1) % 3).collect();
        let ds = Dataset::new(images.shallow_clone(), labels.clone(), classes.clone(), "fixture").unwrap();
        let cache = dir.join(format!("train-{c}.safetensors"));
        ds.save_cache(&cache).unwrap();
        let out = dir.join(format!("folder{c}"));
        let st = Command::new(&py)
            .arg(repo().join("bench/cache_to_folder.py"))
            .arg(&out)
            .arg(format!("train={}", cache.display()))
            .status()
            .unwrap();
        assert!(st.success(), "cache_to_folder.py failed");
        let spec = DataSpec { color, ..DataSpec::new(DataFormat::Folder, &out) };
        let back = load_split(&spec, "train").unwrap();
        assert_eq!(back.classes, classes);
        // The folder reader groups by class; within a class the files keep the cache's order.
        let mut order: Vec<usize> = (0..n as usize).collect();
        order.sort_by_key(|&i| labels[i]);
        let want_labels: Vec<i64> = order.iter().map(|&i| labels[i]).collect();
        assert_eq!(back.labels, want_labels, "{c} channel(s)");
        let idx = Tensor::from_slice(&order.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let want = images.index_select(0, &idx);
        assert!(back.images.equal(&want), "{c} channel(s): pixels differ after the round trip");
    }
    // A file that is not a cache is refused by name, not with a traceback.
    let bogus = dir.join("bogus.safetensors");
    std::fs::write(&bogus, b"not a cache").unwrap();
    let o = Command::new(&py)
        .arg(repo().join("bench/cache_to_folder.py"))
        .arg(dir.join("x"))
        .arg(format!("train={}", bogus.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bogus.safetensors") && !err.contains("Traceback"), "{err}");
}

/// `SPEED_EPOCH` adds the whole-epoch comparison before the fits: the peer's folders are written
/// from the carried caches, then one `train_vs_pytorch.py epoch` per named arch; without caches it
/// says why it skipped and the fits still run.
#[test]
fn gpu_session_epoch_comparison_runs_before_the_fits() {
    let dir = checkout("gpu_session_epoch", &["bench/gpu_session.sh", "configs/fer2013_r18_eac.yaml"]);
    write_exe(&dir.join("scripts/device_run.sh"), STUB_DEVICE_RUN);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let session = || {
        let _ = std::fs::remove_file(dir.join("calls.log"));
        let o = Command::new("bash")
            .current_dir(&dir)
            .env("SPEED_ARCHS", "none")
            .env("SPEED_EPOCH", "resnet18,mobilenet_v2")
            .env("OUT", &out)
            .args(["bench/gpu_session.sh", "600", "eac configs/fer2013_r18_eac.yaml"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        (std::fs::read_to_string(dir.join("calls.log")).unwrap(), err)
    };

    let (calls, err) = session();
    assert!(err.contains("no train and val caches"), "{err}");
    assert!(!calls.contains("train_vs_pytorch.py"), "{calls}");
    assert!(calls.contains("run bash bench/gpu_runs.sh"), "{calls}");

    std::fs::create_dir_all(dir.join(".cache/data")).unwrap();
    for f in ["train-ab12.safetensors", "val-cd34.safetensors"] {
        std::fs::write(dir.join(".cache/data").join(f), b"x").unwrap();
    }
    let (calls, err) = session();
    let runs: Vec<&str> = calls.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(runs.len(), 4, "{calls}\n{err}");
    assert_eq!(
        runs[0],
        "run python3 bench/cache_to_folder.py .cache/epoch-data train=.cache/data/train-ab12.safetensors \
         val=.cache/data/val-cd34.safetensors"
    );
    for (line, arch) in runs[1..3].iter().zip(["resnet18", "mobilenet_v2"]) {
        assert!(
            line.starts_with(&format!("run python3 bench/train_vs_pytorch.py epoch --arch {arch} --method eac")),
            "{line}"
        );
        assert!(line.contains("--peer .device-carry/peer/ref_train.py") && line.contains("--data .cache/epoch-data"), "{line}");
    }
    assert!(runs[3].starts_with("run bash bench/gpu_runs.sh"), "{}", runs[3]);
    assert!(dir.join("runs/session/epoch.log").is_file());
}

/// When the shipped models and the dataset caches do not fit one device call, a first call carries
/// only caches (`.device-carry-pre`) and `device_run.sh --unpack-only` unpacks them; the next call,
/// without them, still finds them in `.cache/data` and runs fer-train from its own carry.
#[test]
fn device_run_unpacks_a_first_calls_caches_for_the_next() {
    let Some(py) = fer_tests::python_or_skip() else { return };
    let dir = checkout("device_run_pre", &["scripts/device_run.sh"]);
    let xz = |src: &[u8], dest: &Path| {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let tmp = dest.with_extension("raw");
        std::fs::write(&tmp, src).unwrap();
        let st = Command::new(&py)
            .args(["-c", "import lzma, sys; open(sys.argv[2], 'wb').write(lzma.compress(open(sys.argv[1], 'rb').read()))"])
            .arg(&tmp)
            .arg(dest)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_file(tmp).unwrap();
    };
    let call = |args: &[&str]| {
        let o = Command::new("bash").current_dir(&dir).env("FER_DEVICE_PYTHON", &py).arg("scripts/device_run.sh").args(args).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // First call: only the big cache travels.
    xz(b"train faces", &dir.join(".device-carry-pre/data/train-ab.safetensors.xz"));
    let (ok, _, err) = call(&["--unpack-only"]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(dir.join(".cache/data/train-ab.safetensors")).unwrap(), b"train faces");
    // Second call: the pre folder is gone (not carried), the main carry brings the binary and val.
    std::fs::remove_dir_all(dir.join(".device-carry-pre")).unwrap();
    xz(b"val faces", &dir.join(".device-carry/data/val-cd.safetensors.xz"));
    xz(b"#!/bin/sh\necho fer-train ran with $*; ls .cache/data\n", &dir.join(".device-carry/fer-train.xz"));
    let (ok, out, err) = call(&["fer-train", "doctor"]);
    assert!(ok, "{err}");
    assert!(out.contains("fer-train ran with doctor"), "{out}");
    assert!(out.contains("train-ab.safetensors") && out.contains("val-cd.safetensors"), "{out}");
    // Without a binary, anything but --unpack-only says what to do.
    std::fs::remove_file(dir.join(".device-carry/fer-train.xz")).unwrap();
    let (ok, _, err) = call(&["fer-train", "doctor"]);
    assert!(!ok && err.contains("fer-train.xz is missing"), "{err}");
}

/// bench/cpu_methods.sh runs the CPU method table's fits one after another, the noisy column
/// first, each with the table's budget; a finished run is skipped and one cut short resumes, so
/// the hours-long script can be stopped and started again.
#[test]
fn cpu_methods_skips_finished_runs_and_resumes_cut_ones() {
    let dir = checkout("cpu_methods", &["bench/cpu_methods.sh"]);
    let bin = dir.join("bin");
    write_exe(&bin.join("fer-train"), FAKE_FER_TRAIN);
    let log = dir.join("fit.log");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // A run stopped part-way: a checkpoint and no summary.
    std::fs::create_dir_all(dir.join("runs/cpu_sub10_r18_eac_n30")).unwrap();
    std::fs::write(dir.join("runs/cpu_sub10_r18_eac_n30/last.safetensors"), "weights").unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        Command::new("bash").current_dir(&dir).env("PATH", &path).env("FIT_LOG", &log).envs(envs.iter().copied()).arg("bench/cpu_methods.sh").args(args).output().unwrap()
    };
    let call = |args: &[&str]| {
        let o = run(&[], args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    call(&["0.3"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let fits: Vec<&str> = text.lines().collect();
    let budget = "--set model.input_size=48 --set train.subset_every=10 --set train.epochs=10 --set train.crop_pad=4 \
                  --set train.device=cpu --set train.threads=2 --set train.channels_last=true --set train.eval_batch_size=256";
    assert_eq!(fits[0], format!("fit --config configs/fer2013_r18_ce.yaml --set name=cpu_sub10_r18_ce_n30 --set noise.rate=0.3 {budget}"));
    assert_eq!(fits[1], format!("fit --config configs/fer2013_r18_eac.yaml --set name=cpu_sub10_r18_eac_n30 --set noise.rate=0.3 {budget} --resume"));
    assert!(fits.iter().any(|f| f.contains("name=cpu_sub10_se50_dacfer_n30 ")), "{text}");
    assert!(
        fits.iter().any(|f| f.contains("name=cpu_sub10_r18_eac_wu3_n30 ") && f.ends_with("--set method.consistency_warmup=3")),
        "{text}"
    );
    assert!(!text.contains("ivsa"), "IVSA only with IVSA_TOO=1: {text}");
    assert!(!text.contains("_h1"), "the ablations only with ABLATIONS=1: {text}");
    // Again: every run has its summary now, so nothing is fitted twice.
    let err = call(&["0.3"]);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), text);
    assert!(err.contains("cpu_sub10_r18_ce_n30: done before, skipped"), "{err}");
    // A second seed of two chosen recipes, one of them an ablation: just those two, named *_s1.
    let o = run(&[("ABLATIONS", "1"), ("ONLY", "r18_ce r18_dan_wu3_h1"), ("TRAIN_SEED", "1")], &["0.3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all = std::fs::read_to_string(&log).unwrap();
    let new: Vec<&str> = all[text.len()..].lines().collect();
    assert_eq!(new.len(), 2, "{all}");
    assert_eq!(new[0], format!("fit --config configs/fer2013_r18_ce.yaml --set name=cpu_sub10_r18_ce_n30_s1 --set noise.rate=0.3 --set train.seed=1 {budget}"));
    assert!(new[1].contains("--set name=cpu_sub10_r18_dan_wu3_h1_n30_s1 ") && new[1].ends_with("--set method.consistency_warmup=3 --set method.heads=1"), "{all}");
    // A name that is no recipe is refused, not read as "run nothing".
    let o = run(&[("ONLY", "r18_typo")], &["0.3"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("names no recipe"));
    let o = run(&[("TRAIN_SEED", "one")], &["0.3"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("is not a whole number"));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), all, "refused calls fit nothing");
    // IVSA's attention ablation needs both IVSA_TOO=1 and ABLATIONS=1, and keeps the one-view evaluation.
    let o = run(&[("IVSA_TOO", "1"), ("ONLY", "ivsa_cbam")], &["0"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("names no recipe"));
    let o = run(&[("IVSA_TOO", "1"), ("ABLATIONS", "1"), ("ONLY", "ivsa_cbam")], &["0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ivsa = std::fs::read_to_string(&log).unwrap()[all.len()..].to_string();
    assert_eq!(
        ivsa.trim_end(),
        format!("fit --config configs/fer2013_ivsa_sab.yaml --set name=cpu_sub10_ivsa_cbam --set noise.rate=0 {budget} --set train.ten_crop_eval=false --set train.eval_view=resize --set model.attention=cbam")
    );
    // A longer budget is its own run (*_e20), not a resume of the 10-epoch one.
    let before = std::fs::read_to_string(&log).unwrap();
    let o = run(&[("EPOCHS", "20"), ("ONLY", "r18_ce")], &["0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e20 = std::fs::read_to_string(&log).unwrap()[before.len()..].to_string();
    assert_eq!(e20.trim_end(), format!("fit --config configs/fer2013_r18_ce.yaml --set name=cpu_sub10_r18_ce_e20 --set noise.rate=0 {}", budget.replace("train.epochs=10", "train.epochs=20")));
    let o = run(&[("EPOCHS", "0")], &["0"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("is not a positive whole number"));
}
