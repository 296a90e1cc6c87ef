"""Writes `fer-train cache` files back out as an image-folder dataset (<out>/<split>/<class>/<i>.png).

The lent GPU machine receives FER2013 only as the trainer's decoded caches (the PNG folders do not
fit a device call), but the peer's ref_train.py reads image folders. This rebuilds them there, so
the whole-epoch comparison (bench/train_vs_pytorch.py epoch) runs both sides on the same faces:

    python3 bench/cache_to_folder.py OUT train=.cache/data/train-*.safetensors val=.cache/data/val-*.safetensors

Needs numpy and Pillow only (the device's torchvision brings both); the cache is read by hand (a
safetensors file is an 8-byte header length, a JSON header, then the raw tensors), so the
`safetensors` package is not needed. Pixels are written losslessly: reading the folder back gives
the cached tensors exactly (tests/gpu_scripts.rs checks it).
"""
import json, lzma, os, struct, sys

import numpy as np
from PIL import Image


def read_cache(path):
    """(images uint8 [N, C, H, W], labels int64 [N], class names) of one cache file."""
    if path.endswith(".zst"):
        sys.exit(f"{path}: zstd caches are not supported here; write an uncompressed cache (fer-train cache)")
    try:
        with (lzma.open if path.endswith(".xz") else open)(path, "rb") as f:
            blob = f.read()
    except (OSError, lzma.LZMAError) as e:
        sys.exit(f"{path}: {e}")
    if len(blob) < 8:
        sys.exit(f"{path}: not a safetensors file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        sys.exit(f"{path}: the safetensors header is not JSON ({e})")
    meta = header.pop("__metadata__", {})
    if not str(meta.get("format", "")).startswith("fer-train-dataset"):
        sys.exit(f"{path}: not a fer-train dataset cache (metadata format {meta.get('format')!r})")
    body = blob[8 + n:]

    def tensor(name, dtype, want):
        t = header.get(name)
        if t is None or t["dtype"] != want:
            sys.exit(f"{path}: tensor `{name}` missing or not {want}")
        a, b = t["data_offsets"]
        return np.frombuffer(body[a:b], dtype=dtype).reshape(t["shape"])

    images = tensor("images", np.uint8, "U8")
    labels = tensor("labels", "<i8", "I64")
    classes = json.loads(meta["classes"])
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(labels) != images.shape[0]:
        sys.exit(f"{path}: images {images.shape} and labels {labels.shape} do not fit together")
    return images, labels, classes


def write_split(images, labels, classes, dest):
    for c in classes:
        os.makedirs(os.path.join(dest, c), exist_ok=True)
    for i, (img, y) in enumerate(zip(images, labels)):
        pixels = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(pixels)).save(os.path.join(dest, classes[y], f"{i:05d}.png"))


def main(argv):
    if len(argv) < 2 or any("=" not in a for a in argv[1:]):
        sys.exit("usage: cache_to_folder.py OUT SPLIT=CACHE [SPLIT=CACHE ...]")
    out = argv[0]
    for arg in argv[1:]:
        split, path = arg.split("=", 1)
        images, labels, classes = read_cache(path)
        write_split(images, labels, classes, os.path.join(out, split))
        print(f"[cache_to_folder] {path} -> {os.path.join(out, split)}: {len(labels)} images, "
              f"{len(classes)} classes", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
