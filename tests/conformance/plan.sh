#!/bin/bash
# plan.sh TOOLDIR FIXTUREDIR: graft-plan on real data.  small_cnn (keep-bn fixture) is
# first trained briefly on Fashion-MNIST classes 0-4, so that its BatchNormalization
# statistics describe that data, as a pretrained model's describe its pretraining set.
# Then: Fashion-MNIST classes 5-9 (the same domain, a new task) is similar, random binary
# images are not; 20 per class is little data, 300 is much: cases 1, 2 and 3; --apply
# freezes as planned; --json is valid.
set -u
[ $# -eq 2 ] || { echo "usage: plan.sh TOOLDIR FIXTUREDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
FM=/usr/share/datasets/fashion-mnist

"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
graft-data idx $FM/train-images-idx3-ubyte.gz $FM/train-labels-idx1-ubyte.gz --classes 0,1,2,3,4 \
	--take 1000 -o pre.graft 2>/dev/null
check "a model of graft's making, trained on classes 0-4" graft-train \
	"$fixdir/keepbn/small_cnn.onnx" --data pre.graft --epochs 1 --optimizer adam --lr 0.002 -q -o pre.model
graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz --classes 5,6,7,8,9 \
	--take 20 -o similar_small.graft 2>/dev/null
graft-data idx $FM/train-images-idx3-ubyte.gz $FM/train-labels-idx1-ubyte.gz --classes 5,6,7,8,9 \
	--take 300 -o similar_large.graft 2>/dev/null
$PY -c "
import numpy as np
r = np.random.default_rng(0)
np.save('nx.npy', (r.random((100, 1, 28, 28)) > 0.5).astype(np.float32))
np.save('ny.npy', np.repeat(np.arange(5), 20).astype(np.int64))"
graft-data npy nx.npy ny.npy -o different_small.graft 2>/dev/null

# case DATA N: graft-plan --json says case N
case_is() {
	graft-plan pre.model --data "$1" --json > "$1.json" &&
	$PY -c "
import json, sys
p = json.load(open(sys.argv[1]))
print('%s: case %d, similarity %.3f (%s), %.0f per class' % (sys.argv[1], p['case'],
      p['similarity'], p['method'], p['samples_per_class']))
sys.exit(0 if p['case'] == int(sys.argv[2]) else 1)" "$1.json" "$2"
}
check "Fashion 5-9, 20 per class: case 1 (little, similar)" case_is similar_small.graft 1
check "random binary images: case 2 (little, different)" case_is different_small.graft 2
check "Fashion 5-9, 300 per class: case 3 (much, similar)" case_is similar_large.graft 3
check "text output names the case and the commands" sh -c \
	"graft-plan pre.model --data similar_small.graft | grep -q '^case 1: little data, similar' &&
	 graft-plan pre.model --data similar_small.graft | grep -q 'graft-freeze .* --last-blocks 1'"
check "--apply freezes as planned (head only)" sh -c \
	"graft-plan pre.model --data similar_small.graft --apply -o applied.graft 2>/dev/null &&
	 graft-info applied.graft | grep -q 'trainable 2 '"
expect_error "a missing dataset" "graft-plan: .*nope.graft" graft-plan pre.model --data nope.graft
finish
