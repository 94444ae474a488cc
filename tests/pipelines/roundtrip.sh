#!/bin/bash
# roundtrip.sh: the real tools through pipes and files: ONNX -> .graft -> ONNX is exact,
# every tool takes either format, history accumulates, external data both ways.
. "$(dirname "$0")/lib.sh"

models="$DATA/pytorch-converted/test_ConvTranspose2d/model.onnx
$DATA/pytorch-converted/test_BatchNorm2d_momentum_eval/model.onnx
$DATA/node/test_if/model.onnx
$DATA/node/test_loop11/model.onnx
$DATA/node/test_cast_FLOAT_to_FLOAT16/model.onnx
$DATA/simple/test_gradient_of_add_and_mul/model.onnx"

for m in $models; do
	n=$(basename "$(dirname "$m")")
	check "$n: pipe round trip is byte-identical" \
		sh -c "graft-import '$m' | graft-export | cmp -s - '$m'"
	check "$n: file round trip is byte-identical" \
		sh -c "graft-import '$m' -o $n.graft && graft-export $n.graft -o $n.onnx && cmp -s $n.onnx '$m'"
	check "$n: zstd round trip is byte-identical" \
		sh -c "graft-import --zstd '$m' | graft-export - | cmp -s - '$m'"
	check "$n: graft-export takes ONNX too" sh -c "graft-export '$m' | cmp -s - '$m'"
	check "$n: no temporary files left" test -z "$(ls | grep tmp)"
done

m=$DATA/pytorch-converted/test_BatchNorm2d_momentum_eval/model.onnx
graft-import "$m" | graft-import - -o twice.graft
check "re-import records both runs" sh -c "graft-info twice.graft | grep -A2 '^history:' | grep -c graft-import | grep -qx 2"
check "history is the command line as typed" sh -c "graft-info twice.graft | grep -qx '  graft-import - -o twice.graft'"
check "graft-info reads ONNX" sh -c "graft-info '$m' | grep -q '^format: *ONNX'"
check "graft-info shows roles" sh -c "graft-info twice.graft | grep -q '^buffers: *2 tensors'"
check "graft-info --json is JSON with the documented keys" sh -c "graft-info --json --nodes --tensors twice.graft | $PY -c '
import json, sys
d = json.load(sys.stdin)
for k in (\"format\", \"ir_version\", \"opsets\", \"inputs\", \"outputs\", \"node_count\", \"ops\",
          \"parameters\", \"buffers\", \"constants\", \"history\", \"nodes\", \"tensors\"):
    assert k in d, k
assert d[\"buffers\"][\"tensors\"] == 2 and d[\"parameters\"][\"trainable_tensors\"] == 2, d
assert len(d[\"history\"]) == 2
'"
check "the same model gives the same bytes" sh -c "graft-import '$m' > a.graft && graft-import '$m' > b.graft && cmp -s a.graft b.graft"

# External data: read (resolved against the model's folder), then written again.
mkdir -p ext
$PY - <<'PY'
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "W")
b = numpy_helper.from_array(np.ones(64, dtype=np.float32), "b")
g = helper.make_graph([helper.make_node("Gemm", ["x", "W", "b"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w, b])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
onnx.save(m, "ext/inline.onnx")
onnx.save(m, "ext/model.onnx", save_as_external_data=True, location="weights.bin",
          size_threshold=0)
PY
check "external data is loaded on import" sh -c "graft-import ext/model.onnx | graft-export > ext-back.onnx"
check "loaded model equals onnx.load of the original" $PY -c "
import onnx, sys
assert onnx.load('ext/model.onnx') == onnx.load('ext-back.onnx')
assert onnx.load('ext/inline.onnx').graph.initializer[0].raw_data == onnx.load('ext-back.onnx').graph.initializer[0].raw_data
"
mkdir -p out
check "export with --external-data" graft-export ext/model.onnx -o out/m.onnx --external-data m.data
check "external file written beside the model" test -s out/m.data
check "exported external model loads equal" $PY -c "
import onnx
a, b = onnx.load('ext/model.onnx'), onnx.load('out/m.onnx')
assert a == b, 'differs'
onnx.checker.check_model('out/m.onnx', full_check=True)
"
check "SIGPIPE ends a writer quietly" sh -c "graft-import '$m' 2>err.txt | head -c1 >/dev/null; test ! -s err.txt"
# Names with quotes, backslashes and control characters come out as valid JSON, the same
# way from every tool that writes JSON (graft-slice --list-cuts, graft-info).
cat > odd.py <<'EOF'
import json, sys, onnx
from onnx import helper, TensorProto
odd = 'a"b\\c\x01d'
if sys.argv[1] == 'make':
    g = helper.make_graph([helper.make_node('Relu', ['x'], [odd]),
                           helper.make_node('Relu', [odd], ['y'])], 'g',
                          [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), 'odd.onnx')
elif sys.argv[1] == 'cuts':
    assert any(c['tensor'] == odd for c in json.load(sys.stdin))
else:
    assert json.load(sys.stdin)['nodes'][0]['outputs'] == [odd]
EOF
$PY odd.py make
check "odd names: graft-slice --list-cuts --json is JSON with the name" sh -c \
	"graft-slice odd.onnx --list-cuts --json | $PY odd.py cuts"
check "odd names: graft-info --json --nodes is JSON with the name" sh -c \
	"graft-info odd.onnx --json --nodes | $PY odd.py info"
finish
