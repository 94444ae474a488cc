#!/bin/bash
# export.sh TOOLDIR FIXTUREDIR ORTDIR: deployment export.  --fold-bn on the keep-bn
# reference models leaves no BatchNormalization, passes onnx.checker(full_check), and
# ONNX Runtime's outputs equal the unfolded model's within 1e-4 relative (and graft-run's
# on the folded model); also after fine-tuning (trained statistics, not fresh ones).
# --strip removes graft's metadata and Dropout nodes; training state never reaches ONNX.
set -u
[ $# -eq 3 ] || { echo "usage: export.sh TOOLDIR FIXTUREDIR ORTDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
ortdir=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
NODE=${NODE:-node}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
"$here/setup-ort.sh" "$ortdir" >/dev/null || { echo "no onnxruntime-node"; exit 1; }
export GRAFT_ORT_DIR=$ortdir

# close A B: ORT outputs of models A and B on the same seeded input, within 1e-4 relative
close() {
	rm -rf oa ob
	$NODE "$here/ort_run.js" "$1" oa --seed 5 --batch 2 >/dev/null 2>&1 &&
	$NODE "$here/ort_run.js" "$2" ob --seed 5 --batch 2 >/dev/null 2>&1 &&
	$PY -c "
import numpy as np, glob, os, sys
a = sorted(glob.glob('oa/*.bin')); ok = bool(a)
for f in a:
    x = np.fromfile(f, np.float32); y = np.fromfile('ob/' + os.path.basename(f), np.float32)
    r = np.abs(x - y).max() / max(1e-30, np.abs(x).max())
    print('   %s: max rel %.2e' % (os.path.basename(f), r)); ok &= r <= 1e-4
sys.exit(0 if ok else 1)"
}

no_bn() {
	$PY -c "
import onnx, sys
m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True)
sys.exit(1 if any(n.op_type == 'BatchNormalization' for n in m.graph.node) else 0)" "$1"
}

for name in small_cnn resnet18 mobilenet_v2 efficientnet_b0; do
	m=$fixdir/keepbn/$name.onnx
	check "$name: --fold-bn" sh -c "graft-export '$m' --fold-bn -o $name.fold.onnx 2>/dev/null"
	check "$name: no BatchNormalization left, full check passes" no_bn $name.fold.onnx
	check "$name: ONNX Runtime equals the unfolded model" close "$m" $name.fold.onnx
done

# After training: statistics that are not fresh, and training state to leave out.
$PY -c "
import numpy as np
r = np.random.default_rng(0)
np.save('x.npy', r.standard_normal((64, 1, 28, 28), dtype=np.float32))
np.save('y.npy', r.integers(0, 10, 64).astype(np.int64))"
graft-data npy x.npy y.npy -o d.graft 2>/dev/null
check "train small_cnn" graft-train "$fixdir/keepbn/small_cnn.onnx" --data d.graft --steps 8 \
	--batch 16 -q -o t.graft
check "export it plain and folded" sh -c \
	"graft-export t.graft -o t.onnx && graft-export t.graft --fold-bn --strip -o tf.onnx 2>/dev/null"
check "trained and folded: no BN, full check" no_bn tf.onnx
check "trained and folded: ONNX Runtime equals the unfolded model" close t.onnx tf.onnx
check "--strip leaves no graft metadata and no training state" $PY -c "
import onnx
m = onnx.load('tf.onnx')
assert not [p.key for p in m.metadata_props if p.key.startswith('graft.')]
assert not [t.name for t in m.graph.initializer if t.name.startswith('graft.')]
m = onnx.load('t.onnx')
assert [p.key for p in m.metadata_props if p.key.startswith('graft.')], 'plain export keeps it'
"
# --strip on a model with Dropout: a new head with a hidden layer and Dropout
check "a head with Dropout" sh -c "graft-head $fixdir/keepbn/small_cnn.onnx --classes 4 --hidden 32 \
	--dropout 0.3 2>/dev/null | graft-export -o hd.onnx"
check "it has a Dropout" $PY -c "
import onnx, sys
sys.exit(0 if any(n.op_type == 'Dropout' for n in onnx.load('hd.onnx').graph.node) else 1)"
check "--strip drops it" sh -c "graft-export hd.onnx --strip -o hs.onnx && $PY -c \"
import onnx, sys
m = onnx.load('hs.onnx'); onnx.checker.check_model(m, full_check=True)
sys.exit(1 if any(n.op_type == 'Dropout' for n in m.graph.node) else 0)\""
check "stripped equals the original in ONNX Runtime" close hd.onnx hs.onnx
check "--fold-bn with nothing to fold says 0" sh -c \
	"graft-export $fixdir/plain/small_cnn.onnx --fold-bn -o p.onnx 2>&1 >/dev/null | grep -q 'folded 0 BatchNormalization'"

