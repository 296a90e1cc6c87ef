"""Builds the generated section of docs/RESULTS.md from `fer-train` run directories, so the
training numbers there come from the runs, not from hand.

    .venv/bin/python scripts/results.py [--archive runs/NAME ...] [--runs docs/runs]
                                        [--out docs/RESULTS.md] [--check] [--exclude GLOB ...]

The tables are built from the run archive `docs/runs/`, which is committed: `runs/` is scratch
space that does not outlive the machine, so a run that belongs on the page is archived first with
`--archive runs/NAME` (repeatable). That copies the run's config.yaml, summary.json and metrics.csv
into docs/runs/NAME/ and writes model_stats.json (parameters and MACs counted from its model.onnx,
or the smaller model_int8.onnx / model_fp16.onnx where a GPU call returned that alone) and, where the release `fer-run` is built,
latency.json (`fer-run bench` of the model on this machine's CPU, ONNX Runtime and tract), a few
kilobytes in all; the checkpoints and the ONNX file stay behind. The page's "reproduce" command
points at the archived config.yaml. `--latency docs/runs/NAME=MODEL.onnx` measures an archived
run's latency later from its deployed file (e.g. the shipped copy in models-onnx/).

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
# Each method's loss weights in its seed's recipe, as (config key under `method`, seed value, the
# label a run with another value gets): the flip-consistency weights (EAC 5, DacFER 1, DAN's λ3 4)
# and DAN's and GReFEL's other loss weights. The trainer's defaults are the same
# (trainer/src/methods/mod.rs; tests/results_script.rs `results_seed_values_are_the_trainers_defaults`
# fails if the two part).
SEED_WEIGHTS = {
    "eac": [("lambda", 5.0, "λ")],
    "dacfer": [("lambda", 1.0, "λ")],
    "dan": [("lambda_affinity", 1.0, "λ1"), ("lambda_partition", 1.0, "λ2"), ("lambda_consistency", 4.0, "λ3")],
    "grefel_rb": [("lambda_cls", 1.0, "λ_cls"), ("lambda_anchor", 1.0, "λ_a"), ("lambda_center", 1.0, "λ_c")],
}
# DAN's number of attention heads in the seed's recipe.
SEED_DAN_HEADS = 4


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
LATENCY = "latency.json"
FER_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "fer-run")


def model_file(d):
    """The run's deployable graph: model.onnx, else the int8-weight model_int8.onnx (or, from
    calls before 2026-12-04 evening, the float16 model_fp16.onnx) a GPU call returned when the
    float32 file did not fit (scripts/device_return.py); None when it has none."""
    for f in ("model.onnx", "model_int8.onnx", "model_fp16.onnx"):
        if os.path.isfile(os.path.join(d, f)):
            return os.path.join(d, f)
    return None


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
    path = model_file(d) or os.path.join(d, "model.onnx")
    m = load_onnx(path)
    try:
        macs = onnx_macs(m)
    except Exception as e:
        warn(f"{path}: FLOPs not counted ({e})")
        macs = None
    return onnx_params(m), macs


def ort_library():
    """ONNX Runtime's shared library for `fer-run --backend ort`: ORT_DYLIB_PATH, else the one of
    the onnxruntime package this Python has (the set-up's .venv)."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return os.environ["ORT_DYLIB_PATH"]
    try:
        import glob, onnxruntime
        libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))
        return libs[-1] if libs else None
    except ImportError:
        return None


def measure_latency(model, fer_run, rounds=3, iters=300):
    """Batch-1 inference latency of `model` through `fer-run bench` on this CPU, ONNX Runtime and
    tract interleaved for `rounds` rounds (this VM drifts over minutes; interleaving keeps the two
    comparable): each backend's median over rounds of p50 and p95, in ms."""
    import platform, statistics, subprocess, time
    env = dict(os.environ)
    lib = ort_library()
    if lib:
        env["ORT_DYLIB_PATH"] = lib
    got = {"ort": [], "tract": []}
    for _ in range(rounds):
        for backend in got:
            cmd = [fer_run, "bench", "--model", model, "--backend", backend, "--iters", str(iters), "--json"]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise RunError(f"{model}: `{' '.join(cmd)}` failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            try:
                row = json.loads(r.stdout.strip().splitlines()[-1])
                float(row["p50_ms"]), float(row["p95_ms"])
            except (IndexError, ValueError, TypeError, KeyError) as e:
                raise RunError(f"{model}: `{' '.join(cmd)}` printed no latency line ({type(e).__name__}: {e})") from None
            got[backend].append(row)
    cpu = platform.processor() or "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d", time.gmtime()), "rounds": rounds,
           "command": f"fer-run bench --model {model} --backend ort|tract --iters {iters} --json"}
    for backend, rows in got.items():
        out[backend] = {k: round(statistics.median(r[k] for r in rows), 3) for k in ("p50_ms", "p95_ms")}
    return out


