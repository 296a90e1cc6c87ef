"""Writes a model card (Markdown) for a shipped ONNX file from its run directory, so the card's
numbers come from the run, not from hand.

    .venv/bin/python scripts/model_card.py <run_dir> <model.onnx> <card.md> [--bench bench.json ...]
                                            [--fer-run-eval eval.json] [--note "text"] [--recipe configs/X.yaml]
                                            [--bench-note "text"]

Reads <run_dir>/summary.json, <run_dir>/metrics.csv, the ONNX file's metadata_props, and optional
JSON reports of `fer-run bench --json` and `fer-run eval --json`.
"""
import argparse, hashlib, json, os
from runinfo import load_onnx, onnx_meta, read_metrics, read_summary

ap = argparse.ArgumentParser()
ap.add_argument("run_dir"); ap.add_argument("onnx"); ap.add_argument("card")
ap.add_argument("--bench", action="append", default=[], help="fer-run bench --json output, one per backend")
ap.add_argument("--fer-run-eval", action="append", default=[],
                help="fer-run eval --json output on the val split (one per backend / --tta; the first is the file's own view)")
ap.add_argument("--note", default="", help="a paragraph quoted at the top of the card")
ap.add_argument("--recipe", help="the config file the run came from (default: configs/<fer.recipe>.yaml, the run's name; "
                "give it when the run was renamed with --set name=...)")
ap.add_argument("--bench-note", default="", help="how the latency was measured (command, rounds), under its table")
a = ap.parse_args()

summary = read_summary(a.run_dir)
rows = read_metrics(a.run_dir)
m = load_onnx(a.onnx)
meta = onnx_meta(m)
size_mb = os.path.getsize(a.onnx) / 1e6
sha = hashlib.sha256(open(a.onnx, "rb").read()).hexdigest()[:16]
fv = summary["final_val"]
pct = lambda x: f"{100 * x:.2f} %"
recipe = a.recipe or f"configs/{meta.get('fer.recipe')}.yaml"

# The runtime's view of a face (fer.eval_view, docs/onnx-contract.md).
if meta.get("fer.eval_view") == "centre_crop":
    view = f"centre crop of a {meta.get('fer.crop_pad')} px larger resize"
else:
    view = "whole face resized"
L = [f"# {os.path.basename(a.onnx)}", ""]
if a.note:
    L += [f"> {a.note}", ""]
L += [
    "| | |", "| --- | --- |",
    f"| method | {meta.get('fer.method')} (λ = {meta.get('fer.eac_lambda', '-')}) |",
    f"| backbone | {meta.get('fer.backbone')} |",
    f"| training data | {meta.get('fer.data')}, label noise {meta.get('fer.noise_rate')} |",
    f"| recipe | `{recipe}`, {summary['epochs']} epochs |",
    f"| input | `input` float32 [N, {m.graph.input[0].type.tensor_type.shape.dim[1].dim_value}, {meta.get('fer.input_size').replace(',', ', ')}], "
    f"{meta.get('fer.color')}, (x/255 − {meta.get('fer.mean')}) / {meta.get('fer.std')}, {view} |",
    f"| outputs | {', '.join('`' + o.name + '`' for o in m.graph.output)} |",
    f"| labels | {meta.get('fer.labels')} |",
    f"| file | {size_mb:.1f} MB, opset {m.opset_import[0].version}, sha256 {sha}… |",
    "",
    "## Validation (FER2013 PublicTest = `val`, 3,589 images)",
    "| metric | value |", "| --- | --- |",
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
