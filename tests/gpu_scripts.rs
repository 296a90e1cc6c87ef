//! The lent-GPU call's scripts, run here against stand-ins for the device's programs (a stub
//! `scripts/device_run.sh` and a fake `fer-train` on PATH), so what they decide is tested without a
//! GPU: `bench/gpu_session.sh` with `SPEED_ARCHS=layout` gives each fit the layout whose step was
//! faster (one timing pair per architecture and size; a failed channels-last step means NCHW), and
//! `bench/gpu_runs.sh` resumes a run the machine already holds instead of failing on it, and packs
//! the session's logs into runs.tar.gz (a call returns at most 8 files: those slots are the models').

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
    case $1 in --arch) arch=$2; shift;; --size) size=$2; shift;; --batch) batch=$2; shift;; --channels-last) cl=true;; esac
    shift
  done
  [ "$arch" = mbv2 ] && arch=mobilenet_v2
  echo "bench $arch $size $batch $cl" >>calls.log
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
    ]);
    let benches: Vec<&str> = calls.lines().filter(|l| l.starts_with("bench")).collect();
    // Two fits share ResNet-18 at 112 px, batch 64: one pair of timings for both.
    assert_eq!(
        benches,
        [
            "bench resnet18 112 64 false",
            "bench resnet18 112 64 true",
            "bench mobilenet_v2 112 64 false",
            "bench mobilenet_v2 112 64 true"
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
    // The logs and timings wait in runs/session/ for runs.tar.gz, so $OUT's 8 file slots go to models.
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in $OUT: {left:?}");
    let timed = std::fs::read_to_string(dir.join("runs/session/layout.jsonl")).unwrap();
    assert_eq!(timed.lines().count(), 4, "{timed}");
    assert!(dir.join("runs/session/doctor.log").is_file());

    // A channels-last step that fails (the first session's misaligned address) means NCHW, and says so.
    let (calls, err) = session(&[
        ("RATE_resnet18_false", "3572.2"),
        ("RATE_resnet18_true", "FAIL"),
        ("RATE_mobilenet_v2_false", "1331.0"),
        ("RATE_mobilenet_v2_true", "1400.0"),
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
