#!/bin/bash
# forward.sh TOOLDIR FIXTUREDIR ORTDIR [MATMUL_PEAK]: forward-pass speed of graft-run
# against ONNX Runtime 1.30 (onnxruntime-node) on the same machine, in the same run:
# resnet18, mobilenet_v2, mobilenet_v3_small and efficientnet_b0 (FIXTUREDIR/plain,
# BatchNorm folded, 3x224x224 float32 input; GRAFT_BENCH_MODELS picks others) at batch 1
# and batch 32, 2 threads for both (OMP_NUM_THREADS=2 for graft; intraOpNumThreads 2,
# interOpNumThreads 1 for ORT).
# graft runs with kernel choice (docs/engine.md) from a wisdom file of this run's own
# (GRAFT_WISDOM, unless set): its shapes are timed in graft-run's warm-up run, outside
# the median; one round of graft-run --no-tune (oneDNN's first kernels) shows what the
# choice gains.  The header names the CPU (/proc/cpuinfo), the ISA oneDNN runs
# (DNNL_MAX_CPU_ISA=AVX2 imitates a smaller CPU) and, with MATMUL_PEAK (the
# matmul_peak program), the fp32 matmul peak of the same run; each row then gives
# graft's share of it (the model's Conv and Gemm FLOPs per image, from the ONNX file,
# times images/s).
#   graft: graft-run M --batch N --repeat R  (made-up seeded input, one warm-up run,
#          prints the median of R timed runs)
#   ORT:   node ort_bench.js M --batch N --repeat R  (2 warm-up runs, median of R)
# Each (model, batch) is measured in 2 rounds, alternating graft, ORT, ORT, graft, and
# each side keeps its best median. R is GRAFT_BENCH_R1 at batch 1 (default 20) and
# GRAFT_BENCH_R32 at batch 32 (default 8), cut down (to no fewer than 3) so that one
# tool's R runs should take at most GRAFT_BENCH_RUN_S seconds (default 15; estimated from
# that tool's last median, or for a first batch-32 run from its batch-1 median times 32);
# round 2 is skipped when round 1 of that pair took over GRAFT_BENCH_ROUND_S seconds
# (default 20) or 3 runs would overrun that 15 s by half. About 1 minute in all on the
# 2-core dev VM when graft is on par with ORT (ORT: resnet18 batch 32 ~0.4 s per run),
# and about 3 minutes when graft is several times slower. The R column shows the runs
# behind each best median (graft/ORT).
# Prints a table: median ms per run, images/s, and per row the throughput ratio
# graft/ORT (images/s; above 1: graft is faster) and the latency ratio graft/ORT (ms;
# below 1: graft is faster), then WARN lines for the goals missed:
#   batch 32: graft throughput below 0.9x ORT's    (GRAFT_BENCH_MIN_THROUGHPUT, 0.9)
#   batch 1:  graft latency above 1.5x ORT's        (GRAFT_BENCH_MAX_LATENCY, 1.5)
# A graft-run or ort_bench.js past GRAFT_BENCH_TIMEOUT seconds (default 120) is a WARN too.
# The numbers only mean something on an otherwise idle machine (both sides use all of the
# dev VM's 2 cores; OpenMP slows down many times when they are shared), so the table's
# first line shows the 1-minute load average at the start.
# Reports only: exit 0, or 1 when a tool fails (e.g. graft-run cannot run the model yet).
# Env also: NODE (default node), PYTHON (default /usr/bin/python3; for the fixtures).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 3 ] || [ $# -eq 4 ] || { echo "usage: forward.sh TOOLDIR FIXTUREDIR ORTDIR [MATMUL_PEAK]" >&2; exit 2; }
tooldir=$(cd "$1" && pwd) fixdir=$2 ortdir=$3 peak_bin=${4:-}
run=$tooldir/graft-run
node=${NODE:-node}
[ -x "$run" ] || { echo "forward: $run: not an executable" >&2; exit 1; }
R1=${GRAFT_BENCH_R1:-20} R32=${GRAFT_BENCH_R32:-8} ROUND_S=${GRAFT_BENCH_ROUND_S:-20}
RUN_S=${GRAFT_BENCH_RUN_S:-15}
MIN_THR=${GRAFT_BENCH_MIN_THROUGHPUT:-0.9} MAX_LAT=${GRAFT_BENCH_MAX_LATENCY:-1.5}
TMO=${GRAFT_BENCH_TIMEOUT:-120}
THREADS=2
export OMP_NUM_THREADS=$THREADS

