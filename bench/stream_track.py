#!/usr/bin/env python3
"""fer-run on a live-camera-like stream, with faces tracked and the search for new ones spread
over frames (`--detect-every N`) against a full search on every frame (`--detect-every 1`):
seconds for the whole stream (median of alternated rounds), how the faces found compare frame by
frame, and what finding the faces costs each frame (median, 95th percentile and slowest frame,
from `runtime/examples/track_bench.rs`, which times `FaceTracker::find` alone on the same frames).

    .venv/bin/python bench/stream_track.py [--frames 150] [--rounds 3] [--every 10] [--backend ort] [--scene empty] [--scale 2]

The stream is made here from the set-up's astronaut portrait: 640x480 JPEG frames (quality 80)
one after another, as `rpicam-vid --codec mjpeg` writes them. The face drifts across the frame and
grows and shrinks; a second, mirrored face comes in a third of the way through and leaves at two
thirds. The comparison matches each frame's boxes by overlap (IoU): the same faces should be
found, in nearly the same boxes, except that a face coming in is found at the next full search
(up to N-1 frames late). fer-run is target/release/fer-run, built here; the model is the shipped
eac_mbv2.onnx. `--scene empty` makes frames without any face: a still camera watching an empty room
(a fixed, blotchy texture of seeded noise, which the detector has to look at, unlike a flat wall).
`--scale 2` (3, ...) enlarges each frame (bicubic) to 1280x960 (1920x1440, ...): the same scene
from a camera of more pixels, past the detector's `max_side` of 800, above which frames are shrunk
before the search.
"""
import argparse
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--frames", type=int, default=150)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--every", type=int, default=10, help="--detect-every of the tracked runs")
ap.add_argument("--backend", default="ort", choices=["ort", "tract"])
ap.add_argument("--model", default=os.path.join(ROOT, "models-onnx", "eac_mbv2.onnx"))
ap.add_argument("--scene", default="faces", choices=["faces", "empty"])
ap.add_argument("--scale", type=float, default=1.0, help="frame size as a multiple of 640x480")
a = ap.parse_args()

assets = os.environ.get("FER_ASSETS", os.path.join(ROOT, ".cache", "assets"))
# The portrait's face (OpenCV finds it at 176,66 95x95) with a margin: a webcam close-up.
face = Image.open(os.path.join(assets, "astronaut.png")).convert("RGB").crop((118, 8, 328, 218))
mirrored = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


# The empty room: coarse seeded noise, enlarged into soft blotches of light and shade.
room = Image.fromarray(np.random.default_rng(0).integers(40, 220, (30, 40, 3), dtype=np.uint8)).resize((640, 480), Image.BICUBIC)


def frame(i):
    """Frame `i`: the face drifting (a slow ellipse) and breathing in size; the second face
    in view for the middle third, walking in from the right."""
    t = i / max(a.frames - 1, 1)
    if a.scene == "empty":
        return jpeg(room)
    img = Image.new("RGB", (640, 480), (90, 90, 90))
    side = int(240 + 40 * math.sin(2 * math.pi * t))
    x = int(40 + 120 * (1 - math.cos(2 * math.pi * t)))
    y = int(40 + 60 * (1 + math.sin(4 * math.pi * t)))
    img.paste(face.resize((side, side)), (x, y))
    if a.frames // 3 <= i < 2 * a.frames // 3:
        img.paste(mirrored.resize((140, 140)), (int(560 - 120 * (3 * t - 1)), 320))
    return jpeg(img)


SIZE = (round(640 * a.scale), round(480 * a.scale))


