#!/bin/bash
# plot.sh: graft-plot on the log of a real graft-train run (a tiny Flatten-Gemm model on
# 200 Fashion-MNIST images of 5 classes, 3 epochs with validation and --log-every): the
# SVG is well-formed XML with the loss and accuracy panels, solid train and dashed
# validation curves through every logged point, ticks with labels and a legend; the same
# log gives the same bytes from a file or stdin; two logs get two colours and their
# --label names; bad logs fail with one line naming the file and line and leave no
# output; usage errors exit 2.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
FM=/usr/share/datasets/fashion-mnist

$PY - <<'PY'
import numpy as np, onnx
from onnx import helper, numpy_helper as nh, TensorProto
r = np.random.default_rng(0)
w = nh.from_array((r.normal(size=(5, 784)) * 0.01).astype(np.float32), "fc.weight")
b = nh.from_array(np.zeros(5, np.float32), "fc.bias")
g = helper.make_graph([helper.make_node("Flatten", ["x"], ["f"]),
                       helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1)],
    "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])], [w, b])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "tiny.onnx")
PY
graft-data idx $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz --classes 0,1,2,3,4 \
	--take 40 --split 0.75 --seed 1 -o train.graft 2>/dev/null
check "graft-train writes a log" graft-train tiny.onnx --data train.graft --val val.graft \
	--epochs 3 --batch 16 --lr 0.05 --log a.jsonl --log-every 4 -q -o a.graft
check "a second run (another rate) writes another" graft-train tiny.onnx --data train.graft \
	--val val.graft --epochs 3 --batch 16 --lr 0.01 --log b.jsonl -q -o b.graft

check "graft-plot a.jsonl -o a.svg" graft-plot a.jsonl -o a.svg
# svg.py FILE LOG...: checks FILE against the logs it was drawn from
cat > svg.py <<'PY'
import json, sys, xml.etree.ElementTree as E
S = "{http://www.w3.org/2000/svg}"
svg = E.parse(sys.argv[1]).getroot()
assert svg.tag == S + "svg", svg.tag
logs = [[json.loads(l) for l in open(f) if l.strip()] for f in sys.argv[2:]]
panels = {g.get("id"): g for g in svg.iter(S + "g") if g.get("class") == "panel"}
assert sorted(panels) == ["accuracy", "loss"], sorted(panels)
colours = set()
for name, g in panels.items():
    texts = [t.text for t in g.iter(S + "text")]
    assert name in texts and "epoch" in texts, texts
    labels = [t.text for t in g.find(S + "g[@class='tick-labels']")]
    assert len(labels) >= 4 and all(float(t) == float(t) for t in labels), labels
    assert len(g.find(S + "g[@class='ticks']")) >= 8
    for i, log in enumerate(logs):
        for cls, key in (("train", name), ("val", "val_" + name)):
            want = sum(1 for l in log if key in l)
            got = g.findall(S + "polyline[@class='%s'][@data-log='%d']" % (cls, i))
            assert len(got) == 1, (name, cls, i, len(got))
            pts = got[0].get("points").split()
            assert len(pts) == want, (name, cls, len(pts), want)
            assert all(len(p.split(",")) == 2 for p in pts)
            assert (got[0].get("stroke-dasharray") is not None) == (cls == "val")
            colours.add(got[0].get("stroke"))
assert len(colours) == len(logs), colours
legend = [t.text for t in svg.find(S + "g[@class='legend']").iter(S + "text")]
print("\n".join(legend))
PY
check "a.svg: well-formed, two panels, every logged point, ticks" \
	sh -c "$PY svg.py a.svg a.jsonl > legend.txt"
check "a.svg: legend names the file, train and validation" \
	sh -c "printf 'a.jsonl\ntrain\nvalidation\n' | cmp -s - legend.txt"
check "a.svg: well-formed XML" $PY -c "import xml.etree.ElementTree as E; E.parse('a.svg')"
check "the log's epoch and step lines: 3 val points, more train ones" \
	sh -c "grep -c val_loss a.jsonl | grep -qx 3 && [ \$(wc -l < a.jsonl) -gt 6 ]"
check "same log, same bytes" sh -c "graft-plot a.jsonl | cmp -s - a.svg"
check "stdin with --label: the same bytes" sh -c "graft-plot --label a.jsonl < a.jsonl |
	cmp -s - a.svg && graft-plot - --label a.jsonl < a.jsonl | cmp -s - a.svg"

