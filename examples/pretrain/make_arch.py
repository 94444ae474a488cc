"""make_arch.py OUT.onnx [--classes N] [--seed S]: the untrained compact CNN of graft's
examples, as ONNX (opset 13), with seeded weights (He-normal for the convolutions and the
classifier, as graft-head initialises; BatchNormalization at scale 1, bias 0, mean 0,
variance 1).  graft-train does all the training; this script only writes the
architecture, because graft has no tool that invents networks from nothing.

    block1  Conv 1->16  3x3 pad 1, BatchNormalization, Relu, MaxPool 2   28x28 -> 14x14
    block2  Conv 16->32 3x3 pad 1, BatchNormalization, Relu, MaxPool 2   14x14 -> 7x7
    block3  Conv 32->64 3x3 pad 1, BatchNormalization, Relu              7x7
    block4  Conv 64->64 3x3 pad 1, BatchNormalization, Relu,
            GlobalAveragePool, Flatten                                  64
    head    Gemm 64->N (transB)

About 60,000 parameters and 3.7 M multiply-adds per 1x28x28 image: small enough that
every example trains in seconds on 2 cores, deep enough (four blocks, each a clean cut
for graft-slice --list-cuts) for "head only", "upper blocks" and "full" to differ.
Run it with /usr/bin/python3 (python3-onnx, python3-numpy)."""
import argparse
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(classes, seed):
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def tensor(name, array):
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def he(shape, fan_in):
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)

    x = "input"
    widths = [(1, 16, True), (16, 32, True), (32, 64, False), (64, 64, False)]
    for b, (cin, cout, pool) in enumerate(widths, start=1):
        p = f"block{b}"
        w = tensor(f"{p}.conv.weight", he((cout, cin, 3, 3), cin * 9))
        bias = tensor(f"{p}.conv.bias", np.zeros(cout))
        nodes.append(helper.make_node("Conv", [x, w, bias], [f"{p}.conv"], name=f"{p}.conv",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        bn = [tensor(f"{p}.bn.{k}", v) for k, v in (
            ("weight", np.ones(cout)), ("bias", np.zeros(cout)),
            ("running_mean", np.zeros(cout)), ("running_var", np.ones(cout)))]
        nodes.append(helper.make_node("BatchNormalization", [f"{p}.conv"] + bn, [f"{p}.bn"],
                                      name=f"{p}.bn", epsilon=1e-5, momentum=0.9))
        nodes.append(helper.make_node("Relu", [f"{p}.bn"], [f"{p}.relu"], name=f"{p}.relu"))
        x = f"{p}.relu"
        if pool:
            nodes.append(helper.make_node("MaxPool", [x], [f"{p}.pool"], name=f"{p}.pool",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            x = f"{p}.pool"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["block4.gap"], name="block4.gap"))
    nodes.append(helper.make_node("Flatten", ["block4.gap"], ["features"], name="flatten"))
    w = tensor("head.weight", he((classes, 64), 64))
    b = tensor("head.bias", np.zeros(classes))
    nodes.append(helper.make_node("Gemm", ["features", w, b], ["logits"], name="head", transB=1))
    graph = helper.make_graph(
        nodes, "compact_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="graft examples/pretrain/make_arch.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    onnx.save(build(a.classes, a.seed), a.out)


if __name__ == "__main__":
    main()
