"""make_bert.py OUT.onnx [--vocab N] [--classes C] [--len T] [--hidden H] [--layers L]
[--heads A] [--seed S]: the untrained BERT-like encoder of graft's text example, as ONNX
(opset 17), with seeded weights (normal, std 0.02, as BERT initialises; LayerNorm at
scale 1, bias 0).  graft-train does all the training; this script only writes the
architecture, because graft has no tool that invents networks from nothing.

    inputs   input_ids, attention_mask, token_type_ids: int64 [N, T]
    embed    token (V x H) + position (T x H) + type (2 x H), LayerNormalization
    L x      self-attention (A heads; padding masked with -10000 before Softmax),
             output projection, residual, LayerNormalization;
             feed-forward H -> 4H, GELU (the Erf form), 4H -> H, residual,
             LayerNormalization (BERT's post-norm layers)
    head     the first token's ([CLS]) features, Gemm H -> C: logits [N, C]

Run it with /usr/bin/python3 (python3-onnx, python3-numpy)."""
import argparse
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(vocab, classes, length, hidden, layers, heads, seed):
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    dh = hidden // heads

    def tensor(name, array, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(array).astype(dtype), name))
        return name

    def normal(name, shape):
        return tensor(name, rng.standard_normal(shape) * 0.02)

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x, name, fan_in, fan_out):
        w = normal(name + ".weight", (fan_in, fan_out))
        b = tensor(name + ".bias", np.zeros(fan_out))
        return node("Add", [node("MatMul", [x, w], name + ".matmul"), b], name)

    def layer_norm(x, name):
        g = tensor(name + ".weight", np.ones(hidden))
        b = tensor(name + ".bias", np.zeros(hidden))
        return node("LayerNormalization", [x, g, b], name, axis=-1, epsilon=1e-12)

    # embeddings
    tok = node("Gather", [normal("embed.token", (vocab, hidden)), "input_ids"], "embed.tok")
    pos_ids = tensor("embed.position_ids", np.arange(length)[None, :], np.int64)
    pos = node("Gather", [normal("embed.position", (length, hidden)), pos_ids], "embed.pos")
    typ = node("Gather", [normal("embed.type", (2, hidden)), "token_type_ids"], "embed.typ")
    h = node("Add", [node("Add", [tok, pos], "embed.sum1"), typ], "embed.sum")
    h = layer_norm(h, "embed.norm")
    # the padding mask: (1 - mask) * -10000, [N, 1, 1, T]
    m = node("Cast", ["attention_mask"], "mask.float", to=TensorProto.FLOAT)
    m = node("Sub", [tensor("mask.one", np.float32(1)), m], "mask.inv")
    m = node("Mul", [m, tensor("mask.big", np.float32(-10000))], "mask.bias")
    m = node("Unsqueeze", [m, tensor("mask.axes", [1, 2], np.int64)], "mask.4d")
    heads_shape = tensor("attn.heads_shape", [0, length, heads, dh], np.int64)
    merge_shape = tensor("attn.merge_shape", [0, length, hidden], np.int64)
    scale = tensor("attn.scale", np.float32(1 / np.sqrt(dh)))
    for i in range(layers):
        p = f"layer{i}"

        def split(x, what):
            r = node("Reshape", [x, heads_shape], f"{p}.{what}.heads")
            return node("Transpose", [r], f"{p}.{what}.t", perm=[0, 2, 1, 3])
        q = split(linear(h, f"{p}.query", hidden, hidden), "q")
        k = split(linear(h, f"{p}.key", hidden, hidden), "k")
        v = split(linear(h, f"{p}.value", hidden, hidden), "v")
        kt = node("Transpose", [k], f"{p}.k.tt", perm=[0, 1, 3, 2])
        s = node("Mul", [node("MatMul", [q, kt], f"{p}.scores.raw"), scale], f"{p}.scores")
        s = node("Add", [s, m], f"{p}.scores.masked")
        a = node("Softmax", [s], f"{p}.probs", axis=-1)
        c = node("MatMul", [a, v], f"{p}.context.heads")
        c = node("Transpose", [c], f"{p}.context.t", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, merge_shape], f"{p}.context")
        o = linear(c, f"{p}.attn_out", hidden, hidden)
        h = layer_norm(node("Add", [o, h], f"{p}.attn.res"), f"{p}.attn.norm")
        f = linear(h, f"{p}.ff1", hidden, 4 * hidden)
        # GELU: 0.5 x (1 + erf(x / sqrt(2)))
        e = node("Erf", [node("Div", [f, tensor(f"{p}.sqrt2", np.float32(np.sqrt(2)))],
                              f"{p}.gelu.div")], f"{p}.gelu.erf")
        e = node("Add", [e, tensor(f"{p}.gelu.one", np.float32(1))], f"{p}.gelu.add")
        f = node("Mul", [node("Mul", [f, e], f"{p}.gelu.mul"),
                         tensor(f"{p}.gelu.half", np.float32(0.5))], f"{p}.gelu")
        f = linear(f, f"{p}.ff2", 4 * hidden, hidden)
        h = layer_norm(node("Add", [f, h], f"{p}.ff.res"), f"{p}.ff.norm")
    cls = node("Gather", [h, tensor("head.token", np.int64(0), np.int64)], "cls", axis=1)
    w = normal("head.weight", (classes, hidden))
    b = tensor("head.bias", np.zeros(classes))
    node("Gemm", [cls, w, b], "logits", transB=1)
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", length])
            for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = helper.make_graph(nodes, "tiny_bert", ints,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="graft examples/text/make_bert.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--len", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    onnx.save(build(a.vocab, a.classes, a.len, a.hidden, a.layers, a.heads, a.seed), a.out)


if __name__ == "__main__":
    main()
