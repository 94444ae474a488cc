#!/usr/bin/python3
"""node_tests.py TOOLDIR [--filter SUBSTR] [--ops-md FILE] [--verbose] [DATADIR...]

Conformance of graft-run against the ONNX backend test suite (node and
pytorch-converted by default).  For every test whose ops are all ones graft runs
(`graft-run --list-ops`) and whose tensors are float32, int32, int64, uint8, int8 or bool, runs
graft-run on each input set and compares with the expected outputs: floats within
rtol 1e-3, atol 1e-5; integers and bools exactly; shapes exactly.  Tests listed in
tests/conformance/node_exceptions.txt (with a reason) may fail without failing the run.

Prints one line per failure, a per-op table with --ops-md (docs/ops.md is made from
it; its file column comes from the kernel sources, see op_files), and a final line
"N passed, M failed"."""
import argparse, glob, os, re, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.normpath(os.path.join(HERE, "..", "..", "lib"))
OPS_DIR = os.path.join(LIB, "engine", "ops")
DATA = "/usr/share/libonnx-testdata/data"
OK_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
            onnx.TensorProto.UINT8, onnx.TensorProto.INT8,
            onnx.TensorProto.BOOL}

def graph_ops(g, ops):
    for n in g.node:
        ops.add(n.op_type if n.domain in ("", "ai.onnx") else n.domain + "." + n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                graph_ops(a.g, ops)
            for sg in a.graphs:
                graph_ops(sg, ops)
    return ops

def types_ok(model):
    g = model.graph
    for v in list(g.input) + list(g.output):
        t = v.type
        if t.WhichOneof("value") != "tensor_type" or t.tensor_type.elem_type not in OK_TYPES:
            return False
    return all(i.data_type in OK_TYPES for i in g.initializer)

def sanitize(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)

def load_exceptions():
    path = os.path.join(HERE, "node_exceptions.txt")
    ex = {}
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, why = line.partition(" ")
                ex[name] = why.strip()
    return ex

# A C comment, a string literal (group 1: its text) or a character constant.
C_TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|"((?:\\.|[^"\\\n])*)"|\'(?:\\.|[^\'\\\n])*\'', re.S)

def op_files(ops):
    """The kernel file of each op, as a path under lib/: the one file of lib/engine/ops/
    whose code (comments left out) names the op in a string literal.  The executor finds
    an op by the op_type in its definition (struct op_def, whether written `.name = "Op"`,
    `{"Op", ...}` or through a table macro such as X(RELU, "Relu", ...)), and a kernel
    file names its own ops, forward and backward, and no others.  Raises ValueError when
    an op is named in no file or in several (move its code, or refine this rule)."""
    named = {}
    for path in sorted(glob.glob(os.path.join(OPS_DIR, "*.c"))):
        with open(path) as f:
            for m in C_TOKEN.finditer(f.read()):
                if m.group(1) in ops:
                    named.setdefault(m.group(1), set()).add(os.path.relpath(path, LIB))
    bad = ["%s (%s)" % (op, ", ".join(sorted(named.get(op, ()))) or "no file")
           for op in sorted(ops) if len(named.get(op, ())) != 1]
    if bad:
        raise ValueError("ops not named in exactly one file of %s: %s"
                         % (OPS_DIR, "; ".join(bad)))
    return {op: named[op].pop() for op in ops}

