#!/bin/bash
# distributed.sh TOOLDIR FIXTUREDIR: data-parallel graft-train under mpirun (Open MPI,
# oversubscribed on this machine's cores) on the keep-bn small_cnn fixture (Conv,
# BatchNormalization) and Fashion-MNIST:
#  - 2 and 4 processes give the bits of one process with --accumulate 2 and 4 (the
#    same pieces, each with its own BatchNormalization statistics, their gradients
#    added in the same order), with SGD and AdamW, and a second run gives them again;
#  - --sync-bn: 2 and 4 processes equal one process with the whole batch, SGD: within
#    1e-6 relative after a step, and after 16 steps (lr 0.005) within twice what the same
#    one process differs from itself at 2 threads instead of 1 (5e-6 here): the sums run
#    in another order, and training amplifies rounding.  The Conv biases before
#    BatchNormalization and their running means are left out: their true gradient is
#    zero, so they move by rounding noise alone (as compare_params.py --skip-noise);
#  - a model read from stdin by rank 0; the validation split over the processes;
#  - graft-eval on 2 processes scores as one; graft-plan on 2 processes (trials with
#    synchronised BatchNorm) scores the first round's trials as one process does, up to
#    rounding (within one held-apart sample: a near tie may flip), and --apply writes
#    a model with its recipe;
#  - a process killed mid-run ends the job non-zero within 10 s, the checkpoint loads,
#    and resuming it with 2 processes, or with 1 that accumulates 2 micro-batches, ends
#    with the uninterrupted run's weights;
#  - processes started with other arguments or reading other data, a batch that does not
#    split, and the model asked on stdout are refused in one line from rank 0, exit 1.
# Skipped (77) without mpirun or when graft-train was built without MPI.
set -u
[ $# -eq 2 ] || { echo "usage: distributed.sh TOOLDIR FIXTUREDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
FM=/usr/share/datasets/fashion-mnist

command -v mpirun >/dev/null || { echo "SKIP: no mpirun (Debian: openmpi-bin)"; exit 77; }
ldd "$TOOLS/graft-train" | grep -q libmpi ||
	{ echo "SKIP: graft-train was built without MPI (meson -Dmpi=enabled)"; exit 77; }
"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
model=$fixdir/keepbn/small_cnn.onnx

# As root (CI), more processes than cores, no single-copy shared memory (containers
# often forbid process_vm_readv); one OpenMP thread per process, the same kernels.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_NUM_THREADS=1 GRAFT_WISDOM=off
# ./group ARGS...: mpirun --quiet; a hang becomes a failure after 5 minutes.  Under
# AddressSanitizer without leak detection: Open MPI leaks in its own plugins, which it
# unloads before LeakSanitizer looks (so no suppression can name them); the unit tests
# check the same trainer code for leaks, with threads as the processes.
leakless=${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0}
printf '#!/bin/sh\nexec env %s timeout -k 5 300 mpirun --quiet "$@"\n' "$leakless" >group
chmod +x group
# mpi NP ARGS...: graft-train on NP processes
mpi() { local np=$1; shift; ./group -np "$np" "$TOOLS/graft-train" "$@"; }
same() { graft-export "$1" -o "$1.onnx" && graft-export "$2" -o "$2.onnx" &&
	$PY "$here/same_onnx.py" "$1.onnx" "$2.onnx"; }
differ() { graft-export "$1" -o "$1.onnx" && graft-export "$2" -o "$2.onnx" &&
	! $PY "$here/same_onnx.py" "$1.onnx" "$2.onnx"; }
# close A B TOL: every tensor but the noise ones (see the top) within TOL of B's largest
# magnitude
noise="0.bias 4.bias 1.running_mean 5.running_mean"
close() { graft-export "$1" -o "$1.onnx" && graft-export "$2" -o "$2.onnx" && $PY -c "
import sys, onnx, numpy as np
from onnx import numpy_helper as nh
a, b = ({t.name: nh.to_array(t) for t in onnx.load(p).graph.initializer} for p in sys.argv[1:3])
noise = set('$noise'.split())
worst = max(float(np.abs(a[k] - b[k]).max()) / max(float(np.abs(b[k]).max()), 1e-30)
            for k in b if k not in noise)
print('%s against %s: largest difference %.3g relative' % (sys.argv[1], sys.argv[2], worst))
sys.exit(worst > float(sys.argv[3]))" "$1.onnx" "$2.onnx" "$3"; }

graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz --take 40 \
	--split 0.75 --seed 1 -o train.graft --val-out val.graft 2>/dev/null
check "graft-data made train and val" test -s train.graft -a -s val.graft

common="--data train.graft --batch 32 --steps 16 -q"
for opt in "--optimizer sgd --lr 0.05" "--optimizer adamw --lr 0.002"; do
	name=${opt#--optimizer }; name=${name%% *}
	for np in 2 4; do
		check "$name: $np processes ran" mpi $np "$model" $common $opt -o $name-np$np.graft
		check "$name: again" mpi $np "$model" $common $opt -o $name-np$np-again.graft
		check "$name: one process accumulating $np" \
			graft-train "$model" $common $opt --accumulate $np -o $name-acc$np.graft
		check "$name: $np processes = one accumulating $np, bit for bit" \
			same $name-np$np.graft $name-acc$np.graft
		check "$name: the second run = the first, bit for bit" \
			same $name-np$np.graft $name-np$np-again.graft
	done
done
check "one process with the whole batch" graft-train "$model" $common --lr 0.05 -o whole.graft
check "sgd: 2 processes differ from it (their own statistics)" differ sgd-np2.graft whole.graft
check "one process with the whole batch: 1 step" \
	graft-train "$model" $common --lr 0.05 --steps 1 -o whole1.graft
check "... 16 steps at lr 0.005, on 1 and on 2 threads" sh -c "
graft-train '$model' $common --lr 0.005 -o whole-slow.graft &&
OMP_NUM_THREADS=2 graft-train '$model' $common --lr 0.005 -o whole-slow-2threads.graft"
floor=$(close whole-slow-2threads.graft whole-slow.graft 1 | sed 's/.* \([^ ]*\) relative$/\1/')
echo "floor: one process at 1 against 2 threads, 16 steps: $floor relative"
for np in 2 4; do
	check "--sync-bn on $np: 1 step" mpi $np "$model" $common --lr 0.05 --steps 1 --sync-bn \
		-o sync$np-1.graft
	check "... = one process with the whole batch, within 1e-6" close sync$np-1.graft whole1.graft 1e-6
	check "--sync-bn on $np: 16 steps" mpi $np "$model" $common --lr 0.005 --sync-bn -o sync$np.graft
	check "... = one process with the whole batch, within twice the floor" \
		close sync$np.graft whole-slow.graft "$($PY -c "print(max(1e-6, 2 * $floor))")"
done

# The model from stdin (rank 0's), validation and a log
check "model on stdin, validation, log" sh -c "cat '$model' | ./group -np 2 \
	'$TOOLS/graft-train' $common --lr 0.05 --val val.graft --log log.jsonl -o stdin.graft"
check "... the same weights as from a file" same stdin.graft sgd-np2.graft
check "the log has the exchange time and the validation" $PY -c "
import json
l = [json.loads(x) for x in open('log.jsonl')]
assert all('comm_s_per_step' in x and x['comm_s_per_step'] >= 0 for x in l), l
assert 'val_accuracy' in l[-1], l[-1]
"
check "validation on 2 processes = on one (accumulating 2)" sh -c "
graft-train '$model' $common --lr 0.05 --val val.graft --accumulate 2 --log log1.jsonl -o v1.graft &&
$PY -c \"
import json
a = json.loads(open('log.jsonl').readlines()[-1]); b = json.loads(open('log1.jsonl').readlines()[-1])
assert a['val_accuracy'] == b['val_accuracy'] and abs(a['val_loss'] - b['val_loss']) <= 1e-6 * b['val_loss'], (a, b)
\""

# graft-eval and graft-plan in a group
check "graft-eval on 2 processes" sh -c "./group -np 2 '$TOOLS/graft-eval' \
	sgd-np2.graft --data val.graft --batch 16 --json > e2.json"
check "graft-eval alone" sh -c "graft-eval sgd-np2.graft --data val.graft --batch 16 --json > e1.json"
check "... the same scores" $PY -c "
import json
a, b = json.load(open('e2.json')), json.load(open('e1.json'))
assert a['count'] == b['count'] == 100 and a['accuracy'] == b['accuracy'], (a, b)
assert a['confusion'] == b['confusion'] and abs(a['loss'] - b['loss']) <= 1e-6 * b['loss'], (a, b)
"
plan="sgd-np2.graft --data train.graft --json --budget 30 --folds 1 -q --apply"
check "graft-plan on 2 processes" sh -c "./group -np 2 '$TOOLS/graft-plan' $plan -o plan2.graft 2>p2.json"
check "graft-plan alone" sh -c "graft-plan $plan -o plan1.graft 2>p1.json"
check "... the first round's trials score alike" $PY -c "
import json
a, b = json.load(open('p2.json')), json.load(open('p1.json'))
first = lambda s: {(t['strategy'], t['blocks'], t['lr']): t['accuracy'] for t in s['trials'] if t['round'] == 0}
fa, fb = first(a), first(b)
assert fa.keys() == fb.keys() and len(fa) >= 4, (fa, fb)
one = 1 / a['val_samples'] + 1e-6
assert all(abs(fa[k] - fb[k]) <= one for k in fa), (fa, fb)
print('largest difference of a first-round trial: %.3g (one sample: %.3g)' % (max(abs(fa[k] - fb[k]) for k in fa), one))
"
check "... and --apply wrote a model with its recipe" sh -c "graft-info plan2.graft | grep -q 'graft.recipe'"

# A process killed mid-run: the job ends, non-zero, within 10 s; the checkpoint resumes.
long="--data train.graft --batch 32 --steps 150 --lr 0.05 -q"
check "uninterrupted 150 steps" mpi 2 "$model" $long -o straight.graft
mpi 2 "$model" $long --checkpoint ck.graft --checkpoint-every 10 -o killed.graft 2>kill.err &
job=$!
for _ in $(seq 600); do [ -s ck.graft ] && break; sleep 0.1; done
victim=$(pgrep -n -x graft-train)     # a rank (mpirun and its wrappers have other names)
t0=$(date +%s.%N)
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
t1=$(date +%s.%N)
echo "killed process $victim after the first checkpoint: the job ended $($PY -c "print('%.1f' % ($t1 - $t0))") s later, exit $rc"
check "a checkpoint was written before the kill" test -s ck.graft -a -n "$victim"
check "the job ended non-zero (exit $rc)" test $rc -ne 0
check "within 10 s ($($PY -c "print('%.1f' % ($t1 - $t0))") s)" $PY -c "import sys; sys.exit($t1 - $t0 > 10)"
check "no output from the killed job" test ! -e killed.graft
check "the checkpoint loads" sh -c "graft-info ck.graft >/dev/null"
check "resumed on 2 processes" mpi 2 "$model" $long --resume ck.graft -o resumed2.graft
check "... = the uninterrupted run, bit for bit" same resumed2.graft straight.graft
check "resumed on 1 process accumulating 2" \
	graft-train "$model" $long --resume ck.graft --accumulate 2 -o resumed1.graft
check "... = the uninterrupted run, bit for bit" same resumed1.graft straight.graft

# Refusals: one line from graft (rank 0's), exit 1 from the job.  (mpirun --quiet adds
# nothing here; lines an MPI library might add on another machine, which do not start
# with "graft-", are not counted.)
# expect_mpi DESCRIPTION PATTERN COMMAND...
expect_mpi() {
	local what=$1 pattern=$2; shift 2
	"$@" >/dev/null 2>stderr.txt
	local rc=$?
	if [ $rc -ne 1 ]; then bad "$what: exit $rc, wanted 1"; cat stderr.txt; return; fi
	if [ "$(grep -c '^graft-' stderr.txt)" -ne 1 ] || ! grep -qE -- "$pattern" stderr.txt; then
		bad "$what: graft's stderr is not one line matching '$pattern':"; cat stderr.txt
		return
	fi
	ok
}
mkdir a b
graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz --take 10 \
	--seed 1 -o a/d.graft 2>/dev/null
graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz --take 10 \
	--seed 2 -o b/d.graft 2>/dev/null
g="$TOOLS/graft-train $model --data d.graft --batch 32 --steps 2 -q -o $PWD/x.graft"
expect_mpi "other data on rank 1" "^graft-train: rank 1 of 2 read other training data \(--data\)" \
	./group -np 1 --wdir a $g : -np 1 --wdir b $g
expect_mpi "other arguments on rank 1" "^graft-train: rank 1 of 2 was started with other arguments" \
	./group -np 1 --wdir a $g --seed 1 : -np 1 --wdir a $g --seed 2
expect_mpi "a batch that does not split" \
	"^graft-train: a batch of 30 does not split into 4 equal pieces .*multiple of 4$" \
	mpi 4 "$model" --data train.graft --batch 30 --steps 2 -q -o x.graft
expect_mpi "the model on stdout" "^graft-train: in a group of processes \(mpirun\), write the model with -o FILE" \
	mpi 2 "$model" --data train.graft --steps 2 -q
check "no output from the refusals" test ! -e x.graft

finish
