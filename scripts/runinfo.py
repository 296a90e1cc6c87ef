"""Reading a `fer-train` run directory (`runs/<name>/`), shared by `model_card.py` and `results.py`.

Every reader raises an exception whose message names the file and the problem, so callers can
skip a broken run with a useful warning.
"""
import copy, csv, json, math, os

import onnx

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


class RunError(Exception):
    """A run file is missing or unreadable; the message names the file."""


def _path(run_dir, name):
    p = os.path.join(run_dir, name)
    if not os.path.isfile(p):
        raise RunError(f"{p}: missing")
    return p


def read_summary(run_dir):
    """`summary.json` as written by `Trainer::finish` (trainer/src/train.rs)."""
    p = _path(run_dir, "summary.json")
    try:
        s = json.load(open(p))
        fv = s["final_val"]
        for k in ("accuracy", "mean_class_accuracy", "macro_f1"):
            float(fv[k])
        for k in ("epochs", "best_val_accuracy", "best_epoch", "last5_val_accuracy_mean", "train_img_per_s"):
            float(s[k])
    except (ValueError, TypeError) as e:
        raise RunError(f"{p}: not valid JSON or a bad value ({e})") from None
    except KeyError as e:
        raise RunError(f"{p}: no {e} field") from None
    return s


def read_metrics(run_dir):
    """`metrics.csv`: one dict per epoch (strings, as `csv.DictReader` gives them)."""
    p = _path(run_dir, "metrics.csv")
    rows = list(csv.DictReader(open(p)))
    try:
        for r in rows:
            int(r["epoch"]), float(r["val_accuracy"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{p}: bad row ({e!r})") from None
    return rows


def read_config(run_dir):
    """The resolved `config.yaml` the trainer saves in each run."""
    p = _path(run_dir, "config.yaml")
    try:
        return parse_yaml(open(p).read())
    except ValueError as e:
        raise RunError(f"{p}: {e}") from None


def cfg_get(cfg, dotted, default=None):
    v = cfg
    for k in dotted.split("."):
        if not isinstance(v, dict) or k not in v:
            return default
        v = v[k]
    return v


# --- the block YAML that serde_yaml writes (maps, lists, plain or quoted scalars) -------------
# PyYAML is not a project dependency; the run configs are always serde_yaml output, so this small
# reader suffices and raises ValueError on anything it does not understand.

def _scalar(t):
    t = t.strip()
    if t in ("", "~", "null"):
        return None
    if t in ("true", "false"):
        return t == "true"
    if t == "[]":
        return []
    if t == "{}":
        return {}
    if len(t) >= 2 and t[0] == t[-1] == "'":
        return t[1:-1].replace("''", "'")
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return json.loads(t)
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def parse_yaml(text):
    lines = [l.rstrip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#") and l.strip() != "---"]
    ind = lambda l: len(l) - len(l.lstrip(" "))
    is_item = lambda l: l.lstrip().startswith("- ") or l.strip() == "-"

    def block(i, level):
        if is_item(lines[i]):
            out = []
            while i < len(lines) and ind(lines[i]) == level and is_item(lines[i]):
                rest = lines[i].strip()[1:].lstrip()
                if rest and (": " in rest or rest.endswith(":")) and rest[0] not in "'\"":
                    lines[i] = " " * (level + 2) + rest  # a mapping inside a list item
                    v, i = block(i, level + 2)
                elif rest:
                    v, i = _scalar(rest), i + 1
                else:
                    i += 1
                    v, i = block(i, ind(lines[i])) if i < len(lines) and ind(lines[i]) > level else (None, i)
                out.append(v)
            return out, i
        out = {}
        while i < len(lines) and ind(lines[i]) == level and not is_item(lines[i]):
            s = lines[i].strip()
            if s.endswith(":"):
                key, rest = s[:-1], ""
            elif ": " in s:
                key, rest = s.split(": ", 1)
            else:
                raise ValueError(f"line {s!r} is not `key: value`")
            key = _scalar(key)
            i += 1
            if rest:
                out[key] = _scalar(rest)
            elif i < len(lines) and (ind(lines[i]) > level or (ind(lines[i]) == level and is_item(lines[i]))):
                out[key], i = block(i, ind(lines[i]))
            else:
                out[key] = None
        return out, i

    if not lines:
        return {}
    v, i = block(0, ind(lines[0]))
    if i != len(lines):
        raise ValueError(f"cannot read YAML near {lines[i].strip()!r}")
    return v


# --- the ONNX file --------------------------------------------------------------------------

def load_onnx(path):
    if not os.path.isfile(path):
        raise RunError(f"{path}: missing")
    try:
        return onnx.load(path)
    except Exception as e:  # protobuf raises DecodeError, onnx its own kinds
        raise RunError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None


def onnx_meta(model):
    return {p.key: p.value for p in model.metadata_props}


def onnx_params(model):
    """Number of weights: the elements of all float initializers (BN is folded at export); in an
    int8-weight file (`fer-train export --int8-weights`) each weight's int8 values count, not the
    scales and zero points its DequantizeLinear reads besides."""
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    stored = {n.input[0] for n in dq}
    aux = {i for n in dq for i in n.input[1:]}
    return sum(math.prod(t.dims) for t in model.graph.initializer
               if (t.data_type in FLOAT_TYPES and t.name not in aux) or t.name in stored)


def onnx_macs(model):
    """Multiply-accumulates of the Conv, Gemm and MatMul nodes at batch 1, from ONNX shape
    inference (bias adds, activations, pooling and element-wise ops are not counted). Raises
    ValueError when a shape cannot be inferred."""
    m = copy.deepcopy(model)
    inits = {t.name for t in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not dims[0].dim_value:
            dims[0].dim_value = 1  # clears the symbolic batch dim
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes = {t.name: list(t.dims) for t in m.graph.initializer}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]

    def shape(name, node):
        s = shapes.get(name)
        if s is None or any(d is None for d in s):
            raise ValueError(f"no static shape for `{name}` ({node.op_type} node `{node.name}`)")
        return s

    macs = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            # each output element: (C_in / group) · k_h · k_w multiply-adds = prod(W.shape[1:])
            macs += math.prod(shape(n.output[0], n)) * math.prod(shape(n.input[1], n)[1:])
        elif n.op_type == "Gemm":
            a = shape(n.input[0], n)
            trans_a = next((at.i for at in n.attribute if at.name == "transA"), 0)
            macs += math.prod(shape(n.output[0], n)) * (a[0] if trans_a else a[1])
        elif n.op_type == "MatMul":
            macs += math.prod(shape(n.output[0], n)) * shape(n.input[0], n)[-1]
    return macs
