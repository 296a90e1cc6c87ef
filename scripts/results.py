"""Builds the generated section of docs/RESULTS.md from `fer-train` run directories, so the
training numbers there come from the runs, not from hand.

    .venv/bin/python scripts/results.py [--archive runs/NAME ...] [--runs docs/runs]
                                        [--out docs/RESULTS.md] [--check] [--exclude GLOB ...]

The tables are built from the run archive `docs/runs/`, which is committed: `runs/` is scratch
space that does not outlive the machine, so a run that belongs on the page is archived first with
`--archive runs/NAME` (repeatable). That copies the run's config.yaml, summary.json and metrics.csv
into docs/runs/NAME/ and writes model_stats.json (parameters and MACs counted from its model.onnx),
a few kilobytes in all; the checkpoints and the ONNX file stay behind. The page's "reproduce"
command points at the archived config.yaml.

Replaces only the text between `<!-- results:begin -->` and `<!-- results:end -->` in --out; the
rest of the page stays hand-written. --check writes nothing and exits 1 if the page would change.
--exclude (repeatable) skips run names matching a glob; the default, bench_* and speed_*, leaves
out the one-step latency and speed fixtures (they are not results). Giving --exclude replaces the
default; `--exclude ''` includes every run. A run with a missing or corrupt summary.json,
config.yaml, metrics.csv or (when the run exported one) model.onnx is skipped with a warning on
stderr naming the file.
"""
import argparse, fnmatch, json, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runinfo import RunError, cfg_get, load_onnx, onnx_macs, onnx_params, read_config, read_metrics, read_summary

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DEFAULT_EXCLUDE = ["bench_*", "speed_*"]
METHOD_ORDER = ["ce", "eac", "dacfer", "dan", "grefel_rb"]
NOISE_COLUMNS = [0.0, 0.1, 0.2, 0.3]


def warn(msg):
    print(f"results.py: warning: {msg}", file=sys.stderr)


def pct(x):
    return f"{100 * x:.2f} %"


def si(n):
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= f:
            return f"{n / f:.2f} {unit}"
    return str(n)


def noise_label(rate):
    return f"{100 * rate:g} %"


ARCHIVED_FILES = ("config.yaml", "summary.json", "metrics.csv")
MODEL_STATS = "model_stats.json"


def model_stats(d, s):
    """(params, macs) of the run's exported graph: from model_stats.json in an archived run, else
    counted from model.onnx; (None, None) when the run exported no model, macs None if uncountable."""
    p = os.path.join(d, MODEL_STATS)
    if os.path.isfile(p):
        try:
            st = json.load(open(p))
            return int(st["params"]), (None if st["macs"] is None else int(st["macs"]))
        except (ValueError, TypeError, KeyError) as e:
            raise RunError(f"{p}: not valid JSON or a bad value ({e!r})") from None
    if s.get("onnx") is None:
        return None, None
    m = load_onnx(os.path.join(d, "model.onnx"))
    try:
        macs = onnx_macs(m)
    except Exception as e:
        warn(f"{os.path.join(d, 'model.onnx')}: FLOPs not counted ({e})")
        macs = None
    return onnx_params(m), macs


def archive(run_dir, archive_dir):
    """Copies a run's small files into archive_dir/<name>/ with its model stats; returns that path.
    Checks the run reads cleanly first, so a broken run never enters the archive."""
    run_dir = run_dir.rstrip("/")
    name = os.path.basename(run_dir)
    s, rows, _ = read_summary(run_dir), read_metrics(run_dir), read_config(run_dir)
    if not rows:
        raise RunError(f"{os.path.join(run_dir, 'metrics.csv')}: no epochs")
    params, macs = model_stats(run_dir, s)
    dest = os.path.join(archive_dir, name)
    # Staged next to the destination and swapped in whole, so an interrupted copy never leaves a
    # half-archived run and re-archiving a run replaces every file (no stale model_stats.json).
    stage = dest + ".partial"
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    for f in ARCHIVED_FILES:
        shutil.copyfile(os.path.join(run_dir, f), os.path.join(stage, f))
    if params is not None:
        with open(os.path.join(stage, MODEL_STATS), "w") as out:
            json.dump({"params": params, "macs": macs, "counted_from": os.path.join(run_dir, "model.onnx")}, out, indent=1)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.replace(stage, dest)
    return dest


