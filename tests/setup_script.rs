//! `scripts/setup.sh` fails loudly, naming the step, in the bad set-up states people hit:
//! no python3, a wrong torch already in `.venv`, no network to PyPI. Each case runs the real script
//! in a scratch copy of the checkout with shims standing in for python and pip.

use fer_tests::temp_dir;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    for f in ["setup.sh", "requirements.txt"] {
        std::fs::copy(src.join("scripts").join(f), dir.join("scripts").join(f)).unwrap();
    }
    dir
}

fn shim(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/bash\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs setup.sh with PATH = `bin` + the system dirs that hold bash and coreutils only.
fn run_setup(dir: &Path, bin: &Path) -> (bool, String) {
    let out = Command::new("/bin/bash")
        .arg(dir.join("scripts/setup.sh"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// A bin dir with a `cargo` shim (the script only checks that cargo exists).
fn bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    shim(&bin.join("cargo"), "exit 0");
    bin
}

#[test]
fn no_python3_is_named() {
    let dir = scratch("setup_no_python");
    let bin = bin_dir(&dir);
    // PATH is only our bin dir, holding the coreutils the script needs but no python3.
    for tool in ["dirname", "cat", "sha256sum", "cut", "mktemp", "grep", "tail", "rm", "printf", "mkdir"] {
        let real = Command::new("/bin/bash").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
        if real.starts_with('/') {
            std::os::unix::fs::symlink(&real, bin.join(tool)).unwrap();
        }
    }
    let out = Command::new("/bin/bash").arg(dir.join("scripts/setup.sh")).env("PATH", &bin).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("python3 is not installed"), "{err}");
}

#[test]
fn wrong_torch_is_replaced_and_an_unreachable_registry_is_named() {
    let dir = scratch("setup_wrong_torch");
    let bin = bin_dir(&dir);
    // A system python3 whose pip works (for the pre-flight check) ...
    shim(&bin.join("python3"), "exit 0");
    // ... and a .venv whose torch is 2.10.0 and whose pip cannot reach the registry.
    shim(
        &dir.join(".venv/bin/python"),
        r#"case "$*" in
  *"import torch"*) echo 2.10.0+cpu ;;
  *"-m pip install"*) echo "WARNING: Retrying after connection broken by 'NewConnectionError: [Errno 111] Connection refused'" >&2; echo "ERROR: Could not find a version that satisfies the requirement torch==2.11.0" >&2; exit 1 ;;
  *) exit 0 ;;
esac"#,
    );
    let (ok, err) = run_setup(&dir, &bin);
    assert!(!ok, "{err}");
    assert!(err.contains("torch 2.10.0+cpu found in .venv"), "{err}");
    assert!(err.contains("cannot reach the Python package registry"), "{err}");
    assert!(err.contains("pip install -r scripts/requirements.txt"), "the failing step is named: {err}");
}

#[test]
fn a_failing_pip_without_network_symptoms_names_the_step() {
    let dir = scratch("setup_pip_fails");
    let bin = bin_dir(&dir);
    shim(&bin.join("python3"), "exit 0");
    shim(
        &dir.join(".venv/bin/python"),
        r#"case "$*" in
  *"-m pip install"*) echo "ERROR: No matching distribution found for torch==2.11.0" >&2; exit 1 ;;
  *) exit 1 ;;
esac"#,
    );
    let (ok, err) = run_setup(&dir, &bin);
    assert!(!ok && err.contains("step 'pip install -r scripts/requirements.txt'"), "{err}");
}
