#!/bin/bash
# quantize.sh TOOLDIR FIXTUREDIR ORTDIR: graft-quantize against ONNX Runtime 1.30.
#   - the shipped pretrained compact CNN (examples/pretrain, Fashion-MNIST classes 0-4)
#     quantized on 300 training images: int8 accuracy on 1,000 test images within 1 point
#     of fp32 in graft-eval; the exported QDQ model passes onnx.checker, and ONNX Runtime
#     gives the same prediction as graft-run on >= 99.5% of the test images;
#   - resnet18 (the plain reference fixture) quantized on 8 seeded random images: ONNX
#     Runtime fuses every Conv and Add into its int8 kernels (QLinearConv, QLinearAdd,
#     in the optimized graph it writes), and so does graft-run (its --profile names the
#     kernels); ORT's top-1 is graft-run's on the calibration images but where ORT's two
#     best logits are closer than the largest difference between the two runtimes (the
#     float steps after the integer sums may round a tie the other way on another CPU);
#   - graft-verify: fp32 against int8 within --max-drop 1 and --min-agreement 95, its
#     JSON; a model with another head fails either check with one line, exit 1;
#   - bad input: a calibration set of another shape, a model quantized already, an
#     unknown --method: one line on stderr, exit 1 (2 for usage), no output file.
set -u
[ $# -eq 3 ] || { echo "usage: quantize.sh TOOLDIR FIXTUREDIR ORTDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
ortdir=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
NODE=${NODE:-node}
FM=/usr/share/datasets/fashion-mnist
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
"$here/setup-ort.sh" "$ortdir" >/dev/null || { echo "no onnxruntime-node"; exit 1; }

# the compact CNN: fp32 against int8, graft against ORT
graft-data idx $FM/train-images-idx3-ubyte.gz $FM/train-labels-idx1-ubyte.gz \
	--classes 0,1,2,3,4 --take 60 --seed 3 -o cal.graft 2>/dev/null
graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz \
	--classes 0,1,2,3,4 --take 200 --seed 4 -o test.graft 2>/dev/null
check "quantize the compact CNN" sh -c "graft-quantize $SRC/examples/pretrain/compact_cnn.onnx \
	--data cal.graft --samples 0 -o q.graft 2>log.txt"
check "it says what it did" grep -q "5 nodes quantized (4 Relu/Clip folded" log.txt
check "accuracy within 1 point of fp32" sh -c "
	graft-eval $SRC/examples/pretrain/compact_cnn.onnx --data test.graft --json > f.json &&
	graft-eval q.graft --data test.graft --json > q.json &&
	$PY -c \"
import json
f, q = json.load(open('f.json'))['accuracy'], json.load(open('q.json'))['accuracy']
print('   fp32 %.2f%%, int8 %.2f%%' % (100 * f, 100 * q))
assert q >= f - 0.01\""
check "export the QDQ model" sh -c "graft-export q.graft -o q.onnx && $PY -c \"
import onnx; onnx.checker.check_model(onnx.load('q.onnx'), full_check=True)\""
$PY - <<'PYEOF'
import tarfile, numpy as np
t = tarfile.open('test.graft')
x = np.frombuffer(t.extractfile('tensors/000000').read(), dtype=np.float32)
np.save('x.npy', x.reshape(-1, 1, 28, 28))
PYEOF
check "ONNX Runtime agrees with graft-run" sh -c "
	graft-run q.graft -i x.npy -o gq 2>/dev/null &&
	$NODE $SRC/examples/ort_accuracy.js q.onnx test.graft --ort-dir $ortdir > o.json &&
	$PY -c \"
import json, numpy as np
g = np.load('gq/logits.npy').argmax(1); o = np.array(json.load(open('o.json'))['predictions'])
a = (g == o).mean(); print('   top-1 agreement %.4f on %d images' % (a, len(g)))
assert a >= 0.995\""

# graft-verify: the parity report, and a check for a Makefile
check "graft-verify passes fp32 against int8" sh -c "graft-verify $SRC/examples/pretrain/compact_cnn.onnx \
	q.graft --data test.graft --max-drop 1 --min-agreement 95 --json > v.json && $PY -c \"
import json
v = json.load(open('v.json'))
print('   verify: agreement %.4f, accuracy %.4f -> %.4f, max rel %.3g' % (v['top1_agreement'],
      v['reference_accuracy'], v['candidate_accuracy'], v['outputs'][0]['max_rel']))
assert v['samples'] == 1000 and abs(v['reference_accuracy'] - json.load(open('f.json'))['accuracy']) < 1e-9\""
check "graft-verify --samples: the first 100 images and their labels" sh -c "graft-verify \
	$SRC/examples/pretrain/compact_cnn.onnx q.graft --data test.graft --samples 100 --json > v100.json && $PY -c \"
import json
v = json.load(open('v100.json'))
assert v['samples'] == 100 and 0 <= v['reference_accuracy'] <= 1 and v['top1_agreement'] >= 0.95, v\""
graft-head $SRC/examples/pretrain/compact_cnn.onnx --classes 5 --seed 1 -o other.graft 2>/dev/null
expect_error "graft-verify: another model fails --min-agreement" "other.graft: top-1 agrees with the reference on .* \(--min-agreement 50\)" \
	graft-verify $SRC/examples/pretrain/compact_cnn.onnx other.graft --data test.graft --min-agreement 50
expect_error "graft-verify: and --max-drop" "other.graft: accuracy .* points below the reference's .* \(--max-drop 1\)" \
	graft-verify $SRC/examples/pretrain/compact_cnn.onnx other.graft --data test.graft --max-drop 1

# resnet18: every Conv and Add in ORT's int8 kernels
$PY -c "
import numpy as np
rng = np.random.default_rng(0)
np.save('rx.npy', rng.standard_normal((8, 3, 224, 224), dtype=np.float32))
np.save('ry.npy', rng.integers(0, 1000, 8).astype(np.int64))"
graft-data npy rx.npy ry.npy -o rcal.graft 2>/dev/null
check "quantize resnet18" sh -c "graft-quantize $fixdir/plain/resnet18.onnx --data rcal.graft \
	-o r.graft 2>/dev/null && graft-export r.graft -o r.onnx"
cat > optimize.js <<'JSEOF'
const ort = require(process.argv[4] + '/node_modules/onnxruntime-node');
ort.InferenceSession.create(process.argv[2], {graphOptimizationLevel: 'all',
	optimizedModelFilePath: process.argv[3], intraOpNumThreads: 2, logSeverityLevel: 3})
	.then(() => {}, (e) => { console.error(e.message); process.exit(1); });
JSEOF
check "ONNX Runtime runs every Conv and Add in int8" sh -c "$NODE optimize.js r.onnx ro.onnx $ortdir &&
	$PY -c \"
import onnx, collections
c = collections.Counter(n.op_type for n in onnx.load('ro.onnx').graph.node)
print('   ' + ', '.join('%s %d' % kv for kv in sorted(c.items())))
assert c['QLinearConv'] == 20 and c['QLinearAdd'] == 8 and c['Conv'] == 0 and c['Add'] == 0\""
check "graft-run runs every Conv and Add in int8 too" sh -c "
	graft-run r.graft --batch 2 --profile 2>prof.txt >/dev/null &&
	grep -qE '^  QLinearConv +20 nodes' prof.txt && grep -qE '^  QLinearAdd +8 nodes' prof.txt &&
	grep -qE '^  MaxPool +1 nodes' prof.txt && ! grep -qE '^  (Conv|Add) ' prof.txt"
check "resnet18: ORT's top-1 is graft-run's" sh -c "
	graft-run r.graft -i rx.npy -o gr 2>/dev/null &&
	$NODE $here/ort_run.js r.onnx orr --input input=rx.npy --ort-dir $ortdir >/dev/null &&
	$PY -c \"
import numpy as np, glob
g = np.load(glob.glob('gr/*.npy')[0]); o = np.fromfile(glob.glob('orr/*.bin')[0], np.float32).reshape(g.shape)
d = np.abs(g - o).max(); s = np.sort(o, 1)
print('   largest |graft - ORT| %.3g of %.3g; top-1 the same on %d of %d' %
      (d, np.abs(o).max(), (g.argmax(1) == o.argmax(1)).sum(), len(o)))
assert all(a == b or m < 2 * d for a, b, m in zip(g.argmax(1), o.argmax(1), s[:, -1] - s[:, -2]))\""

# bad input
$PY -c "
import numpy as np
np.save('bx.npy', np.zeros((4, 1, 20, 20), np.float32)); np.save('by.npy', np.zeros(4, np.int64))"
graft-data npy bx.npy by.npy -o bad.graft 2>/dev/null
expect_error "a calibration set of another shape" "bad.graft: samples of float 1x20x20 do not fit" \
	graft-quantize $SRC/examples/pretrain/compact_cnn.onnx --data bad.graft -o no1.graft
check "  and no output" test ! -e no1.graft
expect_error "a model quantized already" "quantized already" \
	graft-quantize q.graft --data cal.graft -o no2.graft
check "  and no output" test ! -e no2.graft
"$TOOLS/graft-quantize" q.graft --data cal.graft --method kl -o no3.graft 2>err.txt
check "an unknown method is a usage error" test $? -eq 2 -a ! -e no3.graft
finish
