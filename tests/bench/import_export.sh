#!/bin/bash
# import_export.sh TOOLDIR FIXTUREDIR [MODEL]: throughput and memory benchmark of the
# graft round trip on a ~100 MB model (default: FIXTUREDIR/plain/resnet50.onnx, made by
# ensure_reference_models.sh on first use):
#     graft-import M | graft-export > out.onnx           (and the same with --zstd)
# measured against  cat M | cat > out  in the same run, so the numbers can be read
# against this machine's pipe and page-cache speed. Best of 3 wall times (input in the
# page cache, output a fresh file in a temp dir); MB/s = model bytes / 1e6 / wall;
# peak RSS of each tool from /usr/bin/time -f %M, as a multiple of the model size.
# Reports only: exits 0 (1 only if a tool fails), printing a WARN line when the plain
# round trip is below 300 MB/s or a tool's peak RSS exceeds 2.5x the model size
# (env GRAFT_BENCH_MIN_MBS, GRAFT_BENCH_MAX_RSS, GRAFT_BENCH_RUNS override 300, 2.5, 3).
# "vs cat" is the speed relative to cat | cat (above 1: faster).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: import_export.sh TOOLDIR FIXTUREDIR [MODEL]" >&2; exit 2; }
tooldir=$(cd "$1" && pwd) fixdir=$2
imp=$tooldir/graft-import exp=$tooldir/graft-export
RUNS=${GRAFT_BENCH_RUNS:-3} MIN_MBS=${GRAFT_BENCH_MIN_MBS:-300} MAX_RSS=${GRAFT_BENCH_MAX_RSS:-2.5}
if [ $# -ge 3 ]; then
    m=$3
else
    "$here/../fixtures/ensure_reference_models.sh" "$fixdir"
    m=$fixdir/plain/resnet50.onnx
fi
[ -f "$m" ] || { echo "import_export: $m: no such model" >&2; exit 1; }
timer=/usr/bin/time
[ -x "$timer" ] || { echo "import_export: $timer missing (Debian package 'time'): no RSS figures" >&2; timer=; }

w=$(mktemp -d "${TMPDIR:-/tmp}/graft-bench.XXXXXX")
trap 'rm -rf "$w"' EXIT
bytes=$(stat -c %s "$m")
cat "$m" >/dev/null   # into the page cache
sync                  # settle writeback (e.g. of freshly generated fixtures) first

# run LABEL A "A-FLAGS" B: best-of-RUNS wall time of "A A-FLAGS M | B > out" (A-FLAGS
# split on spaces); sets best (s), rss_a, rss_b (KiB, max over the runs)
run() {
    local label=$1 i t0 t1 st a b=("$4")
    read -ra a <<<"$3"
    a=("$2" "${a[@]+"${a[@]}"}")
    best='' rss_a=0 rss_b=0
    for ((i = 0; i < RUNS; i++)); do
        rm -f "$w/out"
        t0=$EPOCHREALTIME
        if [ -n "$timer" ]; then
            "$timer" -f %M -o "$w/a.rss" "${a[@]}" "$m" 2>"$w/a.err" |
                "$timer" -f %M -o "$w/b.rss" "${b[@]}" >"$w/out" 2>"$w/b.err"
        else
            "${a[@]}" "$m" 2>"$w/a.err" | "${b[@]}" >"$w/out" 2>"$w/b.err"
        fi
        st=("${PIPESTATUS[@]}")
        t1=$EPOCHREALTIME
        if [ "${st[0]}" != 0 ] || [ "${st[1]}" != 0 ]; then
            echo "import_export: $label failed (exit ${st[0]}|${st[1]}):" >&2
            grep -hv '^Command exited' "$w/a.err" "$w/b.err" | tail -n 2 >&2
            return 1
        fi
        best=$(awk -v a="$t0" -v b="$t1" -v best="$best" \
            'BEGIN { t = b - a; if (best == "" || t < best) best = t; printf "%.4f", best }')
        if [ -n "$timer" ]; then
            rss_a=$(( $(tail -n1 "$w/a.rss") > rss_a ? $(tail -n1 "$w/a.rss") : rss_a ))
            rss_b=$(( $(tail -n1 "$w/b.rss") > rss_b ? $(tail -n1 "$w/b.rss") : rss_b ))
        fi
    done
}

mbs() { awk -v n="$bytes" -v t="$1" 'BEGIN { printf "%.0f", n / 1e6 / t }'; }
ratio() { awk -v x="$1" -v n="$bytes" 'BEGIN { printf "%.2f", x * 1024 / n }'; }
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1024 }'; }

run "cat | cat" cat "" cat
cat_t=$best cat_mbs=$(mbs "$best")

printf 'graft import|export benchmark: %s, %s bytes (%.1f MB), best of %d, %s\n' \
    "$(basename "$m")" "$bytes" "$(awk -v n="$bytes" 'BEGIN { print n / 1e6 }')" "$RUNS" "$(nproc) cores"
printf '%-38s %8s %8s %8s   %-22s %s\n' "pipeline" "wall s" "MB/s" "vs cat" "peak RSS import" "peak RSS export"
printf '%-38s %8.3f %8s %8s\n' "cat M | cat > out" "$cat_t" "$cat_mbs" "1.00"

warn=()
row() {  # row LABEL IMPORT-FLAGS CHECK(0/1)
    local label=$1 flags=$2 chk=$3
    if ! run "$label" "$imp" "$flags" "$exp"; then
        printf '%-38s %8s\n' "$label" "FAILED"
        failed=1
        return
    fi
    local r vs
    r=$(mbs "$best")
    vs=$(awk -v a="$cat_t" -v b="$best" 'BEGIN { printf "%.2f", a / b }')
    local ra=- rb=-
    if [ -n "$timer" ]; then
        ra="$(mib $rss_a) MiB $(ratio $rss_a)x"
        rb="$(mib $rss_b) MiB $(ratio $rss_b)x"
    fi
    printf '%-38s %8.3f %8s %8s   %-22s %s\n' "$label" "$best" "$r" "$vs" "$ra" "$rb"
    [ "$chk" = 1 ] || return 0
    awk -v r="$r" -v min="$MIN_MBS" 'BEGIN { exit !(r < min) }' &&
        warn+=("WARN: graft-import | graft-export at $r MB/s, below $MIN_MBS MB/s")
    if [ -n "$timer" ]; then
        local tool kib
        for tool in graft-import graft-export; do
            if [ $tool = graft-import ]; then kib=$rss_a; else kib=$rss_b; fi
            awk -v x="$(ratio "$kib")" -v max="$MAX_RSS" 'BEGIN { exit !(x > max) }' &&
                warn+=("WARN: $tool peak RSS $(mib "$kib") MiB = $(ratio "$kib")x the model, above ${MAX_RSS}x")
        done
    fi
    return 0
}
failed=0
row "graft-import M | graft-export" "" 1
row "graft-import --zstd M | graft-export" "--zstd" 0
for x in "${warn[@]+"${warn[@]}"}"; do echo "$x"; done
exit $failed
