#!/bin/bash
# export.sh: graft-export's deployment options on the keep-bn reference models.
# --fold-bn: the models get random BatchNormalization statistics first (torch's fresh
# ones fold to almost nothing: scale 1, mean 0, var 1), reached through the Identity
# aliases the exporter made; the folded model has no BatchNormalization, no dead alias
# or unread initializer, passes onnx.checker's full check, and computes the unfolded
# model's outputs within 1e-4 relative on a seeded input.  --strip: a model graft-train
# tuned loses graft's metadata and training state, a head's Dropout goes, and the
# outputs stay.  Both models of a comparison run in ONNX Runtime, or in graft-run when
# onnxruntime-node cannot be installed (a note says so).  Errors last.
# Env: FIXTURES (default TOOLS/../fixtures, made by tests/fixtures/ensure_reference_models.sh
# on first use), GRAFT_ORT_DIR (default TOOLS/../ort, made by tests/conformance/setup-ort.sh).
tests=$(cd "$(dirname "$0")/.." && pwd)
. "$tests/pipelines/lib.sh"

FIXTURES=${FIXTURES:-$TOOLS/../fixtures}
export GRAFT_ORT_DIR=${GRAFT_ORT_DIR:-$TOOLS/../ort}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if ! "$tests/fixtures/ensure_reference_models.sh" "$FIXTURES" >fixtures.log 2>&1; then
	bad "reference models: $(tail -n1 fixtures.log)"; finish; exit 1
fi
ort=1
if ! "$tests/conformance/setup-ort.sh" "$GRAFT_ORT_DIR" >ort.log 2>&1; then
	echo "note: no onnxruntime-node ($(tail -n1 ort.log)): comparing in graft-run instead"
	ort=0
fi

cat >check.py <<'PY'
import glob, os, sys
import numpy as np, onnx
from onnx import numpy_helper as nh

def alias_targets(g):
    """Identity output -> the initializer it stands for (torch's aliases)."""
    inits = {i.name for i in g.initializer}
    to = {}
    for _ in range(len(g.node)):
        for n in g.node:
            if n.op_type == "Identity" and (n.input[0] in inits or n.input[0] in to):
                to[n.output[0]] = to.get(n.input[0], n.input[0])
    return to

def outputs(d):
    """Output arrays of a run: ORT's raw .bin (float32) or graft-run's .npy."""
    files = sorted(f for f in glob.glob(d + "/*.bin") + glob.glob(d + "/*.npy"))
    return {os.path.splitext(os.path.basename(f))[0]:
            np.load(f) if f.endswith(".npy") else np.fromfile(f, "<f4") for f in files}

def max_rel(a, b):
    oa, ob = outputs(a), outputs(b)
    assert oa and oa.keys() == ob.keys(), (list(oa), list(ob))
    return max(float(np.abs(oa[k].ravel() - ob[k].ravel()).max() / np.abs(oa[k]).max())
               for k in oa)

cmd = sys.argv[1]
if cmd == "stats":          # stats SRC DST: random BN statistics; prints the BN count
    m = onnx.load(sys.argv[2])
    g, rng = m.graph, np.random.default_rng(7)
    to = alias_targets(g)
    positive = {}
    bns = [n for n in g.node if n.op_type == "BatchNormalization"]
    for n in bns:
        for k in range(1, 5):
            name = to.get(n.input[k], n.input[k])
            positive[name] = positive.get(name, False) or k in (1, 4)
    for i in g.initializer:
        if i.name in positive:
            a = nh.to_array(i)
            v = rng.uniform(0.5, 1.5, a.shape) if positive[i.name] else rng.normal(0, 0.3, a.shape)
            i.CopyFrom(nh.from_array(v.astype(np.float32), i.name))
    assert len(positive) > 0
    onnx.save(m, sys.argv[3])
    print(len(bns))
