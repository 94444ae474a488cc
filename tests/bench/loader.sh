#!/bin/bash
# loader.sh TOOLDIR FIXTUREDIR: datasets at scale (docs/loading.md), on a folder of
# photo-like JPEGs made from Fashion-MNIST (make_images.py: upscaled to 224x224 and
# tinted; GRAFT_BENCH_IMAGES of them, default 100,000, made once into FIXTUREDIR and kept):
#   import: graft-data images --store encoded, images/s and the file's size against the
#     folder's (goals: >= 1,000 images/s, <= 1.2x);
#   memory: graft-train on it (resnet18, a new 10-class head, head-only and full
#     fine-tuning, batch 32, --augment rrc,flip, a few steps), peak RSS against the same
#     training on 64 images in memory: what the dataset adds (goal <= 2 GB);
#   the loader's cost: full fine-tuning of resnet18 at batch 32 on 4,000 of the images
#     kept --store uint8 at 224x224 and loaded with --augment rrc,flip, against the same
#     steps on the same images decoded beforehand into float (no loader work), alternated
#     over two rounds, best of each: images/s of the second window of steps (the first
#     holds planning), and the loader's own account (--profile): decoding, transforms,
#     the time the step waited (goal: <= 5% slower).
# Prints the CPU, its ISA and the load average.  Reports only: exit 1 only when a tool
# fails.  Env: GRAFT_BENCH_IMAGES, GRAFT_BENCH_K (steps per window, default 4).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: loader.sh TOOLDIR FIXTUREDIR" >&2; exit 2; }
tooldir=$(cd "$1" && pwd)
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-/usr/bin/python3}
N=${GRAFT_BENCH_IMAGES:-100000}
K=${GRAFT_BENCH_K:-4}
export OMP_NUM_THREADS=2 PATH=$tooldir:$PATH
"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null
w=$(mktemp -d "${TMPDIR:-/tmp}/graft-loader-bench.XXXXXX")
trap 'rm -rf "$w"' EXIT
export GRAFT_WISDOM=${GRAFT_WISDOM:-$w/wisdom}
# images DIR COUNT: the folder of COUNT images, made once
images() {
	if [ ! -e "$1/.complete" ]; then
		rm -rf "$1"
		echo "making $2 images into $1 (once)..." >&2
		$PY "$here/make_images.py" "$2" "$1"
		touch "$1/.complete"
	fi
}
big=$fixdir/loader-images-$N
small=$fixdir/loader-images-4000
images "$big" "$N"
images "$small" 4000
cd "$w"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
printf 'loader benchmark: %s images, load %s\nCPU: %s (%s cores); flags: %s\n' "$N" \
	"$(cut -d' ' -f1 /proc/loadavg)" "${cpu:-?}" "$(nproc)" \
	"$(grep -o -w -m1 -E 'avx512_vnni|avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
ratio() { $PY -c "print('%.2f' % ($1 / $2))"; }

# ---- import ----
folder=$(find "$big" -type f -name '*.jpg' -printf '%s\n' | awk '{ s += $1 } END { print s }')
t0=$(date +%s.%N)
graft-data images "$big" --store encoded -o enc.graft 2>/dev/null
t1=$(date +%s.%N)
size=$(stat -c %s enc.graft)
rate=$($PY -c "print('%.0f' % ($N / ($t1 - $t0)))")
echo "import --store encoded: $N images in $($PY -c "print('%.1f' % ($t1 - $t0))") s: $rate images/s (goal >= 1000)"
echo "  file $size bytes, folder $folder bytes: $(ratio "$size" "$folder")x (goal <= 1.2x)"
[ "$rate" -ge 1000 ] || echo "WARN: import below 1,000 images/s"

# ---- the model ----
graft-head "$fixdir/keepbn/resnet18.onnx" --classes 10 -o r18.graft 2>/dev/null
graft-freeze r18.graft --last-blocks 1 -o r18-head.graft 2>/dev/null
graft-data images "$small" --store uint8 -o u8.graft 2>/dev/null
graft-data images "$small" --size 224x224 -o f32.graft 2>/dev/null
graft-data graft f32.graft --take 7 -o few.graft 2>/dev/null        # 70 images in memory

# rss_of LOG: the peak RSS, in MB, /usr/bin/time wrote into LOG
rss_of() { awk '/Maximum resident/ { printf "%.0f", $NF / 1024 }' "$1"; }
# train MODEL DATA OPTS...: graft-train for 2K steps at batch 32 under /usr/bin/time;
# prints one line: the images/s of the second window, then the peak RSS in MB
train() {
	local model=$1 data=$2
	shift 2
	/usr/bin/time -v graft-train "$model" --data "$data" --steps $((2 * K)) --batch 32 \
		--log-every "$K" --log log.jsonl --seed 1 --no-tune -q "$@" -o out.graft \
		2>time.txt
	echo "$($PY -c "
import json
rows = [json.loads(l) for l in open('log.jsonl')]
print('%.2f' % rows[1]['images_per_s'])") $(rss_of time.txt)"
}
echo
echo "memory: peak RSS, batch 32, $((2 * K)) steps (MB): the $N-image dataset against 70 images in memory"
for kind in head full; do
	model=r18.graft
	[ $kind = head ] && model=r18-head.graft
	read -r _ rss_big <<<"$(train $model enc.graft --augment rrc,flip)"
	read -r _ rss_few <<<"$(train $model few.graft)"
	echo "  $kind: $rss_big with the dataset, $rss_few without: the dataset adds $((rss_big - rss_few)) MB (goal <= 2048)"
	[ $((rss_big - rss_few)) -le 2048 ] || echo "WARN: $kind: the dataset adds over 2 GB"
done

echo
echo "the loader's cost: resnet18 full fine-tuning, batch 32, images/s of steps $((K + 1))..$((2 * K)) (best of 2 rounds)"
best_u8=0 best_f32=0
for round in 1 2; do
	read -r u8 _ <<<"$(train r18.graft u8.graft --augment rrc,flip --profile)"
	grep '^graft-train: loader:' time.txt | sed 's/^/  /' || true
	read -r f32 _ <<<"$(train r18.graft f32.graft)"
	echo "  round $round: uint8 with the loader $u8 images/s, float decoded beforehand $f32 images/s"
	best_u8=$($PY -c "print(max($best_u8, $u8))")
	best_f32=$($PY -c "print(max($best_f32, $f32))")
done
slower=$($PY -c "print('%.1f' % (100 * (1 - $best_u8 / $best_f32)))")
echo "  best: $best_u8 against $best_f32 images/s: the loader costs $slower% (goal <= 5%); load $(cut -d' ' -f1 /proc/loadavg)"
$PY -c "import sys; sys.exit(0 if $slower <= 5 else 1)" || echo "WARN: the loader costs over 5% of the step"