def load_run(runs_dir, name):
    """One table row as a dict, or raises RunError naming the bad file."""
    d = os.path.join(runs_dir, name)
    s, rows, cfg = read_summary(d), read_metrics(d), read_config(d)
    if not rows:
        raise RunError(f"{os.path.join(d, 'metrics.csv')}: no epochs")
    params, macs = model_stats(d, s)
    device = s.get("device") or cfg_get(cfg, "train.device")
    if device in (None, "auto"):
        device = "?"  # `auto` does not say what it resolved to, and summaries before 2026-12-04 do not record it
    done, planned = int(s["epochs"]), cfg_get(cfg, "train.epochs")
    fv = s["final_val"]
    return {
        "name": name,
        "method": cfg_get(cfg, "method.name", "?"),
        "arch": cfg_get(cfg, "model.arch", "?"),
        "size": cfg_get(cfg, "model.input_size", "?"),
        "noise": round(float(cfg_get(cfg, "noise.rate", 0.0) or 0.0), 6),
        "epochs": f"{done}" if planned in (None, done) else f"{done} of {planned}",
        "done": done,
        "budget": int(planned) if planned is not None else done,
        "acc": float(fv["accuracy"]),
        "last5": float(s["last5_val_accuracy_mean"]),
        "best": f"{pct(float(s['best_val_accuracy']))} ({s['best_epoch']})",
        "mca": float(fv["mean_class_accuracy"]),
        "f1": float(fv["macro_f1"]),
        "params": f"{params:,}" if params is not None else "—",
        "macs": si(macs) if macs is not None else ("—" if params is None else "?"),
        "img_s": f"{float(s['train_img_per_s']):.1f}",
        "device": device,
        "cmd": f"`fer-train fit --config {os.path.join(d, 'config.yaml')} --set name={name}_repro`",
    }


