#!/bin/bash
# ort_models.sh TOOLDIR FIXTUREDIR ORTDIR: graft-run must compute what ONNX Runtime
# computes. For every reference model in FIXTUREDIR/plain and FIXTUREDIR/keepbn, it
#   1. runs the model in ONNX Runtime on seeded inputs at batch 2
#        (ort_run.js M ort --batch 2 --seed 1: outputs as raw .bin, inputs also as .npy),
#   2. runs graft-run on those very inputs:  graft-run M -i NAME=ort/inputs/NAME.npy -o graft
#   3. compares each output (python3 + numpy): same dtype and shape, and
#        max|graft - ort| <= 1e-4 * max|ort|  (floats; integers and bools must be equal;
#        a NaN where ORT has none counts as an infinite difference).
# graft-run times the convolution kernels (a fresh wisdom file per run: docs/engine.md),
# so the check covers whichever kernel wins on the machine.
# Fixtures and onnxruntime-node are created on first use (ensure_reference_models.sh,
# setup-ort.sh; both flock-protected and fast no-ops afterwards).
# Prints a header, one line per model
#     SET/NAME  max|diff|  ratio  graft-s  PASS|FAIL[: why]
# (max|diff| and ratio = max|diff| / max|ort| are the worst over the model's outputs;
# graft-s is graft-run's wall time including loading), then exactly "N passed, M failed";
# exit 1 on any failure. A model graft cannot run yet (graft-run exits non-zero, e.g.
# "node ... (op X) is not supported") is a FAIL with graft-run's message.
# Env: PYTHON (default /usr/bin/python3), NODE (default node), OMP_NUM_THREADS (default 2),
# GRAFT_RUN_TIMEOUT (seconds per graft-run, default 600), GRAFT_ORT_MODELS (a regex on
# SET/NAME: only the models matching it), KEEP_TMP=1 keeps the work directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures_sh=$here/../fixtures/ensure_reference_models.sh
usage() { echo "usage: ort_models.sh TOOLDIR FIXTUREDIR ORTDIR" >&2; exit 2; }
[ $# -eq 3 ] || usage
tooldir=$(cd "$1" && pwd) fixdir=$2 ortdir=$3
py=${PYTHON:-/usr/bin/python3}
node=${NODE:-node}
run=$tooldir/graft-run
[ -x "$run" ] || { echo "ort_models: $run: not an executable" >&2; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tmo=${GRAFT_RUN_TIMEOUT:-600}
only=${GRAFT_ORT_MODELS:-}
BATCH=2 SEED=1 TOL=1e-4

"$fixtures_sh" "$fixdir"
"$here/setup-ort.sh" "$ortdir"
export GRAFT_ORT_DIR=$ortdir

work=$(mktemp -d "${TMPDIR:-/tmp}/graft-ortm.XXXXXX")
if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "ort_models: work dir $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi
# graft-run with kernel choice (docs/engine.md), in a wisdom file of this run's own:
# every convolution shape runs the kernel timed fastest here, which must agree with ORT
# as the default kernels do, whichever wins
export GRAFT_WISDOM=$work/wisdom

# graft_args DIR: graft-run's -i arguments for the inputs ort_run.js saved in DIR, one per
# line: NAME=DIR/inputs/X.npy, or a bare path (positional, graph order) when NAME has '='
graft_args() {
    "$py" - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
for i in json.load(open(os.path.join(d, "summary.json")))["inputs"]:
    npy = os.path.join(d, i["file"][:-len(".bin")] + ".npy")
    print("-i")
    print(npy if "=" in i["name"] else "%s=%s" % (i["name"], npy))
PY
}

# compare ORTDIR GRAFTDIR: prints "MAXDIFF RATIO" and, on a mismatch, a reason; exit 1 then
compare() {
    PYTHONDONTWRITEBYTECODE=1 "$py" - "$1" "$2" "$TOL" <<'PY'
import json, os, re, sys
import numpy as np
ortdir, gdir, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = json.load(open(os.path.join(ortdir, "summary.json")))
worst_diff, worst_ratio, why, numbers = 0.0, 0.0, [], True
for o in s["outputs"]:
    name = o["name"]
    if o["dtype"] == "string":
        why.append("output %s: string outputs are not compared" % name); numbers = False; continue
    want = np.fromfile(os.path.join(ortdir, o["file"]),
                       dtype=np.dtype(o["dtype"]).newbyteorder("<")).reshape(o["dims"])
    gpath = os.path.join(gdir, re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".npy")
    if not os.path.exists(gpath):
        why.append("output %s: graft-run wrote no %s" % (name, os.path.basename(gpath))); numbers = False; continue
    got = np.load(gpath)
    if got.shape != want.shape:
        why.append("output %s: shape %s, ORT %s" % (name, list(got.shape), list(want.shape))); numbers = False; continue
    if got.dtype != want.dtype:
        why.append("output %s: dtype %s, ORT %s" % (name, got.dtype, want.dtype)); numbers = False; continue
    if want.size == 0:
        continue
    if want.dtype.kind == "f":
        g, w = got.astype(np.float64), want.astype(np.float64)
        d = np.abs(g - w)
        both_nan = np.isnan(g) & np.isnan(w)
        d[both_nan] = 0
        d[np.isnan(d)] = np.inf                  # NaN on one side only, or inf - inf
        diff = float(d.max())
        scale = float(np.max(np.abs(w[~np.isnan(w)]), initial=0.0))
        ratio = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        if not diff <= tol * scale:
            k = np.unravel_index(int(np.argmax(d)), d.shape)
            why.append("output %s: max|diff| %.3g > %g * max|ort| %.3g (at %s: graft %.6g, ORT %.6g)"
                       % (name, diff, tol, scale, list(map(int, k)), g[k], w[k]))
    else:
        ne = got != want
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        scale = float(np.max(np.abs(want.astype(np.float64))))
        ratio = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        if ne.any():
            why.append("output %s: %d of %d values differ (%s)" % (name, int(ne.sum()), ne.size, want.dtype))
    worst_diff, worst_ratio = max(worst_diff, diff), max(worst_ratio, ratio)
if len(why) and not numbers:
    print("- -")                                 # an output could not be compared
else:
    print("%.3g %.3g" % (worst_diff, worst_ratio))
if why:
    print("; ".join(why))
    sys.exit(1)
PY
}

passed=0 failed=0
line() {  # line SET/NAME MAXDIFF RATIO SECONDS RESULT
    printf '%-32s %10s %10s %8s  %s\n' "$@"
}
line "model (batch $BATCH)" "max|diff|" "ratio" "graft s" "result (ratio = max|diff| / max|ort|, limit $TOL)"
for set in plain keepbn; do
    models=("$fixdir/$set"/*.onnx)
    [ -e "${models[0]}" ] || { echo "ort_models: no models in $fixdir/$set" >&2; exit 1; }
    for m in "${models[@]}"; do
        name=$(basename "$m" .onnx)
        id=$set/$name
        [ -z "$only" ] || [[ $id =~ $only ]] || continue
        d=$work/$set/$name
        mkdir -p "$d"
        why= diff=- ratio=- secs=-
        if ! "$node" "$here/ort_run.js" "$m" "$d/ort" --batch $BATCH --seed $SEED \
                >/dev/null 2>"$d/ort.err"; then
            why="ORT cannot run it (fixture problem, not graft): $(tail -n1 "$d/ort.err")"
        elif ! argv=$(graft_args "$d/ort" 2>&1); then
            why="cannot read $d/ort/summary.json: $(tail -n1 <<<"$argv")"
        else
            args=()
            [ -z "$argv" ] || mapfile -t args <<<"$argv"
            t0=$EPOCHREALTIME
            set +e
            timeout "$tmo" "$run" "$m" "${args[@]}" -o "$d/graft" >/dev/null 2>"$d/graft.err"
            st=$?
            set -e
            secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
            if [ $st = 124 ]; then
                why="graft-run timed out after $tmo s"
            elif [ $st != 0 ]; then
                msg=$(tail -n1 "$d/graft.err")
                why="graft-run exit $st: ${msg#"graft-run: $m: "}"
            else
                set +e
                res=$(compare "$d/ort" "$d/graft" 2>&1)
                st=$?
                set -e
                read -r diff ratio <<<"$(head -n1 <<<"$res")"
                if ! [[ "$diff $ratio" =~ ^([0-9.e+-]+|inf|-)\ ([0-9.e+-]+|inf|-)$ ]]; then
                    diff=- ratio=- why="compare failed: $(tail -n1 <<<"$res")"
                elif [ $st != 0 ]; then
                    why=$(tail -n +2 <<<"$res" | tr '\n' ' ')
                    [ -n "$why" ] || why="compare failed (exit $st)"
                fi
            fi
        fi
        if [ -z "$why" ]; then
            passed=$((passed + 1))
            line "$id" "$diff" "$ratio" "$secs" "PASS"
            [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$d"
        else
            failed=$((failed + 1))
            line "$id" "$diff" "$ratio" "$secs" "FAIL: ${why% }"
        fi
    done
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
