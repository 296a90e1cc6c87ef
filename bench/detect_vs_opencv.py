#!/usr/bin/env python3
"""fer-run's Haar face detector against OpenCV's `CascadeClassifier.detectMultiScale` on the same
gray images, cascade and parameters (scaleFactor 1.1, minNeighbors 3, minSize 30x30: fer-run's
defaults), at 2 threads and at 1: milliseconds per detection (median of each side's timed calls,
rounds interleaved), the ratio, and whether the two found the same faces.

    .venv/bin/python bench/detect_vs_opencv.py [--iters 20] [--rounds 3] [IMAGE ...]

Without images it uses the set-up's astronaut portrait (512x512) and two camera-sized frames made
from it (640x480 and 1280x720, the face pasted on a gray background). OpenCV is the set-up's
opencv-python-headless 4.11.0.86 (scripts/requirements.txt), whose cascade fer-run uses. fer-run's side is
`runtime/examples/detect_bench.rs`, built here in release mode. fer-run first shrinks an image
whose longer side is over 800 px to 800 (`HaarParams::max_side`: faces in such photos are large);
OpenCV scans it whole, so on the 1280x720 frame part of the gap is that, not the evaluation.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("images", nargs="*")
ap.add_argument("--iters", type=int, default=20, help="timed detections per image, per round and side")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--cascade", default=os.path.join(ROOT, ".cache", "assets", "haarcascade_frontalface_default.xml"))
a = ap.parse_args()


images = a.images
if not images:
    tmp = tempfile.mkdtemp(prefix="detect_vs_opencv-")
    astronaut = os.path.join(ROOT, ".cache", "assets", "astronaut.png")
    images = [astronaut]
    face = Image.open(astronaut).convert("RGB")
    for (w, h), side in (((640, 480), 400), ((1280, 720), 600)):
        frame = Image.new("RGB", (w, h), (90, 90, 90))
        frame.paste(face.resize((side, side)), ((w - side) // 2, (h - side) // 2))
        path = os.path.join(tmp, f"frame_{w}x{h}.jpg")
        frame.save(path, quality=85)
        images.append(path)

subprocess.run(["cargo", "build", "-q", "--release", "-p", "fer-runtime", "--example", "detect_bench"],
               cwd=ROOT, check=True)
fer_bin = os.path.join(ROOT, "target", "release", "examples", "detect_bench")
cascade = cv2.CascadeClassifier(a.cascade)
if cascade.empty():
    sys.exit(f"OpenCV cannot read {a.cascade}")


def fer(path, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([fer_bin, a.cascade, str(a.iters), path], env=env, check=True,
                         capture_output=True, text=True).stdout
    r = json.loads(out)
    return r["p50_ms"], [tuple(b) for b in r["boxes"]]


def opencv(gray, threads):
    cv2.setNumThreads(threads)
    detect = lambda: cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(30, 30))  # noqa: E731
    boxes = detect()
    ms = []
    for _ in range(a.iters):
        t = time.perf_counter()
        detect()
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms), [tuple(int(v) for v in b) for b in boxes]


def iou(p, q):
    x0, y0 = max(p[0], q[0]), max(p[1], q[1])
    x1, y1 = min(p[0] + p[2], q[0] + q[2]), min(p[1] + p[3], q[1] + q[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (p[2] * p[3] + q[2] * q[3] - inter)


print(f"{'image':<24} {'threads':>7} {'fer ms':>8} {'OpenCV ms':>10} {'fer/OpenCV':>10}  faces (fer / OpenCV, best IoU each)")
for path in images:
    # The same gray pixels on both sides: BT.601 luma, as fer-run's to_gray and cv2's BGR2GRAY.
    gray = np.asarray(Image.open(path).convert("L"))
    for threads in (2, 1):
        fer_ms, cv_ms, ratios = [], [], []
        for _ in range(a.rounds):
            f, fer_boxes = fer(path, threads)
            c, cv_boxes = opencv(gray, threads)
            fer_ms.append(f)
            cv_ms.append(c)
            ratios.append(f / c)
        best = [max((iou(b, c) for c in cv_boxes), default=0.0) for b in fer_boxes]
        print(f"{os.path.basename(path):<24} {threads:>7} {statistics.median(fer_ms):>8.1f} "
              f"{statistics.median(cv_ms):>10.1f} {statistics.median(ratios):>9.2f}x  "
              f"{len(fer_boxes)} / {len(cv_boxes)}, IoU {', '.join(f'{v:.2f}' for v in best) or '-'}")