def generate(runs_dir, exclude):
    names = sorted(n for n in os.listdir(runs_dir) if os.path.isdir(os.path.join(runs_dir, n))) if os.path.isdir(runs_dir) else []
    names = [n for n in names if not any(fnmatch.fnmatch(n, g) for g in exclude)]
    runs = []
    for n in names:
        try:
            runs.append(load_run(runs_dir, n))
        except RunError as e:
            warn(f"skipping run {n}: {e}")
    excl = ", ".join(f"`{g}`" for g in exclude if g) or "none"
    L = [f"Generated from the run directories under `{runs_dir}/` (excluded: {excl}). "
         "Do not edit this section by hand; run `.venv/bin/python scripts/results.py`.", ""]
    if not runs:
        L.append("No training runs to report yet (none in this folder outside the exclusions).")
        return "\n".join(L)
    L += ["### Table 1: every run (FER2013 `val`, final epoch unless stated)", "",
          "| run | method | backbone | input | noise | epochs | val acc. | mean last 5 | best (epoch) | mean class acc. | macro-F1 | params | FLOPs (MACs) | train img/s | device | reproduce |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        L.append(f"| {r['name']} | {r['method']} | {r['arch']} | {r['size']} | {noise_label(r['noise'])} | {r['epochs']} | "
                 f"{pct(r['acc'])} | {pct(r['last5'])} | {r['best']} | {pct(r['mca'])} | {r['f1']:.4f} | {r['params']} | "
                 f"{r['macs']} | {r['img_s']} | {r['device']} | {r['cmd']} |")
    L += ["",
          "Params: elements of the float initializers of the run's `model.onnx` (BatchNorm folded into the "
          "convolutions, as deployed). FLOPs: multiply-accumulates (1 MAC counted once, the convention of "
          "the papers' \"FLOPs\") of the Conv, Gemm and MatMul nodes at batch 1, shapes from ONNX shape "
          "inference; bias adds, activations, pooling and element-wise ops are left out. \"—\": the run "
          "exported no model. Device: where the run trained, as its summary.json records it (runs since "
          "2026-12-04), else `train.device` of its config; `?` where that was `auto`. The `--set name=…_repro` keeps the rerun from colliding "
          "with the existing run directory.", ""]
    L += ["### Table 2: noisy labels (val accuracy of the final epoch, the seeds' format; one table per backbone, input size and epoch budget)", ""]
    noises = sorted(set(NOISE_COLUMNS) | {r["noise"] for r in runs})
    multi = []
    # One table per budget (backbone, input size, planned epochs): runs of different length do not
    # share a row, so a cell is only ever compared with cells trained the same way.
    for arch, size, epochs in sorted({(r["arch"], str(r["size"]), r["budget"]) for r in runs}):
        rs = [r for r in runs if (r["arch"], str(r["size"]), r["budget"]) == (arch, size, epochs)]
        methods = [m for m in METHOD_ORDER if any(r["method"] == m for r in rs)]
        methods += sorted({r["method"] for r in rs} - set(METHOD_ORDER))
        L += [f"**{arch}, {size} px, {epochs} epoch{'s' if epochs != 1 else ''}**", "", "| method | " + " | ".join(noise_label(x) for x in noises) + " |",
              "| --- |" + " --- |" * len(noises)]
        for m in methods:
            cells = []
            for x in noises:
                hit = [r for r in rs if r["method"] == m and r["noise"] == x]
                if len(hit) > 1:
                    multi.append(f"{arch}/{size} px/{epochs} ep./{m}/{noise_label(x)}: " + ", ".join(r["name"] for r in hit))
                # A run stopped before its budget (a GPU call's deadline) says how far it got.
                cells.append(" / ".join(pct(r["acc"]) + ("" if r["done"] == r["budget"] else f" ({r['done']} of {r['budget']} ep.)")
                                        for r in hit) or "—")
            L.append(f"| {m} | " + " | ".join(cells) + " |")
        L.append("")
    if multi:
        L.append("Cells with several runs list them in run-name order: " + "; ".join(multi) + ".")
    else:
        L.append("Each cell is one run (see Table 1 for its recipe and command); \"—\": no run yet; "
                 "\"(N of M ep.)\": the run stopped after N of its M planned epochs (a GPU call's deadline), "
                 "so its cell is not the recipe's result.")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="docs/runs", help="folder of archived run directories (default: docs/runs)")
    ap.add_argument("--archive", action="append", default=[], metavar="RUN_DIR",
                    help="copy this finished run (e.g. runs/NAME) into the --runs folder first (repeatable)")
    ap.add_argument("--out", default="docs/RESULTS.md", help="page holding the markers (default: docs/RESULTS.md)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if the page would change")
    ap.add_argument("--exclude", action="append", metavar="GLOB",
                    help=f"skip runs whose name matches (repeatable; default: {' '.join(DEFAULT_EXCLUDE)}; "
                         "giving any replaces the default, --exclude '' includes all)")
    a = ap.parse_args()
    exclude = DEFAULT_EXCLUDE if a.exclude is None else a.exclude
    runs_dir = a.runs.rstrip("/") or "/"
    if a.archive and a.check:
        sys.exit("results.py: --check writes nothing, so it cannot take --archive")
    for r in a.archive:
        try:
            print(f"archived {r} in {archive(r, runs_dir)}")
        except (RunError, OSError) as e:
            sys.exit(f"results.py: cannot archive {r}: {e}")
    try:
        page = open(a.out).read()
    except OSError as e:
        sys.exit(f"results.py: cannot read {a.out}: {e}")
    if page.count(BEGIN) != 1 or page.count(END) != 1 or page.index(BEGIN) > page.index(END):
        sys.exit(f"results.py: {a.out} must hold one `{BEGIN}` followed by one `{END}`")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{generate(runs_dir, exclude)}\n{END}{tail}"
    if a.check:
        if new != page:
            print(f"{a.out} is out of date; run .venv/bin/python scripts/results.py", file=sys.stderr)
            sys.exit(1)
        return
    if new != page:
        open(a.out, "w").write(new)
        print(f"wrote {a.out}")
    else:
        print(f"{a.out} is up to date")


if __name__ == "__main__":
    main()
