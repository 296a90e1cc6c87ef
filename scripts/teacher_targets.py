"""A teacher's logits for every face of a training split, for knowledge distillation (`distill` in a
fer-train config; trainer/src/distill.rs says how they are used and checked).

    .venv/bin/python scripts/teacher_targets.py --model models-onnx/ce_r18.onnx \
        --cache .cache/data/train-<hash>.safetensors --out .cache/teacher/ce_r18_train.safetensors

`--cache` is the trainer's decoded split (`fer-train cache --config <student config>` prints its
path), so the targets follow the trainer's order exactly. The teacher is any model fer-train
exported (the ONNX contract, docs/onnx-contract.md); each face goes through the preprocessing the
teacher was trained with, read from its metadata (bilinear resize to `fer.input_size` as the
trainer's evaluation does, `(x/255 - mean) / std`, gray replicated to the input's channels), and
through ONNX Runtime's CPU provider in batches.

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


def teacher_logits(model, images, classes, cache, batch):
    """One teacher's logits [N, K] for `images` (uint8 [N, C, H, W] from the trainer's cache)."""
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F

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

    out, t0 = [], time.time()
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float() / 255
        if x.shape[2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        x = (x.expand(-1, channels, -1, -1) - mean) / std
        (logits,) = sess.run(["logits"], {"input": x.contiguous().numpy()})
        out.append(logits.astype(np.float32))
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
        one = teacher_logits(m, images, classes, a.cache, a.batch)
        print(f"[teacher_targets] {m} agrees with {agreement(one)}", file=sys.stderr)
        total += one
    logits = (total / len(a.model)).astype(np.float32)
    if len(a.model) > 1:
        print(f"[teacher_targets] the mean of the {len(a.model)} agrees with {agreement(logits)}", file=sys.stderr)
    sums = images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    write_safetensors(a.out, {"logits": logits, "pixel_sums": sums}, {
        "classes": json.dumps(classes, separators=(",", ":")),
        "teacher": "+".join(os.path.basename(m) for m in a.model),
        "source": os.path.basename(a.cache),
    })
    print(f"[teacher_targets] {a.out}: {len(logits)} faces x {logits.shape[1]} classes from {' + '.join(a.model)}", file=sys.stderr)


if __name__ == "__main__":
    main()
