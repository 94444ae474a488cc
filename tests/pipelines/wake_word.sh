#!/bin/bash
# wake_word.sh: examples/wake-word reduced (make SMALL=1: 60 positives, 90 negatives and 2
# minutes of speech to train on; 30 held-out positives, 30 confusables and 2 minutes of
# held-out speech), in a temporary folder: the exported head has openWakeWord's interface
# ([N, 16, 96] in, one score out), loads in ONNX Runtime and gives graft's scores there,
# and separates the held-out positives from the held-out confusable phrases.
# Needs espeak-ng, sox and fortunes (.ci/setup-deps), and the npm registry (the
# openWakeWord models, onnxruntime-node).
tests=$(cd "$(dirname "$0")/.." && pwd)
. "$tests/pipelines/lib.sh"

for c in espeak-ng sox make npm node; do
	command -v $c >/dev/null || { bad "$c is not installed (.ci/setup-deps)"; finish; exit 1; }
done
[ -f /usr/share/games/fortunes/computers ] || { bad "fortunes is not installed"; finish; exit 1; }
export GRAFT_ORT_DIR=${GRAFT_ORT_DIR:-$TOOLS/../ort}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

if ! make -C "$SRC/examples/wake-word" -j2 SMALL=1 W="$work/ww" RESULTS="$work/results.md" \
	SVG="$work/scores.svg" TOOLS="$TOOLS" ORT="$GRAFT_ORT_DIR" >make.log 2>&1; then
	bad "make SMALL=1 failed:"; tail -20 make.log; finish; exit 1
fi
check "results.md written" grep -q "recall on held-out" results.md
check "scores.svg written" grep -q "<polyline" scores.svg
check "the exported head: openWakeWord's interface, ONNX Runtime gives graft's scores, it separates" $PY - <<'PY'
import json, numpy as np, onnx
m = onnx.load('ww/hey_graft.onnx')
onnx.checker.check_model(m, full_check=True)
dims = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
assert len(m.graph.input) == 1 and dims(m.graph.input[0])[1:] == [16, 96], dims(m.graph.input[0])
assert len(m.graph.output) == 1 and dims(m.graph.output[0])[1:] == [1], dims(m.graph.output[0])
assert m.graph.node[-1].op_type == 'Sigmoid'
ort = json.load(open('ww/ort-clips.json'))
graft = np.load('ww/graft-clips.npy').reshape(-1)
s = np.array(ort['scores'], np.float32)
assert ort['count'] == 60 and len(s) == 60, ort['count']
assert np.abs(s - graft).max() <= 1e-5, np.abs(s - graft).max()
# the held-out clips: 30 confusable phrases (class 0), then 30 positives (class 1)
neg, pos = s[:30], s[30:]
auc = np.mean([[float(p > n) + 0.5 * (p == n) for n in neg] for p in pos])
assert auc >= 0.9, auc
assert (pos >= 0.5).mean() >= 0.7, (pos >= 0.5).mean()
print('auc %.3f, recall %.2f, confusables set off %.2f' % (auc, (pos >= 0.5).mean(), (neg >= 0.5).mean()))
PY
finish
