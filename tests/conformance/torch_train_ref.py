#!/usr/bin/python3
"""PyTorch reference for graft-train: fine-tune an exported reference model in PyTorch.

Usage:
  torch_train_ref.py MODEL.onnx --arch small_cnn|resnet18 --x X.npy --y Y.npy
      --steps N --batch B --optimizer sgd|adam|adamw [--lr X] [--momentum X] [--nesterov]
      [--weight-decay X] [--betas B1,B2] [--eps E] [--label-smoothing S]
      [--bn train|frozen] [--threads 2] --out DIR
  torch_train_ref.py --make-data fashion-mnist|random --n N --x X.npy --y Y.npy
      [--shape C,H,W] [--classes K] [--seed S]

MODEL.onnx is a --keep-bn export of tests/fixtures/make_reference_models.py (a folded
export has no BatchNorm parameters to load and is refused). The torch module is built
with the same constructor; every state_dict entry (num_batches_tracked aside: unused
while momentum is set) is loaded from MODEL.onnx's initializers. Names are matched
after resolving Identity nodes (torch's exporter dedupes identical initializers, so a
BatchNorm running_var equal to some weight becomes `Identity(weight)`): by name where
the state_dict key names an initializer or an Identity of one, else by graph position
(the initializer feeding input i of the k-th Conv/Gemm/BatchNormalization node, nodes
paired with modules in call order). A key matched both ways must agree; an unmatched
key or a shape mismatch is an error. Each BatchNorm gets momentum = 1 - ONNX momentum
and eps = ONNX epsilon.

Training: N steps, no shuffling: step k takes samples k*B .. k*B+B-1 modulo the data
set size. Loss: mean softmax cross-entropy (torch.nn.functional.cross_entropy, with
label_smoothing). model.train() (batch statistics, running stats updated with torch's
unbiased variance), or with --bn frozen the BatchNorm modules in eval mode (their
weight and bias still trained). torch.optim.SGD/Adam/AdamW with PyTorch's defaults for
anything not given, except that SGD needs --lr (torch has no default for it). float32,
--threads threads (2), deterministic algorithms.

Output (DIR is created; manifest.json is written last, after all tensors):
  DIR/<file>.npy   one per tensor the model stores (state_dict parameters and running
                   stats) after training, named by the ONNX name the graph uses for
                   it, every character outside [A-Za-z0-9._-] replaced by '_'. An
                   Identity-aliased tensor (e.g. 'bn.running_var' = Identity of
                   'conv.weight') gets its own file under its own (Identity output)
                   name: after training it no longer equals the stored one, so a
                   trainer must un-alias it; the stored initializer's file holds the
                   tensor of the module that uses it directly.
  DIR/losses.json  [loss at step 0, ..., loss at step N-1]
  DIR/manifest.json {"model", "arch", "options", "steps", "batch",
                   "tensors": {ONNX name: {"file", "state_dict_key", "initializer"
                   (the stored initializer in MODEL.onnx), "kind" (parameter|buffer),
                   "shape", "op", "node_ordinal", "input_index" (its graph position:
                   input input_index of the node_ordinal-th Conv/Gemm/
                   BatchNormalization node, op its type), and with --bn train
                   "noise" (why) on a Conv/Gemm bias read only by BatchNormalization
                   and on that BatchNorm's running_mean: their gradient is zero in
                   exact arithmetic, so under Adam/AdamW they follow rounding noise
                   (compare_params.py --skip-noise leaves them out)}},
                   "unused_initializers": [initializers no state_dict entry uses]}

--make-data writes X.npy/Y.npy: the first N Fashion-MNIST test images (scaled to
[0,1], [N,1,28,28] float32) and labels (int64), or seeded random N(0,1) inputs of
--shape with labels uniform in [0, --classes).

Run with /usr/bin/python3 (torch 1.13, onnx). Exit 0 on success, 1 on error, 2 on usage."""
import argparse, gzip, json, os, re, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
FASHION = "/usr/share/datasets/fashion-mnist"
ARCHS = ("small_cnn", "resnet18")
OPS = ("Conv", "Gemm", "BatchNormalization")
# state_dict attribute -> ONNX input index, per module family
SLOTS = {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4}

class Fail(Exception):
    pass

def die(msg):
    print("torch_train_ref: " + msg, file=sys.stderr)
    sys.exit(1)

# ---- data -----------------------------------------------------------------------------

def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    hdr = np.frombuffer(data[:4], ">u4")[0]
    if hdr != magic:
        raise Fail("%s: bad idx magic %d" % (path, hdr))
    ndim = magic & 0xff
    dims = [int(d) for d in np.frombuffer(data[4:4 + 4 * ndim], ">u4")]
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise Fail("%s: truncated" % path)
    return arr.reshape(dims)