def run_test(tooldir, d, model):
    """Returns None on success, else a one-line reason."""
    outs = [o.name for o in model.graph.output]
    sets = sorted(glob.glob(os.path.join(d, "test_data_set_*")))
    if not sets:
        return "no test data"
    for s in sets:
        inputs = sorted(glob.glob(os.path.join(s, "input_*.pb")),
                        key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[0]))
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [os.path.join(tooldir, "graft-run"), os.path.join(d, "model.onnx"), "-o", tmp]
            for p in inputs:
                cmd += ["-i", p]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                return (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
            for k, name in enumerate(outs):
                exp_path = os.path.join(s, "output_%d.pb" % k)
                if not os.path.exists(exp_path):
                    continue
                t = onnx.TensorProto()
                t.ParseFromString(open(exp_path, "rb").read())
                want = numpy_helper.to_array(t)
                got_path = os.path.join(tmp, sanitize(name) + ".npy")
                if not os.path.exists(got_path):
                    return "output %s not written" % name
                got = np.load(got_path)
                if got.shape != want.shape:
                    return "output %s: shape %s, expected %s" % (name, got.shape, want.shape)
                if want.dtype.kind == "f":
                    if got.dtype != want.dtype:
                        return "output %s: dtype %s, expected %s" % (name, got.dtype, want.dtype)
                    if not np.allclose(got, want, rtol=1e-3, atol=1e-5, equal_nan=True):
                        err = np.max(np.abs(got.astype(np.float64) - want))
                        return "output %s: max |diff| %.3g" % (name, err)
                elif not np.array_equal(got, want.astype(got.dtype)) or got.dtype != want.dtype:
                    return "output %s: values differ (dtype %s vs %s)" % (name, got.dtype, want.dtype)
    return None

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tooldir")
    ap.add_argument("datadirs", nargs="*",
                    default=[os.path.join(DATA, "node"), os.path.join(DATA, "pytorch-converted")])
    ap.add_argument("--filter", default="")
    ap.add_argument("--ops-md", help="write the per-op table (markdown) here")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("-j", type=int, default=2)
    a = ap.parse_args()
    supported = set(subprocess.run([os.path.join(a.tooldir, "graft-run"), "--list-ops"],
                                   capture_output=True, text=True, check=True).stdout.split())
    backward = set(subprocess.run([os.path.join(a.tooldir, "graft-run"), "--list-backward"],
                                  capture_output=True, text=True, check=True).stdout.split())
    exceptions = load_exceptions()
    tests = []
    skipped = {"ops": 0, "types": 0}
    for dd in a.datadirs:
        for d in sorted(glob.glob(os.path.join(dd, "*"))):
            mp = os.path.join(d, "model.onnx")
            if a.filter not in os.path.basename(d) or not os.path.exists(mp):
                continue
            model = onnx.load(mp)
            ops = graph_ops(model.graph, set())
            if not ops <= supported:
                skipped["ops"] += 1
                continue
            if not types_ok(model):
                skipped["types"] += 1
                continue
            tests.append((d, model, ops))
    with ThreadPoolExecutor(a.j) as pool:
        results = list(pool.map(lambda t: run_test(a.tooldir, t[0], t[1]), tests))
    passed = failed = excused = 0
    per_op = {}
    for (d, model, ops), why in zip(tests, results):
        name = os.path.basename(d)
        for op in ops:
            per_op.setdefault(op, [0, 0, []])
            per_op[op][0 if why is None else 1] += 1
        if why is None:
            passed += 1
            if a.verbose:
                print("ok   %s" % name)
        elif name in exceptions:
            excused += 1
            for op in ops:
                per_op[op][2].append(name)
            print("EXCUSED %s: %s (%s)" % (name, why, exceptions[name]))
        else:
            failed += 1
            print("FAIL %s: %s" % (name, why))
    if a.ops_md:
        with open(a.ops_md, "w") as f:
            f.write(ops_markdown(supported, backward, per_op, exceptions, skipped, passed,
                                 failed, excused))
    print("skipped: %d tests use ops graft does not run, %d use other tensor types"
          % (skipped["ops"], skipped["types"]))
    print("%d passed, %d failed" % (passed + excused, failed))
    return 1 if failed else 0

def ops_markdown(supported, backward, per_op, exceptions, skipped, passed, failed, excused):
    lines = ["<!-- generated by tests/conformance/node_tests.py --ops-md; the conformance "
             "test checks it is current -->",
             "# Ops graft runs",
             "",
             "The forward engine (`graft-run`, `graft_net_run`) runs these ops of the default "
             "ONNX domain, in every opset version from 1 to 18 that the ONNX test suite "
             "exercises. Compute is float32; int32, int64 and bool work wherever the suite "
             "uses them with these ops, and most ops also take double, float16 and the "
             "small integer types (data-movement ops take any fixed-size type). Conv, "
             "ConvTranspose, Gemm, MatMul, MaxPool and AveragePool run on oneDNN; "
             "BatchNormalization after a Conv is folded into it, and Relu, LeakyRelu, Clip, "
             "Sigmoid, HardSigmoid, HardSwish and Tanh after a Conv or Gemm are fused into "
             "it, and so are the gated forms exporters write for SiLU (`Mul(x, Sigmoid(x))`, "
             "EfficientNet) and, before opset 14, HardSwish (`Mul(x, HardSigmoid(x))` with "
             "alpha 1/6, MobileNetV3); a 1x1 Conv read only by a 3x3 depthwise Conv "
             "(MobileNet's inverted residuals) runs with it as one oneDNN primitive. Each "
             "Conv shape runs the kernel timed fastest for it on the machine at hand "
             "(docs/engine.md); these tests run with that choice.",
             "",
             "Counts: tests of `/usr/share/libonnx-testdata/data/{node,pytorch-converted}` "
             "whose ops are all listed here and whose tensors are float32, int32, int64 or "
             "bool, compared with rtol 1e-3, atol 1e-5 (integers exactly). A test counts "
             "for every op it uses. Excused tests (listed with their reason in "
             "`tests/conformance/node_exceptions.txt`) may fail.",
             "",
             "Backward: `yes` when graft-train can differentiate the op (`graft-run "
             "--list-backward`), checked against finite differences in "
             "`tests/unit/test_grad_*.c`. A frozen part of a network may use any op; the "
             "part computed from trainable parameters needs ops with a backward.",
             "",
             "File: the kernel file that implements the op (forward and backward), under "
             "`lib/`: one op family per file. The generator finds it in the sources: the one "
             "file of `lib/engine/ops/` that names the op.",
             "",
             "| op | ONNX tests passed | failed | excused | backward | file |",
             "|---|---|---|---|---|---|"]
    files = op_files(supported)
    for op in sorted(supported):
        p, f, ex = per_op.get(op, [0, 0, []])
        lines.append("| %s | %d | %d | %s | %s | `%s` |"
                     % (op, p, f - len(ex), ", ".join(ex) or "",
                        "yes" if op in backward else "", files[op]))
    lines.append("")
    for name, why in sorted(exceptions.items()):
        lines.append("- `%s` is excused: %s" % (name, why))
    lines.append("")
    lines.append("Totals: %d tests passed, %d failed, %d excused; %d skipped (ops outside "
                 "this list), %d skipped (tensor types other than float32, int32, int64, uint8, int8, "
                 "bool)." % (passed, failed, excused, skipped["ops"], skipped["types"]))
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    sys.exit(main())
