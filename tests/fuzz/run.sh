#!/bin/bash
# run.sh BUILD_FUZZ_DIR SECONDS_PER_TARGET [TARGET...]: runs each libFuzzer target (all
# eight by default) for the given time on its corpus, one after the other, and prints
# executions per second and total executions per target.  Exits 1 if any target
# crashes, leaks, hangs (10 s on one input) or runs out of memory (2 GiB); the input
# that did it is left in BUILD_FUZZ_DIR/fuzz-artifacts/TARGET/.
#
# BUILD_FUZZ_DIR is a build made with CC=clang meson setup BUILD_FUZZ_DIR -Dfuzz=true;
# the targets and tools are brought up to date first, and the corpora are made with
# make_corpus.sh into BUILD_FUZZ_DIR/fuzz-corpus when missing (new inputs the fuzzers
# find are added there, so later runs start further on).  docs/fuzzing.md has more.
set -uo pipefail

build=${1:?usage: run.sh BUILD_FUZZ_DIR SECONDS_PER_TARGET [TARGET...]}
secs=${2:?usage: run.sh BUILD_FUZZ_DIR SECONDS_PER_TARGET [TARGET...]}
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(onnx tensor graft dataset idx image json wisdom wav)
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd) || exit 1

for t in "${targets[@]}"; do
	[ -f "$here/fuzz_$t.c" ] || { echo "run.sh: no target '$t'" >&2; exit 2; }
done
if ! grep -q "fuzz_onnx" "$build/build.ninja" 2>/dev/null; then
	echo "run.sh: $build has no fuzz targets: CC=clang meson setup $build -Dfuzz=true" >&2
	exit 2
fi
ninja -C "$build" $(printf 'tests/fuzz/fuzz_%s ' "${targets[@]}") tools/graft-import \
	tools/graft-data >/dev/null || { echo "run.sh: build failed" >&2; exit 1; }

corpus=$build/fuzz-corpus
if [ ! -d "$corpus/onnx" ]; then
	echo "run.sh: making the seed corpora in $corpus"
	"$here/make_corpus.sh" "$corpus.tmp" "$build" && mv "$corpus.tmp" "$corpus" || exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
printf '%-8s %8s %12s %9s %7s  %s\n' target seconds executions exec/s corpus result
for t in "${targets[@]}"; do
	art=$build/fuzz-artifacts/$t
	log=$build/fuzz-logs/$t.log
	mkdir -p "$art" "$build/fuzz-logs" "$corpus/$t"
	start=$(date +%s)
	# Regressions first: the crashes found before must not come back.
	dict=()
	[ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
	"$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$corpus/$t" \
		"$here/regressions/$t" >"$log" 2>&1
	rc=$?
	el=$(( $(date +%s) - start ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	size=$(find "$corpus/$t" -type f | wc -l)
	if [ $rc -eq 0 ]; then
		result=ok
	else
		result="FAILED (exit $rc; log $log, input in $art)"
		failed=1
		grep -m1 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|fuzz: " \
			"$log" | sed 's/^/    /'
	fi
	printf '%-8s %8s %12s %9s %7s  %s\n' "$t" "$el" "${execs:-?}" "${rate:-?}" "$size" "$result"
done
exit $failed
