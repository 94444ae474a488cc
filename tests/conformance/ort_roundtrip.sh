#!/bin/bash
# ort_roundtrip.sh TOOLDIR FIXTUREDIR ORTDIR [--npm]: the round trip must not change
# what a model computes. For every reference model in FIXTUREDIR/plain and
# FIXTUREDIR/keepbn (and FIXTUREDIR/npm with --npm: real pretrained models from the
# npm registry), it
#   1. round-trips it through graft over a real pipe:
#        graft-import M | tee x.graft | graft-export > rt.onnx
#   2. checks onnx.load(M) == onnx.load(rt.onnx), and that graft-info --json on the
#      archive exits 0 and prints valid JSON,
#   3. runs M and rt.onnx in ONNX Runtime (ort_run.js, same seeded inputs) and requires
#      every output to be bit-identical (cmp on the raw output bytes).
# Fixtures and onnxruntime-node are created on first use (ensure_reference_models.sh,
# setup-ort.sh; both flock-protected and fast no-ops afterwards).
# Prints one line per failure, then exactly "N passed, M failed"; exit 1 on any failure.
# Env: PYTHON (default /usr/bin/python3), NODE (default node), KEEP_TMP=1 keeps the
# work directory for a look at the failures.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures_sh=$here/../fixtures/ensure_reference_models.sh
usage() { echo "usage: ort_roundtrip.sh TOOLDIR FIXTUREDIR ORTDIR [--npm]" >&2; exit 2; }
[ $# -ge 3 ] || usage
tooldir=$(cd "$1" && pwd) fixdir=$2 ortdir=$3
npm=
[ "${4:-}" = --npm ] && npm=--npm
py=${PYTHON:-/usr/bin/python3}
node=${NODE:-node}
imp=$tooldir/graft-import exp=$tooldir/graft-export info=$tooldir/graft-info
for t in "$imp" "$exp" "$info"; do
    [ -x "$t" ] || { echo "ort_roundtrip: $t: not an executable" >&2; exit 1; }
done

"$fixtures_sh" "$fixdir" $npm
"$here/setup-ort.sh" "$ortdir"
export GRAFT_ORT_DIR=$ortdir

work=$(mktemp -d "${TMPDIR:-/tmp}/graft-ort.XXXXXX")
if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "ort_roundtrip: work dir $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi

# extra ort_run.js flags for models with symbolic non-batch dims
run_flags() {
    case $1 in
        oww_melspec) echo "--dim samples=16000" ;;                # 1 s of 16 kHz audio
        ppocr_cls) echo "--dim p2o.DynamicDimension.1=48 --dim p2o.DynamicDimension.2=192" ;;
    esac
}

# equality check with a pointer to the first difference (shared with roundtrip_testdata.py)
same_model() {
    PYTHONDONTWRITEBYTECODE=1 "$py" - "$1" "$2" <<'PY'
import os, sys, onnx
sys.path.insert(0, os.environ["GRAFT_CONFORMANCE_DIR"])
from roundtrip_testdata import first_difference
a, b = onnx.load(sys.argv[1]), onnx.load(sys.argv[2])
if a != b:
    print(first_difference(a, b))
    sys.exit(1)
PY
}
export GRAFT_CONFORMANCE_DIR=$here

check() {  # check SET NAME MODEL: empty output on success, else the reason
    local set=$1 name=$2 m=$3 d=$work/$1/$2
    mkdir -p "$d/rt"
    local rt=$d/rt/$name.onnx       # same basename as the original, so summaries compare
    set +e
    "$imp" "$m" 2>"$d/import.err" | tee "$d/x.graft" | "$exp" >"$rt" 2>"$d/export.err"
    local st=("${PIPESTATUS[@]}")
    set -e
    # an import killed by SIGPIPE (141) only follows a failed export: blame the export then
    if [ "${st[0]}" != 0 ] && ! [ "${st[0]}" = 141 ] && [ "${st[2]}" != 0 ]; then
        echo "graft-import exit ${st[0]}: $(tail -n1 "$d/import.err")"; return
    fi
    if [ "${st[2]}" != 0 ]; then echo "graft-export exit ${st[2]}: $(tail -n1 "$d/export.err")"; return; fi
    if [ "${st[0]}" != 0 ]; then echo "graft-import exit ${st[0]}: $(tail -n1 "$d/import.err")"; return; fi
    if [ "${st[1]}" != 0 ]; then echo "tee exit ${st[1]}"; return; fi
    local diff
    if ! diff=$(same_model "$m" "$rt" 2>&1); then echo "models differ: $(echo "$diff" | tail -n1)"; return; fi
    if ! "$info" "$d/x.graft" --json >"$d/info.json" 2>"$d/info.err"; then
        echo "graft-info --json exit $?: $(tail -n1 "$d/info.err")"; return
    fi
    if ! "$py" -c 'import json, sys; json.load(open(sys.argv[1]))' "$d/info.json" 2>/dev/null; then
        echo "graft-info --json: output is not valid JSON"; return
    fi
    rm -f "$d/x.graft"
    local flags
    read -ra flags <<<"$(run_flags "$name")"
    if ! "$node" "$here/ort_run.js" "$m" "$d/ort.orig" "${flags[@]}" >/dev/null 2>"$d/ort.err"; then
        echo "ORT cannot run the ORIGINAL (fixture problem, not graft): $(tail -n1 "$d/ort.err")"; return
    fi
    if ! "$node" "$here/ort_run.js" "$rt" "$d/ort.rt" "${flags[@]}" >/dev/null 2>"$d/ort.err"; then
        echo "ORT cannot run the round trip: $(tail -n1 "$d/ort.err")"; return
    fi
    local o bad=
    for o in "$d"/ort.orig/*.bin; do
        cmp -s "$o" "$d/ort.rt/${o##*/}" || bad="$bad ${o##*/}"
    done
    if [ -n "$bad" ] || ! cmp -s "$d/ort.orig/summary.json" "$d/ort.rt/summary.json"; then
        echo "ORT outputs differ:${bad:- (summary.json: names, dtypes or shapes)}"; return
    fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$d"
}

passed=0 failed=0
sets="plain keepbn"
[ -n "$npm" ] && sets="$sets npm"
for set in $sets; do
    models=("$fixdir/$set"/*.onnx)
    [ -e "${models[0]}" ] || { echo "ort_roundtrip: no models in $fixdir/$set" >&2; exit 1; }
    for m in "${models[@]}"; do
        name=$(basename "$m" .onnx)
        why=$(check "$set" "$name" "$m")
        if [ -z "$why" ]; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            echo "FAIL $set/$name: $why"
        fi
    done
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