"$here/../fixtures/ensure_reference_models.sh" "$fixdir"
"$here/../conformance/setup-ort.sh" "$ortdir"
export GRAFT_ORT_DIR=$ortdir
ortver=$(cd "$ortdir" && ORT_DISABLE_TELEMETRY=1 "$node" -p "require('onnxruntime-node').env.versions.node" 2>/dev/null || echo '?')

load0=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
w=$(mktemp -d "${TMPDIR:-/tmp}/graft-fwd.XXXXXX")
trap 'rm -rf "$w"' EXIT
export GRAFT_WISDOM=${GRAFT_WISDOM:-$w/wisdom}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
isa=$(DNNL_VERBOSE=1 GRAFT_WISDOM=off "$run" "$fixdir/plain/small_cnn.onnx" 2>/dev/null |
      sed -n 's/^onednn_verbose,info,cpu,isa://p' | head -n1)
peak=
if [ -n "$peak_bin" ]; then
    peak=$("$peak_bin" 2048 10 2>/dev/null | sed -n 's/^matmul 2048^3: \([0-9.]*\) GFLOP\/s$/\1/p')
fi
# gflop M: the Conv, Gemm and MatMul GFLOP of one image through model M (2 per
# multiply-add), from its shapes at batch 1
gflop() {
    "${PYTHON:-/usr/bin/python3}" - "$1" <<'PY'
import sys, onnx, numpy as np
from onnx import shape_inference
m = onnx.load(sys.argv[1])
for i in m.graph.input:
    d = i.type.tensor_type.shape.dim
    if d and d[0].dim_param:
        d[0].ClearField('dim_param'); d[0].dim_value = 1
m = shape_inference.infer_shapes(m)
shape = {v.name: [x.dim_value for x in v.type.tensor_type.shape.dim]
         for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
init = {t.name: list(t.dims) for t in m.graph.initializer}
flop = 0
for n in m.graph.node:
    if n.op_type == 'Conv':
        flop += 2 * np.prod(shape[n.output[0]]) * np.prod(init[n.input[1]][1:])
    elif n.op_type in ('Gemm', 'MatMul') and n.input[1] in init:
        w = init[n.input[1]]
        tb = any(a.name == 'transB' and a.i for a in n.attribute)
        flop += 2 * np.prod(shape[n.output[0]]) * (w[1] if tb else w[0])
print('%.4f' % (flop / 1e9))
PY
}

# measure TOOL M BATCH R: sets ms (median ms per run) or why (failed/timeout)
measure() {
    local tool=$1 m=$2 b=$3 r=$4 st
    ms= why=
    set +e
    if [ "$tool" = graft ] || [ "$tool" = graft0 ]; then
        timeout "$TMO" "$run" "$m" --batch "$b" --repeat "$r" \
            $([ "$tool" = graft0 ] && echo --no-tune) >"$w/out" 2>"$w/err"
    else
        timeout "$TMO" "$node" "$here/ort_bench.js" "$m" --batch "$b" --repeat "$r" \
            --threads $THREADS >"$w/out" 2>"$w/err"
    fi
    st=$?
    set -e
    if [ $st = 124 ]; then why=timeout; return; fi
    if [ $st != 0 ]; then
        why="$tool exit $st: $(tail -n1 "$w/err")"
        return
    fi
    ms=$(sed -n 's/^median \([0-9.]*\) ms per run.*/\1/p' "$w/out" | head -n1)
    [ -n "$ms" ] || why="$tool: no 'median ... ms' line in its output: $(head -n1 "$w/out")"
}
# runs R EST_MS: R cut so that R runs of EST_MS each take at most RUN_S seconds (at
# least 3; R when there is no estimate); prints 0 when even 3 runs would overrun by half
runs() {
    awk -v r="$1" -v est="$2" -v cap="$RUN_S" 'BEGIN {
        if (est == "") { print r; exit }
        n = int(cap * 1000 / est); if (n > r) n = r
        if (n < 3) n = (3 * est > 1.5 * cap * 1000) ? 0 : 3
        print n }'
}

