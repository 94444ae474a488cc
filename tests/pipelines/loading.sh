#!/bin/bash
# loading.sh: datasets of compact images through the tools (docs/loading.md): JPEGs and
# PNGs of several sizes made into --store uint8 and encoded datasets; graft-train on them
# with --augment rrc,flip,jitter gives the same weights with 0, 1 and 3 loader threads
# and from either store (the same pixels), resumes exactly, and reports the loader with
# --profile; graft-eval scores them a batch at a time, as graft-eval on the same images
# decoded into a float dataset by graft-data graft... (graft-quantize and graft-verify
# read them decoded); the refusals: a model without a fixed input size, grey images for
# an RGB model, --augment that does not fit the data, a sample that no longer decodes.
. "$(dirname "$0")/lib.sh"

$PY - <<'PY'
import os, numpy as np, torch, torch.nn as nn
from PIL import Image
rng = np.random.default_rng(0)
for c in ("cat", "dog", "fox"):
    os.makedirs("imgs/" + c)
for i in range(24):
    h, w = rng.integers(20, 70, 2)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[:, :, i % 3] //= 4                  # a colour per class, something to learn
    ext = "png" if i % 2 else "jpg"         # (JPEG quality 100: some loss, same both ways)
    Image.fromarray(img).save(f"imgs/{('cat', 'dog', 'fox')[i % 3]}/{i:02d}.{ext}", quality=100)
torch.manual_seed(0)
def cnn(size):
    m = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    return m
dyn = {"x": {0: "n"}, "y": {0: "n"}}
torch.onnx.export(cnn(32), torch.zeros(1, 3, 32, 32), "cnn.onnx", input_names=["x"],
                  output_names=["y"], dynamic_axes=dyn, opset_version=13)
dyn["x"].update({2: "h", 3: "w"})
torch.onnx.export(cnn(32), torch.zeros(1, 3, 32, 32), "anysize.onnx", input_names=["x"],
                  output_names=["y"], dynamic_axes=dyn, opset_version=13)
PY
graft-import cnn.onnx -o cnn.graft
check "uint8 and encoded datasets" sh -c "graft-data images imgs --store uint8 --mean 0.5 \
	--std 0.25 --split 0.75 -o u-train.graft 2>/dev/null && graft-data images imgs --store encoded \
	--mean 0.5 --std 0.25 --split 0.75 -o e-train.graft 2>/dev/null"
# same_tensors A B: the two archives hold the same tensors, byte for byte (their
# histories differ: the command lines do)
same_tensors() { $PY - "$1" "$2" <<'PY'
import sys, tarfile
def t(p):
    a = tarfile.open(p)
    return {m.name: a.extractfile(m).read() for m in a.getmembers() if m.name.startswith("tensors/")}
sys.exit(0 if t(sys.argv[1]) == t(sys.argv[2]) else 1)
PY
}
common="--data u-train.graft --val u-val.graft --batch 5 --augment rrc,flip,jitter --optimizer adam --lr 0.01 --seed 4 -q"
check "train on uint8, 0 loader threads" graft-train cnn.graft $common --epochs 3 --loader-threads 0 -o t0.graft
check "  1 thread" graft-train cnn.graft $common --epochs 3 --loader-threads 1 -o t1.graft
check "  3 threads" graft-train cnn.graft $common --epochs 3 --loader-threads 3 -o t3.graft
check "    0 = 1" same_tensors t0.graft t1.graft
check "    0 = 3" same_tensors t0.graft t3.graft
# PNGs decode to the same pixels from either store, and so do JPEGs (one decoder)
check "  encoded gives the uint8 run's weights" sh -c "graft-train cnn.graft $(echo "$common" |
	sed 's/u-train/e-train/; s/u-val/e-val/') --epochs 3 -o te.graft"
check "    bit for bit" same_tensors t0.graft te.graft
check "  without --augment, other weights" graft-train cnn.graft --data u-train.graft --batch 5 \
	--optimizer adam --lr 0.01 --seed 4 -q --epochs 3 -o plain.graft
differ() { ! same_tensors "$1" "$2"; }
check "    (augmentation draws something)" differ plain.graft t0.graft
check "stopped and resumed = straight" sh -c "graft-train cnn.graft $common --steps 4 -o part.graft &&
	graft-train cnn.graft $common --steps 9 --resume part.graft -o resumed.graft &&
	graft-train cnn.graft $common --steps 9 -o straight.graft"
check "  bit for bit" same_tensors resumed.graft straight.graft
check "--profile reports the loader" sh -c "graft-train cnn.graft $common --steps 3 --profile \
	-o /dev/null -f 2>&1 | grep -q '^graft-train: loader: 15 samples: decoding .* the step waited'"
check "graft-eval on compact images" sh -c "graft-eval t0.graft --data u-val.graft --json > e.json"
check "graft-quantize calibrates on them (decoded)" graft-quantize t0.graft --data u-val.graft -q -o q.graft
check "graft-verify compares on them" sh -c "graft-verify t0.graft q.graft --data e-val.graft > v.txt"
check "  graft-eval's count and classes" $PY -c "
import json
e = json.load(open('e.json'))
assert e['count'] == 6 and len(e['confusion']) == 3, e"

