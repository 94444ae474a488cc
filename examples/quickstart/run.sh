#!/bin/bash
# run.sh BUILD_DIR: graft's main job, end to end, in a couple of minutes on 2 cores.
#
# The shipped pretrained model (examples/pretrain/compact_cnn.onnx: a compact CNN that
# graft trained on Fashion-MNIST classes 0-4) is adapted to a new task with little data:
# Fashion-MNIST classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), 50 images per
# class (40 to train, 10 to validate), tested on the 5,000 test images of those classes.
#   import -> new head -> plan (short trials of what to train, on the training data;
#   the model comes back frozen as picked, its recipe inside) -> train (progress bar, the
#   recipe from the model) -> evaluate -> export for deployment (BatchNormalization
#   folded) -> check in ONNX Runtime 1.30 that the exported model scores what graft
#   measured
# and a summary: the trials, the pick, before and after.  ONNX Runtime is installed from npm on first use into
# $GRAFT_CACHE (default ~/.cache/graft); outputs go to $GRAFT_OUT (default
# ./quickstart-out).
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=${GRAFT_CACHE:-$HOME/.cache/graft}
out=${GRAFT_OUT:-quickstart-out}
FM=${FM:-/usr/share/datasets/fashion-mnist}
PY=/usr/bin/python3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PATH=$build/tools:$PATH
mkdir -p "$cache" "$out"
cd "$out"
step() { printf '\n== %s\n' "$*"; }
acc() { $PY -c "import json, sys; print('%.1f' % (100 * json.load(open(sys.argv[1]))['accuracy']))" "$1"; }
t0=$(date +%s.%N)
model=$top/examples/pretrain/compact_cnn.onnx

step "the data: Fashion-MNIST classes 5-9, 50 per class, and their 5,000 test images"
graft-data idx "$FM/train-images-idx3-ubyte.gz" "$FM/train-labels-idx1-ubyte.gz" \
	--classes 5,6,7,8,9 --take 50 --split 0.8 --seed 1 -o train.graft --val-out val.graft
graft-data idx "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" \
	--classes 5,6,7,8,9 -o test.graft

step "graft-import compact_cnn.onnx (and back: the round trip is lossless)"
graft-import "$model" -o model.graft
graft-export model.graft | cmp - "$model"
echo "graft-export gives back the very bytes of compact_cnn.onnx"
graft-info model.graft

step "graft-head: a new 5-class classifier in place of the old one"
graft-head model.graft --classes 5 --seed 1 -o headed.graft
graft-eval headed.graft --data test.graft --json > before.json
echo "before training: $(acc before.json)% on the test set (a new head knows nothing yet)"

step "graft-plan: what to train, decided by short trials on the training data"
graft-plan headed.graft --data train.graft --seed 1 --apply --json-out plan.json -o frozen.graft

step "graft-train frozen.graft --data train.graft --val val.graft (the recipe the plan put in the model)"
graft-train frozen.graft --data train.graft --val val.graft --seed 1 --log log.jsonl -o tuned.graft
graft-plot log.jsonl -o curves.svg --title "compact_cnn on Fashion-MNIST 5-9, 40 per class"
echo "learning curves: $out/curves.svg"

step "graft-eval tuned.graft --data test.graft"
graft-eval tuned.graft --data test.graft
graft-eval tuned.graft --data test.graft --json > after.json

step "graft-export --fold-bn --strip: the deployable model"
graft-export tuned.graft --fold-bn --strip -o tuned.onnx
$PY -c "import onnx; onnx.checker.check_model(onnx.load('tuned.onnx'), full_check=True)"
echo "onnx.checker (full check) passes"

step "ONNX Runtime 1.30 on the exported model"
"$top/tests/conformance/setup-ort.sh" "$cache/ort"
node "$top/examples/ort_accuracy.js" tuned.onnx test.graft --ort-dir "$cache/ort" > ort.json
ort=$(acc ort.json)
graft=$(acc after.json)
echo "ONNX Runtime: $ort% on the test set, graft-eval: $graft%"
$PY - <<'PY'
import json
a, o = json.load(open("after.json")), json.load(open("ort.json"))
# graft-eval counts ties as graft's arg max does, ORT's output may differ in the last bit
assert abs(a["accuracy"] * a["count"] - o["correct"]) <= 1, "ONNX Runtime disagrees with graft-eval"
PY

t1=$(date +%s.%N)
step "summary"
$PY - "$t0" "$t1" <<'PY'
import json, sys
p = json.load(open("plan.json"))
c = p["classic"]
b, a, o = (json.load(open(f)) for f in ("before.json", "after.json", "ort.json"))
print(f"model        examples/pretrain/compact_cnn.onnx (Fashion-MNIST 0-4)")
print(f"task         Fashion-MNIST 5-9, {c['samples_per_class']:g} training images per class")
print(f"classic case {c['case']} (similarity {c['similarity']:.2f}): it would train "
      + ("the head alone" if c['train_blocks'] == 1 else "the top blocks" if c['train_blocks'] else "everything"))
print(f"graft-plan   {len(p['trials'])} trials, {p['folds']}-fold, in {p['seconds']:.0f} s:")
for t in p["trials"]:
    mark = "  <- pick" if t["round"] == p["pick"]["round"] and t["strategy"] == p["pick"]["strategy"] \
        and t["lr"] == p["pick"]["lr"] else ""
    print(f"  round {t['round']}  {t['strategy']:7} lr {t['lr']:<6g} {t['epochs']:5.1f} epochs  "
          f"{100 * t['accuracy']:5.1f}% held apart{mark}")
print(f"pick         {p['pick']['strategy']} at lr {p['pick']['lr']:g}: graft-freeze {p['freeze']}, "
      f"graft-train {p['train']}")
print(f"test set     {a['count']} images")
print(f"before       {100 * b['accuracy']:.1f}%  (new head, untrained)")
print(f"after        {100 * a['accuracy']:.1f}%  (graft-eval)   {100 * o['accuracy']:.1f}%  (ONNX Runtime, exported)")
print(f"time         {float(sys.argv[2]) - float(sys.argv[1]):.1f} s")
PY
