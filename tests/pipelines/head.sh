#!/bin/bash
# head.sh: graft-head on the reference models small_cnn and resnet18 (and PaddleOCR's
# ppocr_cls when the npm fixtures are there): the exported ONNX passes onnx.checker's
# full check and strict shape inference, declares [batch, 5], keeps no dead node or
# unread initializer, runs in ONNX Runtime as graft-run runs it; the same seed writes the
# same bytes, another seed other weights, never zeros; --at and --hidden/--dropout; errors.
# Env: FIXTURES (default TOOLS/../fixtures, made by tests/fixtures/ensure_reference_models.sh
# on first use), GRAFT_ORT_DIR (default TOOLS/../ort, made by tests/conformance/setup-ort.sh).
tests=$(cd "$(dirname "$0")/.." && pwd)
. "$tests/pipelines/lib.sh"

FIXTURES=${FIXTURES:-$TOOLS/../fixtures}
export GRAFT_ORT_DIR=${GRAFT_ORT_DIR:-$TOOLS/../ort}
if ! "$tests/fixtures/ensure_reference_models.sh" "$FIXTURES" >fixtures.log 2>&1; then
	bad "reference models: $(tail -n1 fixtures.log)"; finish; exit 1
fi
if ! "$tests/conformance/setup-ort.sh" "$GRAFT_ORT_DIR" >ort.log 2>&1; then
	bad "onnxruntime-node: $(tail -n1 ort.log)"; finish; exit 1
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

cat >check.py <<'PY'
import sys
import numpy as np, onnx
from onnx import numpy_helper as nh

def head_weights(g):
    return {i.name: nh.to_array(i) for i in g.initializer
            if i.name.startswith("head.") and i.name.endswith(".weight")}

cmd = sys.argv[1]
if cmd == "model":          # model FILE CLASSES OP,OP,...: what the graph must end with
    path, classes, ops = sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    g = m.graph
    assert len(g.output) == 1, "outputs: %d" % len(g.output)
    dims = g.output[0].type.tensor_type.shape.dim
    assert len(dims) == 2 and dims[0].dim_param and dims[1].dim_value == classes, dims
    tail = [n.op_type for n in g.node[-len(ops):]]
    assert tail == ops, "graph ends with %s" % tail
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    assert all(i.name in read for i in g.initializer), "an initializer nobody reads"
    assert all(set(n.output) & read for n in g.node), "a node nobody reads"
    ws = head_weights(g)
    assert ws and all(np.count_nonzero(w) == w.size for w in ws.values()), "zero weights"
elif cmd == "differ":       # differ A B: other head weights, the same everything else
    a, b = (onnx.load(p).graph for p in sys.argv[2:4])
    wa, wb = head_weights(a), head_weights(b)
    assert wa.keys() == wb.keys() and all(not np.array_equal(wa[k], wb[k]) for k in wa)
    rest = lambda g: {i.name: nh.to_array(i).tobytes() for i in g.initializer
                      if not i.name.startswith("head.")}
    assert rest(a) == rest(b)
elif cmd == "close":        # close GRAFT.npy ORT.bin: graft-run computes what ORT does
    got = np.load(sys.argv[2])
    want = np.fromfile(sys.argv[3], dtype="<f4").reshape(got.shape)
    assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1e-6)
PY
py() { PYTHONDONTWRITEBYTECODE=1 $PY check.py "$@"; }

# ort NAME.onnx OUTPUT [ort_run.js args]: ONNX Runtime gives OUTPUT as float [2,5]
ort() {
	local m=$1 out=$2; shift 2
	node "$tests/conformance/ort_run.js" "$m" "${m%.onnx}.ort" --batch 2 "$@" 2>&1 |
		grep -qx "$out float32 \[2,5\] $out.bin"
}
# same_as_ort NAME INPUT OUTPUT: graft-run NAME.graft on ORT's inputs gives ORT's output
same_as_ort() {
	graft-run "$1.graft" -i "$2=$1.ort/inputs/$2.npy" -o "$1.run" >/dev/null &&
		py close "$1.run/$3.npy" "$1.ort/$3.bin"
}

for name in small_cnn resnet18; do
	m=$FIXTURES/plain/$name.onnx
	graft-head "$m" --classes 5 --seed 3 >$name.graft 2>/dev/null
	check "$name: same seed, same bytes" \
		sh -c "graft-head $m --classes 5 --seed 3 2>/dev/null | cmp -s - $name.graft"
	check "$name: export" graft-export $name.graft -o $name.onnx
	check "$name: checker, [batch,5], nothing dead, no zero weights" py model $name.onnx 5 Gemm
	check "$name: ONNX Runtime runs it" ort $name.onnx logits
	check "$name: graft-run agrees with ONNX Runtime" same_as_ort $name input logits
	check "$name: another seed, other weights" sh -c "graft-head $m --classes 5 --seed 4 \
		2>/dev/null | graft-export -o $name-4.onnx &&
		$PY check.py differ $name.onnx $name-4.onnx"
done

r18=$FIXTURES/plain/resnet18.onnx
graft-head "$r18" --classes 5 --at /layer3/layer3.1/relu_1/Relu_output_0 -o cut.graft 2>cut.log
check "--at: layer3's 256 channels, layer4 gone" sh -c "grep -q '(256 features)' cut.log &&
	graft-export cut.graft -o cut.onnx && ! graft-info --nodes cut.graft | grep -q layer4"
