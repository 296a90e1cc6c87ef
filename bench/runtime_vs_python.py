"""Side-by-side latency of fer-run (ONNX Runtime and tract backends) and Python onnxruntime on the
same model file and the same images, in one run, with ratios.

    .venv/bin/python bench/runtime_vs_python.py --model models-onnx/eac_mbv2.onnx \
        --images ../shared/datasets/fer2013/val/happy [--fer-run target/release/fer-run] [--iters 200]

Each side times one call per image at batch 1: decode + preprocess (as the model's metadata says)
+ inference. The Python side is what a Python user would write: PIL decode, convert, bilinear
resize, normalise, `session.run`. It also reports inference alone on a fixed tensor for each side.
Then folder throughput: --folder-images N images (default 1000) classified as face crops, `--batch`
per call: Python decodes, preprocesses and runs them in batches (timed from the first decode to
the last result); fer-run is timed as a whole process (start-up and model load included), and
again without its start-up (the time of the same command on one image), like the Python loop.
Latency is measured in --rounds rounds (default 3), each timing every row once in turn, and each
row reports the median over rounds of its p50 and p95; the ratios are taken within each round
(the rows of a round ran minutes apart at most) and their median is the verdict. A shared virtual
machine's speed drifts by tens of percent over minutes, so only side-by-side ratios mean much.
Run it on an idle machine: p95 is sensitive to anything else running.
"""
import argparse, glob, json, os, subprocess, tempfile, time
import numpy as np, onnx, onnxruntime as ort
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True); ap.add_argument("--images", required=True)
ap.add_argument("--fer-run", default="target/release/fer-run"); ap.add_argument("--iters", type=int, default=200)
ap.add_argument("--warmup", type=int, default=20); ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--folder-images", type=int, default=1000); ap.add_argument("--batch", type=int, default=8)
a = ap.parse_args()

meta = {p.key: p.value for p in onnx.load(a.model, load_external_data=False).metadata_props}
h, w = (int(v) for v in meta["fer.input_size"].split(","))
mean = np.array([float(v) for v in meta["fer.mean"].split(",")], np.float32)[:, None, None]
std = np.array([float(v) for v in meta["fer.std"].split(",")], np.float32)[:, None, None]
gray = meta["fer.color"] == "gray"
files = sorted(f for f in glob.glob(os.path.join(a.images, "*")) if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")))
assert files, f"no images in {a.images}"

sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
# fer-run loads the very library this Python package uses: same ONNX Runtime build on both sides.
os.environ.setdefault("ORT_DYLIB_PATH", os.path.join(os.path.dirname(ort.__file__), "capi", f"libonnxruntime.so.{ort.__version__}"))
c = sess.get_inputs()[0].shape[1]

def python_tensor(path):
    img = Image.open(path).convert("L" if gray else "RGB").resize((w, h), Image.BILINEAR)
    x = np.asarray(img, np.float32) / 255.0
    x = np.broadcast_to(x[None], (c, h, w)) if gray else x.transpose(2, 0, 1)
    return ((x - mean) / std).astype(np.float32)

def python_one(path):
    return sess.run(["probs"], {"input": python_tensor(path)[None]})

def timed(fn, n):
    for i in range(a.warmup): fn(i)
    t = []
    for i in range(n):
        t0 = time.perf_counter(); fn(i); t.append((time.perf_counter() - t0) * 1e3)
    t = np.sort(np.array(t))
    return {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)), "throughput": 1e3 * n / t.sum()}

def one_round():
    rows = {}
    rows["python onnxruntime, files"] = timed(lambda i: python_one(files[i % len(files)]), a.iters)
    x0 = np.random.randn(1, c, h, w).astype(np.float32)
    rows["python onnxruntime, tensor"] = timed(lambda i: sess.run(["probs"], {"input": x0}), a.iters)
    for backend in ["ort", "tract"]:
        for what, extra in [("files", ["--images", a.images]), ("tensor", [])]:
            out = subprocess.run([a.fer_run, "bench", "--model", a.model, "--backend", backend, "--iters", str(a.iters),
                                  "--warmup", str(a.warmup), "--json", *extra], capture_output=True, text=True, check=True)
            rows[f"fer-run {backend}, {what}"] = json.loads(out.stdout)
    return rows

