"""Where ONNX Runtime spends its time on a model: the peer of `examples/tract_profile`. Runs the
file at batch 1 on a fixed random input with ORT's profiler on and prints kernel time per operator
type and the slowest nodes (ORT's fused node names), per run.

    .venv/bin/python bench/ort_profile.py --model models-onnx/eac_mbv2.onnx [--threads 1] [--iters 1000]

Profiling adds overhead to every node, so read the shares and the per-node comparison with
tract, not the total, as the speed of a plain run (that is `fer-run bench`).
"""
import argparse, collections, json, os, time
import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ORT's default, one per core)")
ap.add_argument("--iters", type=int, default=1000); ap.add_argument("--warmup", type=int, default=50)
ap.add_argument("--top", type=int, default=15, help="slowest nodes to list")
a = ap.parse_args()
if not os.path.isfile(a.model):
    raise SystemExit(f"ort_profile: {a.model}: no such model file")

so = ort.SessionOptions(); so.intra_op_num_threads = a.threads; so.enable_profiling = True
sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
x = np.random.default_rng(0).standard_normal([1, *inp.shape[1:]]).astype(np.float32)
for _ in range(a.warmup): sess.run(None, {inp.name: x})
t0 = time.perf_counter()
for _ in range(a.iters): sess.run(None, {inp.name: x})
wall = (time.perf_counter() - t0) * 1e3 / a.iters
trace = sess.end_profiling()
events = json.load(open(trace)); os.remove(trace)
runs = a.warmup + a.iters  # the profile covers every run, warm-up included
per_op, per_node = collections.defaultdict(float), collections.defaultdict(float)
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        per_op[e["args"]["op_name"]] += e["dur"]
        per_node[(e["name"][: -len("_kernel_time")], e["args"]["op_name"], str(e["args"].get("output_type_shape", "")))] += e["dur"]
print(f"{a.model}: {wall:.3f} ms per profiled run, threads {a.threads or 'default'}")
print(f"{'op':28} {'ms/run':>10}")
for op, us in sorted(per_op.items(), key=lambda kv: -kv[1]):
    print(f"{op:28} {us / runs / 1e3:10.3f}")
print(f"{'kernels':28} {sum(per_op.values()) / runs / 1e3:10.3f}")
print(f"\nslowest {a.top} nodes:")
for (name, op, shape), us in sorted(per_node.items(), key=lambda kv: -kv[1])[: a.top]:
    print(f"{us / runs / 1e3:8.3f}  {op:12} {name}  {shape}")
