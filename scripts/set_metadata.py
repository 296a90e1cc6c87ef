#!/usr/bin/env python3
"""Set (or remove) `fer.*` metadata entries of an exported model, leaving the graph and weights as
they are: for files whose training run is gone but whose contract gains a key, e.g. the shipped
models' `fer.crop_pad` / `fer.eval_view` (docs/onnx-contract.md).

    .venv/bin/python scripts/set_metadata.py models-onnx/eac_mbv2.onnx \
        fer.crop_pad=4 fer.eval_view=centre_crop fer.val_accuracy=0.6456

`KEY=` (empty value) removes the key. The changed file is written next to the old one and loaded
by `fer-run info` (the runtime's own checks of every `fer.*` value) before it replaces the old one
(an atomic rename); a value the runtime refuses leaves the file as it was. Without a built fer-run
(`cargo build --release -p fer-runtime`) the values are not checked, with a warning. Then compare
`fer-run eval` with the accuracy the file had.
"""
import argparse
import os
import subprocess
import sys
import tempfile

FER_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "fer-run")

import onnx


def parse_pair(text):
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("fer.") or len(key) <= len("fer."):
        raise argparse.ArgumentTypeError(f"{text!r}: expected fer.<key>=<value>")
    return key, value


def check(fer_run, tmp, model):
    """Loads the changed file with `fer-run info`; exits naming `model` and the runtime's reason if
    it is refused."""
    if not os.path.isfile(fer_run):
        print(f"warning: {fer_run} is not built (cargo build --release -p fer-runtime): the values are not checked",
              file=sys.stderr)
        return
    out = subprocess.run([fer_run, "info", "--model", tmp], capture_output=True, text=True,
                         env={**os.environ, "RUST_BACKTRACE": "0"})
    if out.returncode != 0:
        reason = [l.strip() for l in out.stderr.replace(tmp, model).splitlines() if l.strip()]
        sys.exit(f"{model}: left as it was; fer-run refuses the change: {reason[-1] if reason else out.returncode}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the .onnx file to change in place")
    ap.add_argument("pairs", nargs="+", type=parse_pair, metavar="fer.KEY=VALUE")
    ap.add_argument("--fer-run", default=FER_RUN, help="the fer-run binary that checks the result (default: target/release/fer-run)")
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
        check(args.fer_run, tmp, args.model)
        os.replace(tmp, args.model)
    except BaseException:
        os.unlink(tmp)
        raise
    for key, value in args.pairs:
        print(f"{args.model}: {key} = {value!r}" if value else f"{args.model}: {key} removed")


if __name__ == "__main__":
    main()
