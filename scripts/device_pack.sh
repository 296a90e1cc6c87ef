#!/usr/bin/env bash
# Packs what a training run on the lent GPU machine needs into .device-carry/ (git-ignored). That
# machine has python3 with torch 2.11.0 but no Rust and no network, and a call carries at most
# 64 MiB: the tracked files plus the paths named in `carry`. So:
#   .device-carry/fer-train.xz   the stripped release binary, xz-compressed (~6 MB)
#   .device-carry/data/*.xz      the config's dataset caches (`fer-train cache`), xz with a delta
#                                filter over image rows (FER2013: 66 + 8 MB raw -> ~50 MB)
#   .device-carry/peer/          the peer's scripts from ../shared/reference (read in place; never committed)
#   .device-carry/teacher/       stored teacher logits named in FER_CARRY_TARGETS, if any (~0.8 MB each)
# Then, in one device call: carry [".device-carry"] and run
#   bash scripts/device_run.sh <command...>     (e.g. bash bench/gpu_fidelity.sh)
# Usage: bash scripts/device_pack.sh [config.yaml]   (default: configs/fer2013_r18_eac.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/fer2013_r18_eac.yaml}
OUT=.device-carry
LIMIT=$((64 * 1024 * 1024))
# FER2013 rows are 48 bytes: predicting a pixel from the one above compresses faces ~10 % better.
ROW=${FER_DELTA_DIST:-48}
die() { printf '\033[31m[device_pack] error:\033[0m %s\n' "$*" >&2; exit 1; }
command -v xz >/dev/null || die "xz is not installed (Debian: apt-get install xz-utils)"
mkdir -p "$OUT/data" "$OUT/peer"

cargo build --release -q -p fer-train || die "cargo build --release -p fer-train failed"
if [ ! -s "$OUT/fer-train.xz" ] || [ target/release/fer-train -nt "$OUT/fer-train.xz" ]; then
  xz -9e -T0 -c target/release/fer-train >"$OUT/fer-train.xz.tmp" && mv "$OUT/fer-train.xz.tmp" "$OUT/fer-train.xz"
fi

rm -f "$OUT"/data/*.tmp
# A cache an earlier pack moved to the first call's folder (below) comes back before the check.
for f in .device-carry-pre/data/*.xz; do
  [ -e "$f" ] && mv "$f" "$OUT/data/"
done
keep=()
while read -r line; do
  cache=${line##*-> }
  [ -s "$cache" ] || die "fer-train cache did not write $cache"
  dest="$OUT/data/$(basename "$cache").xz"
  keep+=("$dest")
  if [ ! -s "$dest" ] || [ "$cache" -nt "$dest" ]; then
    echo "[device_pack] compressing $cache" >&2
    xz --delta=dist="$ROW" --lzma2=preset=9e -T0 -c "$cache" >"$dest.tmp" && mv "$dest.tmp" "$dest"
  fi
done < <(target/release/fer-train cache --config "$CONFIG" | grep -- '->')
# Caches of other configs would travel too: keep only this config's.
for f in "$OUT"/data/*.xz; do
  [[ " ${keep[*]} " == *" $f "* ]] || rm -f "$f"
done

# Stored teacher logits for distillation (scripts/teacher_targets.py), named in FER_CARRY_TARGETS
# (space-separated); a fit uses one with distill={targets: .device-carry/teacher/<file>}.
rm -rf "$OUT/teacher"
for f in ${FER_CARRY_TARGETS:-}; do
  [ -s "$f" ] || die "FER_CARRY_TARGETS names $f, which is missing or empty"
  mkdir -p "$OUT/teacher" && cp "$f" "$OUT/teacher/"
done

if [ -d ../shared/reference ]; then
  cp ../shared/reference/*.py "$OUT/peer/"
else
  echo "[device_pack] ../shared/reference is absent: the peer's scripts will not travel" >&2
fi

# What a call carries: tracked files, untracked files git does not ignore, and the carried folder.
# The shipped models (models-onnx/, ~20 MB, tracked) and FER2013's caches (~50 MB) no longer fit one
# call together, so the caches that do not fit move to $PRE (largest first): a first call carries
# only those and unpacks them (`bash scripts/device_run.sh --unpack-only`, carry [".device-carry-pre"]);
# the machine keeps .cache/ while it stays warm, and the next call carries $OUT as before.
PRE=.device-carry-pre
rm -rf "$PRE"
sizes() { python3 -c 'import os, sys; print(sum(os.path.getsize(p) for p in sys.stdin.read().split("\0") if p and os.path.isfile(p)))'; }
tracked=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } | sizes)
total=$( { find "$OUT" -type f -print0; } | sizes)
total=$((total + tracked))
while [ "$total" -gt "$LIMIT" ]; do
  big=$(ls -S "$OUT"/data/*.xz 2>/dev/null | head -1)
  [ -n "$big" ] || die "$((total / 1000000)) MB is over a device call's 64 MiB even without the dataset caches: carry less"
  mkdir -p "$PRE/data" && mv "$big" "$PRE/data/"
  total=$((total - $(stat -c %s "$PRE/data/$(basename "$big")")))
done
carry=$(du -sb "$OUT" | cut -f1)
echo "[device_pack] ready: $((carry / 1000000)) MB in $OUT, $((total / 1000000)) MB in all of the 67 MB (64 MiB) a device call carries" >&2
if [ -d "$PRE" ]; then
  pre=$(( $(find "$PRE" -type f -print0 | sizes) + tracked ))
  [ "$pre" -le "$LIMIT" ] || die "the first call would carry $((pre / 1000000)) MB, over 64 MiB: carry less (a smaller config's data)"
  echo "[device_pack] $(ls "$PRE"/data | tr '\n' ' ')did not fit beside it: $PRE ($((pre / 1000000)) MB in all) goes first," >&2
  echo "[device_pack]   in a call of its own: bash scripts/device_run.sh --unpack-only   with carry [\"$PRE\"]" >&2
fi
