"""Training speed of fer-train side by side with the PyTorch eager peer, in one run, with ratios.

Step (the design's bar: EAC step, 224 px, batch 64, MobileNetV2 / ResNet-18 / ResNet-50):

    .venv/bin/python bench/train_vs_pytorch.py step --peer ../shared/reference/peer_bench.py

runs the peer's own benchmark script (PyTorch eager, fp32/bf16 x NCHW/channels-last; CUDA only;
without CUDA its EAC step is timed here on the CPU the same way, bf16 with `--bf16`),
then `fer-train bench` on the same settings in the same variants (fp32 and bf16 autocast, NCHW and
channels-last), and prints img/s with the ratio of the
fastest variants overall and per precision. `--peer-json FILE` reuses a peer result instead.

Epoch (data on the device, augmentation and erasing included):

    .venv/bin/python bench/train_vs_pytorch.py epoch --peer ../shared/reference/ref_train.py \
        --data ../shared/datasets/fer2013 --arch resnet18 --method eac [--limit 20] [--size 48] [--epochs 2]

runs `--epochs` epochs (default 2) of the peer's ref_train.py and of `fer-train fit` with
configs/fer2013_r18_<method>.yaml (arch overridden, channels-last as the peer) on the same data and
prints the training img/s of each: of the last epoch alone (warm-up excluded) and of all epochs.
On the lent GPU the data arrive as fer-train caches: bench/cache_to_folder.py writes the folders
(bench/gpu_session.sh does it with SPEED_EPOCH). `--limit N` keeps every
N-th training image on both sides (a CPU smoke test: DEV=cpu is set when CUDA is absent). `--size`
sets the input side on both (default: the recipe's 112; 48 is the CPU edge recipe's).
Run it on an otherwise idle machine.
"""
import argparse, csv, json, os, subprocess, sys, tempfile

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
ap.add_argument("--bf16", action="store_true", help="step on CPU: also time bf16 autocast (always on CUDA; slow on CPUs without bf16 instructions)")
ap.add_argument("--data", help="epoch: folder with train/ and val/ class folders")
ap.add_argument("--arch", default="resnet18", choices=["resnet18", "mobilenet_v2"],
                help="epoch: torchvision name (the two ref_train.py builds)")
ap.add_argument("--epochs", type=int, default=2,
                help="epoch: epochs on each side; the last one is also reported alone (warm-up excluded)")
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


def run(cmd, env=None, required=True):
    """stdout of cmd (also echoed to stderr, so a log keeps it). A failure ends the script, or,
    when not `required`, is reported and gives None: one variant that crashes (fer-train's
    channels-last step on CUDA did, 2026-12-04) must not throw away the others' numbers."""
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    sys.stderr.write(p.stdout)
    if p.returncode != 0:
        if required:
            sys.exit(f"{cmd[0]} failed with exit code {p.returncode}")
        print(f"{cmd[0]} failed with exit code {p.returncode}: this variant is left out", file=sys.stderr)
        return None
    return p.stdout


def cpu_peer():
    """peer_bench.py's EAC step timed on the CPU under the keys that script writes (it runs on CUDA
    only): its own `EAC` model class (the script's definitions, up to its benchmark loop, are run
    here), its loss and Adam, under CPU autocast for bf16; 2 untimed steps (peer_bench.py: 8; a CPU
    step needs no cuDNN autotuning), then --iters timed ones."""
    import torch, torch.nn.functional as F, time
    torch.set_num_threads(os.cpu_count() or 1)
    src = open(a.peer).read()
    loop = src.find("\nfor arch in")
    if loop < 0:
        sys.exit(f"{a.peer}: no 'for arch in' benchmark loop to stop before; cannot take its EAC model")
    ns = {}
    exec(compile(src[:loop], a.peer, "exec"), ns)
    EAC = ns["EAC"]
    res, size = {}, a.size or 224
    for arch in a.archs.split(","):
        for amp in ((0, 1) if a.bf16 else (0,)):
            for cl in (0, 1):
                torch.manual_seed(0)
                model = EAC(arch)
                x, y = torch.randn(a.batch, 3, size, size), torch.randint(0, 7, (a.batch,))
                if cl:
                    model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
                opt = torch.optim.Adam(model.parameters(), 2e-4, weight_decay=1e-4)
                def step():
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(amp)):
                        out, hm = model(x); _, hm2 = model(torch.flip(x, dims=[3]))
                        loss = F.cross_entropy(out, y) + 5.0 * F.mse_loss(hm, torch.flip(hm2, dims=[3]))
                    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
                for _ in range(2): step()
                t = time.perf_counter()
                for _ in range(a.iters): step()
                res[f"train_eac_{arch}_bs{a.batch}_amp{amp}_cl{cl}_img_s"] = a.batch * a.iters / (time.perf_counter() - t)
    return res


