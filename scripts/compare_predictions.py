"""Compares two models face by face on the same labelled folder, from their `fer-run` JSON lines:
each one's accuracy, the faces only one of them gets right, whether the difference is more than
chance (McNemar's test), and the accuracy of their ensemble (the mean of the two probability
vectors, which is how docs/RESULTS.md's edge-ensemble figure was computed).

    target/release/fer-run -m A.onnx --no-detect --json ../shared/datasets/fer2013/val > a.jsonl
    target/release/fer-run -m B.onnx --no-detect --json ../shared/datasets/fer2013/val > b.jsonl
    python3 scripts/compare_predictions.py a.jsonl b.jsonl [--json]

The true class of a face is the name of its file's folder (`val/happy/x.png` is happy), the layout
`fer-run eval` reads. The two files must hold the same faces (matched by file and face number)
and the same labels; anything else is an error that names the file and line. Standard library
only, so it runs with any python3.
"""
import argparse, json, math, os, sys


class InputError(Exception):
    pass


def read_predictions(path):
    """{(file, face): (probs dict, predicted label)} from one `fer-run --json` output."""
    faces = {}
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                    key, probs, label = (row["file"], row["face"]), row["probs"], row["label"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise InputError(f"{where}: not a fer-run --json line with file, face, label and probs ({e})")
                if not isinstance(probs, dict) or label not in probs:
                    raise InputError(f"{where}: its probs do not hold its label {label!r}")
                if key in faces:
                    raise InputError(f"{where}: face {key[1]} of {key[0]} appears twice")
                faces[key] = (probs, label)
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror})")
    if not faces:
        raise InputError(f"{path}: holds no predictions")
    return faces


def mean_class_accuracy(truths, predictions):
    right, seen = {}, {}
    for t, p in zip(truths, predictions):
        seen[t] = seen.get(t, 0) + 1
        right[t] = right.get(t, 0) + (t == p)
    return sum(right[c] / seen[c] for c in seen) / len(seen)


def compare(path_a, path_b):
    a, b = read_predictions(path_a), read_predictions(path_b)
    if a.keys() != b.keys():
        only_a, only_b = len(a.keys() - b.keys()), len(b.keys() - a.keys())
        raise InputError(f"{path_a} and {path_b} hold different faces ({only_a} only in the first, "
                         f"{only_b} only in the second): run both models on the same folder")
    keys = sorted(a)
    labels = set(a[keys[0]][0])
    for path, faces in ((path_a, a), (path_b, b)):
        for key in keys:
            if set(faces[key][0]) != labels:
                raise InputError(f"{path}: {key[0]} has labels {sorted(faces[key][0])}, not {sorted(labels)}")
    truths = []
    for file, _ in keys:
        truth = os.path.basename(os.path.dirname(file))
        if truth not in labels:
            raise InputError(f"{path_a}: {file} is not in a folder named after a label "
                             f"({', '.join(sorted(labels))}), so its true class is unknown")
        truths.append(truth)
    pred_a = [a[k][1] for k in keys]
    pred_b = [b[k][1] for k in keys]
    # Ties go to the label listed first, as an argmax over the model's label order would.
    order = list(a[keys[0]][0])
    pred_mean = [max(order, key=lambda c: a[k][0][c] + b[k][0][c]) for k in keys]
    right_a = [t == p for t, p in zip(truths, pred_a)]
    right_b = [t == p for t, p in zip(truths, pred_b)]
    n = len(keys)
    only_a = sum(x and not y for x, y in zip(right_a, right_b))
    only_b = sum(y and not x for x, y in zip(right_a, right_b))
    # McNemar: under "equally accurate" each discordant face is a coin flip, so only_b - only_a has
    # standard deviation sqrt(only_a + only_b) faces.
    se_faces = math.sqrt(only_a + only_b)
    return {
        "faces": n,
        "a": {"file": path_a, "accuracy": sum(right_a) / n, "mean_class_accuracy": mean_class_accuracy(truths, pred_a)},
        "b": {"file": path_b, "accuracy": sum(right_b) / n, "mean_class_accuracy": mean_class_accuracy(truths, pred_b)},
        "both_right": sum(x and y for x, y in zip(right_a, right_b)),
        "only_a_right": only_a,
        "only_b_right": only_b,
        "both_wrong": sum(not x and not y for x, y in zip(right_a, right_b)),
        "different_labels": sum(x != y for x, y in zip(pred_a, pred_b)),
        "mcnemar_z": (only_b - only_a) / se_faces if se_faces else 0.0,
        "standard_error_points": 100 * se_faces / n,
        "ensemble": {"accuracy": sum(t == p for t, p in zip(truths, pred_mean)) / n,
                     "mean_class_accuracy": mean_class_accuracy(truths, pred_mean)},
    }


def report(r):
    pct = lambda x: f"{100 * x:.2f} %"
    diff = r["only_b_right"] - r["only_a_right"]
    lines = [
        f"{r['faces']} faces, the true class from each file's folder",
        f"A {r['a']['file']}: {pct(r['a']['accuracy'])} (mean class {pct(r['a']['mean_class_accuracy'])})",
        f"B {r['b']['file']}: {pct(r['b']['accuracy'])} (mean class {pct(r['b']['mean_class_accuracy'])})",
        f"both right {r['both_right']}, only A {r['only_a_right']}, only B {r['only_b_right']}, both wrong {r['both_wrong']}; "
        f"different labels on {r['different_labels']}",
        f"B - A: {100 * diff / r['faces']:+.2f} points ({diff:+d} faces) = {r['mcnemar_z']:+.2f} standard errors "
        f"(McNemar; one is {r['standard_error_points']:.2f} points; beyond 2 is unlikely to be chance)",
        f"ensemble, mean of the two probabilities: {pct(r['ensemble']['accuracy'])} "
        f"(mean class {pct(r['ensemble']['mean_class_accuracy'])})",
    ]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="the first model's `fer-run --no-detect --json` output")
    p.add_argument("b", help="the second model's, on the same folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args()
    try:
        r = compare(args.a, args.b)
    except InputError as e:
        print(f"compare_predictions: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r, indent=2) if args.json else report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
