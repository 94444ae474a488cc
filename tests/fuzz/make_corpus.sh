#!/bin/bash
# make_corpus.sh OUTDIR [BUILD_DIR]: seed corpora for the fuzz targets, one folder per
# target under OUTDIR (onnx, tensor, graft, dataset, idx, image, json, wisdom, wav), from what this
# machine has:
#   onnx     a sample of the ONNX backend suite's models (libonnx-testdata: every
#            subgraph model, every 12th node test, some of the others), all under 256 KiB
#   tensor   those models' input_0.pb and output_0.pb files, and .npy files of every
#            dtype, rank and header version (numpy, when /usr/bin/python3 has it)
#   graft    .graft archives of some of those models (plain and zstd), made with the
#            built graft-import, plus dataset archives
#   dataset  dataset archives made with the built graft-data from .npy files and from
#            Fashion-MNIST IDX files (Debian's dataset-fashion-mnist), when present
#   idx, image, json, wisdom, wav  the hand-made seeds only (IDX files plain and gzip; PNG and JPEG
#            of each colour type; mnist digit files)
# plus the hand-made seeds of tests/fuzz/seeds.  BUILD_DIR holds the built tools
# (default: the build folder above tools/ that holds graft-import, else $TOOLS).
# Nothing here is committed: the corpora are made again where they are needed.
set -euo pipefail

out=${1:?usage: make_corpus.sh OUTDIR [BUILD_DIR]}
build=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
data=/usr/share/libonnx-testdata/data
tools=${TOOLS:-}
[ -n "$build" ] && tools=$build/tools
mkdir -p "$out"/{onnx,tensor,graft,dataset,idx,image,json,wisdom,wav}
out=$(cd "$out" && pwd)

# Hand-made seeds first (tiny, committed).
for t in onnx tensor graft dataset idx image json wisdom wav; do
	for f in "$here/seeds/$t"/*; do
		[ -f "$f" ] && cp "$f" "$out/$t/seed-$(basename "$f")"
	done
done

small() { [ "$(stat -c %s "$1")" -le 262144 ]; }
models=()
if [ -d "$data" ]; then
	i=0
	while read -r m; do
		d=$(dirname "$m")
		name=$(basename "$(dirname "$d")")-$(basename "$d")
		case $name in
		*_if*|*_loop*|*_scan*|*sequence*|*optional*) keep=1 ;;
		node-*) keep=$((i % 12 == 0)) ;;
		*) keep=$((i % 3 == 0)) ;;
		esac
		i=$((i + 1))
		[ "$keep" = 1 ] && small "$m" || continue
		cp "$m" "$out/onnx/$name.onnx"
		models+=("$m")
		for pb in "$d"/test_data_set_0/{input,output}_0.pb; do
			[ -f "$pb" ] && small "$pb" && cp "$pb" "$out/tensor/$name-$(basename "$pb")"
		done
	done < <(find "$data" -name model.onnx | sort)
else
	echo "make_corpus.sh: $data missing (apt install libonnx-testdata): no ONNX seeds" >&2
fi

if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	/usr/bin/python3 - "$out/tensor" "$out/npy-in" <<'PY'
import numpy as np, os, sys
tensor, npin = sys.argv[1], sys.argv[2]
os.makedirs(npin, exist_ok=True)
rng = np.random.default_rng(0)
for dt in ['f4', 'f8', 'f2', 'i8', 'i4', 'i2', 'i1', 'u1', 'u2', 'u4', 'u8', '?', 'c8', 'c16']:
    for shape in [(), (0,), (3,), (2, 3), (1, 2, 1, 2)]:
        a = (rng.standard_normal(shape) * 10).astype(dt)
        np.save(f'{tensor}/{dt}-{"x".join(map(str, shape)) or "scalar"}.npy', a)
a = np.arange(6, dtype='f4').reshape(2, 3)
for v in [(2, 0), (3, 0)]:
    with open(f'{tensor}/v{v[0]}.npy', 'wb') as f:
        np.lib.format.write_array(f, a, version=v)
np.save(f'{tensor}/fortran.npy', np.asfortranarray(np.ones((2, 3), 'f4')))
np.save(f'{tensor}/bigendian.npy', np.ones(3, '>f4'))
# Inputs for graft-data npy: labels, and float targets.
np.save(f'{npin}/x.npy', rng.standard_normal((6, 1, 2, 2)).astype('f4'))
np.save(f'{npin}/y.npy', np.array([0, 1, 2, 0, 1, 2], 'i8'))
np.save(f'{npin}/x2.npy', rng.standard_normal((4, 3)).astype('f8'))
np.save(f'{npin}/t.npy', rng.standard_normal((4, 2)).astype('f4'))
np.save(f'{npin}/y32.npy', np.array([1, 0, 1, 3], 'i4'))
PY
else
	echo "make_corpus.sh: no numpy for /usr/bin/python3: no .npy seeds" >&2
fi

if [ -n "$tools" ] && [ -x "$tools/graft-import" ]; then
	n=0
	for m in "${models[@]}"; do
		n=$((n + 1))
		[ $((n % 3)) = 0 ] || continue
		d=$(dirname "$m")
		name=$(basename "$(dirname "$d")")-$(basename "$d")
		"$tools/graft-import" "$m" -o "$out/graft/$name.graft" 2>/dev/null || true
		[ $((n % 12)) = 0 ] &&
			{ "$tools/graft-import" "$m" --zstd -o "$out/graft/$name.zstd.graft" 2>/dev/null || true; }
	done
	if [ -d "$out/npy-in" ] && [ -x "$tools/graft-data" ]; then
		gd() { "$tools/graft-data" "$@" 2>/dev/null; }
		np=$out/npy-in
		gd npy "$np/x.npy" "$np/y.npy" -o "$out/dataset/npy-labels.graft"
		gd npy "$np/x2.npy" "$np/t.npy" -o "$out/dataset/npy-targets.graft"
		gd npy "$np/x2.npy" "$np/y32.npy" --mean 0.5 --std 2 -o "$out/dataset/npy-norm.graft"
		gd npy "$np/x.npy" "$np/y.npy" --classes 2,0 --split 0.5 --seed 3 \
			-o "$out/dataset/split-train.graft" --val-out "$out/dataset/split-val.graft"
		fm=/usr/share/datasets/fashion-mnist
		if [ -f "$fm/t10k-images-idx3-ubyte.gz" ]; then
			gd idx "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" \
				--classes 0,1,2 --take 1 -o "$out/dataset/fashion-3.graft"
		fi
		cp "$out"/dataset/*.graft "$out/graft/" 2>/dev/null || true
	fi
else
	echo "make_corpus.sh: no built graft-import (give BUILD_DIR): no .graft seeds" >&2
fi
rm -rf "$out/npy-in"
for t in onnx tensor graft dataset idx image json wisdom wav; do
	echo "$t: $(find "$out/$t" -type f | wc -l) seeds, $(du -sh "$out/$t" | cut -f1)"
done
