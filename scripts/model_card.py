"""Writes a model card (Markdown) for a shipped ONNX file from its run directory, so the card's
numbers come from the run, not from hand. For an ensemble file (`fer.method` ensemble, made by
`cargo run -p fer-export --example ensemble`) <run_dir> is its members' runs, comma-separated in
member order: the card lists the members (their views, epochs, own accuracies and runs) and the
ensemble's measured accuracy and latency, and leaves the training curves to the members' runs.

    .venv/bin/python scripts/model_card.py <run_dir> <model.onnx> <card.md> [--bench bench.json ...]
                                            [--fer-run-eval eval.json] [--note "text"] [--recipe configs/X.yaml]
                                            [--bench-note "text"]

Reads <run_dir>/summary.json, <run_dir>/metrics.csv, the ONNX file's metadata_props, and optional
JSON reports of `fer-run bench --json` and `fer-run eval --json`.
"""
import argparse, hashlib, json, os
from runinfo import load_onnx, onnx_meta, read_metrics, read_summary

ap = argparse.ArgumentParser()
ap.add_argument("run_dir", help="the run the file was exported from; for an ensemble, its members' runs, comma-separated")
ap.add_argument("onnx"); ap.add_argument("card")
ap.add_argument("--bench", action="append", default=[], help="fer-run bench --json output, one per backend")
ap.add_argument("--fer-run-eval", action="append", default=[],
                help="fer-run eval --json output on the val split (one per backend / --tta; the first is the file's own view)")
ap.add_argument("--note", default="", help="a paragraph quoted at the top of the card")
ap.add_argument("--recipe", help="the config file the run came from (default: configs/<fer.recipe>.yaml, the run's name; "
                "give it when the run was renamed with --set name=...)")
ap.add_argument("--bench-note", default="", help="how the latency was measured (command, rounds), under its table")
a = ap.parse_args()

m = load_onnx(a.onnx)
meta = onnx_meta(m)
ensemble = meta.get("fer.method") == "ensemble"
run_dirs = a.run_dir.split(",") if ensemble else [a.run_dir]
if ensemble and len(run_dirs) != len(meta.get("fer.members", "").split(",")):
    raise SystemExit(f"model_card: {a.onnx} joins {meta.get('fer.members')}: give one run per member, "
                     f"comma-separated in that order (got {a.run_dir})")
summaries = [read_summary(d) for d in run_dirs]
summary = summaries[0]
rows = [] if ensemble else read_metrics(a.run_dir)
size_mb = os.path.getsize(a.onnx) / 1e6
sha = hashlib.sha256(open(a.onnx, "rb").read()).hexdigest()[:16]
fv = summary["final_val"]
pct = lambda x: f"{100 * x:.2f} %"
recipe = a.recipe or f"configs/{meta.get('fer.recipe')}.yaml"

# The runtime's view of a face (fer.eval_view, docs/onnx-contract.md).
def view_of(meta, prefix="fer."):
    if meta.get(prefix + "eval_view") == "centre_crop":
        return f"centre crop of a {meta.get(prefix + 'crop_pad')} px larger resize"
    return "whole face resized"
view = view_of(meta)
L = [f"# {os.path.basename(a.onnx)}", ""]
if a.note:
    L += [f"> {a.note}", ""]
L += ["| | |", "| --- | --- |"]
if ensemble:
    L += [
        f"| method | ensemble: the mean of {len(run_dirs)} models' probabilities, in one graph |",
        f"| backbones | {meta.get('fer.backbone')} |",
        f"| training data | {meta.get('fer.data')} |",
    ]
else:
    L += [
        f"| method | {meta.get('fer.method')} (λ = {meta.get('fer.eac_lambda', '-')}) |",
        f"| backbone | {meta.get('fer.backbone')} |",
        f"| training data | {meta.get('fer.data')}, label noise {meta.get('fer.noise_rate')} |",
        f"| recipe | `{recipe}`, {summary['epochs']} epochs |",
    ]