def jpeg(img):
    if img.size != SIZE:
        img = img.resize(SIZE, Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


stream = b"".join(frame(i) for i in range(a.frames))
tmp = tempfile.mkdtemp(prefix="stream_track-")
stream_path = os.path.join(tmp, "cam.mjpeg")
with open(stream_path, "wb") as f:
    f.write(stream)
print(f"stream: {stream_path}")

subprocess.run(["cargo", "build", "-q", "--release", "-p", "fer-runtime", "--bin", "fer-run", "--example", "track_bench"],
               cwd=ROOT, check=True)
fer_run = os.path.join(ROOT, "target", "release", "fer-run")
env = dict(os.environ, FER_ASSETS=assets)


def run(every):
    """Seconds for the stream, and each frame's boxes."""
    with open(stream_path, "rb") as stdin:
        t0 = time.perf_counter()
        out = subprocess.run([fer_run, "-m", a.model, "--backend", a.backend, "--json", "--detect-every", str(every), "-"],
                             stdin=stdin, capture_output=True, env=env)
        seconds = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"fer-run --detect-every {every} failed:\n{out.stderr.decode(errors='replace')}")
    boxes = [[] for _ in range(a.frames)]
    for line in out.stdout.decode().splitlines():
        r = json.loads(line)
        b = r["box"]
        if b is not None:
            boxes[int(r["file"].split(":")[1])].append((b["x"], b["y"], b["w"], b["h"]))
    return seconds, boxes


def iou(p, q):
    w = max(0, min(p[0] + p[2], q[0] + q[2]) - max(p[0], q[0]))
    h = max(0, min(p[1] + p[3], q[1] + q[3]) - max(p[1], q[1]))
    inter = w * h
    return inter / (p[2] * p[3] + q[2] * q[3] - inter)


times = {1: [], a.every: []}
for _ in range(a.rounds):
    for every in times:
        seconds, boxes = run(every)
        times[every].append(seconds)
        if every == 1:
            full = boxes
        else:
            tracked = boxes

# Each full-search face matched to the tracked face it overlaps most.
matched, missing, extra, ious, late = 0, 0, 0, [], []
for i, (want, got) in enumerate(zip(full, tracked)):
    left = list(got)
    for b in want:
        best = max(left, key=lambda g: iou(b, g), default=None)
        if best is not None and iou(b, best) > 0.3:
            matched += 1
            ious.append(iou(b, best))
            left.remove(best)
        else:
            missing += 1
            late.append(i)
    extra += len(left)

print(f"{a.frames} frames of {SIZE[0]}x{SIZE[1]}, {a.backend}, {a.rounds} alternated rounds (seconds: {times})")
print("| --detect-every | stream (s) | frames/s | faces found | vs every frame |")
print("| --- | --- | --- | --- | --- |")
for every, ts in times.items():
    med = statistics.median(ts)
    found = sum(len(f) for f in (full if every == 1 else tracked))
    ratio = statistics.median(times[1]) / med
    print(f"| {every} | {med:.2f} | {a.frames / med:.1f} | {found} | {ratio:.2f}x |")
if ious:
    print(f"faces of the full searches found by tracking: {matched} of {matched + missing}; "
          f"IoU median {statistics.median(ious):.3f}, min {min(ious):.3f}; "
          f"missed on frames {late}; {extra} tracked face(s) the full search did not have")
else:
    print(f"no face found by the full searches; {extra} by tracking")

# Finding the faces alone, frame by frame: the full search's cost shows as the slowest frames.
bench = os.path.join(ROOT, "target", "release", "examples", "track_bench")
out = subprocess.run([bench, stream_path, str(a.rounds), "1", str(a.every)], env=env, check=True,
                     capture_output=True, text=True).stdout
print(f"finding the faces of each frame ({a.rounds} rounds pooled; {os.path.relpath(bench, ROOT)}):")
print("| --detect-every | median frame (ms) | 95th percentile (ms) | slowest (ms) | stream (ms) | searched whole at once |")
print("| --- | --- | --- | --- | --- | --- |")
for line in out.splitlines():
    r = json.loads(line)
    print(f"| {r['every']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.2f} | {r['stream_ms']:.0f} | {r['full_searches']} |")
