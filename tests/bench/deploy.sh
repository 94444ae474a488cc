#!/bin/bash
# deploy.sh TOOLDIR FIXTUREDIR ORTDIR: what deployment export buys in ONNX Runtime 1.30,
# on resnet18 (the plain reference fixture, 3x224x224), in the same run: the float32
# model against graft-quantize's int8 one (calibrated on 32 seeded random images) and
# graft-export --fp16 --keep-io-types's, each timed with ort_bench.js (2 threads, median)
# at batch 1 and 32, alternating so that load changes hit all three alike.  Prints the CPU,
# each file's size, ms per run, and the speed-ups against float32; WARN lines where int8
# is below the goals (2x the throughput at batch 32, 1.8x at batch 1).  Reports only:
# exit 1 only when a tool fails.  The numbers mean something on an idle machine only.
# Then graft's own engine on the same two models (graft-run --repeat, median, 2 threads,
# best of 2 rounds; float32 on the kernels its warm-up run timed fastest, in a wisdom
# file of this run's own, as forward.sh does): the int8 model runs on oneDNN's int8 convolutions (the QDQ
# patterns fused, docs/deploy.md); a WARN where it is below 1.5x float32 at batch 32.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: deploy.sh TOOLDIR FIXTUREDIR ORTDIR" >&2; exit 2; }
tooldir=$(cd "$1" && pwd)
fixdir=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
ortdir=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-/usr/bin/python3}
NODE=${NODE:-node}
export PATH=$tooldir:$PATH OMP_NUM_THREADS=2 GRAFT_WISDOM=off
"$here/../fixtures/ensure_reference_models.sh" "$fixdir" >/dev/null
"$here/../conformance/setup-ort.sh" "$ortdir" >/dev/null
w=$(mktemp -d "${TMPDIR:-/tmp}/graft-deploy-bench.XXXXXX")
trap 'rm -rf "$w"' EXIT
cd "$w"
fp32=$fixdir/plain/resnet18.onnx
$PY -c "
import numpy as np
rng = np.random.default_rng(0)
np.save('x.npy', rng.standard_normal((32, 3, 224, 224), dtype=np.float32))
np.save('y.npy', rng.integers(0, 1000, 32).astype(np.int64))"
graft-data npy x.npy y.npy -o cal.graft 2>/dev/null
graft-quantize "$fp32" --data cal.graft -q -o int8.graft
graft-export int8.graft --strip -o int8.onnx
graft-export "$fp32" --fp16 --keep-io-types -o fp16.onnx
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
printf 'deploy benchmark: resnet18 in ONNX Runtime, 2 threads, load %s\nCPU: %s; flags: %s\n' \
	"$(cut -d' ' -f1 /proc/loadavg)" "${cpu:-?}" \
	"$(grep -o -w -m1 -E 'avx512_vnni|avx_vnni|avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
# model_of KIND: the ONNX file benchmarked as KIND
model_of() { if [ "$1" = fp32 ]; then echo "$fp32"; else echo "$1.onnx"; fi; }
# The two timers: MODEL BATCH REPEATS in, a line "median N ms ..." out.
ort_bench() { $NODE "$here/ort_bench.js" "$1" --batch "$2" --repeat "$3" --ort-dir "$ortdir"; }
graft_run() { GRAFT_WISDOM=$w/wisdom graft-run "$1" --batch "$2" --repeat "$3" 2>/dev/null; }
# best_medians ARRAY TIMER KIND...: ARRAY[KIND BATCH] = TIMER's best median of two rounds
# at batch 1 (50 repeats) and 32 (6); the kinds alternate within a round.
best_medians() {
	local -n best=$1
	local timer=$2 b r round k t
	shift 2
	for b in 1 32; do
		r=$([ "$b" = 1 ] && echo 50 || echo 6)
		for round in 1 2; do
			for k in "$@"; do
				t=$($timer "$(model_of "$k")" "$b" "$r" | sed -n 's/^median \([0-9.]*\) ms.*/\1/p')
				[ -n "$t" ] || { echo "deploy bench: $timer failed on $k" >&2; exit 1; }
				if [ -z "${best[$k$b]:-}" ] || $PY -c "import sys; sys.exit(0 if $t < ${best[$k$b]} else 1)"; then
					best[$k$b]=$t
				fi
			done
		done
	done
}
declare -A ms gms
best_medians ms ort_bench fp32 int8 fp16
printf '%-6s %10s %12s %12s %10s %10s\n' kind "file MB" "batch 1 ms" "batch 32 ms" "b1 x" "b32 x"
warn=()
for k in fp32 int8 fp16; do
	f=$(model_of $k)
	s1=$($PY -c "print('%.2f' % (${ms[fp321]} / ${ms[${k}1]}))")
	s32=$($PY -c "print('%.2f' % (${ms[fp3232]} / ${ms[${k}32]}))")
	printf '%-6s %10.1f %12s %12s %9sx %9sx\n' $k "$($PY -c "import os; print(os.path.getsize('$f') / 1e6)")" \
		"${ms[${k}1]}" "${ms[${k}32]}" "$s1" "$s32"
	if [ $k = int8 ]; then
		$PY -c "import sys; sys.exit(0 if $s32 >= 2 else 1)" ||
			warn+=("int8 at batch 32: ${s32}x float32's throughput (goal 2x)")
		$PY -c "import sys; sys.exit(0 if $s1 >= 1.8 else 1)" ||
			warn+=("int8 at batch 1: ${s1}x float32's speed (goal 1.8x)")
	fi
done
# graft's engine: float32 against int8, the same inputs, alternating
best_medians gms graft_run fp32 int8
printf '\ngraft-run (its own engine), same models, 2 threads\n'
printf '%-6s %12s %12s %10s %10s\n' kind "batch 1 ms" "batch 32 ms" "b1 x" "b32 x"
for k in fp32 int8; do
	s1=$($PY -c "print('%.2f' % (${gms[fp321]} / ${gms[${k}1]}))")
	s32=$($PY -c "print('%.2f' % (${gms[fp3232]} / ${gms[${k}32]}))")
	printf '%-6s %12s %12s %9sx %9sx\n' $k "${gms[${k}1]}" "${gms[${k}32]}" "$s1" "$s32"
	[ $k = int8 ] && ! $PY -c "import sys; sys.exit(0 if $s32 >= 1.5 else 1)" &&
		warn+=("graft's int8 at batch 32: ${s32}x its float32 throughput (goal 1.5x)")
done
for m in "${warn[@]}"; do echo "WARN: $m"; done
exit 0
