#!/bin/bash
# run.sh: graft-run through files and pipes: ONNX test-suite inputs by position and by
# name, .npy outputs with sanitized names, .graft input, made-up inputs, clear errors.
. "$(dirname "$0")/lib.sh"

d=$DATA/node/test_conv_with_strides_padding
s=$d/test_data_set_0
check "runs on .pb inputs by position" graft-run $d/model.onnx -i $s/input_0.pb -i $s/input_1.pb -o out
check "writes y.npy equal to the expected output" $PY -c "
import numpy as np, onnx
from onnx import numpy_helper
t = onnx.TensorProto(); t.ParseFromString(open('$s/output_0.pb', 'rb').read())
assert np.allclose(np.load('out/y.npy'), numpy_helper.to_array(t), rtol=1e-5, atol=1e-6)
"
check "inputs by name, in any order, from a .graft on stdin" sh -c \
	"graft-import $d/model.onnx | graft-run - -i W=$s/input_1.pb -i x=$s/input_0.pb -o out2 && cmp out/y.npy out2/y.npy"
check "prints a summary without -o" sh -c "graft-run $d/model.onnx -i $s/input_0.pb -i $s/input_1.pb | grep -q '^y float \[1,1,4,3\] min'"
check "--repeat prints a median" sh -c "graft-run $d/model.onnx --repeat 3 | grep -q '^median .* ms per run'"
check "--list-ops lists Conv" sh -c "graft-run --list-ops | grep -qx Conv"
$PY -c "
import numpy as np
np.save('x.npy', np.ones((1, 1, 7, 5), np.float32))
np.save('bad.npy', np.ones((1, 1, 7, 6), np.float32))"
check ".npy inputs" graft-run $d/model.onnx -i x=x.npy -i W=$s/input_1.pb -o out3
expect_error "wrong input shape" "^graft-run: .*input 'x': dim 3 must be 5, not 6" \
	graft-run $d/model.onnx -i x=bad.npy -i W=$s/input_1.pb
expect_error "unknown input name" "^graft-run: .*has no input 'nope'" graft-run $d/model.onnx -i nope=x.npy
expect_error "unsupported op" "node '.*' \(op Det\) is not supported" \
	graft-run $DATA/node/test_det_2d/model.onnx
expect_error "not an input file" "^graft-run: .*not a TensorProto" \
	sh -c "echo hello > junk.pb; graft-run $d/model.onnx -i junk.pb"

# Inputs not given are made up from their declared shapes, which come from the file:
# shapes larger than the budget, or whose element count overflows, are refused before
# anything is allocated for them.
$PY -c "
import onnx
from onnx import helper, TensorProto
def model(name, dims):
    g = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, dims)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), name)
model('huge-input.onnx', ['N', 1 << 20, 1 << 20])
model('wrapping-input.onnx', [1 << 40, 1 << 40])
model('small-input.onnx', ['N', 3])
"
expect_error "a declared input over the budget" \
	"^graft-run: huge-input\.onnx: the inputs made up from the declared shapes need 4 TiB, over the --max-memory budget of 1 GiB: give them with -i$" \
	graft-run huge-input.onnx --max-memory 1G
expect_error "a declared input over the memory available" \
	"^graft-run: huge-input\.onnx: the inputs made up .* \(the memory available\): give them with -i$" \
	graft-run huge-input.onnx
expect_error "a declared input whose size overflows" \
	"^graft-run: wrapping-input\.onnx: input 'x' is declared with 1099511627776 in dim 1, more elements than can be made up: give it with -i$" \
	graft-run wrapping-input.onnx
check "a small declared input is made up (batch 2)" sh -c \
	"graft-run small-input.onnx --batch 2 | grep -q '^y float \[2,3\] min'"

# --profile: where the time went, per op type, on stderr; nothing there without it.
graft-run small-input.onnx --batch 2 --profile >/dev/null 2>prof.txt
check "--profile: a total line" grep -qE "^graft-run: profile: [0-9.]+ s in 1 nodes$" prof.txt
check "--profile: a line per op type" grep -qE "^  Relu +1 nodes +[0-9.]+ s +[0-9.]+%$" prof.txt
graft-run small-input.onnx --batch 2 >/dev/null 2>prof.txt
check "no --profile: stderr stays empty" test ! -s prof.txt
# --data: every sample of a dataset, a batch at a time, an output row per sample.
$PY -c "
import numpy as np
rng = np.random.default_rng(3)
np.save('dx.npy', rng.standard_normal((7, 1, 28, 28)).astype(np.float32))
np.save('dy.npy', np.array([0, 1, 2, 3, 4, 0, 1], np.int64))"
graft-data npy dx.npy dy.npy -o d.graft 2>/dev/null
CNN=$SRC/examples/pretrain/compact_cnn.onnx
check "--data runs a dataset" graft-run "$CNN" --data d.graft --batch 3 -o byrows
check "--data gives the rows of one run on them all" $PY -c "
import subprocess, numpy as np
subprocess.run(['graft-run', '$CNN', '-i', 'dx.npy', '-o', 'whole'], check=True)
a, b = np.load('byrows/logits.npy'), np.load('whole/logits.npy')
assert a.shape == (7, 5), a.shape
assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), np.abs(a - b).max()"
graft-run "$CNN" --data d.graft -i dx.npy >/dev/null 2>&1
check "--data with -i: a usage error" test $? -eq 2
expect_error "--data of another shape" "d.graft" graft-run small-input.onnx --data d.graft -o bad
cat >sum.txt <<'TXT'
<ir_version: 8, opset_import: ["" : 13]>
total (float[N,1,28,28] x) => (float s) {
    s = ReduceSum <keepdims = 0> (x)
}
TXT
expect_error "--data: an output with no row per sample" "no row per sample" \
	graft-run sum.txt --data d.graft -o bad
finish
