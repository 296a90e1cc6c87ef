#!/usr/bin/env bash
# The seeds' methods side by side at a budget a 2-core CPU can afford (ResNet-18: 3-7 minutes a
# run, SE-ResNet-50 about 12; 1.5-2 hours in all), clean and with 30 % label noise: the CE and EAC
# baselines, GReFEL's reliability balancing and DAN on ResNet-18, DacFER on its SE-ResNet-50, and
# the EAC / DAN variants below (findings: docs/RESULTS.md). Every run: 48 px, every 10th training
# face (2,871), 10 epochs (EPOCHS=n: more), each recipe's own optimizer and schedule, validation
# on all of `val`.
# It is a small budget: a first comparison, not the papers' recipes (the GPU table is
# docs/gpu-runs.md's job). IVSA is left out by default (its VGG trains at ~60 img/s here, ~10
# minutes a run, and learns slowly from scratch: at 10 epochs it is still climbing); IVSA_TOO=1
# adds it (its ten-crop evaluation off: one view, as the exported graph).
# Results: runs/cpu_sub10_*; archive them into docs/RESULTS.md's Tables 2 and 3 with
#   .venv/bin/python scripts/results.py --archive runs/cpu_sub10_r18_ce ...
# Usage: [ABLATIONS=1] [IVSA_TOO=1] [ONLY="short names"] [TRAIN_SEED=n] [EPOCHS=n]
#        bash bench/cpu_methods.sh [noise rates, default "0.3 0"]
# A run that already finished is skipped, one cut short resumes from its last epoch, so the
# script can be stopped and started again.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/target/release:$PATH"
: "${LD_LIBRARY_PATH:=$(ls -d "$PWD"/.venv/lib/python3*/site-packages/torch/lib)}"
export LD_LIBRARY_PATH
command -v fer-train >/dev/null || { echo "cpu_methods.sh: build it first: cargo build --release -p fer-train" >&2; exit 2; }
mkdir -p runs

# EPOCHS=n trains the same recipes longer (default 10), named *_e<n>: a budget of its own, which
# results.py tables apart.
epochs=${EPOCHS:-10}
[[ $epochs =~ ^[1-9][0-9]*$ ]] || { echo "cpu_methods.sh: EPOCHS=\"$epochs\" is not a positive whole number" >&2; exit 2; }
epochs_suffix=$([ "$epochs" = 10 ] && echo "" || echo "_e$epochs")
common=(model.input_size=48 train.subset_every=10 "train.epochs=$epochs" train.crop_pad=4 train.device=cpu
        train.threads=2 train.channels_last=true train.eval_batch_size=256)
