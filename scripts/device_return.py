"""Brings the models trained in a lent-GPU call back here, within what a call may return.

A device call returns at most 8 files of at most 16 MiB each, 64 MiB in all, and a ResNet-18 ONNX
file alone is 45 MB. So on the device (bench/gpu_runs.sh calls it before packing runs.tar.gz):

    python3 scripts/device_return.py pack OUT NAME...      # models of runs/NAME/, into OUT

puts each run's model into OUT, split into parts of at most 16 MiB (`NAME.onnx.part1of3`, ...)
where it is larger, and writes the manifest runs/returned_models.json (which runs.tar.gz then
carries) with each file's size, sha256 and parts. What fits is decided over all runs at once, so
that as many runs as possible come back: every run first in its smallest form (an export with
int8 weights, `fer-train export --int8-weights`, a quarter of the float32 size and computing in
float32, made only for runs whose float32 file is over one part: a ResNet-18 then takes one file
instead of three), then in run order upgraded to its float32 `model.onnx` where the budget still
allows. Files already in OUT
(doctor.log, speed.json, ...) count against the budget, and room is kept for runs.tar.gz.

Here, after the call:

    .venv/bin/python scripts/device_return.py unpack /work/.device/N      # into ./runs

unpacks runs.tar.gz into the checkout and reassembles each model as runs/NAME/model.onnx (or
model_int8.onnx), checking its sha256; a missing or corrupt part is named and that model skipped.
"""
import argparse, hashlib, json, os, shlex, subprocess, sys, tarfile

