#!/usr/bin/python3
"""graft-compose against onnx.compose.merge_models, and in ONNX Runtime.

1. Two models joined by graft-compose (--io and by position) give the graph that
   onnx.compose.merge_models gives: the same nodes, inputs, outputs, initializers and
   values, and the opsets it imports (onnx.compose lists a shared domain twice; graft once).
2. The composite runs in ONNX Runtime to the outputs of the two models run one after the
   other, a reading of the fed input inside an If's branch included (onnx.compose leaves
   that one unrenamed, so its model cannot run: graft renames it).
3. Weights keep their flags: a frozen first model stays frozen in the composite.
4. A value of the second named as one of the first's is renamed, and the composite still
   computes the same; refusals: an output of the second named as a value of the first,
   an unknown output, declared types that
   disagree, a domain at two opset versions: exit 1, one line naming the models.

usage: compose.py TOOLS_DIR ORT_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnx.compose
from onnx import TensorProto, helper, numpy_helper

TOOLS, ORT_DIR = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
NODE = os.environ.get("NODE", "node")
failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    failures += 0 if ok else 1


def tool(name, *args, **kw):
    return subprocess.run([os.path.join(TOOLS, name), *args], capture_output=True, **kw)


def first_model(opset=13):
    rng = np.random.RandomState(1)
    w1 = numpy_helper.from_array(rng.randn(4, 3).astype(np.float32), "w1")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["y1"], name="relu"),
             helper.make_node("Neg", ["x"], ["aux"], name="neg")]
    g = helper.make_graph(nodes, "first",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["N", 3]),
                           helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["N", 4])],
                          [w1])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def second_model(branch=False, input_type=TensorProto.FLOAT, clash=False, out_name="out"):
    rng = np.random.RandomState(2)
    w2 = numpy_helper.from_array(rng.randn(2, 3).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.randn(2).astype(np.float32), "b2")
    nodes = [helper.make_node("Gemm", ["z", "w2", "b2"], ["h" if clash else "g"], transB=1,
                              name="gemm"),
             helper.make_node("Sigmoid", ["h" if clash else "g"], [out_name], name="sig")]
    outputs = [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 2])]
    inputs = [helper.make_tensor_value_info("z", input_type, ["N", 3])]
    if branch:
        # the If's branches read z, the fed input, from the outer scope
        then_g = helper.make_graph([helper.make_node("Abs", ["z"], ["t"])], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT,
                                                                  None)])
        else_g = helper.make_graph([helper.make_node("Neg", ["z"], ["e"])], "else", [],
                                   [helper.make_tensor_value_info("e", TensorProto.FLOAT,
                                                                  None)])
        nodes.append(helper.make_node("If", ["flag"], ["picked"], then_branch=then_g,
                                      else_branch=else_g, name="if"))
        inputs.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
        outputs.append(helper.make_tensor_value_info("picked", TensorProto.FLOAT, ["N", 3]))
    g = helper.make_graph(nodes, "second", inputs, outputs, [w2, b2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def graph_view(g):
    """What must agree: nodes, inputs, outputs, initializers by name and value."""
    return {
        "nodes": [(n.op_type, n.domain, list(n.input), list(n.output),
                   sorted(a.SerializeToString() for a in n.attribute)) for n in g.node],
        "inputs": [i.SerializeToString() for i in g.input],
        "outputs": [o.SerializeToString() for o in g.output],
        "inits": {t.name: numpy_helper.to_array(t).tobytes() for t in g.initializer},
    }   # (not the name: ONNX 1.12 means "first_second" but a loop variable shadows it)


def ort_run(path, out_dir, inputs):
    args = [NODE, os.path.join(HERE, "ort_run.js"), path, out_dir, "--ort-dir", ORT_DIR]
    for name, file in inputs.items():
        args += ["--input", f"{name}={file}"]
    r = subprocess.run(args, capture_output=True)
    if r.returncode:
        raise RuntimeError(r.stderr.decode())
    got = {}
    with open(os.path.join(out_dir, "summary.json")) as f:
        summary = json.load(f)
    for o in summary["outputs"]:
        dtype = {"float32": np.float32, "bool": np.bool_}[o["dtype"]]
        got[o["name"]] = np.fromfile(os.path.join(out_dir, o["file"]), dtype).reshape(o["dims"])
    return got


def main():
    subprocess.run([os.path.join(HERE, "setup-ort.sh"), ORT_DIR], check=True,
                   stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)
        onnx.save(first_model(), p("a.onnx"))
        onnx.save(second_model(), p("b.onnx"))

        # 1. the graph of onnx.compose, named links and links by position
        ref = onnx.compose.merge_models(first_model(), second_model(), io_map=[("y1", "z")])
        for args, what in ((["--io", "y1=z"], "--io y1=z"), ([], "by position")):
            r = tool("graft-compose", p("a.onnx"), p("b.onnx"), *args, "-o", p("ab.graft"))
            check(r.returncode == 0, f"graft-compose {what}: exit {r.returncode} "
                  f"{r.stderr.decode().strip()}")
            check(json.loads(tool("graft-info", p("ab.graft"), "--json").stdout)
                  ["graph_name"] == "first_second", f"{what}: the graph is first_second")
            tool("graft-export", p("ab.graft"), "-o", p("ab.onnx"))
            got = onnx.load(p("ab.onnx"))
            check(graph_view(got.graph) == graph_view(ref.graph),
                  f"{what}: the graph onnx.compose.merge_models gives")
            check(sorted((o.domain, o.version) for o in got.opset_import) ==
                  sorted({(o.domain, o.version) for o in ref.opset_import}),
                  f"{what}: the opsets, each once")
        onnx.checker.check_model(onnx.load(p("ab.onnx")))

        # 2. ONNX Runtime: the composite equals the two run one after the other
        onnx.save(second_model(branch=True), p("b_if.onnx"))
        r = tool("graft-compose", p("a.onnx"), p("b_if.onnx"), "--io", "y1=z", "-o",
                 p("ab_if.graft"))
        check(r.returncode == 0, "composite with an If reading the fed input")
        tool("graft-export", p("ab_if.graft"), "-o", p("ab_if.onnx"))
        x = np.random.RandomState(3).randn(5, 4).astype(np.float32)
        np.save(p("x.npy"), x)
        for flag in (True, False):
            np.save(p("flag.npy"), np.array(flag))
            whole = ort_run(p("ab_if.onnx"), p("o_whole"), {"x": p("x.npy"),
                                                             "flag": p("flag.npy")})
            first = ort_run(p("a.onnx"), p("o_a"), {"x": p("x.npy")})
            np.save(p("y1.npy"), first["y1"])
            second = ort_run(p("b_if.onnx"), p("o_b"), {"z": p("y1.npy"),
                                                         "flag": p("flag.npy")})
            same = all(np.array_equal(whole[k], second[k]) for k in ("out", "picked"))
            same = same and np.array_equal(whole["aux"], first["aux"])
            check(same, f"ONNX Runtime, flag {flag}: the composite's outputs are the two "
                  "models' run in turn, bit for bit")

        # a value of the second named as one of the first's ("h") is renamed "second/h"
        onnx.save(second_model(clash=True), p("b_clash.onnx"))
        r = tool("graft-compose", p("a.onnx"), p("b_clash.onnx"), "-o", p("clash.graft"))
        check(r.returncode == 0, f"a shared inner name: joined {r.stderr.decode().strip()}")
        tool("graft-export", p("clash.graft"), "-o", p("clash.onnx"))
        got = onnx.load(p("clash.onnx"))
        check([n.output[0] for n in got.graph.node][-2:] == ["second/h", "out"],
              "the second's 'h' renamed 'second/h'")
        whole = ort_run(p("clash.onnx"), p("o_clash"), {"x": p("x.npy")})
        first = ort_run(p("a.onnx"), p("o_a"), {"x": p("x.npy")})
        np.save(p("y1.npy"), first["y1"])
        second = ort_run(p("b_clash.onnx"), p("o_b2"), {"z": p("y1.npy")})
        check(np.array_equal(whole["out"], second["out"]),
              "ONNX Runtime: the renamed composite computes the same, bit for bit")

        # 3. flags
        tool("graft-freeze", p("a.onnx"), "--all", "-o", p("a_frozen.graft"))
        tool("graft-compose", p("a_frozen.graft"), p("b.onnx"), "-o", p("f.graft"))
        info = json.loads(tool("graft-info", p("f.graft"), "--json").stdout)
        check(info["parameters"]["trainable_values"] == 8 and
              info["parameters"]["values"] == 20,
              f"the first model's weights stay frozen, the second's trainable "
              f"({info['parameters']})")

        # 4. refusals
        onnx.save(second_model(out_name="h"), p("b_out_clash.onnx"))
        onnx.save(second_model(input_type=TensorProto.INT64), p("b_int.onnx"))
        onnx.save(first_model(opset=14), p("a14.onnx"))
        for args, says in (
                ([p("a.onnx"), p("b_out_clash.onnx")],
                 "both models have a value named 'h', an output of the second"),
                ([p("a.onnx"), p("b.onnx"), "--io", "nope=z"], "no output 'nope'"),
                ([p("a.onnx"), p("b.onnx"), "--io", "y1=nope"], "no input 'nope'"),
                ([p("a.onnx"), p("b_int.onnx")], "is float, input 'z' int64"),
                ([p("a14.onnx"), p("b.onnx")], "opset 14 of ai.onnx, the second 13"),
                ([p("a.onnx")], "two models or more")):
            r = tool("graft-compose", *args, "-o", p("bad.graft"))
            err = r.stderr.decode()
            check(r.returncode in (1, 2) and says in err and
                  (r.returncode == 2 or err.count("\n") == 1) and
                  not os.path.exists(p("bad.graft")),
                  f"refused: {err.strip()}")
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
