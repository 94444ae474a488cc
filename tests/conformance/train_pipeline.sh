#!/bin/bash
# train_pipeline.sh TOOLDIR FIXTUREDIR: graft-train and graft-eval through the real tools
# on Fashion-MNIST (Debian's dataset-fashion-mnist) and the keep-bn small_cnn fixture:
# training lowers the loss; interrupted-and-resumed and stopped-and-resumed runs end
# with the same weights as an uninterrupted one, bit for bit; a diverging run stops with
# the step named and writes nothing; data that does not fit the model is refused before
# training; graft-eval's JSON has its keys; the state survives export as ONNX without
# leaking into it; the transfer recipes change what trains exactly when they should.
set -u
[ $# -eq 2 ] || { echo "usage: train_pipeline.sh TOOLDIR FIXTUREDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
FM=/usr/share/datasets/fashion-mnist

"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
model=$fixdir/keepbn/small_cnn.onnx

graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz --take 40 \
	--split 0.75 --seed 1 -o train.graft --val-out val.graft 2>/dev/null
check "graft-data made train and val" test -s train.graft -a -s val.graft

# Training lowers the loss (SGD, 30 steps of 32, with validation and a log).
check "trains" graft-train "$model" --data train.graft --val val.graft --steps 30 --batch 32 \
	--lr 0.05 --log log.jsonl -q -o a.graft
check "the log has the epochs' lines" $PY -c "
import json
lines = [json.loads(l) for l in open('log.jsonl')]
assert len(lines) >= 3, lines
assert all(k in lines[-1] for k in ('epoch', 'step', 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr', 'images_per_s'))
assert lines[-1]['loss'] < lines[0]['loss'], (lines[0]['loss'], lines[-1]['loss'])
"
check "graft-info lists the training state" sh -c "graft-info --tensors a.graft | grep -q 'graft.optim/'"
check "graft-eval --json" sh -c "graft-eval a.graft --data val.graft --json > ev.json && $PY -c \"
import json
e = json.load(open('ev.json'))
assert set(('loss', 'accuracy', 'per_class', 'confusion')) <= set(e)
assert len(e['confusion']) == 10 and sum(map(sum, e['confusion'])) == e['count'] == 100
assert 0 <= e['accuracy'] <= 1
\""
check "export leaves the state out" sh -c "graft-export a.graft -o a.onnx && $PY -c \"
import onnx
m = onnx.load('a.onnx'); onnx.checker.check_model(m)
names = [t.name for t in m.graph.initializer]
assert not any(n.startswith('graft.') for n in names), names
\""

# Stopped at 12 steps and resumed to 30 = 30 straight (Adam: moments and step count
# must carry over; shuffling and crop augmentation: the data order and the draws too).
common="--data train.graft --batch 16 --optimizer adam --lr 0.002 --augment flip,crop --seed 7 -q"
# same_onnx A B: the two ONNX files are equal but for their provenance (the runs' command
# lines differ: one resumed)
same_onnx() { $PY "$here/same_onnx.py" "$1" "$2"; }
check "straight 30 steps" graft-train "$model" $common --steps 30 -o straight.graft
check "12 steps" graft-train "$model" $common --steps 12 -o part.graft
check "resumed to 30" graft-train "$model" $common --steps 30 --resume part.graft -o resumed.graft
check "resumed weights equal straight ones" eval \
	'graft-export straight.graft -o s.onnx && graft-export resumed.graft -o r.onnx && same_onnx s.onnx r.onnx'

# SIGINT in the middle of a run (checkpoints every 5 steps): exit 130 once the step in
# progress is done, the checkpoint then holds that step k, and resuming it to k + 25
# reaches the same weights as a straight run of k + 25 steps.  The interrupted run is
# far too long to end by itself, so the signal lands mid-run however fast the machine
# (the schedule is constant, so the planned length changes no step).
long="--batch 16 --optimizer adam --lr 0.002 --augment flip,crop --seed 7 -q --data train.graft"
graft-train "$model" $long --steps 1000000 --checkpoint ck.graft --checkpoint-every 5 \
	-o never.graft &
pid=$!
for _ in $(seq 1 6000); do [ -s ck.graft ] && break; sleep 0.01; done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ]; then ok; else bad "SIGINT: exit $rc, wanted 130"; fi
check "no output after the interrupt" test ! -e never.graft
k=$(tar -xOf ck.graft manifest | awk '$3 == "graft.train/step" { print $2 }' |
	xargs -I{} tar -xOf ck.graft {} | od -An -t d8 | tr -d ' ')
echo "interrupted after step $k"
check "straight $((k + 25)) steps" graft-train "$model" $long --steps $((k + 25)) -o straight-k.graft
check "resumed after SIGINT" graft-train "$model" $long --steps $((k + 25)) --resume ck.graft \
	-o after.graft
check "weights after SIGINT + resume equal straight ones" eval \
	'graft-export straight-k.graft -o sk.onnx && graft-export after.graft -o after.onnx && same_onnx sk.onnx after.onnx'
check "no temporary files left" sh -c "! ls -a | grep -q '\.tmp'"

# Divergence: the step is named, nothing is written, the checkpoint stays as it was.
cp ck.graft ck0.graft
expect_error "a diverging run stops" "graft-train: the (loss|gradients) (is|are) .* at step [0-9]+" \
	graft-train "$model" --data train.graft --steps 50 --lr 1e5 -q --checkpoint ck.graft -o nan.graft
check "nothing written by the diverging run" test ! -e nan.graft
check "its checkpoint is untouched" cmp -s ck.graft ck0.graft

# Data that does not fit the model: refused before training.
$PY -c "
import numpy as np
np.save('x3.npy', np.zeros((8, 3, 28, 28), np.float32)); np.save('y3.npy', np.zeros(8, np.int64))
np.save('x1.npy', np.zeros((8, 1, 28, 28), np.float32)); np.save('y99.npy', np.full(8, 99, np.int64))"
graft-data npy x3.npy y3.npy -o rgb.graft 2>/dev/null
graft-data npy x1.npy y99.npy -o big.graft 2>/dev/null
expect_error "wrong channels" "graft-train: .*input .* needs dim 1 = 1; the data has 3" \
	graft-train "$model" --data rgb.graft --steps 1 -q -o x.graft
expect_error "labels beyond the outputs" "graft-train: label 99 of sample 0 does not fit the model's 10 outputs" \
	graft-train "$model" --data big.graft --steps 1 -q -o x.graft
expect_error "graft-eval: labels beyond the outputs" "graft-eval: .*label 99 of sample 0" \
	graft-eval "$model" --data big.graft
# Gradual unfreezing, one block every epoch, for 2 epochs of 300 samples: the head from the
# start, the block below it from the second epoch, the rest never: exactly the tensors
# that graft-freeze --last-blocks 2 leaves trainable have changed, the others are the
# same bits (and LP-FT for one epoch of three trains everything by its end).
check "--unfreeze-every: only the top two blocks changed after 2 epochs" sh -c "
	graft-train '$model' --data train.graft --epochs 2 --batch 8 --lr 0.05 --unfreeze-every 1 \
		-o unf.graft 2> unf.err &&
	grep -q 'step 39 (epoch 1.01): 4 parameter tensors training (2 more)' unf.err &&
	graft-freeze '$model' --last-blocks 2 -o top2.graft 2>/dev/null &&
	graft-info --tensors top2.graft | awk '\$4 == \"parameter\" && \$5 == \"trainable\" {print \$1}' > top2.txt &&
	graft-export unf.graft --strip -o unf.onnx 2>/dev/null &&
	$PY - '$model' unf.onnx top2.txt <<'PY'
import sys, onnx
from onnx import numpy_helper as nh
start, after = ({t.name: nh.to_array(t) for t in onnx.load(f).graph.initializer} for f in sys.argv[1:3])
top2 = set(open(sys.argv[3]).read().split())
params = [n for n in start if n.endswith(('weight', 'bias')) and not n.startswith(('1.', '5.'))]
changed = {n for n in params if (start[n] != after[n]).any()}
assert top2 and changed == top2 & set(params), (sorted(changed), sorted(top2))
print('changed after 2 epochs of --unfreeze-every 1:', sorted(changed))
PY"
check "--lp-ft: a line when everything starts, then everything trains" sh -c "
	graft-train '$model' --data train.graft --epochs 3 --batch 8 --lr 0.01 --lp-ft 1 \
		-o lp.graft 2> lp.err &&
	grep -q 'LP-FT: the head alone for 38 steps at lr 0.1 first' lp.err &&
	grep -q 'step 39 (epoch 1.01): 12 parameter tensors training (10 more), lr 0.01' lp.err"
finish
