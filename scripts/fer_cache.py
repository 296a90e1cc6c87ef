"""Reads and writes the trainer's safetensors files from Python without the `safetensors` package
(the lent GPU machine has only torch): a safetensors file is an 8-byte little-endian header length,
a JSON header (tensor dtypes, shapes, byte offsets; free-form string `__metadata__`), then the raw
little-endian tensor bytes.
"""
import json, lzma, os, struct, sys

import numpy as np

DTYPES = {"U8": np.uint8, "I64": "<i8", "F32": "<f4", "F64": "<f8"}  # F64: a checkpoint's optimizer scalars


def fail(msg):
    sys.exit(msg)


def read_safetensors(path):
    """({name: numpy array}, metadata dict) of a safetensors file (`.xz`: lzma-compressed)."""
    if path.endswith(".zst"):
        fail(f"{path}: zstd-compressed files are not supported here; use an uncompressed one (fer-train cache)")
    try:
        with (lzma.open if path.endswith(".xz") else open)(path, "rb") as f:
            blob = f.read()
    except (OSError, lzma.LZMAError) as e:
        fail(f"{path}: {e}")
    if len(blob) < 8:
        fail(f"{path}: not a safetensors file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        fail(f"{path}: not a safetensors file (its header is not JSON: {e})")
    meta = header.pop("__metadata__", None) or {}
    body = blob[8 + n:]
    tensors = {}
    for name, t in header.items():
        if t.get("dtype") not in DTYPES:
            fail(f"{path}: tensor `{name}` has dtype {t.get('dtype')}, not one of {sorted(DTYPES)}")
        a, b = t["data_offsets"]
        try:
            tensors[name] = np.frombuffer(body[a:b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        except ValueError as e:  # offsets past the end, or bytes that do not fill the shape
            fail(f"{path}: tensor `{name}` does not fit its bytes {a}..{b} of {len(body)} ({e}); truncated file?")
    return tensors, meta


def write_safetensors(path, tensors, metadata):
    """Writes {name: numpy array} (uint8, int64 or float32) with string metadata."""
    names = {np.dtype(np.uint8): "U8", np.dtype("<i8"): "I64", np.dtype("<f4"): "F32"}
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype not in names:
            fail(f"{path}: cannot store `{name}` of dtype {a.dtype}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    os.replace(path + ".tmp", path)


def read_cache(path):
    """(images uint8 [N, C, H, W], labels int64 [N], class names) of one `fer-train cache` file."""
    tensors, meta = read_safetensors(path)
    if not str(meta.get("format", "")).startswith("fer-train-dataset"):
        fail(f"{path}: not a fer-train dataset cache (metadata format {meta.get('format')!r})")
    images, labels = tensors.get("images"), tensors.get("labels")
    if images is None or labels is None or images.dtype != np.uint8 or labels.dtype != np.dtype("<i8"):
        fail(f"{path}: tensors `images` (uint8) and `labels` (int64) missing or mistyped")
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(labels) != images.shape[0]:
        fail(f"{path}: images {images.shape} and labels {labels.shape} do not fit together")
    return images, labels, json.loads(meta["classes"])
