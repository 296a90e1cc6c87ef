#!/usr/bin/env bash
# Runs on the lent GPU machine, from the checkout it receives, after scripts/device_pack.sh packed
# .device-carry here: unpacks the binary and the dataset caches (python3's lzma: the machine may
# have no xz), points the loader at that machine's libtorch, and runs "$@" with fer-train on PATH.
#   bash scripts/device_run.sh fer-train doctor
#   bash scripts/device_run.sh --unpack-only     (a first call that carries only .device-carry-pre)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${FER_DEVICE_PYTHON:-python3}
CARRY=.device-carry
die() { echo "[device_run] error: $*" >&2; exit 1; }
torch_dir=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))') || die "$PY cannot import torch"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unxz() {  # unxz <file.xz> <dest>: decompress once
  [ -s "$2" ] && [ "$2" -nt "$1" ] && return 0
  "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2] + ".tmp", "wb"))' "$1" "$2" && mv "$2.tmp" "$2"
}
BIN=.cache/device-bin # outside .device-carry: a local try must not grow what the next call carries
mkdir -p "$BIN" .cache/data
# Dataset caches: those of this call, and of a first call that carried only caches
# (.device-carry-pre, when the pack did not fit one call); the machine keeps .cache/ while warm.
for f in "$CARRY"/data/*.xz .device-carry-pre/data/*.xz; do
  [ -e "$f" ] && unxz "$f" ".cache/data/$(basename "${f%.xz}")"
done
if [ "${1:-}" = --unpack-only ]; then
  ls -l .cache/data >&2
  exit 0
fi
[ -s "$CARRY/fer-train.xz" ] || die "$CARRY/fer-train.xz is missing: run scripts/device_pack.sh here first and carry .device-carry"
unxz "$CARRY/fer-train.xz" "$BIN/fer-train"
chmod +x "$BIN/fer-train"
export PATH="$PWD/$BIN:$PATH"
exec "$@"
