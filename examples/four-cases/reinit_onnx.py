#!/usr/bin/python3
"""reinit_onnx.py IN.onnx OUT.onnx --seed S

The same architecture from seeded random weights: every weight of IN (an initializer or
a Constant node's value, whichever holds it) gets the initialisation a network of that
architecture would get before training, chosen by what the weight feeds:

  Conv weight            He normal, std sqrt(2 / fan_in), fan_in = in/groups x kh x kw
  Conv bias              0
  MatMul/Gemm weight     Xavier normal, std sqrt(2 / (fan_in + fan_out))
  their bias (the Add after a MatMul, Gemm's C)  0
  BatchNormalization     scale 1, bias 0, running mean 0, running variance 1

Everything else stays as it is: shapes, the constants of the activations (HardSwish's 3
and 6 and the like) and the graph.  Says on stderr how many tensors and values it drew.
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    m = onnx.load(a.src)
    g = m.graph

    # where each tensor's value lives: an initializer, or a Constant node's attribute
    holders = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value":
                    holders[n.output[0]] = at.t
    role = {}
    matmul_out = set()
    for n in g.node:
        ins = list(n.input)
        if n.op_type == "Conv":
            groups = next((at.i for at in n.attribute if at.name == "group"), 1)
            role[ins[1]] = ("he", groups)
            if len(ins) > 2:
                role[ins[2]] = ("zero",)
        elif n.op_type == "BatchNormalization":
            for i, r in zip(ins[1:5], ("one", "zero", "zero", "one")):
                role[i] = (r,)
        elif n.op_type in ("MatMul", "Gemm"):
            role[ins[1]] = ("xavier", n.op_type, n)
            if n.op_type == "Gemm" and len(ins) > 2:
                role[ins[2]] = ("zero",)
            matmul_out.add(n.output[0])
    for n in g.node:                    # a MatMul's bias: the Add of a constant to it
        if n.op_type == "Add" and n.input[0] in matmul_out and n.input[1] in holders:
            role[n.input[1]] = ("zero",)

    count, values = 0, 0
    for name, r in sorted(role.items()):
        t = holders.get(name)
        if t is None:
            continue                    # a computed tensor, not a weight
        w = numpy_helper.to_array(t)
        if w.dtype.kind != "f":
            continue
        if r[0] == "he":
            fan_in = int(np.prod(w.shape[1:]))
            new = rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape)
        elif r[0] == "xavier":
            _, op, n = r
            trans = op == "Gemm" and any(at.name == "transB" and at.i for at in n.attribute)
            fan_in, fan_out = (w.shape[1], w.shape[0]) if trans else (w.shape[0], w.shape[1])
            new = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), w.shape)
        elif r[0] == "one":
            new = np.ones(w.shape)
        else:
            new = np.zeros(w.shape)
        t.CopyFrom(numpy_helper.from_array(new.astype(w.dtype), t.name))
        count += 1
        values += w.size
    onnx.save(m, a.out)
    print(f"reinit_onnx.py: {a.out}: {count} tensors ({values} values) reinitialised, "
          f"seed {a.seed}", file=sys.stderr)


if __name__ == "__main__":
    main()