def read_latency(d):
    """(ort p50, tract p50) in ms from latency.json, or None when the run has none."""
    p = os.path.join(d, LATENCY)
    if not os.path.isfile(p):
        return None
    try:
        lat = json.load(open(p))
        return float(lat["ort"]["p50_ms"]), float(lat["tract"]["p50_ms"])
    except (ValueError, TypeError, KeyError) as e:
        raise RunError(f"{p}: not valid JSON or a bad value ({e!r})") from None


def write_latency(dest_dir, model, fer_run):
    lat = measure_latency(model, fer_run)
    with open(os.path.join(dest_dir, LATENCY), "w") as out:
        json.dump(lat, out, indent=1)
    return lat


def archive(run_dir, archive_dir, fer_run=None):
    """Copies a run's small files into archive_dir/<name>/ with its model stats and, given a
    `fer_run` binary, its CPU latency; returns that path. Checks the run reads cleanly first, so a
    broken run never enters the archive."""
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
    model = model_file(run_dir)
    if params is not None:
        with open(os.path.join(stage, MODEL_STATS), "w") as out:
            json.dump({"params": params, "macs": macs, "counted_from": model}, out, indent=1)
        if fer_run:
            write_latency(stage, model, fer_run)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.replace(stage, dest)
    return dest


def method_label(cfg):
    """The method's row name: its name, then what departs from the seed's recipe, each a row of
    its own (an ablation, a consistency weight other than the seed's, its warm-up, the random
    affine augmentation, distillation, the weights' moving average, a start from a shipped .onnx)."""
    name = cfg_get(cfg, "method.name", "?")
    label = name
    # The seeds' ablations: GReFEL's reliability balancing without a correction, DAN's heads.
    if name == "grefel_rb":
        anchors, mhsa = (cfg_get(cfg, f"method.rb.{k}", True) not in (False, "false") for k in ("use_anchors", "use_mhsa"))
        label += {(True, True): "", (True, False): " (anchors only)", (False, True): " (MHSA only)", (False, False): " (MLP only)"}[(anchors, mhsa)]
    heads = cfg_get(cfg, "method.heads")
    if name == "dan" and heads is not None and int(heads) != SEED_DAN_HEADS:
        label += f" ({int(heads)} head{'s' if int(heads) != 1 else ''})"
    for key, seed_value, short in SEED_WEIGHTS.get(name, []):
        v = cfg_get(cfg, f"method.{key}")
        if v is not None and float(v) != seed_value:
            label += f" ({short} {float(v):g})"
    if cfg_get(cfg, "method.consistency_warmup"):
        label += f" + warm-up {float(cfg_get(cfg, 'method.consistency_warmup')):g} ep."
    if cfg_get(cfg, "train.affine") is not None:
        label += " + affine"
    if cfg_get(cfg, "distill"):
        label += " + KD"
    if cfg_get(cfg, "train.ema_decay"):
        label += " + EMA"  # validated on the weights' moving average
    init = cfg_get(cfg, "model.init")
    if init and str(init).lower().endswith(".onnx"):  # trained on from a shipped model, not from scratch
        member = cfg_get(cfg, "model.init_member")
        label += f", from {os.path.basename(str(init))}" + (f" member {member}" if member is not None else "")
    return label