def ratios(rows):
    r = {}
    for what in ["files", "tensor"]:
        py = rows[f"python onnxruntime, {what}"]["p50_ms"]
        o = rows[f"fer-run ort, {what}"]["p50_ms"]; t = rows[f"fer-run tract, {what}"]["p50_ms"]
        r[f"{what}: fer-run ort / python"] = o / py
        r[f"{what}: tract / ort"] = t / o
    return r

rounds = [one_round() for _ in range(a.rounds)]
med = lambda v: float(np.median(v))
print(f"model {a.model}, {len(files)} images from {a.images}, batch 1, {a.iters} calls each, "
      f"{a.rounds} rounds (median of the rounds' p50 and p95)")
print(f"{'':32} {'p50 ms':>8} {'p95 ms':>8} {'img/s':>8}")
for k in rounds[0]:
    print(f"{k:32} {med([r[k]['p50_ms'] for r in rounds]):8.3f} {med([r[k]['p95_ms'] for r in rounds]):8.3f} "
          f"{med([r[k]['throughput'] for r in rounds]):8.0f}")
# Folder throughput: the same N files (repeating the list if it is shorter) in one directory.
n = a.folder_images
with tempfile.TemporaryDirectory() as d:
    batch_files = []
    for i in range(n):
        src = os.path.abspath(files[i % len(files)])
        dst = os.path.join(d, f"{i:05d}{os.path.splitext(src)[1]}")
        os.symlink(src, dst); batch_files.append(dst)
    t0 = time.perf_counter()
    for i in range(0, n, a.batch):
        sess.run(["probs"], {"input": np.stack([python_tensor(f) for f in batch_files[i:i + a.batch]])})
    folder = {"python onnxruntime": (n / (time.perf_counter() - t0), None)}
    # fer-run's start-up (process, model load, session creation), which the Python loop leaves out:
    # the time of the same command on a folder of one image.
    one = tempfile.TemporaryDirectory()  # beside `d`, not in it: fer-run walks folders recursively
    os.symlink(os.path.realpath(batch_files[0]), os.path.join(one.name, "a" + os.path.splitext(batch_files[0])[1]))
    def fer_run_folder(backend, folder_path, expect):
        t0 = time.perf_counter()
        out = subprocess.run([a.fer_run, "--model", a.model, "--backend", backend, "--no-detect", "--json",
                              "--batch", str(a.batch), folder_path], capture_output=True, text=True, check=True)
        assert len(out.stdout.splitlines()) == expect, f"fer-run {backend} gave {len(out.stdout.splitlines())} lines for {expect} images"
        return time.perf_counter() - t0
    for backend in ["ort", "tract"]:
        start_up = min(fer_run_folder(backend, one.name, 1) for _ in range(3))
        whole = fer_run_folder(backend, d, n)
        folder[f"fer-run {backend}"] = (n / whole, (start_up, (n - 1) / (whole - start_up)))
    one.cleanup()
print(f"\nfolder of {n} images, batch {a.batch} (img/s; fer-run timed as a whole process, then without its start-up):")
for k, (v, rest) in folder.items():
    extra = f"   start-up {rest[0]:.2f} s, {rest[1]:.0f} img/s after it" if rest else ""
    print(f"{k:32} {v:8.0f}{extra}")

print("\np50 ratios, per round, then their median (bars: ort / python <= 1.1, tract / ort <= 2):")
per_round = [ratios(r) for r in rounds]
for k in per_round[0]:
    print(f"{k:32} {' '.join(f'{r[k]:.2f}x' for r in per_round)}   median {med([r[k] for r in per_round]):.2f}x")
