#!/bin/bash
# distributed.sh TOOLDIR FIXTUREDIR: data-parallel graft-train's speed on this machine:
# resnet18 (keep-bn reference, a new 10-class head), full fine-tuning at a global batch
# of 32 on random 3x224x224 data, as
#   A: 1 process x 2 threads (the baseline), and
#   B: mpirun -np 2, 1 thread each (each process runs 16 samples of every batch), the
#      gradients averaged in 25 MB buckets while backward goes on (the default), and
#   C: the same with one bucket, averaged after backward (--bucket 1G),
# both in this run, alternating, best of GRAFT_BENCH_ROUNDS (default 2) rounds of 2K
# steps (K: GRAFT_BENCH_K, default 4), images/s over the last K (the first hold planning).
# Prints the CPU, oneDNN's ISA, the load, the rates, their ratios (goal: B >= 0.9x A) and
# the time per step B and C wait for the exchange (46.8 MB of resnet18 gradients).
# Reports only: exit 1 only when a tool fails.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: distributed.sh TOOLDIR FIXTUREDIR" >&2; exit 2; }
tooldir=$(cd "$1" && pwd)
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-/usr/bin/python3}
export PATH=$tooldir:$PATH
command -v mpirun >/dev/null || { echo "distributed bench: no mpirun (openmpi-bin)"; exit 0; }
ldd "$tooldir/graft-train" | grep -q libmpi ||
	{ echo "distributed bench: graft-train was built without MPI"; exit 0; }
"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null
w=$(mktemp -d "${TMPDIR:-/tmp}/graft-dist-bench.XXXXXX")
trap 'rm -rf "$w"' EXIT
cd "$w"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export GRAFT_WISDOM=off OMP_WAIT_POLICY=passive
K=${GRAFT_BENCH_K:-4}
ROUNDS=${GRAFT_BENCH_ROUNDS:-2}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
isa=$(DNNL_VERBOSE=1 graft-run "$fixdir/plain/small_cnn.onnx" 2>/dev/null |
      sed -n 's/^onednn_verbose,info,cpu,isa://p' | head -n1)
load0=$(cut -d' ' -f1 /proc/loadavg)

$PY - <<'PYEOF'
import numpy as np
rng = np.random.default_rng(0)
np.save("x.npy", rng.standard_normal((128, 3, 224, 224), dtype=np.float32))
np.save("y.npy", rng.integers(0, 10, 128).astype(np.int64))
PYEOF
graft-data npy x.npy y.npy -o d.graft 2>/dev/null
graft-head "$fixdir/keepbn/resnet18.onnx" --classes 10 -o r18.graft 2>/dev/null
args="r18.graft --data d.graft --batch 32 --steps $((2 * K)) --log-every $K -q"

# rate LOG: images/s of the second window; exch LOG: its exchange time per step
rate() { $PY -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])['images_per_s'])" "$1"; }
exch() { $PY -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1]).get('comm_s_per_step', 0))" "$1"; }
best_a=0 best_b=0 best_c=0 comm_b=0 comm_c=0
for round in $(seq "$ROUNDS"); do
	OMP_NUM_THREADS=2 graft-train $args --log a.jsonl -o a.graft
	mpirun --quiet -np 2 -x OMP_NUM_THREADS=1 graft-train $args --log b.jsonl -o b.graft
	mpirun --quiet -np 2 -x OMP_NUM_THREADS=1 graft-train $args --bucket 1G --log c.jsonl -o c.graft
	a=$(rate a.jsonl) b=$(rate b.jsonl) c=$(rate c.jsonl)
	echo "round $round: A $a images/s; B $b images/s, waited $(exch b.jsonl) s a step; C $c images/s, waited $(exch c.jsonl) s a step"
	best_a=$($PY -c "print(max($best_a, $a))")
	if $PY -c "import sys; sys.exit(not $b > $best_b)"; then best_b=$b comm_b=$(exch b.jsonl); fi
	if $PY -c "import sys; sys.exit(not $c > $best_c)"; then best_c=$c comm_c=$(exch c.jsonl); fi
done
load1=$(cut -d' ' -f1 /proc/loadavg)
echo "cpu: $cpu; oneDNN ISA: ${isa:-?}; load $load0 -> $load1"
echo "resnet18 full fine-tuning, global batch 32, best of $ROUNDS rounds of the second $K steps:"
echo "  A: 1 process x 2 threads:                          $best_a images/s"
echo "  B: 2 processes x 1 thread, 25 MB buckets (overlap):  $best_b images/s ($($PY -c "print('%.2f' % ($best_b / $best_a))")x A; goal >= 0.9x), waiting $comm_b s a step for the exchange"
echo "  C: 2 processes x 1 thread, one bucket after backward: $best_c images/s ($($PY -c "print('%.2f' % ($best_c / $best_a))")x A), waiting $comm_c s a step"