# sharded datasets: the same samples, the same run
check "--shard-size: shards and their list" sh -c "graft-data images imgs --store uint8 --mean 0.5 \
	--std 0.25 --split 0.75 --shard-size 8K -o s-train.graft 2>/dev/null &&
	head -n1 s-train.graft | grep -qx 'graft-shards 1' && test -s s-train-00002.graft &&
	test -s s-val-00000.graft && ! grep -q / s-train.graft"
check "  training on the list = training on one file" sh -c "graft-train cnn.graft $(echo "$common" |
	sed 's/u-train/s-train/; s/u-val/s-val/') --epochs 3 -o ts.graft"
check "    bit for bit" same_tensors t0.graft ts.graft
check "  the history notes the same digest" sh -c "
	tar xOf t0.graft manifest | grep -o 'xxh64:[0-9a-f]*' > d0.txt &&
	tar xOf ts.graft manifest | grep -o 'xxh64:[0-9a-f]*' > ds.txt && test -s d0.txt && cmp -s d0.txt ds.txt"
check "  graft-data graft joins them again" sh -c "graft-data graft s-train.graft -o joined.graft 2>/dev/null"
check "    the samples of the unsharded file" same_tensors joined.graft u-train.graft
mkdir sub && cp s-val-0000*.graft sub/ && printf 'graft-shards 1\ns-val-00000.graft\r\n\ns-val-00001.graft\n' > sub/list.graft
check "  paths relative to the list's folder, blank lines and CRLF" graft-eval t0.graft --data sub/list.graft -b 2
printf 'graft-shards 1\ns-val-00000.graft\nnope-00009.graft\n' > missing.graft
expect_error "a shard missing from a list" "^graft-eval: missing.graft: nope-00009.graft: No such file or directory" \
	graft-eval t0.graft --data missing.graft
graft-data images imgs --store uint8 --classes dog,fox,cat -o other.graft 2>/dev/null
printf 'graft-shards 1\ns-val-00000.graft\nother.graft\n' > classes.graft
expect_error "shards of other classes" "^graft-eval: classes.graft: other.graft's classes \(dog,fox,cat\) are not s-val-00000.graft's \(cat,dog,fox\)" \
	graft-eval t0.graft --data classes.graft
graft-data images imgs --store uint8 --mean 0.4 --std 0.25 -o norm.graft 2>/dev/null
printf 'graft-shards 1\ns-val-00000.graft\nnorm.graft\n' > norm-list.graft
expect_error "shards normalised otherwise" "^graft-eval: norm-list.graft: norm.graft's normalisation \(graft.mean, graft.std\) is not s-val-00000.graft's" \
	graft-eval t0.graft --data norm-list.graft
printf 'graft-shards 1\ns-val-00000.graft\ne-val.graft\n' > store.graft
expect_error "shards stored otherwise" "^graft-eval: store.graft: e-val.graft's images are stored or coloured otherwise" \
	graft-eval t0.graft --data store.graft
printf 'graft-shards 1\nclasses.graft\n' > nested.graft
expect_error "a list inside a list" "^graft-eval: nested.graft: classes.graft: a list of shards, not a shard" \
	graft-eval t0.graft --data nested.graft
printf 'graft-shards 1\n\n' > empty.graft
expect_error "a list of no shards" "^graft-eval: empty.graft: lists no shards" graft-eval t0.graft --data empty.graft
expect_error "a list is no model" "^graft-info: s-train.graft: a list of dataset shards" graft-info s-train.graft
graft-data images imgs --store uint8 --shard-size 8K >/dev/null 2>&1
check "--shard-size to stdout: a usage error" test $? -eq 2

# refusals
graft-import anysize.onnx -o anysize.graft
expect_error "a model without a fixed input size" "^graft-train: u-train.graft: the model's input 'x' has no fixed height and width" \
	graft-train anysize.graft --data u-train.graft --epochs 1 -o x.graft
graft-data images imgs --store uint8 --gray -o grey.graft 2>/dev/null
expect_error "grey images for an RGB model" "^graft-eval: grey.graft: its images have 1 channel; the model's input 'x' takes 3" \
	graft-eval cnn.graft --data grey.graft
expect_error "--augment crop on compact images" "^graft-train: u-train.graft: --augment crop shifts float images; compact images crop with rrc" \
	graft-train cnn.graft --data u-train.graft --epochs 1 --augment crop -o x.graft
graft-data images imgs --size 32x32 -o f.graft 2>/dev/null
expect_error "--augment rrc on float samples" "^graft-train: f.graft: --augment rrc and jitter work on compact images" \
	graft-train cnn.graft --data f.graft --epochs 1 --augment rrc -o x.graft
expect_error "--resize on float samples" "^graft-train: f.graft: --resize applies to compact images" \
	graft-train cnn.graft --data f.graft --epochs 1 --resize 40 -o x.graft
expect_error "--resize below the crop" "^graft-eval: u-val.graft: a resize to 20 is too small for a centre crop of 32x32" \
	graft-eval cnn.graft --data u-val.graft --resize 20
graft-eval cnn.graft --data u-val.graft --resize 40.5 >/dev/null 2>&1
check "--resize takes whole numbers: a usage error" test $? -eq 2
graft-train cnn.graft --data u-train.graft --epochs 1 --loader-threads 1.5 -o x.graft >/dev/null 2>&1
check "--loader-threads too" test $? -eq 2
check "no output is left behind" test ! -e x.graft
finish