MIB = 1024 * 1024
MANIFEST = "returned_models.json"
EXPORT_SMALL = "fer-train export --run {run} --checkpoint last.safetensors --int8-weights --cam --out {out}"
SMALL = "model_int8.onnx"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def parts_of(size, part_bytes):
    return max(1, -(-size // part_bytes))


def candidates(run_dir, part_bytes, export_small):
    """The run's deployable files, smallest first: [(file name, size)]."""
    found = []
    fp32 = os.path.join(run_dir, "model.onnx")
    if os.path.isfile(fp32):
        found.append(("model.onnx", os.path.getsize(fp32)))
    small = os.path.join(run_dir, SMALL)
    if found and found[0][1] > part_bytes and not os.path.isfile(small) and export_small:
        cmd = export_small.format(run=shlex.quote(run_dir), out=shlex.quote(small))
        r = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"[device_return] {run_dir}: no int8-weight export ({tail})", file=sys.stderr)
    if os.path.isfile(small):
        found.append((SMALL, os.path.getsize(small)))
    return sorted(found, key=lambda f: f[1])


def plan(runs, files_left, bytes_left, part_bytes):
    """{name: (file, size)}: each run's smallest file while the budget lasts, then float32 upgrades
    in run order. `runs`: [(name, candidates)]."""
    chosen = {}
    for name, cands in runs:
        if cands:
            f, size = cands[0]
            n = parts_of(size, part_bytes)
            if n <= files_left and size <= bytes_left:
                chosen[name] = (f, size)
                files_left -= n
                bytes_left -= size
    for name, cands in runs:
        if name not in chosen:
            continue
        f0, s0 = chosen[name]
        for f, size in reversed(cands):  # largest (float32) first
            if f == f0:
                break
            extra_files = parts_of(size, part_bytes) - parts_of(s0, part_bytes)
            if extra_files <= files_left and size - s0 <= bytes_left:
                chosen[name] = (f, size)
                files_left -= extra_files
                bytes_left -= size - s0
                break
    return chosen


def pack(a):
    os.makedirs(a.out, exist_ok=True)
    existing = [os.path.join(a.out, f) for f in os.listdir(a.out) if os.path.isfile(os.path.join(a.out, f))]
    files_left = a.max_files - len(existing) - 1  # one for runs.tar.gz
    bytes_left = a.max_total - sum(os.path.getsize(f) for f in existing) - a.tar_reserve
    runs = [(n, candidates(os.path.join(a.runs, n), a.part_bytes, a.export_small)) for n in a.names]
    chosen = plan(runs, files_left, bytes_left, a.part_bytes)
    manifest = []
    for name, cands in runs:
        if not cands:
            print(f"[device_return] {name}: no model.onnx to return", file=sys.stderr)
            continue
        if name not in chosen:
            smallest = cands[0]
            print(f"[device_return] {name}: {smallest[0]} ({smallest[1] / MIB:.1f} MiB) does not fit what the call may still return: not returned", file=sys.stderr)
            continue
        f, size = chosen[name]
        src = os.path.join(a.runs, name, f)
        n = parts_of(size, a.part_bytes)
        base = f"{name}.{f}"
        parts = [base] if n == 1 else [f"{base}.part{i + 1}of{n}" for i in range(n)]
        with open(src, "rb") as inp:
            for p in parts:
                with open(os.path.join(a.out, p), "wb") as o:
                    o.write(inp.read(a.part_bytes))
        manifest.append({"run": name, "file": f, "size": size, "sha256": sha256(src), "parts": parts})
        print(f"[device_return] {name}: {f} ({size / MIB:.1f} MiB) returned in {n} file(s)", file=sys.stderr)
    with open(os.path.join(a.runs, MANIFEST), "w") as m:
        json.dump(manifest, m, indent=1)


def unpack(a):
    tar = os.path.join(a.dir, "runs.tar.gz")
    if not os.path.isfile(tar):
        sys.exit(f"device_return.py: {tar} is missing: nothing to unpack")
    try:
        with tarfile.open(tar) as t:
            for m in t.getmembers():  # the archive holds runs/... only; refuse anything that escapes
                if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                    sys.exit(f"device_return.py: {tar}: refusing member {m.name!r}")
            # Python's "data" filter where it has one (3.11.4+): no links out, no special files.
            t.extractall(a.dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except (tarfile.TarError, EOFError, OSError) as e:
        sys.exit(f"device_return.py: {tar}: not a readable tar.gz ({type(e).__name__}: {e}); the call's files may be incomplete")
    manifest_path = os.path.join(a.dest, "runs", MANIFEST)
    try:
        manifest = json.load(open(manifest_path)) if os.path.isfile(manifest_path) else []
        for e in manifest:
            e["run"], e["file"], e["size"], e["sha256"], e["parts"]  # every field is there
    except (ValueError, TypeError, KeyError) as e:
        sys.exit(f"device_return.py: {manifest_path}: not the manifest `pack` writes ({type(e).__name__}: {e})")
    if not manifest:
        print(f"device_return.py: {manifest_path} lists no models (none returned, or a call from before the manifest)", file=sys.stderr)
    bad = 0
    for e in manifest:
        target = os.path.join(a.dest, "runs", e["run"], e["file"])
        missing = [p for p in e["parts"] if not os.path.isfile(os.path.join(a.dir, p))]
        if missing:
            print(f"device_return.py: {e['run']}: part(s) {', '.join(missing)} missing in {a.dir}: {e['file']} not rebuilt", file=sys.stderr)
            bad += 1
            continue
        tmp = target + ".partial"
        with open(tmp, "wb") as o:
            for p in e["parts"]:
                with open(os.path.join(a.dir, p), "rb") as i:
                    o.write(i.read())
        if os.path.getsize(tmp) != e["size"] or sha256(tmp) != e["sha256"]:
            os.remove(tmp)
            print(f"device_return.py: {e['run']}: {e['file']} rebuilt from {', '.join(e['parts'])} does not match its sha256: skipped", file=sys.stderr)
            bad += 1
            continue
        os.replace(tmp, target)
        print(f"{target} ({e['size'] / MIB:.1f} MiB, sha256 ok)")
    print(f"unpacked {tar} into {os.path.join(a.dest, 'runs')}; next: .venv/bin/python scripts/results.py --archive runs/NAME")
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="on the device: put the runs' models into OUT, within the call's limits")
    p.add_argument("out")
    p.add_argument("names", nargs="+")
    p.add_argument("--runs", default="runs")
    p.add_argument("--max-files", type=int, default=8)
    p.add_argument("--part-bytes", type=int, default=16 * MIB)
    p.add_argument("--max-total", type=int, default=64 * MIB)
    p.add_argument("--tar-reserve", type=int, default=4 * MIB, help="bytes kept for runs.tar.gz")
    p.add_argument("--export-small", default=EXPORT_SMALL, help="command making {out} (the run's int8-weight file) from run {run}; '' for none")
    u = sub.add_parser("unpack", help="here: unpack runs.tar.gz and rebuild the returned models")
    u.add_argument("dir", help="the folder the call's files came back to, e.g. /work/.device/3")
    u.add_argument("--dest", default=".", help="the checkout (runs/ goes under it)")
    a = ap.parse_args()
    pack(a) if a.cmd == "pack" else unpack(a)


if __name__ == "__main__":
    main()
