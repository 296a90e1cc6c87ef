"""A teacher's logits for every face of a training split, for knowledge distillation (`distill` in a
fer-train config; trainer/src/distill.rs says how they are used and checked).

    .venv/bin/python scripts/teacher_targets.py --model models-onnx/ce_r18.onnx \
        --cache .cache/data/train-<hash>.safetensors --out .cache/teacher/ce_r18_train.safetensors

`--cache` is the trainer's decoded split (`fer-train cache --config <student config>` prints its
path), so the targets follow the trainer's order exactly. The teacher is any model fer-train
exported (the ONNX contract, docs/onnx-contract.md); each face goes through the preprocessing the
teacher was validated with, read from its metadata (its `fer.eval_view`, resize or centre crop,
with bilinear resizing as the trainer's evaluation does, `(x/255 - mean) / std`, gray replicated
to the input's channels), and through ONNX Runtime's CPU provider in batches.

`--tta flip` averages each face's logits with its mirror's, `--tta ten-crop` over the trainer's ten
crops (`train.ten_crop_eval`, `fer-run --tta ten-crop`; needs `fer.crop_pad`): a stronger teacher
from the same file for 2x / 10x its time (`ce_r18.onnx`: 65.56 % on val alone, 66.84 % flip,
68.18 % ten-crop). A teacher given as a run directory (`distill.teacher`) uses ten crops where its
config validates with them.

Several `--model`s make an ensemble teacher: their logits are averaged face by face (the mean of
the log-probabilities up to a constant, so the distillation target is their normalized geometric
mean; two ResNet-18s of 65.65 % and 64.67 % on val make 68.15 % this way, docs/RESULTS.md). The
script prints how often each teacher, and their mean, agrees with the split's labels: given the
val cache, that is each one's val accuracy.

The output stores `logits` [N, K], `pixel_sums` [N] (the trainer refuses targets made for other
faces) and the teacher's class names.
"""
import argparse, json, os, sys, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fer_cache import read_cache, write_safetensors  # noqa: E402