# --fp16: resnet18 in float16 (inputs and outputs too, or float32 at the edges with
# --keep-io-types): the full checker passes, the file is half, and ONNX Runtime's outputs
# are the float32 model's within 1e-2 relative (ort_run.js rounds the float16 inputs)
# with the same top-1 on all 4 inputs; the pretrained compact CNN with --keep-io-types
# gives the float32 model's prediction on >= 99.5% of 1,000 Fashion-MNIST test images;
# Resize (whose scales must stay float32) is refused by name.
r18=$fixdir/plain/resnet18.onnx
check "--fp16 and --fp16 --keep-io-types" sh -c "graft-export $r18 --fp16 -o h.onnx && \
	graft-export $r18 --fp16 --keep-io-types -o hk.onnx && $PY -c \"
import onnx, os
for f in ('h.onnx', 'hk.onnx'):
    onnx.checker.check_model(onnx.load(f), full_check=True)
    assert os.path.getsize(f) < 0.51 * os.path.getsize('$r18')
i = onnx.load('h.onnx').graph.input[0].type.tensor_type.elem_type
k = onnx.load('hk.onnx').graph.input[0].type.tensor_type.elem_type
assert i == onnx.TensorProto.FLOAT16 and k == onnx.TensorProto.FLOAT\""
fp16_close() { # MODEL: ORT's outputs against the float32 resnet18's, 4 seeded inputs
	rm -rf o32 o16
	$NODE "$here/ort_run.js" "$r18" o32 --seed 7 --batch 4 >/dev/null 2>&1 &&
	$NODE "$here/ort_run.js" "$1" o16 --seed 7 --batch 4 >/dev/null 2>&1 &&
	$PY -c "
import numpy as np, glob, os
a = np.fromfile(glob.glob('o32/*.bin')[0], np.float32)
raw = open(glob.glob('o16/*.bin')[0], 'rb').read()
b = np.frombuffer(raw, np.float16 if len(raw) == a.size * 2 else np.float32).astype(np.float32)
r = np.abs(a - b).max() / np.abs(a).max()
t = (a.reshape(4, -1).argmax(1) == b.reshape(4, -1).argmax(1)).all()
print('   %s: max rel %.2e, top-1 the same: %s' % ('$1', r, t)); assert r <= 1e-2 and t"
}
check "float16 resnet18 in ONNX Runtime" fp16_close h.onnx
check "float16 resnet18, float32 edges, in ONNX Runtime" fp16_close hk.onnx
FM=/usr/share/datasets/fashion-mnist
graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz \
	--classes 0,1,2,3,4 --take 200 --seed 4 -o t5.graft 2>/dev/null
check "the compact CNN in float16 predicts as in float32" sh -c "
	graft-export $SRC/examples/pretrain/compact_cnn.onnx --fold-bn -o c32.onnx 2>/dev/null &&
	graft-export $SRC/examples/pretrain/compact_cnn.onnx --fold-bn --fp16 --keep-io-types \
		-o c16.onnx 2>/dev/null &&
	$NODE $SRC/examples/ort_accuracy.js c32.onnx t5.graft --ort-dir $ortdir > a32.json &&
	$NODE $SRC/examples/ort_accuracy.js c16.onnx t5.graft --ort-dir $ortdir > a16.json &&
	$PY -c \"
import json, numpy as np
a, b = (json.load(open(f)) for f in ('a32.json', 'a16.json'))
t = (np.array(a['predictions']) == np.array(b['predictions'])).mean()
print('   compact CNN: accuracy %.4f float32, %.4f float16; top-1 the same on %.4f' %
      (a['accuracy'], b['accuracy'], t)); assert t >= 0.995\""
$PY - <<'PYEOF'
import onnx
from onnx import helper, TensorProto
# x -> Relu -> x_fp16 -> Neg -> y: a value named as keep-io's Cast would name x's
g = helper.make_graph([helper.make_node('Relu', ['x'], ['x_fp16']),
                       helper.make_node('Neg', ['x_fp16'], ['y'])], 'g',
                      [helper.make_tensor_value_info('x', TensorProto.FLOAT, [2, 3])],
                      [helper.make_tensor_value_info('y', TensorProto.FLOAT, [2, 3])])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), 'clash.onnx')
PYEOF
check "--fp16 --keep-io-types: a name it would make is taken, another is" sh -c "
	graft-export clash.onnx --fp16 --keep-io-types -o clash16.onnx 2>/dev/null && $PY -c \"
import onnx
m = onnx.load('clash16.onnx'); onnx.checker.check_model(m, full_check=True)
outs = [o for n in m.graph.node for o in n.output]
assert len(outs) == len(set(outs)), outs
assert 'x_fp16_2' in outs, outs
\""
expect_error "--fp16 refuses Resize by name" "node '.*' \\(Resize\\): its inputs or attributes fix a float type" \
	graft-export $DATA/node/test_resize_upsample_scales_nearest/model.onnx --fp16 -o no.onnx
check "  and writes nothing" test ! -e no.onnx
finish