elif cmd == "input":        # input MODEL NPY: a seeded input at batch 2
    m = onnx.load(sys.argv[2], load_external_data=False)
    dims = [d.dim_value or 2 for d in m.graph.input[0].type.tensor_type.shape.dim]
    np.save(sys.argv[3], np.random.default_rng(5).uniform(-1, 1, dims).astype(np.float32))
elif cmd == "deployable":   # deployable FILE OP: checker, no OP, nothing dead
    m = onnx.load(sys.argv[2])
    onnx.checker.check_model(m, full_check=True)
    g = m.graph
    assert not [n for n in g.node if n.op_type == sys.argv[3]], "a %s is left" % sys.argv[3]
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    assert all(i.name in read for i in g.initializer), "an initializer nobody reads"
    assert all(set(n.output) & read for n in g.node), "a node nobody reads"
elif cmd == "close":        # close A B: the runs in folders A and B, within 1e-4 relative
    r = max_rel(sys.argv[2], sys.argv[3])
    print("   max rel %.2e" % r)
    assert r <= 1e-4
elif cmd == "differ":       # differ A B: more than 1e-2 apart (the statistics matter)
    assert max_rel(sys.argv[2], sys.argv[3]) > 1e-2
elif cmd == "metadata":     # metadata FILE yes|no: has graft.* metadata or not
    keys = [p.key for p in onnx.load(sys.argv[2]).metadata_props if p.key.startswith("graft.")]
    assert bool(keys) == (sys.argv[3] == "yes"), keys
PY
py() { PYTHONDONTWRITEBYTECODE=1 $PY check.py "$@"; }

# run MODEL DIR: MODEL's outputs on x.npy (its input "input"), in ORT or graft-run
run() {
	rm -rf "$2"
	if [ $ort = 1 ]; then
		node "$tests/conformance/ort_run.js" "$1" "$2" --input input=x.npy >/dev/null 2>&1
	else
		graft-run "$1" -i input=x.npy -o "$2" >/dev/null 2>&1
	fi
}
# same MODEL_A MODEL_B: both run, and agree within 1e-4
same() { run "$1" a.out && run "$2" b.out && py close a.out b.out; }

for name in small_cnn resnet18 mobilenet_v2; do
	fresh=$FIXTURES/keepbn/$name.onnx
	n=$(py stats "$fresh" $name.onnx) || { bad "$name: random statistics"; continue; }
	py input $name.onnx x.npy
	check "$name: --fold-bn folds all $n" sh -c "graft-export $name.onnx --fold-bn \
		-o $name.fold.onnx 2>&1 | grep -qx 'graft-export: folded $n BatchNormalization nodes'"
	check "$name: no BN, nothing dead, full check" py deployable $name.fold.onnx BatchNormalization
	check "$name: the same outputs" same $name.onnx $name.fold.onnx
	check "$name: from a .graft through a pipe, the same bytes" sh -c "graft-import $name.onnx |
		graft-export --fold-bn 2>/dev/null | cmp -s - $name.fold.onnx"
done
py input small_cnn.onnx x.npy
check "small_cnn: random statistics change its outputs" eval \
	'run $FIXTURES/keepbn/small_cnn.onnx a.out && run small_cnn.onnx b.out && py differ a.out b.out'

# --strip on what graft-train wrote: optimizer state (detached), graft.* metadata, and
# running statistics that are no longer fresh.
$PY -c "
import numpy as np
r = np.random.default_rng(0)
np.save('dx.npy', r.standard_normal((32, 1, 28, 28), dtype=np.float32))
np.save('dy.npy', r.integers(0, 10, 32).astype(np.int64))"
graft-data npy dx.npy dy.npy -o d.graft 2>/dev/null
graft-train "$FIXTURES/keepbn/small_cnn.onnx" --data d.graft --steps 2 --batch 16 \
	--optimizer adam -o t.graft 2>/dev/null
check "trained: optimizer state and graft metadata" sh -c "graft-info --tensors t.graft |
	grep -q 'graft.optim/' && graft-export t.graft -o t.onnx && $PY check.py metadata t.onnx yes"
