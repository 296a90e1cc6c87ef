//! Helpers shared by the workspace tests.

use std::path::PathBuf;

/// The set-up's Python (`FER_PYTHON`, written into `.cargo/config.toml` by `scripts/setup.sh`), or
/// `None` with a printed reason, so tests that need a reference skip instead of failing obscurely.
pub fn python_or_skip() -> Option<PathBuf> {
    match std::env::var_os("FER_PYTHON").map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        _ => {
            eprintln!("SKIP: FER_PYTHON is not set or missing; run scripts/setup.sh for the reference tests");
            None
        }
    }
}

/// A fresh, empty directory under the system temp dir (unique per test name and process). The
/// directories stay after the tests (to look into a failure), so those of test processes that have
/// ended are removed here first: runs, models and datasets piled up to 23 GB on a development box.
pub fn temp_dir(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join("fer-tests");
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| remove_dirs_of_ended_processes(&root));
    let dir = root.join(format!("{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// Element-wise `|a − b| ≤ atol + rtol·|b|`, reporting the worst element.
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {} values vs {}", got.len(), want.len());
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let excess = (a - b).abs() - (atol + rtol * b.abs());
        if !(excess <= worst.1) || !a.is_finite() {
            worst = (i, if excess.is_nan() { f32::INFINITY } else { excess });
        }
    }
    let max_abs = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(
        worst.1 <= 0.0,
        "{what}: element {} is {} vs {} (max abs diff {max_abs:e}, atol {atol:e}, rtol {rtol:e})",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
    eprintln!("{what}: max abs diff {max_abs:e}");
}

/// The shared FER2013 folder, or `None` with a printed reason.
pub fn fer2013_or_skip() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/datasets/fer2013"));
    if p.join("train").is_dir() && p.join("val").is_dir() {
        Some(p)
    } else {
        eprintln!("SKIP: {} is absent (the shared FER2013 data)", p.display());
        None
    }
}

/// Removes `<root>/<name>_<pid>` where no process `<pid>` runs any more (Linux: /proc/<pid>).
fn remove_dirs_of_ended_processes(root: &std::path::Path) {
    if !std::path::Path::new("/proc/self").exists() {
        return; // no /proc to ask: keep everything
    }
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit_once('_').and_then(|(_, p)| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
