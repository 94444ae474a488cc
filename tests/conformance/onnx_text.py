#!/usr/bin/python3
"""ONNX's textual syntax: graft reads what onnx.parser reads, into the same model.

For every text below, `graft-export TEXT` must write the bytes of
onnx.parser.parse_model(TEXT).SerializeToString() (ONNX 1.12's reference parser; graft's
import and export are lossless, so any difference is the parser's).  The texts cover
every production of onnx/defs/parser.cc.  Then bad texts: each is refused with exit 1 and
one line naming the file, the line and the column.

usage: onnx_text.py TOOLS_DIR
"""
import os
import subprocess
import sys
import tempfile

import onnx
import onnx.parser

TOOLS = sys.argv[1]

GOOD = {
    "glue": """
<ir_version: 8, opset_import: ["" : 13]>
scale (float[N,1,T,32] mel) => (float[N,1,T,32] out) {
    ten = Constant <value = float {10.0}> ()
    two = Constant <value = float {2.0}> ()
    tenth = Div (mel, ten)
    out = Add (tenth, two)
}
""",
    "header": """
# every field of a model's header
<
  ir_version: 7,
  opset_import: ["" : 13, "ai.onnx.ml" : 2, "com.example" : 1],
  producer_name: "graft test",
  producer_version: "1.0",
  domain: "org.example",
  model_version: 42,
  doc_string: "a model written by hand",
  metadata_props: ["author" : "me", "licence" : "Apache-2.0"]
>
g (float[2] x) => (float[2] y) {
  y = Identity(x)
}
""",
    "types": """
<ir_version: 8, opset_import: ["" : 15]>
types (float[] any_rank, float scalar, double[?, 3, batch] mixed, int64[1] one,
       uint8[3] u8, int8[3] i8, uint16[1] u16,
       int16[1] i16, int32[1] i32, bool[2] b, float16[1] h, bfloat16[1] bf,
       uint32[1] u32, uint64[1] u64, complex64[1] c64, complex128[1] c128,
       string[1] str)
   => (float[] any_out) {
  any_out = Identity(any_rank)
}
""",
    "initializers": """
<ir_version: 8, opset_import: ["" : 13]>
inits (float[2,3] x, float[3,2] w = {1, 2, 3, 4.5, -5, 6e-1}, int64[2] shape = {3, -2})
   => (float[2,2] y)
   <float[2] bias = {0.5, -0.25}, int32[3] i32 = {1, -2, 3}, uint8[2] u8 = {0, 255},
    bool[2] flags = {1, 0}, double[2] d = {1.5, -2e10}, uint64[2] big = {0, 18446744073709551615},
    string[2] words = {"hello", "world"}, int8[1] i8 = {-128}, float[0] empty = {},
    float scalar = {3.25}, float[2,2] hidden, int64[?] maybe>
{
  xw = MatMul(x, w)
  y = Add(xw, bias)
}
""",
    "attributes": """
<ir_version: 8, opset_import: ["" : 13, "com.microsoft" : 1]>
attrs (float[1,3,8,8] x) => (float[1,4,8,8] y, float[1,4,8,8] z) <float[4,3,3,3] w> {
  y = Conv <kernel_shape = [3, 3], pads = [1, 1, 1, 1], strides = [1, 1], group = 1> (x, w)
  a = LeakyRelu <alpha = 0.125> (y)
  b = Gelu <approximate = "tanh"> (a)
  c = com.microsoft.FusedGemm <activation = "Relu", alphas = [1.0, 2.5e-1], names = ["p", "q"]> (b)
  d = Cast (c) <to = 1>
  e = Constant <value = float[2] weights {1.0, 2.0}> ()
  f = Constant <value_float: float = 1.5> ()
  z = Identity(d)
}
""",
    "optional_io": """
<ir_version: 8, opset_import: ["" : 13]>
opt (float[3] x) => (float[3] y, float[3] mask) {
  y, mask = Dropout(x, , )
}
""",
    "subgraph": """
<ir_version: 8, opset_import: ["" : 13]>
branches (bool c, float[2] x) => (float[2] y) {
  y = If (c) <
    then_branch = then_g () => (float[2] t) { t = Identity(x) },
    else_branch = else_g () => (float[2] e) { e = Neg(x) }
  >
}
""",
    "functions": """
<ir_version: 8, opset_import: ["" : 13, "local" : 1]>
uses (float[4] x) => (float[4] y) {
  y = local.Square <scale = 2.0> (x)
}
<opset_import: ["" : 13], domain: "local", doc_string: "x * x * scale">
Square <scale> (a) => (b) {
  sq = Mul(a, a)
  s = Constant <value_float = @scale> ()
  b = Mul(sq, s)
}
<domain: "local">
Nothing () => () { }
""",
    "comments_and_space": """
# a comment before anything
<ir_version:8,opset_import:["":13]>   # after the header
spaced(float[2]x)=>(float[2]y){y=Relu(x)   # a node
      # a line of comment
}
""",
    "names": """
<ir_version: 8, opset_import: ["" : 13]>
_underscore_graph (float[1] _a1, float[1] B_2) => (float[1] out_3) {
  out_3 = Add(_a1, B_2)
}
""",
}