L += [
    f"| input | `input` float32 [N, {m.graph.input[0].type.tensor_type.shape.dim[1].dim_value}, {meta.get('fer.input_size').replace(',', ', ')}], "
    f"{meta.get('fer.color')}, (x/255 − {meta.get('fer.mean')}) / {meta.get('fer.std')}, {view} |",
    f"| outputs | {', '.join('`' + o.name + '`' for o in m.graph.output)} |",
    f"| labels | {meta.get('fer.labels')} |",
    f"| file | {size_mb:.1f} MB, opset {m.opset_import[0].version}, sha256 {sha}… |",
    "",
]
if ensemble:
    L += ["## Members", "| # | model | method, backbone | input, view | epochs | alone (its `fer.val_accuracy`) | run (config, metrics) |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, (name, run, s_i) in enumerate(zip(meta["fer.members"].split(","), run_dirs, summaries)):
        p = f"fer.member{i}."
        own = meta.get(p + "val_accuracy")
        L.append(f"| {i} | {name} | {meta.get(p + 'method')}, {meta.get(p + 'backbone')} | "
                 f"{meta.get(p + 'input_size', '?').replace(',', 'x')} px, {view_of(meta, p)} | "
                 f"{s_i['epochs']} | {pct(float(own)) if own else '-'} | `{run}` |")
    L += ["", f"A smaller member's input is the ensemble's {meta.get('fer.input_size').replace(',', 'x')} px input resized inside the "
          "graph (bilinear), not its own resize of the face; the rows below measure the file as it is.", ""]
L += ["## Validation (FER2013 PublicTest = `val`, 3,589 images)", "| metric | value |", "| --- | --- |"]
if not ensemble:
    L += [
        f"| accuracy (final epoch, `fer-train`) | {pct(fv['accuracy'])} |",
        f"| mean class accuracy | {pct(fv['mean_class_accuracy'])} |",
        f"| macro-F1 | {fv['macro_f1']:.4f} |",
        f"| best epoch accuracy | {pct(summary['best_val_accuracy'])} (epoch {summary['best_epoch']}) |",
        f"| mean of last 5 epochs | {pct(summary['last5_val_accuracy_mean'])} |",
    ]
for path in a.fer_run_eval:
    ev = json.load(open(path))
    tta = ev.get("tta", "none")
    how = ev["backend"] + ("" if tta == "none" else f", `--tta {tta}`")
    # fer-run reports since 2026-12-06 also carry the class-balanced scores.
    more = f" (mean class {pct(ev['mean_class_accuracy'])}, macro-F1 {ev['macro_f1']:.4f})" if "macro_f1" in ev else ""
    L.append(f"| accuracy of this file in `fer-run eval` ({how}) | {pct(ev['accuracy'])} on {ev['images']} images{more} |")
if not ensemble:
    L += ["", f"Training throughput: {summary['train_img_per_s']:.0f} img/s.", "",
          "| epoch | lr | train loss | train acc | val acc |", "| --- | --- | --- | --- | --- |"]
L += [f"| {r['epoch']} | {float(r['lr']):.2e} | {float(r['train_loss']):.4f} | {pct(float(r['train_accuracy']))} | {pct(float(r['val_accuracy']))} |" for r in rows]
if a.bench:
    L += ["", "## Latency (`fer-run bench`, this 2-core x86-64 machine)", "| backend | timed | batch | p50 ms | p95 ms | img/s |",
          "| --- | --- | --- | --- | --- | --- |"]
    for b in a.bench:
        r = json.load(open(b))
        L.append(f"| {r.get('backend', '?')} | {r.get('what', 'inference')} | {r.get('batch', '?')} | {r.get('p50_ms', 0):.2f} | "
                 f"{r.get('p95_ms', 0):.2f} | {r.get('throughput', r.get('img_per_s', 0)):.0f} |")
    if a.bench_note:
        L += ["", a.bench_note]
L += ["", "## License and use",
      "Trained on FER2013 (Goodfellow et al., ICML 2013 challenge data, distributed on Kaggle for research). "
      "The data's license limits use to research; check it before any commercial use of this model.", ""]
open(a.card, "w").write("\n".join(L))
print(f"wrote {a.card}")