def step():
    if a.peer_json:
        peer = json.load(open(a.peer_json))
    elif cuda_available():
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "peer.json")
            run([sys.executable, a.peer, out])
            peer = json.load(open(out))
    else:
        print("peer: peer_bench.py needs CUDA; timing its step on the CPU here instead", file=sys.stderr)
        peer = cpu_peer()
    rows = []
    precisions = ("fp32", "bf16") if a.bf16 or cuda_available() or a.peer_json else ("fp32",)
    for tv in a.archs.split(","):
        base = [a.fer_train, "bench", "--arch", ARCHS[tv], "--method", "eac", "--size", str(a.size or 224),
                "--batch", str(a.batch), "--iters", str(a.iters), "--device", a.device, "--json"]
        # fer-train in every variant the peer is timed in (precision x layout).
        ours = {}
        for prec in precisions:
            for layout in ("nchw", "cl"):
                flags = (["--bf16"] if prec == "bf16" else []) + (["--channels-last"] if layout == "cl" else [])
                out = run(base + flags, required=False)
                if out is not None:
                    ours[f"{prec}/{layout}"] = json.loads(out)
        if not ours:
            sys.exit(f"fer-train bench failed in every variant for {tv}")
        key = lambda amp, cl: f"train_eac_{tv}_bs{a.batch}_amp{amp}_cl{cl}_img_s"
        theirs = {f"{'bf16' if amp else 'fp32'}/{'cl' if cl else 'nchw'}": peer.get(key(amp, cl)) for amp in (0, 1) for cl in (0, 1)}
        theirs = {k: v for k, v in theirs.items() if v}
        def best(d, prec=""):
            items = [(k, v) for k, v in d.items() if k.startswith(prec)]
            return max(items, key=lambda kv: kv[1]) if items else (None, None)
        row = dict(arch=tv, device=next(iter(ours.values()))["device"],
                   ours={k: r["img_per_s"] for k, r in ours.items()}, peer=theirs)
        for prec in ("", "fp32", "bf16"):
            (ov, o), (pv, p_) = best(row["ours"], prec), best(theirs, prec)
            row[prec or "any"] = dict(ours=o, ours_variant=ov, peer=p_, peer_variant=pv, ratio=o / p_ if o and p_ else None)
        rows.append(row)
    print(f"\nEAC training step, {a.size or 224} px, batch {a.batch} (img/s, each side's fastest variant; ratio = fer-train / peer)")
    print(f"{'arch':<14}{'precision':<11}{'fer-train':>11}{'variant':>11}{'peer':>11}{'variant':>11}{'ratio':>8}")
    fmt = lambda v, f="{:.1f}": f.format(v) if v else "-"
    for r in rows:
        for prec in ("any", "fp32", "bf16"):
            c = r[prec]
            if c["ours"] is None and c["peer"] is None:
                continue
            print(f"{r['arch']:<14}{prec:<11}{fmt(c['ours']):>11}{c['ours_variant'] or '-':>11}{fmt(c['peer']):>11}"
                  f"{c['peer_variant'] or '-':>11}{fmt(c['ratio'], '{:.2f}x'):>8}")
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
    size = a.size or 112
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "peer.json")
        lines = run([sys.executable, a.peer, "--arch", a.arch, "--method", a.method, "--epochs", str(a.epochs),
                     "--data", a.data, "--size", str(size), "--out", out, "--budget", "1e9"], env=env)
        peer_all = json.load(open(out))["train_img_s"]
        # The peer prints the running mean img/s after each epoch; every epoch has as many steps.
        cum = [json.loads(l)["img_s"] for l in lines.splitlines() if l.startswith("{") and '"img_s"' in l]
        peer_last = last_epoch_rate(cum)
        sets = [f"train.epochs={a.epochs}", f"model.arch={ARCHS[a.arch]}", f"data.root={a.data}", f"out_dir={d}",
                "name=speed_ours", "train.export=false", f"train.device={device}", "splits.cache_dir=null",
                "train.channels_last=true", f"model.input_size={size}"]  # the peer trains channels-last
        if a.limit:
            sets.append(f"train.subset_every={a.limit}")
        config = f"configs/fer2013_r18_{a.method}.yaml"
        run([a.fer_train, "fit", "--config", config] + [x for s in sets for x in ("--set", s)])
        ours_all = json.load(open(os.path.join(d, "speed_ours", "summary.json")))["train_img_per_s"]
        with open(os.path.join(d, "speed_ours", "metrics.csv")) as f:
            ours_last = float(list(csv.DictReader(f))[-1]["img_per_s"])
    print(f"\n{a.epochs} training epoch(s), {a.arch} {a.method}, FER2013 at {size} px, batch 64"
          f"{f', every {a.limit}th image' if a.limit else ''} (img/s, data and augmentation included)")
    print(f"{'':<18}{'fer-train':>11}{'PyTorch':>11}{'ratio':>8}")
    print(f"{'last epoch':<18}{ours_last:>11.1f}{peer_last:>11.1f}{ours_last / peer_last:>7.2f}x")
    print(f"{'all epochs':<18}{ours_all:>11.1f}{peer_all:>11.1f}{ours_all / peer_all:>7.2f}x")
    return [dict(arch=a.arch, method=a.method, size=size, epochs=a.epochs, limit=a.limit,
                 ours=ours_all, peer=peer_all, ours_last_epoch=ours_last, peer_last_epoch=peer_last)]


def last_epoch_rate(cumulative):
    """The last epoch's img/s from running means after each of k equal epochs: epoch k took
    k/c_k - (k-1)/c_(k-1) time units per image of one epoch."""
    k = len(cumulative)
    if k == 0:
        sys.exit("the peer printed no per-epoch lines")
    if k == 1:
        return cumulative[0]
    return 1.0 / (k / cumulative[-1] - (k - 1) / cumulative[-2])


rows = step() if a.mode == "step" else epoch()
if a.out:
    json.dump(rows, open(a.out, "w"), indent=1)