# text, what the message must say
BAD = {
    "unclosed": ("g (float[2] x) => (float[2] y) {\n  y = Relu(x)\n", "line 3"),
    "no_arrow": ("g (float[2] x) = (float[2] y) { y = Relu(x) }", "expected '>'"),
    "bad_type": ("g (float[2] x) => (tensor[2] y) { y = Relu(x) }", "line 1, column"),
    "bad_keyword": ("<ir_versions: 8> g () => () { }", "model field"),
    "bad_dim": ("g (float[2,-] x) => () { }", "line 1"),
    "unterminated_string": ("<producer_name: \"oops> g () => () { }", "closing"),
    "int_overflow": ("<ir_version: 99999999999999999999> g () => () { }", "out of range"),
    "float_in_int_tensor": ("g () => () <int64[1] t = {1.5}> { }", "integer"),
    "value_without_shape": ("g () => () <float[] t = {1}> { }", "shape"),
    "fp16_values": ("g () => () <float16[1] t = {1}> { }", "cannot be written"),
    "graph_list": ("g () => () { y = If <b = [g1 () => () { }]> () }", "lists of tensors"),
    "no_header": ("plain (float x) => (float y) { y = Neg(x) }", "ir_version"),
    "truncated_header": ("<ir_version: 8", "line 1"),
}


def run(args, **kw):
    return subprocess.run(args, capture_output=True, **kw)


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in GOOD.items():
            path = os.path.join(tmp, name + ".txt")
            out = os.path.join(tmp, name + ".onnx")
            with open(path, "w") as f:
                f.write(text)
            ref = onnx.parser.parse_model(text).SerializeToString()
            r = run([os.path.join(TOOLS, "graft-export"), path, "-o", out])
            if r.returncode != 0:
                print(f"FAIL {name}: graft-export exit {r.returncode}: {r.stderr.decode()}")
                failures += 1
                continue
            got = open(out, "rb").read()
            if got != ref:
                same = onnx.load_from_string(got) == onnx.load_from_string(ref)
                print(f"FAIL {name}: {len(got)} bytes, onnx.parser {len(ref)}"
                      f" (messages {'equal' if same else 'differ'})")
                failures += 1
                continue
            # through a pipe too: the format is found from the first bytes
            r = run([os.path.join(TOOLS, "graft-export"), "-"], input=text.encode())
            if r.returncode != 0 or r.stdout != ref:
                print(f"FAIL {name}: differs when read from stdin")
                failures += 1
                continue
            print(f"ok   {name}: {len(ref)} bytes equal to onnx.parser's")
        for name, (text, says) in BAD.items():
            path = os.path.join(tmp, name + ".txt")
            with open(path, "w") as f:
                f.write(text)
            r = run([os.path.join(TOOLS, "graft-info"), path])
            err = r.stderr.decode()
            lines = err.strip().split("\n")
            if (r.returncode != 1 or len(lines) != 1 or path not in err
                    or "ONNX text" not in err or says not in err):
                print(f"FAIL bad {name}: exit {r.returncode}, stderr {err!r}"
                      f" (wanted one line with {says!r})")
                failures += 1
                continue
            print(f"ok   bad {name}: {lines[0]}")
    print(f"{len(GOOD)} texts, {len(BAD)} bad texts, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