def views(x, h, w, eval_view, pad, tta):
    """The views of a float batch [B, C, H, W] in [0, 1] that the teacher's logits average over, as
    the trainer's `Augment::eval` / `ten_crop` cut them (trainer/src/augment.rs)."""
    import torch.nn.functional as F

    def scaled(hh, ww):
        return x if tuple(x.shape[2:]) == (hh, ww) else F.interpolate(x, size=(hh, ww), mode="bilinear", align_corners=False)
    if tta == "ten-crop":
        big = scaled(h + pad, w + pad)
        crops = [big[:, :, i:i + h, j:j + w] for i, j in [(0, 0), (0, pad), (pad, 0), (pad, pad), (pad // 2, pad // 2)]]
        return crops + [c.flip(3) for c in crops]
    if eval_view == "centre_crop":
        one = scaled(h + pad, w + pad)[:, :, pad // 2:pad // 2 + h, pad // 2:pad // 2 + w]
    else:
        one = scaled(h, w)
    return [one, one.flip(3)] if tta == "flip" else [one]


def teacher_logits(model, images, classes, cache, batch, tta="none"):
    """One teacher's logits [N, K] for `images` (uint8 [N, C, H, W] from the trainer's cache),
    averaged over the views `tta` names."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    # Int8-weight files: run the dequantized float32 weights, as fer-runtime does (faster on CPU).
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    try:
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        sys.exit(f"{model}: ONNX Runtime cannot load it: {e}")
    names = [o.name for o in sess.get_outputs()]
    if "logits" not in names or [i.name for i in sess.get_inputs()] != ["input"]:
        sys.exit(f"{model}: not a fer-train model (inputs {[i.name for i in sess.get_inputs()]}, "
                 f"outputs {names}; the contract is one `input` and a `logits` output)")
    meta = sess.get_modelmeta().custom_metadata_map
    missing = [k for k in ("fer.labels", "fer.input_size", "fer.color", "fer.mean", "fer.std") if k not in meta]
    if missing:
        sys.exit(f"{model}: not a fer-train model (metadata {', '.join(missing)} missing)")
    labels = meta["fer.labels"].split(",")
    if labels != classes:
        sys.exit(f"{model}: the teacher's classes {labels} differ from the data's {classes} ({cache})")
    h, w = (int(v) for v in meta["fer.input_size"].split(","))
    channels = sess.get_inputs()[0].shape[1]
    if not isinstance(channels, int):
        sys.exit(f"{model}: input channels are not fixed ({channels})")
    want_c = 1 if meta["fer.color"] == "gray" else 3
    if images.shape[1] != want_c:
        sys.exit(f"{model} expects {meta['fer.color']} faces; {cache} holds {images.shape[1]} channel(s)")
    def per_channel(key):  # one value for all channels, or one per input channel
        v = torch.tensor([float(s) for s in meta[key].split(",")])
        if len(v) not in (1, channels):
            sys.exit(f"{model}: {key} has {len(v)} values for {channels} input channels")
        return v.view(1, -1, 1, 1)
    mean, std = per_channel("fer.mean"), per_channel("fer.std")
    eval_view = meta.get("fer.eval_view", "resize")
    if eval_view not in ("resize", "centre_crop"):
        sys.exit(f"{model}: unknown fer.eval_view `{eval_view}` (resize or centre_crop)")
    try:
        pad = int(meta.get("fer.crop_pad", "0"))
    except ValueError:
        sys.exit(f"{model}: fer.crop_pad is `{meta['fer.crop_pad']}`, not a whole number of pixels")
    if (eval_view == "centre_crop" or tta == "ten-crop") and pad < 1:
        need = "its fer.eval_view centre_crop" if eval_view == "centre_crop" else "--tta ten-crop"
        sys.exit(f"{model}: {need} needs a positive fer.crop_pad, the file has {meta.get('fer.crop_pad', 'none')}")

    out, t0 = [], time.time()
    for i in range(0, len(images), batch):
        # A writable copy: torch warns about (and must not write to) the read-only cache array.
        x = torch.from_numpy(np.array(images[i:i + batch])).float() / 255
        total = 0
        for v in views(x, h, w, eval_view, pad, tta):
            v = (v.expand(-1, channels, -1, -1) - mean) / std
            (logits,) = sess.run(["logits"], {"input": v.contiguous().numpy()})
            total = total + logits.astype(np.float64)
        out.append((total / (10 if tta == "ten-crop" else 2 if tta == "flip" else 1)).astype(np.float32))
        done = min(i + batch, len(images))
        print(f"\r[teacher_targets] {done}/{len(images)} faces, {done / (time.time() - t0):.0f}/s", end="", file=sys.stderr)
    print(file=sys.stderr)
    logits = np.concatenate(out)
    if not np.isfinite(logits).all():
        sys.exit(f"{model}: the teacher's logits are not all finite")
    return logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, action="append",
                    help="the teacher, an ONNX file fer-train exported; repeat it for an ensemble (logits averaged)")
    ap.add_argument("--cache", required=True, help="the training split as fer-train cached it")
    ap.add_argument("--out", required=True, help="where to write the targets (safetensors)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tta", choices=["none", "flip", "ten-crop"], default="none",
                    help="average each teacher's logits over the face and its mirror, or over ten crops (needs fer.crop_pad)")
    a = ap.parse_args()
    if a.batch < 1:
        sys.exit(f"--batch must be at least 1, got {a.batch}")
    # Before the first teacher's minutes of work, not after them.
    for m in a.model:
        if not os.path.isfile(m):
            sys.exit(f"{m}: no such file (--model)")

    images, labels, classes = read_cache(a.cache)
    labels = np.asarray(labels)
    def agreement(logits):  # on the val split this is the teacher's val accuracy
        return f"{100 * (logits.argmax(1) == labels).mean():.2f} % of the split's labels"
    total = np.zeros((len(images), len(classes)))  # float64: the mean does not hinge on the flags' order
    for m in a.model:
        one = teacher_logits(m, images, classes, a.cache, a.batch, a.tta)
        print(f"[teacher_targets] {m} agrees with {agreement(one)}", file=sys.stderr)
        total += one
    logits = (total / len(a.model)).astype(np.float32)
    if len(a.model) > 1:
        print(f"[teacher_targets] the mean of the {len(a.model)} agrees with {agreement(logits)}", file=sys.stderr)
    sums = images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    write_safetensors(a.out, {"logits": logits, "pixel_sums": sums}, {
        "classes": json.dumps(classes, separators=(",", ":")),
        "teacher": "+".join(os.path.basename(m) for m in a.model) + ("" if a.tta == "none" else f" ({a.tta})"),
        "source": os.path.basename(a.cache),
    })
    print(f"[teacher_targets] {a.out}: {len(logits)} faces x {logits.shape[1]} classes from {' + '.join(a.model)}", file=sys.stderr)


if __name__ == "__main__":
    main()
