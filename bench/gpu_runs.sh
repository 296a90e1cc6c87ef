#!/usr/bin/env bash
# Several `fer-train fit` runs side by side on one GPU inside one device call, each stopped at a
# deadline, and their results (not their checkpoints) packed into one file that comes back:
#   run dirs' summary.json, metrics.csv, config.yaml, state.json, curves.png, confusion.png, the logs,
#   and nvidia-smi utilisation every 15 s; and each run's model (scripts/device_return.py: in 16 MiB
#   parts, with int8 weights where the call cannot return every run's float32 file), so a model trained there can ship.
#   A run stopped at the deadline is exported from its last finished epoch and summarized
#   (`fer-train summarize`: summary.json and the plots from its state.json).
# Run it through scripts/device_run.sh (which puts fer-train on PATH, see scripts/device_pack.sh):
#   bash scripts/device_run.sh bash bench/gpu_runs.sh 540 \
#     "r18_ce      configs/fer2013_r18_ce.yaml" \
#     "r18_eac     configs/fer2013_r18_eac.yaml" \
#     "r18_ce_n30  configs/fer2013_r18_ce.yaml  noise.rate=0.3" \
#     "r18_eac_n30 configs/fer2013_r18_eac.yaml noise.rate=0.3"
# Each quoted spec: run name, config, then --set overrides. The first argument is the deadline in
# seconds for every run (a run cut short keeps its finished epochs in metrics.csv and state.json).
# Results go to $OUT/runs.tar.gz on the device machine ($OUT comes back), else ./runs.tar.gz.
# Locally: .venv/bin/python scripts/device_return.py unpack /work/.device/N (runs/ and each returned
# model as runs/<name>/model.onnx or model_int8.onnx), then scripts/results.py (docs/gpu-runs.md).
set -uo pipefail
cd "$(dirname "$0")/.."
deadline=${1:?usage: gpu_runs.sh <seconds> "<name> <config> [key=value ...]" ...}
shift
[ $# -gt 0 ] || { echo "gpu_runs.sh: no runs given" >&2; exit 2; }
mkdir -p runs
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 >runs/gpu_util.csv 2>&1 &
  smi=$!
fi
pids=(); names=()
for spec in "$@"; do
  read -r name config rest <<<"$spec"
  sets=(--set "name=$name")
  for kv in $rest; do sets+=(--set "$kv"); done
  # A run this machine already holds (a second call while it is still warm keeps runs/) goes on
  # from its last finished epoch instead of stopping at "already holds a run".
  [ -s "runs/$name/last.safetensors" ] && sets+=(--resume)
  echo "[gpu_runs] $name: fer-train fit --config $config ${sets[*]}" >&2
  timeout --signal=INT "$deadline" fer-train fit --config "$config" "${sets[@]}" >>"runs/$name.log" 2>&1 &
  pids+=($!); names+=("$name")
done
status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    echo "[gpu_runs] ${names[$i]}: done" >&2
  else
    rc=$?
    echo "[gpu_runs] ${names[$i]}: exit $rc ($([ $rc = 124 ] && echo 'stopped at the deadline' || echo 'failed, see its log'))" >&2
    tail -n 3 "runs/${names[$i]}.log" >&2
    [ $rc = 124 ] || status=1
  fi
done
[ -n "${smi:-}" ] && kill "$smi" 2>/dev/null
# Deployable models: what fit exported (at its end, or at the deadline's SIGINT, which fit answers by
# exporting and summarizing its last finished epoch), else the last finished epoch exported here.
for n in "${names[@]}"; do
  onnx="runs/$n/model.onnx"
  if [ ! -s "$onnx" ] && [ -s "runs/$n/last.safetensors" ]; then
    fer-train export --run "runs/$n" --checkpoint last.safetensors --out "$onnx" --cam >&2 ||
      echo "[gpu_runs] $n: export of the last epoch failed" >&2
  fi
  # A run cut at the deadline has no summary.json or plots yet: write them from its state.json.
  if [ ! -s "runs/$n/summary.json" ] && [ -s "runs/$n/state.json" ]; then
    fer-train summarize --run "runs/$n" >&2 || echo "[gpu_runs] $n: summarize failed" >&2
  fi
done
# The models, in 16 MiB parts where larger, as many runs' as the call may return (int8 weights
# where float32 does not fit), with a manifest that runs.tar.gz carries (scripts/device_return.py).
python3 scripts/device_return.py pack "${OUT:-.}" "${names[@]}" || echo "[gpu_runs] returning the models failed" >&2
files=(runs/gpu_util.csv runs/returned_models.json)
for f in runs/session/*; do [ -f "$f" ] && files+=("$f"); done # gpu_session.sh's logs and timings
for n in "${names[@]}"; do
  files+=("runs/$n.log")
  for f in summary.json metrics.csv config.yaml state.json curves.png confusion.png; do
    [ -f "runs/$n/$f" ] && files+=("runs/$n/$f")
  done
done
dest=${OUT:-.}/runs.tar.gz
tar czf "$dest" "${files[@]}" 2>/dev/null || tar czf "$dest" $(ls "${files[@]}" 2>/dev/null)
echo "[gpu_runs] packed $(ls "${files[@]}" 2>/dev/null | wc -l) files into $dest" >&2
for n in "${names[@]}"; do tail -n 1 "runs/$n.log"; done
exit $status
