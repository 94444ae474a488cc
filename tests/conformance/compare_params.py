#!/usr/bin/python3
"""Compare a fine-tuned ONNX model's parameters with torch_train_ref.py's reference.

Usage:
  compare_params.py TUNED.onnx REFDIR [--rtol 1e-4] [--atol 0] [--quiet] [--skip-noise]
  compare_params.py --write-tuned MODEL.onnx REFDIR OUT.onnx
  compare_params.py --self-test MODEL.onnx --arch small_cnn|resnet18 [--workdir DIR]

Compare: for every tensor in REFDIR/manifest.json, finds it in TUNED.onnx's
initializers and checks, per tensor,
    max|a - b| <= rtol * max|b| + atol        (a: TUNED, b: reference)
i.e. the error is measured relative to the largest magnitude of that reference
tensor, not element by element (an element near zero does not blow up the ratio).
A tensor is found by its ONNX name as an initializer, else through a chain of
Identity nodes from that name to an initializer (so an exporter's deduplication is
seen through; a trainer that kept a BatchNorm running_var aliased to a weight then
fails, as it should), else by its graph position (input i of the k-th Conv/Gemm/
BatchNormalization node, resolved the same way). Prints one line per tensor: status,
name, max abs diff, max rel diff (max abs diff / max|b|) and, when not found by name,
how it was found; then a summary line. Exit 0 if all pass, 1 if any tensor is missing,
has another shape or exceeds the tolerance (or on a read error), 2 on usage.
--skip-noise leaves out the tensors the manifest marks "noise" (a Conv bias read only
by a training BatchNorm, and its running_mean: zero gradient in exact arithmetic, so
Adam/AdamW move them by rounding noise; PyTorch at 1 vs 2 threads differs by 14% there).

--write-tuned: writes the reference tensors into a copy of MODEL.onnx (what a correct
trainer would export): initializers replaced in place; an Identity-aliased name gets
its own initializer and its Identity node is removed; initializers left unused are
dropped. Used by the self-test; also handy to feed the reference back into graft-run.

--self-test: proves this script and torch_train_ref.py on a --keep-bn reference model:
small_cnn trains 16 steps of batch 32 on 256 Fashion-MNIST test images, resnet18 2 steps
of batch 4 on 8 random 3x224x224 images with labels in [0, 1000); each with SGD
(lr 0.01, momentum 0.9) and AdamW (lr 1e-3). For each: --write-tuned output must pass,
the untouched model and a copy with one tensor perturbed by 1e-3 * max|b| must fail.
Also trains a copy of MODEL with every initializer and Identity output renamed to
onnx::Init_K (so names match nothing and the graph-position fallback has to map all of
them) and requires bit-identical tensors (which also checks determinism).
Run with /usr/bin/python3."""
import argparse, io, json, os, shutil, subprocess, sys, tempfile
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = ("Conv", "Gemm", "BatchNormalization")

class Fail(Exception):
    pass

def load_onnx(path):
    import onnx
    try:
        return onnx.load(path)
    except Exception as e:
        raise Fail("%s: cannot load: %s" % (path, e))

def load_manifest(refdir):
    path = os.path.join(refdir, "manifest.json")
    try:
        with open(path) as f:
            man = json.load(f)
        return man["tensors"]
    except (OSError, ValueError, KeyError) as e:
        raise Fail("%s: cannot read the manifest: %s" % (path, e))

def resolve(name, inits, alias):
    seen = set()
    while name not in inits:
        if name not in alias or name in seen:
            return None
        seen.add(name)
        name = alias[name]
    return name

def locate(g, inits, alias, name, e):
    """(initializer name, how) for a manifest entry, or (None, why)."""
    if name in inits:
        return name, ""
    r = resolve(name, inits, alias)
    if r:
        return r, "via Identity of '%s'" % r
    if "node_ordinal" in e:
        nodes = [n for n in g.node if n.op_type in OPS]
        k, i = e["node_ordinal"], e["input_index"]
        if k < len(nodes) and nodes[k].op_type == e["op"] and i < len(nodes[k].input):
            r = resolve(nodes[k].input[i], inits, alias)
            if r:
                return r, "by position: %s #%d input %d = '%s'" % (e["op"], k, i, r)
    return None, "not found"

