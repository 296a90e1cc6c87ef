#!/usr/bin/env python3
"""Set (or remove) `fer.*` metadata entries of an exported model, leaving the graph and weights as
they are: for files whose training run is gone but whose contract gains a key, e.g. the shipped
models' `fer.crop_pad` / `fer.eval_view` (docs/onnx-contract.md).

    .venv/bin/python scripts/set_metadata.py models-onnx/eac_mbv2.onnx \
        fer.crop_pad=4 fer.eval_view=centre_crop fer.val_accuracy=0.6456

`KEY=` (empty value) removes the key. The file is replaced atomically (written next to it, then
renamed). Check the result with `fer-run info` and `fer-run eval`.
"""
import argparse
import os
import sys
import tempfile

import onnx


def parse_pair(text):
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("fer.") or len(key) <= len("fer."):
        raise argparse.ArgumentTypeError(f"{text!r}: expected fer.<key>=<value>")
    return key, value


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the .onnx file to change in place")
    ap.add_argument("pairs", nargs="+", type=parse_pair, metavar="fer.KEY=VALUE")
    args = ap.parse_args()
    try:
        model = onnx.load(args.model)
    except Exception as e:  # onnx raises DecodeError, OSError, ...: all mean "not this file"
        sys.exit(f"{args.model}: cannot read it as ONNX ({e})")
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in args.pairs:
        if value:
            props[key] = value
        else:
            props.pop(key, None)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    folder = os.path.dirname(os.path.abspath(args.model))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, args.model)
    except BaseException:
        os.unlink(tmp)
        raise
    for key, value in args.pairs:
        print(f"{args.model}: {key} = {value!r}" if value else f"{args.model}: {key} removed")


if __name__ == "__main__":
    main()
