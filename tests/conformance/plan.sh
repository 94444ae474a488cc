#!/bin/bash
# plan.sh TOOLDIR FIXTUREDIR: graft-plan on real data.  small_cnn (keep-bn fixture) is
# first trained briefly on Fashion-MNIST classes 0-4, so that its BatchNormalization
# statistics describe that data, as a pretrained model's describe its pretraining set.
# The classic rule (--rule): Fashion-MNIST classes 5-9 (the same domain, a new task) is
# similar, random binary images are not; 20 per class is little data, 300 is much: cases
# 1, 2 and 3; --apply freezes as planned; --json is valid.  The measured plan (trials):
# its JSON has every trial and the pick, the same seed gives the same trials, --apply
# writes the recipe that graft-train then follows with no options (the same model as
# with the options spelt out), and bad input gets one line and no output.
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
	graft-plan pre.model --data "$1" --rule --json > "$1.json" &&
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
	"graft-plan pre.model --data similar_small.graft --rule | grep -q '^case 1: little data, similar' &&
	 graft-plan pre.model --data similar_small.graft --rule | grep -q 'graft-freeze .* --last-blocks 1'"
check "--rule --apply freezes as planned (head only)" sh -c \
	"graft-plan pre.model --data similar_small.graft --rule --apply -o applied.graft 2>/dev/null &&
	 graft-info applied.graft | grep -q 'trainable 2 '"
expect_error "a missing dataset" "graft-plan: .*nope.graft" graft-plan pre.model --data nope.graft

# The measured plan, kept short: 3 folds, the pick's training 6 epochs long, trials
# within 60 full-network epochs.
trials=(--folds 3 --epochs 6 --budget 60 --seed 4 -q)
check "trials: --json has the classic case, every trial and the pick" sh -c "
	graft-plan pre.model --data similar_small.graft ${trials[*]} --json > trials.json &&
	$PY - trials.json <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
assert p['classic']['case'] == 1, p['classic']
assert p['folds'] == 3 and p['validation'] == 'k-fold', p
assert p['train_samples'] + p['val_samples'] == 100, p
rounds = [t['round'] for t in p['trials']]
assert rounds[0] == 0 and rounds[-1] >= 1 and rounds == sorted(rounds), rounds
assert {t['strategy'] for t in p['trials'] if t['round'] == 0} >= {'head', 'lp-ft', 'full'}
assert p['spent_epochs'] <= p['budget_epochs'] + 1e-6, p
last = [t for t in p['trials'] if t['round'] == rounds[-1]]
assert p['pick']['accuracy'] == max(t['accuracy'] for t in last), p['pick']
assert p['train'].startswith('--epochs 6 --batch 32 --optimizer adamw'), p['train']
print('pick: %s at %g, %.1f%% held apart (%d trials)' % (p['pick']['strategy'], p['pick']['lr'],
      100 * p['pick']['accuracy'], len(p['trials'])))
PY"
check "trials: the same seed, the same trials and pick" sh -c "
	graft-plan pre.model --data similar_small.graft ${trials[*]} --json > again.json &&
	$PY -c \"
import json
a, b = (json.load(open(f)) for f in ('trials.json', 'again.json'))
strip = lambda p: [{k: v for k, v in t.items() if k != 'seconds'} for t in p['trials']]
assert strip(a) == strip(b) and a['pick'] == b['pick'] and a['train'] == b['train']\""
check "--apply writes the recipe; graft-train with no options follows it" sh -c "
	graft-plan pre.model --data similar_small.graft ${trials[*]} --apply -o planned.graft 2>plan.txt &&
	graft-info planned.graft | grep -q 'graft.recipe = --epochs 6 ' &&
	graft-train planned.graft --data similar_small.graft -q -o by_recipe.graft &&
	freeze=\$($PY -c \"import json; print(json.load(open('trials.json'))['freeze'])\") &&
	train=\$($PY -c \"import json; print(json.load(open('trials.json'))['train'])\") &&
	graft-freeze pre.model \$freeze -o frozen.graft 2>/dev/null &&
	graft-train frozen.graft --data similar_small.graft \$train -q -o by_hand.graft &&
	graft-export by_recipe.graft --strip -o by_recipe.onnx 2>/dev/null &&
	graft-export by_hand.graft --strip -o by_hand.onnx 2>/dev/null &&
	$PY $here/same_onnx.py by_recipe.onnx by_hand.onnx"
check "--train in a pipe: the pick trained and exported, a model that graft-eval reads" sh -c "
	graft-plan --data similar_small.graft ${trials[*]} --train < pre.model 2>/dev/null |
	graft-export -o tuned.onnx && graft-eval tuned.onnx --data similar_small.graft --json > tuned.json &&
	$PY -c \"import json; assert json.load(open('tuned.json'))['accuracy'] > 0.5\""
check "--train -o: the recipe in the tuned model" sh -c "
	graft-plan pre.model --data similar_small.graft ${trials[*]} --train -o tuned.graft 2>/dev/null &&
	graft-info tuned.graft | grep -q 'graft.recipe = ' && ! cmp -s tuned.graft planned.graft"
# bad input: one line each, exit 1, no output
$PY -c "
import numpy as np
np.save('fx.npy', np.zeros((6, 1, 28, 28), np.float32))
np.save('fy.npy', np.array([0, 0, 1, 1, 2, 2], np.int64))"
graft-data npy fx.npy fy.npy -o few.graft 2>/dev/null
expect_error "fewer samples in a class than folds" "graft-plan: pre.model on few.graft: class 0 has 2 samples: fewer than the 5 folds" \
	graft-plan pre.model --data few.graft --apply -o none.graft
expect_error "a budget too small for one trial" "graft-plan: .*too small for one trial" \
	graft-plan pre.model --data similar_small.graft --budget 0.1 --apply -o none.graft
$PY - <<'PY'
import onnx, onnx.helper as h, onnx.numpy_helper, numpy as np
# a Conv over the whole image then a Flatten: every parameter is read by the first node
w = onnx.numpy_helper.from_array(np.zeros((5, 1, 28, 28), np.float32), 'w')
g = h.make_graph([h.make_node('Conv', ['x', 'w'], ['c']), h.make_node('Flatten', ['c'], ['y'])],
                 'linear', [h.make_tensor_value_info('x', 1, [None, 1, 28, 28])],
                 [h.make_tensor_value_info('y', 1, [None, 5])], [w])
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid('', 13)]), 'linear.onnx')
PY
expect_error "a model with no block boundary" "graft-plan: linear.onnx on similar_small.graft: the model has no block boundary" \
	graft-plan linear.onnx --data similar_small.graft --apply -o none.graft
check "no output after the errors" test ! -e none.graft
finish
