#!/bin/bash
# slice.sh TOOLDIR FIXTUREDIR ORTDIR: graft-slice against onnx.utils.extract_model
# (python3-onnx) on the reference architectures: for each model, the part between two
# cuts (and from a cut to the output) is extracted by both; both extracts run in ONNX
# Runtime on the same seeded input and must agree within 1e-5 relative (the same graph,
# so they should be equal); onnx.checker(full_check) accepts graft's; --list-cuts gives
# block boundaries with shapes; errors are clear.
set -u
[ $# -eq 3 ] || { echo "usage: slice.sh TOOLDIR FIXTUREDIR ORTDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
ortdir=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
NODE=${NODE:-node}

"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
"$here/setup-ort.sh" "$ortdir" >/dev/null || { echo "no onnxruntime-node"; exit 1; }
export GRAFT_ORT_DIR=$ortdir

# same MODEL_A MODEL_B: both run in ORT on the same seeded inputs; outputs agree
same() {
	rm -rf oa ob
	$NODE "$here/ort_run.js" "$1" oa --seed 3 --batch 2 >/dev/null 2>&1 &&
	$NODE "$here/ort_run.js" "$2" ob --seed 3 --batch 2 >/dev/null 2>&1 &&
	$PY -c "
import numpy as np, glob, os, sys
a = sorted(glob.glob('oa/*.bin'))
ok = bool(a)
for f in a:
    g = 'ob/' + os.path.basename(f)
    x = np.fromfile(f, np.float32); y = np.fromfile(g, np.float32) if os.path.exists(g) else None
    ok &= y is not None and x.shape == y.shape and \\
          np.abs(x - y).max() <= 1e-5 * max(1e-30, np.abs(y).max())
sys.exit(0 if ok else 1)"
}

for name in resnet18 mobilenet_v2 squeezenet1_1 small_cnn; do
	m=$fixdir/plain/$name.onnx
	graft-slice "$m" --list-cuts --json > cuts.json || { bad "$name: --list-cuts"; continue; }
	read -r a b < <($PY -c "
import json
c = [x for x in json.load(open('cuts.json')) if x['block']]
print(c[1]['tensor'], c[len(c) * 2 // 3]['tensor'])")
	# from cut a to cut b, and from cut b to the end
	check "$name: slice $a..$b" sh -c "graft-slice '$m' --from '$a' --to '$b' | graft-export -o g1.onnx"
	check "$name: checker" $PY -c "import onnx; onnx.checker.check_model(onnx.load('g1.onnx'), full_check=True)"
	$PY -c "
import onnx.utils, sys
onnx.utils.extract_model(sys.argv[1], 'r1.onnx', [sys.argv[2]], [sys.argv[3]])" "$m" "$a" "$b"
	check "$name: equals extract_model in ONNX Runtime" same g1.onnx r1.onnx
	out=$($PY -c "import onnx; print(onnx.load('$m').graph.output[0].name)")
	check "$name: slice $b..output" sh -c "graft-slice '$m' --from -1 --to '$out' -o g2.graft && graft-export g2.graft -o g2.onnx"
	$PY -c "
import onnx, onnx.utils, sys, json
c = [x for x in json.load(open('cuts.json'))]
onnx.utils.extract_model(sys.argv[1], 'r2.onnx', [c[-1]['tensor']], [sys.argv[2]])" "$m" "$out"
	check "$name: the last cut to the output equals extract_model" same g2.onnx r2.onnx
	check "$name: fewer parameters after slicing" sh -c \
		"[ \$(stat -c %s g1.onnx) -lt \$(stat -c %s '$m') ]"
done
# resnet18's block boundaries: the stem's pool, the outputs of the first 7 residual
# blocks (the 8th is followed by pooling and Flatten, which add no parameters), Flatten.
check "block boundaries of resnet18 are the residual blocks" sh -c \
	"graft-slice $fixdir/plain/resnet18.onnx --list-cuts | grep '^ *[0-9]* \*' > blocks.txt &&
	 grep -c 'relu_1/Relu_output_0' blocks.txt | grep -qx 7 && grep -q MaxPool blocks.txt &&
	 tail -1 blocks.txt | grep -q Flatten"
expect_error "unknown tensor" "graft-slice: .*no tensor or cut 'nope'" \
	graft-slice "$fixdir/plain/small_cnn.onnx" --to nope
expect_error "unknown node" "graft-slice: .*no node named 'nope'" \
	graft-slice "$fixdir/plain/small_cnn.onnx" --cut-after nope
finish
