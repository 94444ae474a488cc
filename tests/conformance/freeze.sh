#!/bin/bash
# freeze.sh TOOLDIR FIXTUREDIR: freezing is exact.  graft-freeze --until a cut (and
# --last-blocks) on the keep-bn small_cnn and resnet18, then graft-train a few steps:
# every frozen parameter is bit-identical to the input's, every trainable one changed,
# BatchNormalization statistics change exactly where the BN's scale trains; torch's
# Identity aliases (resnet18 stores its equal BN biases once) are parted, so training one
# never changes another.
set -u
[ $# -eq 2 ] || { echo "usage: freeze.sh TOOLDIR FIXTUREDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
$PY -c "
import numpy as np
r = np.random.default_rng(0)
np.save('x1.npy', r.standard_normal((32, 1, 28, 28), dtype=np.float32))
np.save('y1.npy', r.integers(0, 10, 32).astype(np.int64))
np.save('x3.npy', r.standard_normal((4, 3, 224, 224), dtype=np.float32))
np.save('y3.npy', r.integers(0, 1000, 4).astype(np.int64))"
graft-data npy x1.npy y1.npy -o d1.graft 2>/dev/null
graft-data npy x3.npy y3.npy -o d3.graft 2>/dev/null

# exact NAME MODEL DATA BATCH FREEZE-ARGS...: freeze, train 3 steps, compare
exact() {
	local name=$1 model=$2 data=$3 batch=$4; shift 4
	graft-freeze "$model" "$@" -o $name.frozen.graft 2>/dev/null || { bad "$name: graft-freeze"; return; }
	graft-info --json --tensors $name.frozen.graft > $name.info.json
	graft-train $name.frozen.graft --data $data --steps 3 --batch $batch --lr 0.05 -q \
		-o $name.trained.graft || { bad "$name: graft-train"; return; }
	graft-export $name.frozen.graft -o $name.before.onnx && graft-export $name.trained.graft -o $name.after.onnx
	check "$name: frozen unchanged, trainable changed, BN statistics follow their scale" $PY - $name <<'PYEOF'
import json, sys, numpy as np, onnx
from onnx import numpy_helper as nh
name = sys.argv[1]
info = json.load(open(name + ".info.json"))
tensors = {t["name"]: t for t in info["tensors"]}
def load(p):
    g = onnx.load(p).graph
    return {t.name: nh.to_array(t) for t in g.initializer}, g
before, g = load(name + ".before.onnx")
after, _ = load(name + ".after.onnx")
bad = []
trained = frozen = 0
for n, t in tensors.items():
    if t["role"] != "parameter":
        continue
    same = np.array_equal(before[n], after[n])
    if t["trainable"]:
        trained += 1
        if same:
            bad.append("trainable %s did not change" % n)
    else:
        frozen += 1
        if not same:
            bad.append("frozen %s changed" % n)
for nd in g.node:
    if nd.op_type != "BatchNormalization":
        continue
    trains = tensors.get(nd.input[1], {}).get("trainable", False)
    for s in nd.input[3:5]:
        same = np.array_equal(before[s], after[s])
        if trains == same:
            bad.append("%s: statistics %s (scale %s)" % (s, "unchanged" if same else "changed",
                                                       "trains" if trains else "frozen"))
if not trained or not frozen:
    bad.append("%d trainable, %d frozen: nothing to compare" % (trained, frozen))
print("%s: %d trainable, %d frozen parameters checked" % (name, trained, frozen))
for b in bad[:10]:
    print("  " + b)
sys.exit(1 if bad else 0)
PYEOF
}

exact small_until "$fixdir/keepbn/small_cnn.onnx" d1.graft 16 --none --until 2
exact small_last "$fixdir/keepbn/small_cnn.onnx" d1.graft 16 --last-blocks 1
exact r18_until "$fixdir/keepbn/resnet18.onnx" d3.graft 2 --none --until 9
exact r18_last "$fixdir/keepbn/resnet18.onnx" d3.graft 2 --last-blocks 3
check "resnet18's parameter and buffer aliases are parted by graft-freeze" $PY -c "
import json, sys
d = json.load(open('r18_until.info.json'))
left = [a for a in d.get('aliases', []) if a.get('role') in ('parameter', 'buffer')]
sys.exit(1 if left else 0)"
exact small_strategy2 "$fixdir/keepbn/small_cnn.onnx" d1.graft 16 --strategy 2
check "--strategy 1 to 4 train ever more of resnet18, 4 all of it" sh -c '
	prev=0
	for s in 1 2 3 4; do
		n=$(graft-freeze '"$fixdir"'/keepbn/resnet18.onnx --strategy $s -o s$s.graft 2>&1 |
		    sed -n "s/.*: \([0-9]*\) of \([0-9]*\) parameter.*/\1 \2/p")
		set -- $n
		[ "$1" -gt "$prev" ] || exit 1
		prev=$1
	done
	[ "$1" = "$2" ]'
expect_error "unknown cut" "graft-freeze: .*no cut 'nope'" \
	graft-freeze "$fixdir/keepbn/small_cnn.onnx" --until nope -o x.graft
expect_error "too many blocks" "graft-freeze: .*--last-blocks 99" \
	graft-freeze "$fixdir/keepbn/small_cnn.onnx" --last-blocks 99 -o x.graft
finish