def load_run(runs_dir, name):
    """One table row as a dict, or raises RunError naming the bad file."""
    d = os.path.join(runs_dir, name)
    s, rows, cfg = read_summary(d), read_metrics(d), read_config(d)
    if not rows:
        raise RunError(f"{os.path.join(d, 'metrics.csv')}: no epochs")
    params, macs = model_stats(d, s)
    lat = read_latency(d)
    device = s.get("device") or cfg_get(cfg, "train.device")
    if device in (None, "auto"):
        device = "?"  # `auto` does not say what it resolved to, and summaries before 2026-12-04 do not record it
    done, planned = int(s["epochs"]), cfg_get(cfg, "train.epochs")
    fv = s["final_val"]
    subset = cfg_get(cfg, "train.subset_every")
    subset = int(subset) if subset not in (None, 1) else None
    arch = cfg_get(cfg, "model.arch", "?")
    if arch == "ivsa":
        # IVSA's attention (sab / cbam / none) is the seed's ablation: each is its own backbone.
        arch = f"ivsa-{cfg_get(cfg, 'model.attention', 'sab')}"
    return {
        "name": name,
        # Distilled from a teacher's logits (the config's `distill` section): its own row in Table 2.
        "method": method_label(cfg),
        "arch": arch,
        "size": cfg_get(cfg, "model.input_size", "?"),
        "noise": round(float(cfg_get(cfg, "noise.rate", 0.0) or 0.0), 6),
        "epochs": (f"{done}" if planned in (None, done) else f"{done} of {planned}") + (f", 1/{subset} of train" if subset else ""),
        "done": done,
        "budget": int(planned) if planned is not None else done,
        # Trained on every k-th training face (train.subset_every): a budget of its own.
        "subset": subset,
        "acc": float(fv["accuracy"]),
        "last5": float(s["last5_val_accuracy_mean"]),
        "best": f"{pct(float(s['best_val_accuracy']))} ({s['best_epoch']})",
        "mca": float(fv["mean_class_accuracy"]),
        "f1": float(fv["macro_f1"]),
        "params": f"{params:,}" if params is not None else "—",
        "macs": si(macs) if macs is not None else ("—" if params is None else "?"),
        "img_s": f"{float(s['train_img_per_s']):.1f}",
        "latency": f"{lat[0]:.2f} / {lat[1]:.2f}" if lat else "—",
        "device": device,
        "cmd": f"`fer-train fit --config {os.path.join(d, 'config.yaml')} --set name={name}_repro`",
    }


def budget_key(r):
    """What a run's cell may be compared across: input size, planned epochs, training subset."""
    return (str(r["size"]), r["budget"], r["subset"] or 1)


def sort_key(key):
    return tuple(str(k) if not isinstance(k, int) else f"{k:09d}" for k in key)


def is_seed_method(r):
    """One of the seeds' methods beyond the CE and EAC baselines (IVSA is CE on its own network)."""
    return r["method"].split(" ")[0] not in ("ce", "eac") or r["arch"].startswith("ivsa")


def budget_label(key):
    size, epochs, subset = key
    label = f"{size} px, {epochs} epoch{'s' if epochs != 1 else ''}"
    return label + (f", 1/{subset} of train" if subset != 1 else "")


