#!/bin/bash
# node_tests.sh TOOLDIR OPS_MD: the ONNX backend node tests through graft-run
# (node_tests.py TOOLDIR --ops-md OPS_MD), then a check that the committed op table
# docs/ops.md is current: diff -u docs/ops.md OPS_MD must be empty.
# When the op table changed (ops added, tests fixed), refresh it with
#     cp OPS_MD docs/ops.md
# Exit 1 when node_tests.py fails or docs/ops.md differs (or is missing).
# Env: PYTHON (default /usr/bin/python3).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 2 ] || { echo "usage: node_tests.sh TOOLDIR OPS_MD" >&2; exit 2; }
tooldir=$1 opsmd=$2
py=${PYTHON:-/usr/bin/python3}
docs=$here/../../docs/ops.md

mkdir -p "$(dirname "$opsmd")"
rm -f "$opsmd"
# graft-run with kernel choice (docs/engine.md), in a wisdom file of this run's own: the
# node tests hold whichever convolution kernel wins to their tolerance
wisdom=$(mktemp -d "${TMPDIR:-/tmp}/graft-node-wisdom.XXXXXX")
trap 'rm -rf "$wisdom"' EXIT
export GRAFT_WISDOM=$wisdom/wisdom
"$py" "$here/node_tests.py" "$tooldir" --ops-md "$opsmd"
rc=$?
if [ ! -f "$opsmd" ]; then
    echo "node_tests: node_tests.py wrote no $opsmd" >&2
    exit 1
fi
if [ ! -f "$docs" ]; then
    echo "FAIL docs/ops.md is missing; make it with: cp $opsmd docs/ops.md"
    exit 1
fi
if ! diff -u "$docs" "$opsmd"; then
    echo "FAIL docs/ops.md is not current (diff above); refresh it with: cp $opsmd docs/ops.md"
    exit 1
fi
echo "docs/ops.md is current"
exit $rc
