#!/usr/bin/env bash
# Everything one lent-GPU call is for, in order of what each result is worth per second, inside one
# budget (the device gives 15 minutes a session and a start costs one or two):
#   1. `fer-train doctor`: CUDA, cuDNN, a kernel, bf16 autocast (stops here if CUDA does not work)
#   2. the EAC training step against PyTorch eager (bench/train_vs_pytorch.py step, ~2 minutes)
#   2b. with SPEED_EPOCH: whole epochs against the peer's ref_train.py (see below)
#   3. fits side by side (bench/gpu_runs.sh) until the budget is spent, each in the memory layout
#      that step 2 found faster for fer-train on its architecture (float32 as the recipes say)
# After scripts/device_pack.sh here, one device call with carry [".device-carry"]:
#   bash bench/gpu_session.sh 560 "fer2013_mbv2_eac configs/fer2013_mbv2_eac.yaml" ...
# Back in $OUT: runs.tar.gz (with runs/session/: doctor.log, speed.json, speed.log or layout.jsonl)
# and the returned <name>.onnx parts (docs/gpu-runs.md says what to do with them).
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${1:?usage: gpu_session.sh <seconds for the whole call> "<name> <config> [key=value ...]" ...}
shift
out=${OUT:-.}
export PYTHONUNBUFFERED=1

bash scripts/device_run.sh fer-train doctor 2>&1 | tee "$out/doctor.log" || {
  echo "[gpu_session] fer-train doctor failed: no training on this machine" >&2
  exit 1
}

# SPEED_ARCHS=resnet18 narrows fer-train's side of step 2 (torchvision names, comma-separated; the
# peer's script times all three regardless, ~2 minutes on the first call); none skips step 2;
# layout skips the peer and times only fer-train's own step (the recipe's method), NCHW then
# channels-last, at each fit's architecture, input size and batch (~15 s a pair), to choose the
# fits' layout from.
archs=${SPEED_ARCHS:-mobilenet_v2,resnet18,resnet50}
if [ "$archs" = layout ]; then
  : >"$out/layout.jsonl"
  for spec in "$@"; do
    read -r _ config _ <<<"$spec"
    read -r arch size batch method < <(python3 - "$config" <<'PY'
import re, sys
y = open(sys.argv[1]).read()
keys = [re.search(rf"^\s*{k}:\s*(\S+)", y, re.M).group(1) for k in ("arch", "input_size", "batch_size")]
# the recipe's own method (a flow `method: { name: ce }` or a block); IVSA's 3-FC head has no EAC
m = re.search(r"^method:\s*\{\s*name:\s*(\w+)", y, re.M) or re.search(r"^method:\s*\n\s+name:\s*(\w+)", y, re.M)
print(*keys, m.group(1) if m else "eac")
PY
)
    [[ " ${timed:-} " == *" $arch/$size/$batch "* ]] && continue
    timed="${timed:-} $arch/$size/$batch"
    for cl in "" --channels-last; do
      timeout 120 bash scripts/device_run.sh fer-train bench --arch "$arch" --method "$method" --size "$size" \
        --batch "$batch" --iters 40 --device cuda --json $cl >>"$out/layout.jsonl" 2>>"$out/layout.log" ||
        echo "[gpu_session] fer-train bench --arch $arch --size $size $cl failed (see layout.log)" >&2
    done
  done
  cat "$out/layout.jsonl" >&2
elif [ "$archs" != none ]; then
  timeout 200 bash scripts/device_run.sh python3 bench/train_vs_pytorch.py step --archs "$archs" \
    --peer .device-carry/peer/peer_bench.py --fer-train fer-train --out "$out/speed.json" 2>&1 | tee "$out/speed.log" ||
    echo "[gpu_session] the speed comparison did not finish; the fits run in the recipes' layout" >&2
fi