check "two logs, labels, a title" graft-plot a.jsonl b.jsonl --label 'lr 0.05' \
	--label 'lr <0.01>' --title 'tiny & fashion' -o ab.svg
check "ab.svg: both logs' curves, in two colours" sh -c "$PY svg.py ab.svg a.jsonl b.jsonl > legend.txt"
check "ab.svg: the legend has the labels" \
	sh -c "printf 'lr 0.05\nlr <0.01>\ntrain\nvalidation\n' | cmp -s - legend.txt"
check "ab.svg: the title, escaped" grep -q '>tiny &amp; fashion</text>' ab.svg
check "one --label, the second log named by its file" sh -c "graft-plot a.jsonl b.jsonl -l A |
	grep -c '>A</text>\|>b.jsonl</text>' | grep -qx 2"

# Step lines only (no validation): no dashed curve.
grep -v val_loss a.jsonl > steps.jsonl
check "no validation: no dashed curve" sh -c "graft-plot steps.jsonl |
	grep -q '<polyline class=\"train\"' && ! graft-plot steps.jsonl | grep -q 'class=\"val\"'"

# Errors: one line naming the file and the line, exit 1, no output.
{ head -n 2 a.jsonl; echo '{"epoch": 3, "loss": 0.5,}'; } > bad.jsonl
expect_error "bad JSON" "^graft-plot: bad.jsonl: line 3: expected a key .* at column 26$" \
	graft-plot a.jsonl bad.jsonl -o out.svg
printf '{"epoch": 1, "loss": "low"}\n' > str.jsonl
expect_error "a string for the loss" "^graft-plot: str.jsonl: line 1: 'loss' is not a number" \
	graft-plot str.jsonl -o out.svg
printf '{"step": 1, "lr": 0.1}\n{"epoch": 1, "lr": 0.1}\n' > none.jsonl
expect_error "no usable line" "^graft-plot: none.jsonl: no usable line" graft-plot none.jsonl -o out.svg
: > empty.jsonl
expect_error "empty log" "^graft-plot: empty.jsonl: empty input$" graft-plot empty.jsonl -o out.svg
expect_error "empty stdin" "^graft-plot: <stdin>: empty input$" sh -c "graft-plot -o out.svg < empty.jsonl"
expect_error "a model is no log" "^graft-plot: a.graft: line 1: expected '\{'" graft-plot a.graft -o out.svg
$PY -c "import random; r = random.Random(1)
open('noise.jsonl', 'wb').write(bytes(r.randrange(256) for _ in range(300)))"
expect_error "noise" "^graft-plot: noise.jsonl: (line [0-9]+: |empty input|no usable)" \
	graft-plot noise.jsonl -o out.svg
expect_error "missing file" "^graft-plot: nothing.jsonl: No such file" graft-plot nothing.jsonl -o out.svg
expect_error "unwritable output" "^graft-plot: .*nodir/x.svg: cannot create" graft-plot a.jsonl -o nodir/x.svg
check "no output after the errors" sh -c "test ! -e out.svg && test -z \"\$(ls | grep 'out.svg')\""
cp a.svg keep.svg
graft-plot bad.jsonl -o keep.svg 2>/dev/null
check "a failure leaves an existing output as it was" cmp -s keep.svg a.svg

# Usage errors: exit 2 with the synopsis; --help and --version on stdout.
usage_error() {
	local what=$1; shift
	"$@" >stdout.txt 2>stderr.txt
	local rc=$?
	if [ $rc -ne 2 ]; then bad "$what: exit $rc, wanted 2"; return; fi
	if ! grep -q '^usage: graft-plot ' stderr.txt || [ -s stdout.txt ]; then
		bad "$what: no synopsis on stderr"; return
	fi
	ok
}
usage_error "unknown option" graft-plot --bogus a.jsonl
usage_error "-o without its argument" graft-plot a.jsonl -o
usage_error "more labels than logs" graft-plot a.jsonl -l x -l y
usage_error "stdin twice" graft-plot - - -o out.svg
check "--help" sh -c "graft-plot --help | grep -q '^usage: graft-plot '"
check "--version" sh -c "graft-plot --version | grep -q '^graft-plot (graft) '"
finish
