#!/bin/bash
# long_chain.sh: a model of 100,001 nodes and 100,002 parameter tensors (x + w0 + ... +
# w99999, then a Gemm) through every tool, then 80,000 nodes of Conv blocks through
# graft-export's --fold-bn and --strip.  Each must finish within 120 s of CPU time (a
# second or so here, a few under AddressSanitizer): a pass over the graph that scans the
# graph or the tensors per node or per tensor is quadratic, and such passes made
# graft-run, graft-slice, graft-freeze, graft-plan --rule --apply, graft-train and graft-export
# --strip take from minutes to hours on this model.  The limit is on the tool's own CPU
# time (ulimit -t, one thread), not on the clock, so that a loaded machine cannot fail it.
. "$(dirname "$0")/lib.sh"

N=100000
$PY - "$N" <<'PY'
import sys
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
n = int(sys.argv[1])
nodes, inits, prev = [], [], "x"
for i in range(n):
    inits.append(numpy_helper.from_array(np.full([4], 0.001, np.float32), f"w{i}"))
    nodes.append(helper.make_node("Add", [prev, f"w{i}"], [f"h{i}"], name=f"add{i}"))
    prev = f"h{i}"
inits += [numpy_helper.from_array(np.eye(4, dtype=np.float32), "fc.W"),
          numpy_helper.from_array(np.zeros(4, np.float32), "fc.b")]
nodes.append(helper.make_node("Gemm", [prev, "fc.W", "fc.b"], ["y"], name="fc"))
g = helper.make_graph(nodes, "chain",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "chain.onnx")
x = np.random.RandomState(0).rand(16, 4).astype(np.float32)
np.save("x.npy", x)
np.save("y.npy", x.argmax(1).astype(np.int64))
PY

# quick WHAT COMMAND...: the command succeeds within 120 s of its own CPU time (SIGXCPU
# ends it past that: exit 152)
quick() {
	local what=$1; shift
	( ulimit -t 120; OMP_NUM_THREADS=1 exec "$@" ) >quick.out 2>quick.err
	local rc=$?
	if [ $rc -eq 0 ]; then ok; return 0; fi
	[ $rc -eq 152 ] && bad "$what: still running after 120 s of CPU time" ||
		bad "$what: exit $rc: $(head -c 300 quick.err)"
	return 1
}
quick "import" graft-import chain.onnx -o chain.graft
quick "info" graft-info chain.graft
check "info counts the nodes" grep -q "nodes:      100001 (Add 100000, Gemm 1)" quick.out
check "and the parameters" grep -q "parameters: 100002 tensors" quick.out

mkdir -p run
quick "run" graft-run chain.graft -i x.npy -o run
check "run adds the 100,000 weights one by one, in float" $PY -c "
import numpy as np
x, y = np.load('x.npy'), np.load('run/y.npy')
w = np.float32(0.001)
for i in range($N):
    x = x + w
assert np.allclose(y, x, rtol=0, atol=1e-5), abs(y - x).max()"

quick "list-cuts" graft-slice chain.graft --list-cuts
check "every Add's output is a cut" test "$(grep -c ' h[0-9]' quick.out)" -eq $N
quick "slice" graft-slice chain.graft --from h20000 --to h50000 -o s.graft
quick "info of the slice" graft-info s.graft
check "the slice holds add20001 .. add50000" grep -q "nodes:      30000 (Add 30000)" quick.out

quick "freeze" graft-freeze chain.graft --last-blocks 100 -o f.graft
check "freeze keeps the last 100 blocks trainable (and the head)" \
	grep -q "101 of 100002 parameter tensors trainable" quick.err
check "a dataset of 16 samples" graft-data npy x.npy y.npy -o d.graft 2>/dev/null
quick "plan --rule --apply" graft-plan chain.graft --data d.graft --rule --apply -o p.graft

quick "head" graft-head chain.graft --classes 5 -o h.graft
check "head replaces the Gemm" grep -q "'fc' (4 -> 4) replaced by head.0 (4 -> 5)" quick.err
quick "train" graft-train f.graft --data d.graft --epochs 1 --momentum 0.9 \
	--checkpoint ck.graft -o t.graft