check "--at: GlobalAveragePool, Flatten, Gemm to [batch,5]" \
	py model cut.onnx 5 GlobalAveragePool,Flatten,Gemm
check "--at: ONNX Runtime runs it" ort cut.onnx logits
check "--at: graft-run agrees with ONNX Runtime" same_as_ort cut input logits

graft-head "$r18" --classes 5 --hidden 64 --dropout 0.2 -o hid.graft 2>/dev/null
check "--hidden --dropout: graft-run runs it" \
	sh -c "graft-run hid.graft | grep -q '^logits float \[1,5\]'"
check "--hidden --dropout: export" graft-export hid.graft -o hid.onnx
check "--hidden --dropout: Gemm, Relu, Dropout, Gemm" py model hid.onnx 5 Gemm,Relu,Dropout,Gemm
check "--hidden --dropout: ONNX Runtime runs it" ort hid.onnx logits
cnn=$FIXTURES/plain/small_cnn.onnx
check "--hidden: only the head trains after --all" sh -c "graft-freeze $cnn --all 2>/dev/null |
	graft-head --classes 3 --hidden 8 --init xavier 2>/dev/null | graft-info - |
	grep -q 'trainable 4 (1059 values)'"
$PY -c "
import numpy as np
r = np.random.default_rng(0)
y = r.integers(0, 3, 256); x = r.normal(size=(256, 1, 28, 28)) * 0.1
for c in range(3): x[y == c, 0, 9 * c:9 * c + 9] += 1
np.save('x.npy', x.astype(np.float32)); np.save('y.npy', y)"
graft-data npy x.npy y.npy -o three.graft 2>/dev/null
check "--hidden --dropout: the head alone learns 3 stripe classes" sh -c "graft-freeze $cnn --all \
	2>/dev/null | graft-head --classes 3 --hidden 16 --dropout 0.2 2>/dev/null |
	graft-train --data three.graft --steps 40 --optimizer adam --lr 0.01 -o trained.graft 2>&1 |
	tail -n1 | grep -E 'acc (9[0-9]|100)\.'"

ocr=$FIXTURES/npm/ppocr_cls.onnx
if [ -e "$ocr" ]; then  # its classifier: Constant weights, MatMul, Add, Softmax
	graft-head "$ocr" --classes 5 -o ocr.graft 2>/dev/null
	check "ppocr_cls: MatMul and Add replaced" sh -c "graft-export ocr.graft -o ocr.onnx &&
		$PY check.py model ocr.onnx 5 MatMul,Add,Softmax"
	check "ppocr_cls: ONNX Runtime runs it" ort ocr.onnx softmax_0.tmp_0 \
		--dim p2o.DynamicDimension.1=48 --dim p2o.DynamicDimension.2=192
else
	echo "note: $ocr missing (npm fixtures not fetched): ppocr_cls not tested"
fi

expect_error "--classes 0" "^graft-head: --classes must be at least 1, not 0$" \
	graft-head "$cnn" --classes 0 -o bad.graft
expect_error "unknown --at value" "^graft-head: .*small_cnn.onnx: no value named 'nope' in the" \
	graft-head "$cnn" --classes 5 --at nope -o bad.graft
check "no output after the errors" test ! -e bad.graft

# SqueezeNet's classifier: a 1x1 Conv to the classes, Relu, global pooling, Flatten
sq=$FIXTURES/plain/squeezenet1_1.onnx
graft-head "$sq" --classes 5 --seed 3 -o squeezenet.graft 2>sq.log
check "squeezenet: its 1x1 Conv (512 -> 1000) replaced" grep -q "Conv' (512 -> 1000) replaced by head.0 (512 -> 5)" sq.log
check "squeezenet: export" graft-export squeezenet.graft -o squeezenet.onnx
check "squeezenet: checker, [batch,5], nothing dead, no zero weights" \
	py model squeezenet.onnx 5 Conv,Relu,GlobalAveragePool,Flatten
check "squeezenet: ONNX Runtime runs it" ort squeezenet.onnx logits
check "squeezenet: graft-run agrees with ONNX Runtime" same_as_ort squeezenet input logits

# An encoder's hidden states (N, T, H): the head reads the first token ([CLS])
$PY - <<'PYEOF'
import numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper as nh
rng = np.random.default_rng(0)
x = helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 6, 8])
h = helper.make_tensor_value_info('hidden', TensorProto.FLOAT, ['batch', 6, 8])
w = nh.from_array(rng.standard_normal((8, 8)).astype(np.float32), 'w')
g = helper.make_graph([helper.make_node('MatMul', ['input', 'w'], ['mm']),
                       helper.make_node('Tanh', ['mm'], ['hidden'])], 'enc', [x], [h], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), 'enc.onnx')
PYEOF
expect_error "an encoder: no classifier, the hint" "^graft-head: enc.onnx: no final classifier: .* \(an encoder's hidden states: --at them\)" \
	graft-head enc.onnx --classes 5 -o bad.graft
graft-head enc.onnx --classes 5 --at hidden -o enc5.graft 2>enc.log
check "--at an encoder's hidden states: the first token, a new output logits" \
	grep -q "cut at 'hidden' (8 features, the first token's): head.0, 5 classes as 'logits'" enc.log
check "  export" graft-export enc5.graft -o enc5.onnx
check "  checker, [batch,5]" py model enc5.onnx 5 Gather,Gemm
check "  ONNX Runtime runs it" ort enc5.onnx logits
check "  graft-run agrees with ONNX Runtime" same_as_ort enc5 input logits
finish