def fashion_mnist(n):
    x = read_idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"), 0x803)
    y = read_idx(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz"), 0x801)
    if n > len(x):
        raise Fail("fashion-mnist: only %d test images" % len(x))
    x = (x[:n].astype(np.float32) / 255.0).reshape(n, 1, 28, 28)
    return np.ascontiguousarray(x), y[:n].astype(np.int64)

def random_data(n, shape, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + tuple(shape), dtype=np.float32)
    return x, rng.integers(0, classes, n, dtype=np.int64)

def save_npy(path, arr):
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

def save_json(path, obj):
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

def load_data(xpath, ypath):
    try:
        x = np.load(xpath)
        y = np.load(ypath)
    except (OSError, ValueError) as e:
        raise Fail("cannot load data: %s" % e)
    if not np.issubdtype(x.dtype, np.floating):
        raise Fail("%s: dtype %s, want float32" % (xpath, x.dtype))
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise Fail("%s: want a 1-D integer label array, got %s %s" % (ypath, y.dtype, y.shape))
    if x.ndim < 2 or len(x) != len(y) or len(y) == 0:
        raise Fail("%s %s and %s %s: want [N,...] inputs and [N] labels, N > 0"
                   % (xpath, x.shape, ypath, y.shape))
    return np.ascontiguousarray(x, np.float32), y.astype(np.int64)

# ---- ONNX <-> state_dict mapping ------------------------------------------------------

def sanitize(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)

def onnx_tables(model):
    """initializers by name, Identity output -> input, the Conv/Gemm/BN nodes in order."""
    from onnx import numpy_helper
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity"}
    nodes = [n for n in g.node if n.op_type in OPS]
    return inits, alias, nodes

def resolve(name, inits, alias):
    """The stored initializer a graph name reads, through Identity chains, or None."""
    seen = set()
    while name not in inits:
        if name not in alias or name in seen:
            return None
        seen.add(name)
        name = alias[name]
    return name

def module_family(mod):
    import torch.nn as nn
    if isinstance(mod, nn.modules.conv._ConvNd):
        return "Conv"
    if isinstance(mod, nn.Linear):
        return "Gemm"
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        return "BatchNormalization"
    return None

def call_order(model, example):
    """Names of the Conv/Linear/BatchNorm modules in the order forward() calls them
    (the order torch's exporter traced them into the ONNX graph)."""
    import torch
    order, hooks = [], []
    for name, mod in model.named_modules():
        if module_family(mod):
            def hook(m, i, o, name=name):
                if name not in order:
                    order.append(name)
            hooks.append(mod.register_forward_hook(hook))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(example)
    model.train(was)
    for h in hooks:
        h.remove()
    return order

def match(model, example, onnx_model):
    """[(state_dict key, graph name, stored initializer, position)] for every key but
    num_batches_tracked; position is (op, node ordinal, input index) or None."""
    inits, alias, nodes = onnx_tables(onnx_model)
    mods = dict(model.named_modules())
    order = call_order(model, example)
    by_module = {}
    if len(order) == len(nodes) and all(
            module_family(mods[m]) == n.op_type for m, n in zip(order, nodes)):
        by_module = {m: (k, n) for k, (m, n) in enumerate(zip(order, nodes))}
    sd = model.state_dict()
    out, errors = [], []
    for key, t in sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        prefix, _, attr = key.rpartition(".")
        by_name = key if resolve(key, inits, alias) else None
        pos, by_pos = None, None
        if prefix in by_module and attr in SLOTS:
            k, node = by_module[prefix]
            idx = SLOTS[attr]
            pos = (node.op_type, k, idx)
            if idx < len(node.input) and node.input[idx]:
                by_pos = node.input[idx]
        if by_name and by_pos and resolve(by_name, inits, alias) != resolve(by_pos, inits, alias):
            errors.append("%s: name gives '%s', graph position gives '%s'" % (key, by_name, by_pos))
            continue
        gname = by_name or by_pos
        stored = resolve(gname, inits, alias) if gname else None
        if stored is None:
            errors.append("%s: no initializer matches (by name or by graph position%s)"
                          % (key, "" if by_module else "; node/module order differs"))
            continue
        if tuple(inits[stored].shape) != tuple(t.shape):
            errors.append("%s: shape %s, ONNX '%s' has %s"
                          % (key, tuple(t.shape), stored, tuple(inits[stored].shape)))
            continue
        out.append((key, gname, stored, pos))
    names = [g for _, g, _, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        errors.append("several state_dict entries read the same graph name: %s" % ", ".join(dup))
    files = [sanitize(n) for n in set(names)]
    if len(set(files)) != len(files):
        errors.append("graph names collide once sanitized to file names")
    if errors:
        if len(errors) > 8:
            errors[8:] = ["... and %d more" % (len(errors) - 8)]
        if not any(n.op_type == "BatchNormalization" for n in nodes) and any(
                module_family(m) == "BatchNormalization" for m in mods.values()):
            errors.insert(0, "no BatchNormalization node: a folded export? use a --keep-bn one")
        raise Fail("MODEL does not match the module:\n  " + "\n  ".join(errors))
    used = {s for _, _, s, _ in out}
    return out, inits, [n for n in inits if n not in used], by_module

def noise_positions(onnx_model):
    """{(node ordinal, input index): why} for tensors whose gradient is zero in exact
    arithmetic while BatchNorm trains: the bias of a Conv/Gemm read only by
    BatchNormalization (which subtracts the batch mean, bias included), and those
    BatchNorms' running_mean (which then follows that bias). Their computed gradient
    is rounding noise: SGD barely moves them, but Adam/AdamW normalise the noise into
    steps of about lr, so no two implementations agree on them."""
    nodes = [n for n in onnx_model.graph.node if n.op_type in OPS]
    ordinal = {id(n): k for k, n in enumerate(nodes)}
    outputs = {o.name for o in onnx_model.graph.output}
    consumers = {}
    for n in onnx_model.graph.node:
        for i, v in enumerate(n.input):
            consumers.setdefault(v, []).append((n, i))
    noise = {}
    for k, n in enumerate(nodes):
        if n.op_type == "BatchNormalization" or len(n.input) < 3 or not n.input[2]:
            continue
        users = consumers.get(n.output[0], [])
        if not users or n.output[0] in outputs or any(
                u.op_type != "BatchNormalization" or i != 0 for u, i in users):
            continue
        noise[(k, 2)] = "bias read only by BatchNormalization: zero gradient in exact arithmetic"
        for u, _ in users:
            noise[(ordinal[id(u)], 3)] = "running_mean after a zero-gradient bias"
    return noise

def load_into(model, matches, inits, by_module):
    import torch
    sd = model.state_dict()
    with torch.no_grad():
        for key, _, stored, _ in matches:
            sd[key].copy_(torch.from_numpy(np.array(inits[stored], np.float32)))
    mods = dict(model.named_modules())
    for name, (_, node) in by_module.items():
        if node.op_type != "BatchNormalization":
            continue
        attrs = {a.name: a.f for a in node.attribute}
        mods[name].momentum = 1.0 - float(attrs.get("momentum", 0.9))
        mods[name].eps = float(attrs.get("epsilon", 1e-5))
    for name, mod in mods.items():
        if module_family(mod) == "BatchNormalization" and name not in by_module:
            raise Fail("%s: no BatchNormalization node to take momentum/epsilon from" % name)

# ---- training -------------------------------------------------------------------------

def make_optimizer(a, params):
    import torch
    kw = {}
    if a.lr is not None:
        kw["lr"] = a.lr
    if a.weight_decay is not None:
        kw["weight_decay"] = a.weight_decay
    if a.optimizer == "sgd":
        if a.lr is None:
            raise Fail("--lr is required with --optimizer sgd (torch.optim.SGD has no default)")
        if a.momentum is not None:
            kw["momentum"] = a.momentum
        if a.nesterov:
            kw["nesterov"] = True
        return torch.optim.SGD(params, **kw)
    if a.betas is not None:
        kw["betas"] = a.betas
    if a.eps is not None:
        kw["eps"] = a.eps
    cls = torch.optim.Adam if a.optimizer == "adam" else torch.optim.AdamW
    return cls(params, **kw)

def train(a):
    import onnx, torch
    sys.path.insert(0, FIXTURES)
    import make_reference_models as mrm
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    x, y = load_data(a.x, a.y)
    try:
        onnx_model = onnx.load(a.model)
    except Exception as e:
        raise Fail("%s: cannot load: %s" % (a.model, e))
    make, example = mrm.MODELS[a.arch]
    model = make().float()
    ex = example()
    if tuple(x.shape[1:]) != tuple(ex.shape[1:]):
        raise Fail("%s: inputs %s, %s wants [N,%s]" % (a.x, x.shape, a.arch,
                                                       ",".join(map(str, ex.shape[1:]))))
    drop = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    if drop:
        raise Fail("%s has dropout (%s): not deterministic" % (a.arch, drop[0]))
    matches, inits, unused, by_module = match(model, ex, onnx_model)
    load_into(model, matches, inits, by_module)
    model.train()
    if a.bn == "frozen":
        for m in model.modules():
            if module_family(m) == "BatchNormalization":
                m.eval()
    opt = make_optimizer(a, model.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    classes = None
    losses, n = [], len(x)
    for k in range(a.steps):
        idx = torch.arange(k * a.batch, k * a.batch + a.batch) % n
        out = model(xt[idx])
        if classes is None:
            classes = out.shape[1]
            if int(y.min()) < 0 or int(y.max()) >= classes:
                raise Fail("%s: labels outside [0, %d)" % (a.y, classes))
        loss = torch.nn.functional.cross_entropy(out, yt[idx],
                                                 label_smoothing=a.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if not np.isfinite(losses[-1]):
            raise Fail("step %d: loss is %s" % (k, losses[-1]))
    noise = noise_positions(onnx_model) if a.bn == "train" else {}
    write_out(a, model, matches, unused, losses, noise)
    return losses

def write_out(a, model, matches, unused, losses, noise):
    import torch
    os.makedirs(a.out, exist_ok=True)
    man = os.path.join(a.out, "manifest.json")
    if os.path.exists(man):
        os.unlink(man)  # a stale manifest must not describe new tensors
    params = {k for k, _ in model.named_parameters()}
    sd = model.state_dict()
    tensors = {}
    for key, gname, stored, pos in matches:
        f = sanitize(gname) + ".npy"
        save_npy(os.path.join(a.out, f), sd[key].detach().cpu().numpy().astype(np.float32))
        e = {"file": f, "state_dict_key": key, "initializer": stored,
             "kind": "parameter" if key in params else "buffer",
             "shape": list(sd[key].shape)}
        if pos:
            e.update(op=pos[0], node_ordinal=pos[1], input_index=pos[2])
            if (pos[1], pos[2]) in noise:
                e["noise"] = noise[(pos[1], pos[2])]
        tensors[gname] = e
    save_json(os.path.join(a.out, "losses.json"), losses)
    opts = {k: v for k, v in vars(a).items()
            if k not in ("model", "out", "x", "y", "make_data", "n", "shape", "classes", "seed")}
    save_json(man, {"model": os.path.abspath(a.model), "arch": a.arch, "options": opts,
                    "torch": torch.__version__, "tensors": tensors,
                    "unused_initializers": unused})

# ---- command line ---------------------------------------------------------------------

def floats(s, n):
    try:
        v = tuple(float(t) for t in s.split(","))
    except ValueError:
        v = ()
    if len(v) != n:
        raise argparse.ArgumentTypeError("want %d comma-separated numbers: %r" % (n, s))
    return v

def parse(argv):
    ap = argparse.ArgumentParser(
        usage="%(prog)s MODEL.onnx --arch ARCH --x X.npy --y Y.npy --steps N --batch B "
              "--optimizer sgd|adam|adamw [options] --out DIR\n"
              "       %(prog)s --make-data fashion-mnist|random --n N --x X.npy --y Y.npy",
        description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--arch", choices=ARCHS)
    ap.add_argument("--x", required=True)
    ap.add_argument("--y", required=True)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    ap.add_argument("--lr", type=float)
    ap.add_argument("--momentum", type=float)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--betas", type=lambda s: floats(s, 2))
    ap.add_argument("--eps", type=float)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--bn", choices=("train", "frozen"), default="train")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--make-data", choices=("fashion-mnist", "random"))
    ap.add_argument("--n", type=int)
    ap.add_argument("--shape", type=lambda s: tuple(int(v) for v in floats(s, s.count(",") + 1)))
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.make_data:
        if not a.n or a.n < 1:
            ap.error("--make-data needs --n N >= 1")
        if a.make_data == "random" and not a.shape:
            ap.error("--make-data random needs --shape C,H,W")
        return a
    missing = [o for o, v in (("MODEL.onnx", a.model), ("--arch", a.arch), ("--steps", a.steps),
                              ("--batch", a.batch), ("--optimizer", a.optimizer),
                              ("--out", a.out)) if v is None]
    if missing:
        ap.error("missing " + ", ".join(missing))
    if a.steps < 1 or a.batch < 1 or a.threads < 1:
        ap.error("--steps, --batch and --threads must be >= 1")
    if a.optimizer != "sgd" and (a.momentum is not None or a.nesterov):
        ap.error("--momentum/--nesterov are SGD options")
    if a.optimizer == "sgd" and (a.betas or a.eps is not None):
        ap.error("--betas/--eps are Adam/AdamW options")
    return a

def main(argv):
    a = parse(argv)
    try:
        if a.make_data:
            x, y = (fashion_mnist(a.n) if a.make_data == "fashion-mnist"
                    else random_data(a.n, a.shape, a.classes, a.seed))
            save_npy(a.x, x)
            save_npy(a.y, y)
            return 0
        losses = train(a)
    except Fail as e:
        die(str(e))
    except OSError as e:
        die("%s: %s" % (e.filename or "", e.strerror))
    print("torch_train_ref: %d steps, loss %.6g -> %.6g, wrote %s"
          % (len(losses), losses[0], losses[-1], a.out), file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