quick "train, resumed from its checkpoint" graft-train f.graft --data d.graft --epochs 2 \
	--momentum 0.9 --resume ck.graft -o t2.graft
quick "eval" graft-eval t2.graft --data d.graft
quick "export --strip" graft-export t2.graft --strip -o t.onnx
check "the stripped export holds no optimizer state" $PY -c "
import onnx
m = onnx.load('t.onnx')
assert len(m.graph.node) == $N + 1, len(m.graph.node)
assert not [t for t in m.graph.initializer if t.name.startswith('graft.')]
assert not [p for p in m.metadata_props if p.key.startswith('graft.')]"

# 20,000 blocks of Conv, BatchNormalization, Relu, Dropout: export --fold-bn folds every
# BN and --strip drops every Dropout (each asked the graph who reads and who computes a
# value per node: over two minutes, and 42 s), and the result computes the same.
M=20000
$PY - "$M" <<'PY'
import sys
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
n = int(sys.argv[1])
rng = np.random.RandomState(0)
nodes, inits, prev = [], [], "x"
x = rng.rand(3, 2, 2, 2).astype(np.float32)
np.save("xb.npy", x)
y = x.astype(np.float64)        # the reference, in double
f32 = lambda a: np.asarray(a, np.float32)
for i in range(n):
    # a gain of about 1 per block (in a random walk), so that values stay near 1
    w = f32(np.eye(2) + 0.001 * rng.randn(2, 2))
    v = f32(1 + 0.1 * rng.rand(2))
    sc = f32(np.sqrt(v + 1e-5) * (1 + 0.001 * rng.randn(2)))
    b, mu = f32(0.001 * rng.rand(2)), f32(0.001 * rng.rand(2))
    inits += [numpy_helper.from_array(w.reshape(2, 2, 1, 1), f"c{i}.W"),
              numpy_helper.from_array(sc, f"bn{i}.s"), numpy_helper.from_array(b, f"bn{i}.b"),
              numpy_helper.from_array(mu, f"bn{i}.m"), numpy_helper.from_array(v, f"bn{i}.v")]
    y = np.einsum("oc,nchw->nohw", w, y)
    y = np.maximum((y - mu[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) *
                   sc[:, None, None] + b[:, None, None], 0)
    nodes += [helper.make_node("Conv", [prev, f"c{i}.W"], [f"c{i}"]),
              helper.make_node("BatchNormalization",
                               [f"c{i}", f"bn{i}.s", f"bn{i}.b", f"bn{i}.m", f"bn{i}.v"], [f"b{i}"]),
              helper.make_node("Relu", [f"b{i}"], [f"r{i}"]),
              helper.make_node("Dropout", [f"r{i}"], [f"d{i}"])]
    prev = f"d{i}"
nodes.append(helper.make_node("Flatten", [prev], ["y"]))
g = helper.make_graph(nodes, "blocks",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2, 2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "blocks.onnx")
np.save("yb.npy", y.reshape(3, 8))
print("blocks: reference output from %.3g to %.3g" % (y.min(), y.max()), file=sys.stderr)
PY
quick "import of the blocks" graft-import blocks.onnx -o blocks.graft
quick "export --fold-bn --strip" graft-export blocks.graft --fold-bn --strip -o folded.onnx
check "every BN folded" grep -q "folded $M BatchNormalization nodes" quick.err
mkdir -p ra rb
quick "run of the blocks" graft-run blocks.onnx -i xb.npy -o ra
quick "run of the folded blocks" graft-run folded.onnx -i xb.npy -o rb
check "folded and stripped: Conv and Relu left, computing what numpy does" $PY -c "
import collections
import numpy as np
import onnx
m = onnx.load('folded.onnx')
ops = collections.Counter(n.op_type for n in m.graph.node)
assert ops == {'Conv': $M, 'Relu': $M, 'Flatten': 1}, ops
assert len(m.graph.initializer) == 2 * $M, len(m.graph.initializer)
ref, a, b = np.load('yb.npy'), np.load('ra/y.npy'), np.load('rb/y.npy')
assert np.allclose(a, ref, rtol=1e-2, atol=1e-3), abs(a - ref).max()
assert np.allclose(b, ref, rtol=1e-2, atol=1e-3), abs(b - ref).max()"
finish