check "--strip: no graft metadata" sh -c \
	"graft-export t.graft --strip -o ts.onnx && $PY check.py metadata ts.onnx no"
check "--strip: no training state, nothing dead, full check" eval \
	'py deployable ts.onnx Dropout && ! grep -q graft.optim ts.onnx'

# Provenance: the exported model's "provenance" metadata names the tools that made it, in
# order, with their options, the datasets' digests and the validation accuracy; --strip
# keeps it; graft-info shows it; a round trip keeps the bytes; the next tool adds a line.
graft-train "$FIXTURES/keepbn/small_cnn.onnx" --data d.graft --val d.graft --steps 2 \
	--batch 16 -q -o tv.graft 2>/dev/null
graft-export tv.graft --strip -o tv.onnx
check "provenance: the tool, its options, the data's digest, the accuracy" $PY -c "
import onnx, re
p = {m.key: m.value for m in onnx.load('tv.onnx').metadata_props}['provenance'].split('\n')
assert len(p) == 1, p
assert p[0].startswith('graft-train $FIXTURES/keepbn/small_cnn.onnx --data d.graft --val d.graft'), p
assert re.search(r'# data d.graft xxh64:[0-9a-f]{16}, d.graft xxh64:[0-9a-f]{16}', p[0]), p
assert re.search(r'# val accuracy [0-9.]+% on d.graft', p[0]), p"
check "graft-info shows it" sh -c "graft-info tv.onnx | grep -q '^metadata:   provenance = graft-train'"
check "a round trip keeps the bytes" sh -c "graft-import tv.onnx | graft-export | cmp -s - tv.onnx"
check "an imported model exports as it came (no provenance)" sh -c \
	"graft-import $FIXTURES/keepbn/small_cnn.onnx | graft-export | cmp -s - $FIXTURES/keepbn/small_cnn.onnx"
graft-import tv.onnx | graft-freeze --all -o tf2.graft 2>/dev/null
check "the next tool adds its line" sh -c "graft-export tf2.graft -o tf2.onnx && $PY -c \"
import onnx
p = {m.key: m.value for m in onnx.load('tf2.onnx').metadata_props}['provenance'].split('\\n')
assert len(p) == 2 and p[0].startswith('graft-train') and p[1].startswith('graft-freeze --all'), p\""
py input t.onnx x.npy
check "--strip: the same outputs" same t.onnx ts.onnx
check "--strip --fold-bn on trained statistics: the same outputs" eval \
	'graft-export t.graft --strip --fold-bn -o tf.onnx 2>/dev/null &&
	py deployable tf.onnx BatchNormalization && same t.onnx tf.onnx'
check "a head with Dropout" sh -c "graft-head t.graft --classes 4 --hidden 16 --dropout 0.3 \
	2>/dev/null | graft-export -o hd.onnx && grep -q Dropout hd.onnx"
check "--strip drops the Dropout" eval \
	'graft-export hd.onnx --strip -o hs.onnx && py deployable hs.onnx Dropout'
check "--strip without the Dropout: the same outputs" same hd.onnx hs.onnx

# Nothing to fold is no error; bad input and bad options are, and leave no output.
plain=$FIXTURES/plain/small_cnn.onnx
check "--fold-bn with nothing to fold: 0 folded, the model unchanged" sh -c \
	"graft-export $plain --fold-bn -o p.onnx 2>p.err && grep -qx \
	'graft-export: folded 0 BatchNormalization nodes' p.err && graft-export $plain | cmp -s - p.onnx"
printf 'not a model' >junk.onnx
expect_error "--fold-bn on junk" "^graft-export: junk.onnx: .*not an ONNX model" \
	graft-export junk.onnx --fold-bn --strip -o out.onnx
check "--fold-bn=1 is a usage error" sh -c \
	"graft-export $plain --fold-bn=1 -o out.onnx 2>/dev/null; test \$? = 2"
check "no output after the errors" test ! -e out.onnx
finish
