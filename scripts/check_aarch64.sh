#!/usr/bin/env bash
# Builds fer-run for aarch64 (Raspberry Pi 4/5, Jetson) the way the README says (tract only, no
# ONNX Runtime) and runs it on this x86-64 machine under qemu-user:
#   1. the runtime's whole test suite, built for aarch64 (its CLI tests start the aarch64 fer-run
#      through qemu too: FER_RUN_WRAPPER);
#   2. each shipped model on face crops (FER2013 val when ../shared has it, else the sample
#      photo's face), compared prediction by prediction with this machine's own tract build.
# Emulation checks that the build computes the same answers there; its timings mean nothing.
# Needs the aarch64 standard library (rustup target add aarch64-unknown-linux-gnu), a cross linker
# and qemu (Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user); as
# root it installs what is missing, else it says what to install and exits with status 2 (no
# check made; any failed check exits 1 or cargo's 101).
#   bash scripts/check_aarch64.sh          # ~10 min on 2 cores the first time
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
say() { printf '\033[1m[check_aarch64]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[check_aarch64] error:\033[0m %s\n' "$*" >&2; exit 1; }
unavailable() { printf '\033[33m[check_aarch64] cannot check here:\033[0m %s\n' "$*" >&2; exit 2; }

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  say "adding the $TARGET standard library (rustup)"
  timeout 600 rustup target add "$TARGET" >&2 || unavailable "rustup target add $TARGET failed (it downloads from static.rust-lang.org)"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null || [ ! -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
  pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || unavailable "needs $pkgs (Debian: apt-get install $pkgs)"
  say "installing $pkgs (apt-get)"
  # A fresh machine may have no package lists yet: update them once if the first try fails.
  apt_install() { DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q $pkgs >/dev/null; }
  apt_install || { apt-get update -q >/dev/null && apt_install; } || unavailable "apt-get install $pkgs failed"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Code that only aarch64 compiles (x86-64's compiled out) gets no warnings either.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-D warnings"
# Each emulated program gets 10 minutes (the slowest test binary takes ~35 s): a hang fails the
# check there, exit status 124 naming the binary, instead of eating CI's 90 minutes. One did
# (2026-12-07): the tract pool's many-callers livelock, since fixed (runtime/src/intra_op.rs).
QEMU="timeout --kill-after=10 600 qemu-aarch64 -L $SYSROOT"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$QEMU"
export FER_RUN_WRAPPER="$QEMU"
# The CPU emulated: a real board's, not qemu's default `max`, under which tract picks kernels
# that qemu emulates ~8x slower (ResNet-18 at 13.5 s a run against 1.7; CI took 90 of its 90
# minutes). The suite runs as on a Raspberry Pi 5 (Cortex-A76: fp16 and dot-product
# instructions), the comparison below as on a Pi 4 (Cortex-A72: plain NEON), so both kinds of
# kernels are checked.
export QEMU_CPU=cortex-a76
say "1/2: the runtime's tests, built for $TARGET, under qemu ($QEMU_CPU)"
cargo test -q --release -p fer-runtime --no-default-features --target "$TARGET"

export QEMU_CPU=cortex-a72
say "2/2: the shipped models, aarch64 ($QEMU_CPU) against x86-64 (both tract)"
cargo build -q --release -p fer-runtime --no-default-features --target "$TARGET"
# The x86-64 side is the dev build, which `cargo test --workspace` (CI's step before this one)
# has made already: a release build of it took 6.6 of CI's ~36 minutes, and the comparison runs
# in ~2 minutes on the dev build (its dependencies are optimised, the runtime's own kernels not).
cargo build -q -p fer-runtime --bin fer-run
x86=target/debug/fer-run
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
val=../shared/datasets/fer2013/val
if [ -d "$val" ]; then
  # The first faces of each class in name order (the same faces every run): 8 for plain runs,
  # 1 for ten-crop (ten model runs a face; emulated ResNet-18 takes 0.5-1.7 s a run on 2 cores,
  # depending on the host).
  mkdir -p "$work/faces" "$work/few"
  for c in "$val"/*/; do
    mapfile -t faces < <(find "$c" -maxdepth 1 -name '*.png' | sort)
    for f in "${faces[@]:0:8}"; do
      cp "$f" "$work/faces/$(basename "$c")_$(basename "$f")"
    done
    for f in "${faces[@]:0:1}"; do
      cp "$f" "$work/few/$(basename "$c")_$(basename "$f")"
    done
  done
  inputs=("$work/faces")
  few=("$work/few")
  detect=(--no-detect)
else
  say "no $val here: the sample photo's face only"
  inputs=(.cache/assets/astronaut.png)
  few=("${inputs[@]}")
  detect=()
fi
export FER_ASSETS=${FER_ASSETS:-$PWD/.cache/assets}
for model in models-onnx/*.onnx; do
  for tta in none ten-crop; do
    if [ "$tta" = none ]; then faces=("${inputs[@]}"); else faces=("${few[@]}"); fi
    "$x86" -m "$model" --backend tract --tta "$tta" "${detect[@]}" --json "${faces[@]}" >"$work/x86.jsonl"
    $QEMU "target/$TARGET/release/fer-run" -m "$model" --backend tract --tta "$tta" "${detect[@]}" \
      --json "${faces[@]}" >"$work/arm.jsonl" 2>"$work/arm.err" || { cat "$work/arm.err" >&2; die "$model: the aarch64 build failed"; }
    python3 - "$model" "$tta" "$work/x86.jsonl" "$work/arm.jsonl" <<'PY'
import json, sys
model, tta, x86, arm = sys.argv[1:]
a = [json.loads(l) for l in open(x86)]
b = [json.loads(l) for l in open(arm)]
assert len(a) == len(b) > 0, f"{model}: {len(a)} results on x86-64, {len(b)} on aarch64"
worst = 0.0
for p, q in zip(a, b):
    assert p["file"] == q["file"] and p.get("box") == q.get("box"), (p, q)
    assert "error" not in p and "error" not in q, (p, q)
    worst = max(worst, max(abs(p["probs"][k] - q["probs"][k]) for k in p["probs"]))
    # A near tie may flip with rounding; anything else must agree.
    top = sorted(p["probs"].values())[-2:]
    assert p["label"] == q["label"] or top[1] - top[0] < 1e-3, (p, q)
assert worst < 1e-4, f"{model}: probabilities differ by up to {worst:.2e}"
print(f"{model} (tta {tta}): {len(a)} faces, same labels, probabilities within {worst:.1e}")
PY
  done
done
say "fer-run for $TARGET computes what the x86-64 build computes"