recipes=(
  "r18_ce         configs/fer2013_r18_ce.yaml"
  "r18_eac        configs/fer2013_r18_eac.yaml"
  "r18_grefel_rb  configs/fer2013_r18_grefel_rb.yaml"
  "r18_dan        configs/fer2013_r18_dan.yaml"
  "se50_dacfer    configs/fer2013_se50_dacfer.yaml"
  # EAC with its consistency weight ramped up over the first 3 epochs (method.consistency_warmup):
  # from scratch at this budget, plain EAC settles on one answer for every face
  "r18_eac_wu3    configs/fer2013_r18_eac.yaml method.consistency_warmup=3"
  # and without the consistency term at all (λ = 0: CE on the erased faces), to tell the two apart
  "r18_eac_l0     configs/fer2013_r18_eac.yaml method.lambda=0"
  "r18_dan_wu3    configs/fer2013_r18_dan.yaml method.consistency_warmup=3"
)
# IVSA validates here as every other row does: one view, the plain resize (its config's ten-crop
# and centre-crop views are for its full recipe).
[ "${IVSA_TOO:-0}" = 1 ] && recipes+=("ivsa_sab       configs/fer2013_ivsa_sab.yaml train.ten_crop_eval=false train.eval_view=resize")
# IVSA's own ablation (the seed's Table III, on clean labels): its VGG with CBAM after every stage,
# or with no attention. Both need IVSA_TOO=1 and ABLATIONS=1.
[ "${IVSA_TOO:-0}" = 1 ] && [ "${ABLATIONS:-0}" = 1 ] && recipes+=(
  "ivsa_cbam      configs/fer2013_ivsa_sab.yaml train.ten_crop_eval=false train.eval_view=resize model.attention=cbam"
  "ivsa_none      configs/fer2013_ivsa_sab.yaml train.ten_crop_eval=false train.eval_view=resize model.attention=none"
)
# The seeds' ablations that fit this budget (ABLATIONS=1; the seeds ran them with noisy labels, so
# give noise 0.3 alone): GReFEL's reliability balancing with the anchors only, the MHSA only, or
# neither (the MLP alone; no RB at all is the CE row), and DAN with 1 or 2 heads (with the warm-up:
# without it DAN stays at the class prior here), and one augmentation.
[ "${ABLATIONS:-0}" = 1 ] && recipes+=(
  "r18_grefel_rb_anchors  configs/fer2013_r18_grefel_rb.yaml method.rb.use_mhsa=false"
  "r18_grefel_rb_mhsa     configs/fer2013_r18_grefel_rb.yaml method.rb.use_anchors=false"
  "r18_grefel_rb_mlp      configs/fer2013_r18_grefel_rb.yaml method.rb.use_anchors=false method.rb.use_mhsa=false"
  "r18_dan_wu3_h1         configs/fer2013_r18_dan.yaml method.consistency_warmup=3 method.heads=1"
  "r18_dan_wu3_h2         configs/fer2013_r18_dan.yaml method.consistency_warmup=3 method.heads=2"
  # DAN without the seed's flip consistency (λ3 0: plain DAN, the baseline seed 003 improves on),
  # with 4 heads and with 1, to tell what the consistency term does from what one head does
  "r18_dan_l0             configs/fer2013_r18_dan.yaml method.lambda_consistency=0"
  "r18_dan_h1_l0          configs/fer2013_r18_dan.yaml method.lambda_consistency=0 method.heads=1"
  # and CE with IVSA's random rescale / shift / rotation (train.affine; the other recipes crop and flip)
  "r18_ce_affine          configs/fer2013_r18_ce.yaml train.affine={}"
  # CE and EAC validated on a moving average of their weights (train.ema_decay; at 440 steps the
  # average's warm-up, not the 0.999, sets its span: about the last tenth of the run)
  "r18_ce_ema             configs/fer2013_r18_ce.yaml train.ema_decay=0.999"
  "r18_eac_wu3_ema        configs/fer2013_r18_eac.yaml method.consistency_warmup=3 train.ema_decay=0.999"
)
# ONLY="r18_ce r18_eac_wu3" runs just those recipes; TRAIN_SEED=1 trains them again from another
# initialisation and batch order (the noisy labels stay the same: noise.seed is its own), named
# *_s1, which results.py lists beside the seed-0 run in the same cell.
if [ -n "${ONLY:-}" ]; then
  kept=()
  for spec in "${recipes[@]}"; do
    read -r short _ <<<"$spec"
    [[ " $ONLY " == *" $short "* ]] && kept+=("$spec")
  done
  [ ${#kept[@]} -gt 0 ] || { echo "cpu_methods.sh: ONLY=\"$ONLY\" names no recipe" >&2; exit 2; }
  recipes=("${kept[@]}")
fi
# Without TRAIN_SEED each config keeps its own train.seed.
seed_sets=() seed_suffix=""
if [ -n "${TRAIN_SEED:-}" ]; then
  [[ $TRAIN_SEED =~ ^[0-9]+$ ]] || { echo "cpu_methods.sh: TRAIN_SEED=\"$TRAIN_SEED\" is not a whole number" >&2; exit 2; }
  seed_sets=(--set "train.seed=$TRAIN_SEED")
  [ "$TRAIN_SEED" = 0 ] || seed_suffix="_s$TRAIN_SEED"
fi
status=0
# The noisy column first: robustness to wrong labels is what these methods claim, so a stop
# part-way leaves that column whole.
for noise in ${1:-0.3 0}; do
  suffix=$([ "$noise" = 0 ] && echo "" || echo "_n$(python3 -c "print(round($noise * 100))")")
  for spec in "${recipes[@]}"; do
    read -r short config extra <<<"$spec"
    name="cpu_sub10_${short}${epochs_suffix}${suffix}${seed_suffix}"
    [ -s "runs/$name/summary.json" ] && { echo "[cpu_methods] $name: done before, skipped" >&2; continue; }
    sets=(--set "name=$name" --set "noise.rate=$noise" "${seed_sets[@]}")
    for kv in "${common[@]}" $extra; do sets+=(--set "$kv"); done
    [ -s "runs/$name/last.safetensors" ] && sets+=(--resume)
    echo "[cpu_methods] $(date +%T) $name: fer-train fit --config $config ${sets[*]}" >&2
    if ! fer-train fit --config "$config" "${sets[@]}" >"runs/$name.log" 2>&1; then
      echo "[cpu_methods] $name failed, see runs/$name.log:" >&2
      tail -n 3 "runs/$name.log" >&2
      status=1
    fi
  done
done
exit $status
