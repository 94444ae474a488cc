# lib.sh: shared by the pipeline tests.  TOOLS is the folder of the built tools (meson
# sets it); each test runs in its own temporary folder and counts its checks.
set -u
: "${TOOLS:?TOOLS must name the folder of the built graft tools}"
TOOLS=$(cd "$TOOLS" && pwd)
PATH=$TOOLS:$PATH
PY=/usr/bin/python3
DATA=/usr/share/libonnx-testdata/data
SRC=$(cd "$(dirname "$0")/../.." && pwd)        # the source tree
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...: the command must succeed
	local what=$1; shift
	if "$@"; then ok; else bad "$what"; fi
}
# expect_error DESCRIPTION PATTERN COMMAND...: exit 1 and one stderr line matching PATTERN
expect_error() {
	local what=$1 pattern=$2; shift 2
	"$@" >stdout.txt 2>stderr.txt
	local rc=$?
	if [ $rc -ne 1 ]; then bad "$what: exit $rc, wanted 1"; return; fi
	if [ "$(wc -l <stderr.txt)" -ne 1 ]; then bad "$what: stderr is not one line:"; cat stderr.txt; return; fi
	if ! grep -qE -- "$pattern" stderr.txt; then bad "$what: stderr '$(cat stderr.txt)' lacks '$pattern'"; return; fi
	ok
}
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}
