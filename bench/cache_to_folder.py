"""Writes `fer-train cache` files back out as an image-folder dataset (<out>/<split>/<class>/<i>.png).

The lent GPU machine receives FER2013 only as the trainer's decoded caches (the PNG folders do not
fit a device call), but the peer's ref_train.py reads image folders. This rebuilds them there, so
the whole-epoch comparison (bench/train_vs_pytorch.py epoch) runs both sides on the same faces:

    python3 bench/cache_to_folder.py OUT train=.cache/data/train-*.safetensors val=.cache/data/val-*.safetensors

Needs numpy and Pillow only (the device's torchvision brings both); scripts/fer_cache.py reads the
cache without the `safetensors` package. Pixels are written losslessly: reading the folder back gives
the cached tensors exactly (tests/gpu_scripts.rs checks it).
"""
import os, sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from fer_cache import read_cache  # noqa: E402


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