# SPEED_EPOCH="resnet18 mobilenet_v2" (the archs ref_train.py builds; empty: skipped) adds whole
# training epochs, data and augmentation included, against the peer's ref_train.py on the same faces
# (bench/train_vs_pytorch.py epoch, two epochs a side at the recipe's 112 px; the image folders the
# peer reads are first written from the dataset caches the call carries). About a minute and a half
# an arch, before the fits, so each side has the GPU to itself.
if [ -n "${SPEED_EPOCH:-}" ]; then
  data=.cache/epoch-data
  caches=()
  for split in train val; do
    c=$(ls .cache/data/"$split"-*.safetensors 2>/dev/null | head -1)
    [ -n "$c" ] && caches+=("$split=$c")
  done
  if [ "${#caches[@]}" -eq 2 ] && bash scripts/device_run.sh python3 bench/cache_to_folder.py "$data" "${caches[@]}" 2>>"$out/epoch.log"; then
    for arch in ${SPEED_EPOCH//,/ }; do
      timeout 240 bash scripts/device_run.sh python3 bench/train_vs_pytorch.py epoch --arch "$arch" --method eac \
        --peer .device-carry/peer/ref_train.py --fer-train fer-train --data "$data" --epochs 2 \
        --out "$out/epoch_$arch.json" >>"$out/epoch.log" 2>&1 ||
        echo "[gpu_session] the epoch comparison for $arch did not finish (see epoch.log)" >&2
    done
    grep -a -A3 "training epoch(s)" "$out/epoch.log" >&2 || true
  else
    echo "[gpu_session] no train and val caches to write the epoch comparison's folders from" >&2
  fi
fi

# fer-train's faster float32 layout per architecture, from the step just timed (none: keep the config's).
layout_for() {  # layout_for <config> -> "train.channels_last=true|false" or nothing
  python3 - "$1" "$out/speed.json" "$out/layout.jsonl" <<'PY' 2>/dev/null || true
import json, os, re, sys
y = open(sys.argv[1]).read()
arch, size, batch = (re.search(rf"^\s*{k}:\s*(\S+)", y, re.M).group(1) for k in ("arch", "input_size", "batch_size"))
if os.path.exists(sys.argv[3]):  # SPEED_ARCHS=layout: a channels-last step that failed has no row
    rows = [json.loads(l) for l in open(sys.argv[3]) if l.startswith("{")]
    names = {"mbv2": "mobilenet_v2"}  # config name -> the name `fer-train bench` prints
    speed = {r["channels_last"]: r["img_per_s"] for r in rows
             if (r["arch"], r["size"], r["batch"]) == (names.get(arch, arch), int(size), int(batch))}
    if True in speed or False in speed:
        print(f"train.channels_last={'true' if speed.get(True, 0) > speed.get(False, 0) else 'false'}")
    sys.exit()
names = {"mbv2": "mobilenet_v2", "resnet18": "resnet18", "resnet50": "resnet50"}
for row in json.load(open(sys.argv[2])):
    if row["arch"] == names.get(arch):
        o = row["ours"]
        if o.get("fp32/cl") and o.get("fp32/nchw"):
            print(f"train.channels_last={'true' if o['fp32/cl'] > o['fp32/nchw'] else 'false'}")
PY
}
specs=()
for spec in "$@"; do
  read -r name config rest <<<"$spec"
  specs+=("$name $config $(layout_for "$config") ${rest:-}")
done

# A call returns at most 8 files: the logs and timings go back inside runs.tar.gz (gpu_runs.sh packs
# runs/session/), leaving the slots to the models. Until the fits start they stay in $OUT, so a
# call that stops before them still returns them.
mkdir -p runs/session
for f in doctor.log speed.log speed.json layout.jsonl layout.log epoch.log "$out"/epoch_*.json; do
  f=$(basename "$f")
  [ -f "$out/$f" ] && mv "$out/$f" runs/session/
done

left=$((budget - SECONDS - 45)) # 45 s: exporting runs cut at the deadline, packing the results
echo "[gpu_session] ${SECONDS}s spent; the fits get ${left}s" >&2
[ "$left" -gt 60 ] || { echo "[gpu_session] too little time left for any fit" >&2; exit 1; }
bash scripts/device_run.sh bash bench/gpu_runs.sh "$left" "${specs[@]}"