failed=0
warn=()
rows=()
declare -A g1=() o1=() gf=()   # batch-1 medians per model: first estimates for batch 32
for model in ${GRAFT_BENCH_MODELS:-resnet18 mobilenet_v2 mobilenet_v3_small efficientnet_b0}; do
    m=$fixdir/plain/$model.onnx
    [ -f "$m" ] || { echo "forward: $m: no such model" >&2; exit 1; }
    gf[$model]=$(gflop "$m" 2>/dev/null || echo '')
    for b in 1 32; do
        r=$R1
        [ "$b" = 32 ] && r=$R32
        g= o= gwhy= owhy= gr=- or=-
        # first estimates: none at batch 1; at batch 32, the batch-1 median times 32
        gest= oest=
        if [ "$b" = 32 ]; then
            [ -z "${g1[$model]:-}" ] || gest=$(awk -v t="${g1[$model]}" 'BEGIN { print t * 32 }')
            [ -z "${o1[$model]:-}" ] || oest=$(awk -v t="${o1[$model]}" 'BEGIN { print t * 32 }')
        fi
        for round in 1 2; do
            t0=$SECONDS
            order="graft ort"
            [ $round = 2 ] && order="ort graft"
            for tool in $order; do
                if [ $tool = graft ]; then
                    [ -z "$gwhy" ] || continue
                    n=$(runs "$r" "$gest")
                    if [ "$n" = 0 ]; then [ $round = 1 ] || continue; n=3; fi
                    measure graft "$m" "$b" "$n"
                    if [ -n "$why" ]; then gwhy=$why; continue; fi
                    gest=$ms
                    if [ -z "$g" ] || awk -v a="$ms" -v b="$g" 'BEGIN { exit !(a + 0 < b + 0) }'; then
                        g=$ms gr=$n
                    fi
                else
                    [ -z "$owhy" ] || continue
                    n=$(runs "$r" "$oest")
                    if [ "$n" = 0 ]; then [ $round = 1 ] || continue; n=3; fi
                    measure ort "$m" "$b" "$n"
                    if [ -n "$why" ]; then owhy=$why; continue; fi
                    oest=$ms
                    if [ -z "$o" ] || awk -v a="$ms" -v b="$o" 'BEGIN { exit !(a + 0 < b + 0) }'; then
                        o=$ms or=$n
                    fi
                fi
            done
            [ $((SECONDS - t0)) -le "$ROUND_S" ] || break
        done
        if [ "$b" = 1 ]; then g1[$model]=$g; o1[$model]=$o; fi
        # one round of the default kernels (graft-run --no-tune), for the choice's gain
        u=
        if [ -z "$gwhy" ]; then
            measure graft0 "$m" "$b" "$(runs "$r" "$g")"
            [ -n "$why" ] || u=$ms
        fi
        rows+=("$model|$b|$gr/$or|$g|$o|$gwhy|$owhy|$u")
        for x in "graft-run|$gwhy" "ort_bench.js|$owhy"; do
            case ${x#*|} in
                '') ;;
                timeout) warn+=("WARN: $model batch $b: ${x%%|*} ran past $TMO s (GRAFT_BENCH_TIMEOUT)") ;;
                *) failed=1; warn+=("FAILED: $model batch $b: ${x#*|}") ;;
            esac
        done
        [ -n "$g" ] && [ -n "$o" ] || continue
        if [ "$b" = 32 ] && awk -v g="$g" -v o="$o" -v t="$MIN_THR" 'BEGIN { exit !(o / g < t) }'; then
            warn+=("WARN: $model batch 32: graft throughput $(awk -v g="$g" -v o="$o" 'BEGIN { printf "%.2f", o / g }')x ORT's, below the goal of ${MIN_THR}x")
        fi
        if [ "$b" = 1 ] && awk -v g="$g" -v o="$o" -v t="$MAX_LAT" 'BEGIN { exit !(g / o > t) }'; then
            warn+=("WARN: $model batch 1: graft latency $(awk -v g="$g" -v o="$o" 'BEGIN { printf "%.2f", g / o }')x ORT's, above the goal of ${MAX_LAT}x")
        fi
    done
