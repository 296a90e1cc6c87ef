"""Training speed of fer-train side by side with the PyTorch eager peer, in one run, with ratios.

Step (the design's bar: EAC step, 224 px, batch 64, MobileNetV2 / ResNet-18 / ResNet-50):

    .venv/bin/python bench/train_vs_pytorch.py step --peer ../shared/reference/peer_bench.py

runs the peer's own benchmark script (PyTorch eager, fp32/bf16 x NCHW/channels-last; CUDA only),
then `fer-train bench` on the same settings (NCHW and channels-last, the faster counts), and prints
img/s with the ratio against the peer's best variant and against its fp32 NCHW variant. `--peer-json FILE` reuses a peer result instead.

Epoch (data on the device, augmentation and erasing included):

    .venv/bin/python bench/train_vs_pytorch.py epoch --peer ../shared/reference/ref_train.py \
        --data ../shared/datasets/fer2013 --arch resnet18 --method eac [--limit 20] [--size 48]

runs one epoch of the peer's ref_train.py and of `fer-train fit` with configs/fer2013_r18_<method>.yaml
(arch overridden, channels-last as the peer) on the same data and prints the training img/s of each. `--limit N` keeps every
N-th training image on both sides (a CPU smoke test: DEV=cpu is set when CUDA is absent). `--size`
sets the input side on both (default: the recipe's 112; 48 is the CPU edge recipe's).
Run it on an otherwise idle machine.
"""
import argparse, json, os, subprocess, sys, tempfile

ARCHS = {"mobilenet_v2": "mbv2", "resnet18": "resnet18", "resnet50": "resnet50"}

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("mode", choices=["step", "epoch"])
ap.add_argument("--peer", required=True, help="peer_bench.py (step) or ref_train.py (epoch)")
ap.add_argument("--fer-train", default="target/release/fer-train")
ap.add_argument("--peer-json", help="step: reuse this peer_bench.py result instead of running it")
ap.add_argument("--archs", default="mobilenet_v2,resnet18,resnet50", help="step: torchvision names")
ap.add_argument("--size", type=int, help="input side (step: default 224; epoch: default the recipe's 112)")
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--iters", type=int, default=30); ap.add_argument("--device", default="auto")
ap.add_argument("--data", help="epoch: folder with train/ and val/ class folders")
ap.add_argument("--arch", default="resnet18", help="epoch: torchvision name")
ap.add_argument("--method", default="eac", choices=["ce", "eac"])
ap.add_argument("--limit", type=int, default=0, help="epoch: every N-th training image on both sides")
ap.add_argument("--out", help="also write the results as JSON here")
a = ap.parse_args()


def cuda_available():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def run(cmd, env=None):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed with exit code {p.returncode}")
    return p.stdout


def step():
    if a.peer_json:
        peer = json.load(open(a.peer_json))
    elif cuda_available():
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "peer.json")
            run([sys.executable, a.peer, out])
            peer = json.load(open(out))
    else:
        print("peer: peer_bench.py needs CUDA; showing fer-train alone", file=sys.stderr)
        peer = {}
    rows = []
    for tv in a.archs.split(","):
        base = [a.fer_train, "bench", "--arch", ARCHS[tv], "--method", "eac", "--size", str(a.size or 224),
                "--batch", str(a.batch), "--iters", str(a.iters), "--device", a.device, "--json"]
        # fer-train in both layouts, as the peer is timed in both: the faster one counts.
        runs = [json.loads(run(base)), json.loads(run(base + ["--channels-last"]))]
        ours = max(runs, key=lambda r: r["img_per_s"])
        key = lambda amp, cl: f"train_eac_{tv}_bs{a.batch}_amp{amp}_cl{cl}_img_s"
        variants = {f"{'bf16' if amp else 'fp32'}/{'cl' if cl else 'nchw'}": peer.get(key(amp, cl)) for amp in (0, 1) for cl in (0, 1)}
        variants = {k: v for k, v in variants.items() if v}
        best = max(variants.items(), key=lambda kv: kv[1]) if variants else (None, None)
        rows.append(dict(arch=tv, ours=ours["img_per_s"], ours_variant="cl" if ours["channels_last"] else "nchw",
                         ours_nchw=runs[0]["img_per_s"], ours_cl=runs[1]["img_per_s"], ours_device=ours["device"],
                         peer_best=best[1], peer_best_variant=best[0],
                         peer_fp32_nchw=variants.get("fp32/nchw")))
    print(f"\nEAC training step, {a.size or 224} px, batch {a.batch} (img/s; ratio = fer-train / peer)")
    print(f"{'arch':<14}{'fer-train':>11}{'layout':>8}{'peer best':>11}{'variant':>11}{'ratio':>8}{'peer fp32':>11}{'ratio':>8}")
    for r in rows:
        ratio = lambda p: f"{r['ours'] / p:.2f}x" if p else "-"
        fmt = lambda v: f"{v:.1f}" if v else "-"
        print(f"{r['arch']:<14}{r['ours']:>11.1f}{r['ours_variant']:>8}{fmt(r['peer_best']):>11}{r['peer_best_variant'] or '-':>11}{ratio(r['peer_best']):>8}"
              f"{fmt(r['peer_fp32_nchw']):>11}{ratio(r['peer_fp32_nchw']):>8}")
    return rows


def epoch():
    if not a.data:
        sys.exit("epoch mode needs --data (a folder with train/ and val/)")
    env = dict(os.environ)
    device = "auto"
    if not cuda_available():
        env["DEV"] = "cpu"
        device = "cpu"
    if a.limit:
        env["LIMIT"] = str(a.limit)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "peer.json")
        size = a.size or 112
        run([sys.executable, a.peer, "--arch", a.arch, "--method", a.method, "--epochs", "1", "--data", a.data,
             "--size", str(size), "--out", out], env=env)
        peer = json.load(open(out))["train_img_s"]
        sets = ["train.epochs=1", f"model.arch={ARCHS[a.arch]}", f"data.root={a.data}", f"out_dir={d}", "name=speed_ours",
                "train.export=false", f"train.device={device}", "splits.cache_dir=null",
                "train.channels_last=true", f"model.input_size={size}"]  # the peer trains channels-last
        if a.limit:
            sets.append(f"train.subset_every={a.limit}")
        config = f"configs/fer2013_r18_{a.method}.yaml"
        run([a.fer_train, "fit", "--config", config] + [x for s in sets for x in ("--set", s)])
        ours = json.load(open(os.path.join(d, "speed_ours", "summary.json")))["train_img_per_s"]
    print(f"\nOne training epoch, {a.arch} {a.method}, FER2013 at {size} px, batch 64"
          f"{f', every {a.limit}th image' if a.limit else ''} (img/s, data and augmentation included)")
    print(f"fer-train {ours:.1f}   PyTorch eager {peer:.1f}   ratio {ours / peer:.2f}x")
    return [dict(arch=a.arch, method=a.method, size=size, ours=ours, peer=peer, limit=a.limit)]


rows = step() if a.mode == "step" else epoch()
if a.out:
    json.dump(rows, open(a.out, "w"), indent=1)
