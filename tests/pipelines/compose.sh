#!/bin/bash
# compose.sh: graft-compose through pipes and files on a model and ONNX text glue: a
# chain of three (model, text, text) runs in graft-run to what the three run in turn give,
# bit for bit; stdin in any place; --io; the same inputs give the same bytes; errors.
tests=$(cd "$(dirname "$0")/.." && pwd)
. "$tests/pipelines/lib.sh"

CNN=$SRC/examples/pretrain/compact_cnn.onnx
cat >scale.txt <<'TXT'
<ir_version: 8, opset_import: ["" : 13]>
scale (float[N,5] logits) => (float[N,5] scaled) {
    ten = Constant <value = float {10.0}> ()
    scaled = Div (logits, ten)
}
TXT
cat >probs.txt <<'TXT'
<ir_version: 8, opset_import: ["" : 13]>
probs (float[N,5] z) => (float[N,5] p) {
    p = Softmax <axis = 1> (z)
}
TXT
$PY -c "
import numpy as np
np.save('x.npy', np.random.RandomState(0).rand(3, 1, 28, 28).astype(np.float32))"

check "three models joined" graft-compose "$CNN" scale.txt probs.txt -o whole.graft
check "the whole runs" graft-run whole.graft -i x.npy -o whole
graft-run "$CNN" -i x.npy -o s1 >/dev/null && graft-run scale.txt -i s1/logits.npy -o s2 >/dev/null &&
	graft-run probs.txt -i s2/scaled.npy -o s3 >/dev/null
check "the whole computes the three in turn, bit for bit" cmp whole/p.npy s3/p.npy
check "ONNX text reads through a pipe" sh -c "graft-compose '$CNN' - probs.txt <scale.txt >piped.graft"
check "and the model from a pipe" sh -c "graft-import '$CNN' | graft-compose - scale.txt probs.txt >piped2.graft"
graft-run piped.graft -i x.npy -o piped >/dev/null && graft-run piped2.graft -i x.npy -o piped2 >/dev/null
check "the same model each way" cmp piped/p.npy piped2/p.npy
check "as from files" cmp piped/p.npy whole/p.npy
check "--io names the link" graft-compose "$CNN" probs.txt --io logits=z -o io.graft
graft-info io.graft --json >io.json
check "the joined graph is the models' names joined" grep -q '"graph_name":"compact_cnn_probs"' io.json
check "the composite exports to ONNX" graft-export whole.graft -o whole.onnx

expect_error "an unknown output" "no output 'nope'" graft-compose "$CNN" probs.txt --io nope=z -o bad.graft
expect_error "a shape that does not fit" "is \[\?,5\], input 'z' takes \[\?,7\]" sh -c "sed 's/5\]/7]/g' probs.txt >p7.txt; graft-compose '$CNN' p7.txt -o bad.graft"
cat >clash.txt <<'TXT'
<ir_version: 8, opset_import: ["" : 13]>
clash (float[N,5] z) => (float[N,5] p) {
    logits = Neg (z)
    p = Abs (logits)
}
TXT
check "an inner name both have is renamed" graft-compose "$CNN" clash.txt -o renamed.graft
graft-info renamed.graft --nodes >renamed.txt
check "as GRAPH/name" grep -q "clash/logits" renamed.txt
graft-run renamed.graft -i x.npy -o rn >/dev/null
check "the renamed model computes |-logits|" $PY -c "
import numpy as np
assert np.array_equal(np.load('rn/p.npy'), np.abs(np.load('s1/logits.npy')))"
cat >outclash.txt <<'TXT'
<ir_version: 8, opset_import: ["" : 13]>
outclash (float[N,5] z) => (float[N,5] logits) {
    logits = Neg (z)
}
TXT
expect_error "an output named as a value of the first" "an output of the second" graft-compose "$CNN" outclash.txt -o bad.graft
check "no output left by a refusal" test ! -e bad.graft
finish