done

printf 'forward benchmark: plain fixtures, 3x224x224 float32, %d threads (graft OMP_NUM_THREADS, ORT %s intraOpNumThreads), %s cores; load %s; median ms per run, best of 2 rounds\n' \
    $THREADS "$ortver" "$(nproc)" "$load0"
printf 'CPU: %s; oneDNN ISA: %s%s; fp32 matmul peak (2048^3, same run): %s GFLOP/s\n' \
    "${cpu:-?}" "${isa:-?}" "${DNNL_MAX_CPU_ISA:+ (DNNL_MAX_CPU_ISA=$DNNL_MAX_CPU_ISA)}" "${peak:--}"
printf '%-18s %5s %5s %10s %10s %10s %11s %11s %13s %13s %9s %7s\n' model batch R "graft ms" \
    "untuned ms" "ORT ms" "graft img/s" "ORT img/s" "thru g/ORT" "latency g/ORT" \
    "tune gain" "% peak"
for row in "${rows[@]}"; do
    IFS='|' read -r model b r g o gwhy owhy u <<<"$row"
    gi=- oi=- thr=- lat=- gs=${g:--} os=${o:--} us=${u:--} gain=- share=-
    if [ -n "$g" ] && [ -n "$u" ]; then
        gain=$(awk -v g="$g" -v u="$u" 'BEGIN { printf "%.2fx", u / g }')
    fi
    if [ -n "$g" ] && [ -n "$peak" ] && [ -n "${gf[$model]}" ]; then
        share=$(awk -v g="$g" -v b="$b" -v f="${gf[$model]}" -v p="$peak" \
                'BEGIN { printf "%.0f%%", 100 * f * b * 1000 / g / p }')
    fi
    [ -n "$gwhy" ] && gs=$([ "$gwhy" = timeout ] && echo timeout || echo FAILED)
    [ -n "$owhy" ] && os=$([ "$owhy" = timeout ] && echo timeout || echo FAILED)
    [ -n "$g" ] && gi=$(awk -v b="$b" -v t="$g" 'BEGIN { printf "%.1f", b * 1000 / t }')
    [ -n "$o" ] && oi=$(awk -v b="$b" -v t="$o" 'BEGIN { printf "%.1f", b * 1000 / t }')
    if [ -n "$g" ] && [ -n "$o" ]; then
        thr=$(awk -v g="$g" -v o="$o" 'BEGIN { printf "%.2fx", o / g }')
        lat=$(awk -v g="$g" -v o="$o" 'BEGIN { printf "%.2fx", g / o }')
    fi
    printf '%-18s %5s %5s %10s %10s %10s %11s %11s %13s %13s %9s %7s\n' "$model" "$b" "$r" \
        "$gs" "$us" "$os" "$gi" "$oi" "$thr" "$lat" "$gain" "$share"
done
echo "goals: batch 32 throughput g/ORT >= ${MIN_THR}x; batch 1 latency g/ORT <= ${MAX_LAT}x"
for x in "${warn[@]+"${warn[@]}"}"; do echo "$x"; done
exit $failed