def compare(tuned, refdir, rtol, atol, quiet=False, out=sys.stdout, skip_noise=False):
    """Number of failing tensors (prints the per-tensor lines and a summary)."""
    from onnx import numpy_helper
    tensors = load_manifest(refdir)
    g = load_onnx(tuned).graph
    inits = {i.name: i for i in g.initializer}
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity"}
    failed, skipped, worst = 0, 0, (-1.0, "")
    for name, e in tensors.items():
        if skip_noise and "noise" in e:
            skipped += 1
            if not quiet:
                print("skip %s: %s" % (name, e["noise"]), file=out)
            continue
        try:
            b = np.load(os.path.join(refdir, e["file"])).astype(np.float64)
        except (OSError, ValueError) as ex:
            raise Fail("%s: %s" % (os.path.join(refdir, e["file"]), ex))
        where, how = locate(g, inits, alias, name, e)
        if where is None:
            failed += 1
            print("MISS %s: %s in %s" % (name, how, tuned), file=out)
            continue
        a = numpy_helper.to_array(inits[where]).astype(np.float64)
        if a.shape != b.shape:
            failed += 1
            print("FAIL %s: shape %s, reference %s" % (name, a.shape, b.shape), file=out)
            continue
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        dabs = float(np.max(np.abs(a - b))) if b.size else 0.0
        drel = dabs / scale if scale > 0 else (0.0 if dabs == 0 else float("inf"))
        ok = dabs <= rtol * scale + atol  # NaN compares false: fails
        failed += not ok
        worst = max(worst, (drel if drel == drel else float("inf"), name))
        if not quiet or not ok:
            print("%s %s: max abs %.3g, max rel %.3g%s" % ("ok  " if ok else "FAIL", name, dabs,
                  drel, " (" + how + ")" if how else ""), file=out)
    print("compare_params: %d tensors, %d failed, %d skipped, worst rel %.3g (%s); "
          "criterion max|a-b| <= %g * max|b| + %g"
          % (len(tensors) - skipped, failed, skipped, max(worst[0], 0.0), worst[1] or "-",
             rtol, atol), file=out)
    return failed

def write_tuned(model_path, refdir, out_path):
    import onnx
    from onnx import numpy_helper
    tensors = load_manifest(refdir)
    m = load_onnx(model_path)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    for name, e in tensors.items():
        arr = np.load(os.path.join(refdir, e["file"]))
        if name in inits:
            inits[name].CopyFrom(numpy_helper.from_array(arr, name))
            continue
        ids = [n for n in g.node if n.op_type == "Identity" and n.output[0] == name]
        if not ids:
            raise Fail("%s: '%s' is neither an initializer nor an Identity output"
                       % (model_path, name))
        g.node.remove(ids[0])
        g.initializer.append(numpy_helper.from_array(arr, name))
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(m)
    tmp = "%s.tmp%d" % (out_path, os.getpid())
    try:
        onnx.save(m, tmp)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

# ---- self-test ------------------------------------------------------------------------

def renamed_copy(model_path, out_path):
    """MODEL with every initializer and Identity output renamed to onnx::Init_K."""
    import onnx
    m = load_onnx(model_path)
    g = m.graph
    names = [i.name for i in g.initializer] + [n.output[0] for n in g.node
                                                if n.op_type == "Identity"]
    ren = {n: "onnx::Init_%d" % k for k, n in enumerate(names)}
    for i in g.initializer:
        i.name = ren[i.name]
    for n in g.node:
        for k, v in enumerate(n.input):
            n.input[k] = ren.get(v, v)
        for k, v in enumerate(n.output):
            n.output[k] = ren.get(v, v)
    onnx.save(m, out_path)

