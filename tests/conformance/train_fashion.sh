#!/bin/bash
# train_fashion.sh TOOLDIR FIXTUREDIR: training from random initialisation works: the
# keep-bn small_cnn fixture (seeded random weights, PyTorch's default initialisation),
# trained by graft-train for 2 epochs on Debian's Fashion-MNIST training set (60,000
# images), reaches at least 89% accuracy on the 10,000 test images (graft-eval).
# About a minute on 2 cores.
set -u
[ $# -eq 2 ] || { echo "usage: train_fashion.sh TOOLDIR FIXTUREDIR" >&2; exit 2; }
TOOLS=$1
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pipelines/lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
FM=/usr/share/datasets/fashion-mnist

"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null || { echo "no fixtures"; exit 1; }
check "train set" sh -c "graft-data idx $FM/train-images-idx3-ubyte.gz $FM/train-labels-idx1-ubyte.gz -o train.graft 2>/dev/null"
check "test set" sh -c "graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz -o test.graft 2>/dev/null"
check "2 epochs" graft-train "$fixdir/keepbn/small_cnn.onnx" --data train.graft --epochs 2 \
	--batch 64 --optimizer adam --lr 0.002 --schedule cosine --seed 1 -q --log log.jsonl -o fm.graft
check "graft-eval" sh -c "graft-eval fm.graft --data test.graft --json > ev.json"
acc=$($PY -c "import json; print(json.load(open('ev.json'))['accuracy'])" 2>/dev/null || echo 0)
echo "test accuracy after 2 epochs: $acc (goal 0.89); $(tail -1 log.jsonl)"
check "test accuracy >= 89%" $PY -c "import sys; sys.exit(0 if $acc >= 0.89 else 1)"
finish