def noise_table(rs, noises, row_label, multi):
    """Markdown lines of one noise table: a row per `row_label(run)` (the seeds' method order), a
    column per noise rate; cells holding several runs are listed in `multi`."""
    # The seeds' order, each method's own recipe first, then its variants (ablations, λ, warm-up, KD).
    order = {row_label(r): (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), base, r["method"] != base)
             for r in rs for base in [r["method"].split(" ")[0]]}
    labels = sorted(order, key=lambda label: (order[label], label))
    L = ["| method | " + " | ".join(noise_label(x) for x in noises) + " |", "| --- |" + " --- |" * len(noises)]
    for label in labels:
        cells = []
        for x in noises:
            hit = [r for r in rs if row_label(r) == label and r["noise"] == x]
            if len(hit) > 1:
                multi.append(f"{hit[0]['arch']}/{budget_label(budget_key(hit[0]))}/{label}/{noise_label(x)}: " + ", ".join(r["name"] for r in hit))
            # A run stopped before its budget (a GPU call's deadline) says how far it got.
            cells.append(" / ".join(pct(r["acc"]) + ("" if r["done"] == r["budget"] else f" ({r['done']} of {r['budget']} ep.)")
                                    for r in hit) or "—")
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    return L + [""]


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
          "| run | method | backbone | input | noise | epochs | val acc. | mean last 5 | best (epoch) | mean class acc. | macro-F1 | params | FLOPs (MACs) | CPU ms ORT / tract | train img/s | device | reproduce |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        L.append(f"| {r['name']} | {r['method']} | {r['arch']} | {r['size']} | {noise_label(r['noise'])} | {r['epochs']} | "
                 f"{pct(r['acc'])} | {pct(r['last5'])} | {r['best']} | {pct(r['mca'])} | {r['f1']:.4f} | {r['params']} | "
                 f"{r['macs']} | {r['latency']} | {r['img_s']} | {r['device']} | {r['cmd']} |")
    L += ["",
          "Params: elements of the float initializers of the run's `model.onnx` (BatchNorm folded into the "
          "convolutions, as deployed). FLOPs: multiply-accumulates (1 MAC counted once, the convention of "
          "the papers' \"FLOPs\") of the Conv, Gemm and MatMul nodes at batch 1, shapes from ONNX shape "
          "inference; bias adds, activations, pooling and element-wise ops are left out. \"—\": the run "
          "exported no model (or, for latency, its model was not measured). CPU ms: p50 latency of one face "
          "(batch 1, inference alone) through `fer-run bench` with ONNX Runtime and with tract, measured when "
          "the run was archived on the project's 2-core x86-64 box (the run's latency.json names the CPU, the "
          "date and the command; this VM drifts by tens of percent between days, so compare rows measured the "
          "same day, or the ratio within a row). Device: where the run trained, as its summary.json records it (runs since "
          "2026-12-04), else `train.device` of its config; `?` where that was `auto`. The `--set name=…_repro` keeps the rerun from colliding "
          "with the existing run directory.", ""]
    L += ["### Table 2: noisy labels (val accuracy of the final epoch, the seeds' format; one table per backbone, input size and epoch budget)", ""]
    noises = sorted(set(NOISE_COLUMNS) | {r["noise"] for r in runs})
    multi = []
    # One table per budget (backbone, input size, planned epochs, training subset): runs of different
    # length do not share a row, so a cell is only ever compared with cells trained the same way.
    for key in sorted({(r["arch"],) + budget_key(r) for r in runs}, key=sort_key):
        rs = [r for r in runs if (r["arch"],) + budget_key(r) == key]
        L += [f"**{key[0]}, {budget_label(key[1:])}**", ""]
        L += noise_table(rs, noises, lambda r: r["method"], multi)
    # The seeds' methods side by side: a budget whose runs span several backbones (each method on
    # its seed's own network) and hold one of the seeds' methods beyond the CE / EAC baselines gets
    # one table of them all, rows "method (backbone)".
    def compared(k):
        rs = [r for r in runs if budget_key(r) == k]
        return len({r["arch"] for r in rs}) > 1 and any(is_seed_method(r) for r in rs)
    mixed = [k for k in sorted({budget_key(r) for r in runs}, key=sort_key) if compared(k)]
    if mixed:
        L += ["### Table 3: the seeds' methods side by side (each on its own backbone; one table per input size and epoch budget)", ""]
        for key in mixed:
            L += [f"**{budget_label(key)}**", ""]
            L += noise_table([r for r in runs if budget_key(r) == key], noises, lambda r: f"{r['method']} ({r['arch']})", [])
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
    ap.add_argument("--latency", action="append", default=[], metavar="ARCHIVED_RUN=MODEL",
                    help="measure the CPU latency of an archived run from its deployed file (repeatable)")
    ap.add_argument("--fer-run", default=FER_RUN, help="the fer-run binary timing latency (default: target/release/fer-run; "
                    "--archive skips latency when it is not built)")
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
    if a.latency and a.check:
        sys.exit("results.py: --check writes nothing, so it cannot take --latency")
    fer_run = a.fer_run if os.path.isfile(a.fer_run) else None
    if (a.archive or a.latency) and not fer_run:
        warn(f"{a.fer_run} is not built (cargo build --release -p fer-runtime): no latency measured")
    for r in a.archive:
        try:
            print(f"archived {r} in {archive(r, runs_dir, fer_run)}")
        except (RunError, OSError) as e:
            sys.exit(f"results.py: cannot archive {r}: {e}")
    for spec in a.latency:
        run, sep, model = spec.partition("=")
        if not sep or not os.path.isdir(run) or not os.path.isfile(model):
            sys.exit(f"results.py: --latency {spec}: want ARCHIVED_RUN=MODEL.onnx, an existing run folder and file")
        if not fer_run:
            sys.exit(f"results.py: --latency needs {a.fer_run}")
        try:
            lat = write_latency(run, model, fer_run)
        except (RunError, OSError) as e:
            sys.exit(f"results.py: cannot measure {spec}: {e}")
        print(f"{os.path.join(run, LATENCY)}: ORT p50 {lat['ort']['p50_ms']} ms, tract p50 {lat['tract']['p50_ms']} ms")
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