def self_test(model, arch, work):
    py, ref = sys.executable, os.path.join(HERE, "torch_train_ref.py")
    def run(*args):
        r = subprocess.run([py, ref] + [str(a) for a in args], capture_output=True, text=True)
        if r.returncode:
            raise Fail("torch_train_ref.py %s: exit %d\n%s" % (" ".join(map(str, args)),
                       r.returncode, r.stderr))
        return r.stderr.strip()
    x, y = os.path.join(work, "x.npy"), os.path.join(work, "y.npy")
    if arch == "small_cnn":
        run("--make-data", "fashion-mnist", "--n", 256, "--x", x, "--y", y)
        steps, batch = 16, 32
    else:
        run("--make-data", "random", "--n", 8, "--shape", "3,224,224", "--classes", 1000,
            "--x", x, "--y", y)
        steps, batch = 2, 4
    renamed = os.path.join(work, "renamed.onnx")
    renamed_copy(model, renamed)
    bad = []
    def check(what, cond):
        print("self-test: %s: %s" % (what, "ok" if cond else "FAILED"))
        if not cond:
            bad.append(what)
    def cmp(tuned, d):  # prints the summary line only
        buf = io.StringIO()
        n = compare(tuned, d, 1e-4, 0.0, quiet=True, out=buf)
        print("  " + buf.getvalue().splitlines()[-1])
        return n
    for opt, extra in (("sgd", ["--lr", 0.01, "--momentum", 0.9]), ("adamw", ["--lr", 1e-3])):
        d = os.path.join(work, opt)
        common = ["--arch", arch, "--x", x, "--y", y, "--steps", steps, "--batch", batch,
                  "--optimizer", opt] + extra
        print(run(model, *common, "--out", d))
        tuned = os.path.join(work, opt + ".onnx")
        write_tuned(model, d, tuned)
        check("%s %s: reference written back passes" % (arch, opt),
              cmp(tuned, d) == 0)
        check("%s %s: untouched model fails" % (arch, opt),
              cmp(model, d) > 0)
        tensors = load_manifest(d)
        victim = next(n for n, e in tensors.items() if e["kind"] == "parameter")
        f = os.path.join(d, tensors[victim]["file"])
        orig = np.load(f)
        pert = orig.copy()
        pert.flat[0] += 1e-3 * np.max(np.abs(orig))
        np.save(f, pert)
        check("%s %s: '%s' perturbed by 1e-3 * max fails" % (arch, opt, victim),
              cmp(tuned, d) == 1)
        np.save(f, orig)
        rd = os.path.join(work, opt + "-renamed")
        run(renamed, *common, "--out", rd)
        rt = load_manifest(rd)
        by_pos = {(e["op"], e["node_ordinal"], e["input_index"]): e for e in rt.values()}
        same = len(rt) == len(tensors) and all(
            np.array_equal(np.load(os.path.join(d, e["file"])),
                           np.load(os.path.join(rd, by_pos[(e["op"], e["node_ordinal"],
                                                             e["input_index"])]["file"])))
            for e in tensors.values())
        with open(os.path.join(d, "losses.json")) as f1, \
                open(os.path.join(rd, "losses.json")) as f2:
            same = same and json.load(f1) == json.load(f2)
        check("%s %s: renamed initializers (graph-position mapping) give identical tensors"
              % (arch, opt), same)
    return len(bad)

def main(argv):
    ap = argparse.ArgumentParser(
        usage="%(prog)s TUNED.onnx REFDIR [--rtol R] [--atol A] [--quiet] [--skip-noise]\n"
              "       %(prog)s --write-tuned MODEL.onnx REFDIR OUT.onnx\n"
              "       %(prog)s --self-test MODEL.onnx --arch ARCH [--workdir DIR]",
        description=__doc__.splitlines()[0])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=0.0)
    ap.add_argument("--quiet", action="store_true", help="print failing tensors only")
    ap.add_argument("--skip-noise", action="store_true",
                    help="leave out tensors the manifest marks \"noise\" (for Adam/AdamW)")
    ap.add_argument("--write-tuned", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--arch", choices=("small_cnn", "resnet18"))
    ap.add_argument("--workdir")
    a = ap.parse_args(argv)
    want = 3 if a.write_tuned else 1 if a.self_test else 2
    if len(a.args) != want or (a.self_test and not a.arch) or (a.write_tuned and a.self_test):
        ap.error("wrong arguments")
    if a.rtol < 0 or a.atol < 0:
        ap.error("--rtol and --atol must be >= 0")
    try:
        if a.write_tuned:
            write_tuned(*a.args)
            return 0
        if a.self_test:
            work = a.workdir or tempfile.mkdtemp(prefix="compare_params.")
            os.makedirs(work, exist_ok=True)
            try:
                bad = self_test(a.args[0], a.arch, work)
            finally:
                if not a.workdir:
                    shutil.rmtree(work, ignore_errors=True)
            print("self-test: %s" % ("all passed" if not bad else "%d check(s) FAILED" % bad))
            return 1 if bad else 0
        return 1 if compare(a.args[0], a.args[1], a.rtol, a.atol, a.quiet,
                            skip_noise=a.skip_noise) else 0
    except Fail as e:
        print("compare_params: %s" % e, file=sys.stderr)
        return 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
