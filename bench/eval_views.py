#!/usr/bin/env python3
"""Val accuracy of one model under other views of the faces, through Python onnxruntime and PIL:
why the 48 px edge model wants `fer.eval_view: centre_crop` (docs/RESULTS.md, "Eval views and
test-time augmentation"). Diagnostic only: `fer-run eval [--tta ...]` is the measurement of record.

    .venv/bin/python bench/eval_views.py --model models-onnx/eac_mbv2.onnx --pads 0 2 4 6

For each pad P: the face resized to input + P and its centre crop (P = 0: the plain resize). Then,
separating the two things that crop changes at 48 px: the resize's smoothing alone (48 -> 52 -> 48,
same framing) and the zoom alone (52 px by nearest neighbour, no smoothing, then the centre crop).
"""
import argparse
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--model", required=True)
ap.add_argument("--val", default="../shared/datasets/fer2013/val", help="<dir>/<class>/*.png")
ap.add_argument("--pads", type=int, nargs="+", default=[0, 4])
a = ap.parse_args()

sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
meta = sess.get_modelmeta().custom_metadata_map
labels = meta["fer.labels"].split(",")
h, w = (int(v) for v in meta["fer.input_size"].split(","))
mean, std = float(meta["fer.mean"].split(",")[0]), float(meta["fer.std"].split(",")[0])
channels = sess.get_inputs()[0].shape[1]
if meta.get("fer.color", "gray") != "gray":
    raise SystemExit(f"{a.model}: only gray models (this is a FER2013 diagnostic)")

faces, ys = [], []
for k, c in enumerate(labels):
    folder = os.path.join(a.val, c)
    for f in sorted(os.listdir(folder)):
        faces.append(Image.open(os.path.join(folder, f)).convert("L"))
        ys.append(k)
ys = np.array(ys)


def accuracy(views):
    x = np.stack([np.asarray(v, dtype=np.float32) for v in views])
    x = ((x / 255.0 - mean) / std)[:, None].repeat(channels, 1)
    probs = np.concatenate([sess.run(["probs"], {"input": x[i:i + 512]})[0] for i in range(0, len(x), 512)])
    return 100.0 * (probs.argmax(1) == ys).mean()


def centre(img, pad, resample=Image.BILINEAR):
    big = img.resize((w + pad, h + pad), resample)
    return big.crop((pad // 2, pad // 2, pad // 2 + w, pad // 2 + h))


print(f"{a.model}: {len(faces)} faces, input {h}x{w}")
for pad in a.pads:
    print(f"  resize to {w + pad}, centre crop {w}: {accuracy([centre(f, pad) for f in faces]):.2f} %")
pad = max(a.pads)
if pad > 0:
    smooth = [f.resize((w + pad, h + pad), Image.BILINEAR).resize((w, h), Image.BILINEAR) for f in faces]
    print(f"  smoothing alone ({w} -> {w + pad} -> {w}, bilinear): {accuracy(smooth):.2f} %")
    print(f"  zoom alone ({w + pad} by nearest neighbour, centre crop): "
          f"{accuracy([centre(f, pad, Image.NEAREST) for f in faces]):.2f} %")
