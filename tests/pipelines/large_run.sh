#!/bin/bash
# large_run.sh: a 2 GiB model, made here from seeded random weights as ONNX external
# data (4 Linear layers of 16384x8192 float32 with Relu between), imported, sliced,
# exported and run, each step under /usr/bin/time: a tool given a file maps the weights,
# so no step may take more than 1.5 times the model's size in memory (peak RSS, mapped
# pages included).  Runs are checked against numpy on the same weights.  Then
# --max-memory: a budget below what a run needs refuses it up front, in every tool that
# runs models; one above lets it run.  Needs about 8 GiB of disk and 6 GiB of memory
# (skipped otherwise); about a minute on 2 cores.
. "$(dirname "$0")/lib.sh"

free_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
if [ "${free_kb:-0}" -lt $((9 * 1024 * 1024)) ] || [ "${avail_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then
	echo "SKIP: needs 9 GiB of disk (have $((free_kb / 1024)) MiB) and 6 GiB of memory" \
	     "(have $((avail_kb / 1024)) MiB)"
	exit 77
fi

mkdir -p big
$PY - <<'PY'
import numpy as np, onnx
from onnx import helper, TensorProto
dims = [8192, 16384, 8192, 16384, 8192]
rng = np.random.default_rng(20240601)
inits, nodes, off = [], [], 0
with open("big/weights.bin", "wb") as f:
    for l in range(4):
        k, n = dims[l], dims[l + 1]
        a = np.float32(np.sqrt(3.0 / k))            # uniform in +-a: activations stay O(1)
        buf = np.empty((1024, k), np.float32)       # 1024 rows of B (N, K) at a time
        for r in range(0, n, 1024):
            rng.random(out=buf, dtype=np.float32)
            buf *= 2 * a
            buf -= a
            f.write(memoryview(buf).cast("B"))
        t = TensorProto(name=f"W{l}", data_type=TensorProto.FLOAT, dims=[n, k])
        t.data_location = TensorProto.EXTERNAL
        for key, v in (("location", "weights.bin"), ("offset", str(off)), ("length", str(4 * n * k))):
            e = t.external_data.add(); e.key = key; e.value = v
        off += 4 * n * k
        inits += [t, helper.make_tensor(f"B{l}", TensorProto.FLOAT, [n],
                                        (rng.random(n, dtype=np.float32) - 0.5) * 0.1)]
        x = "x" if l == 0 else f"h{l - 1}"
        y = "y" if l == 3 else f"g{l}"
        nodes.append(helper.make_node("Gemm", [x, f"W{l}", f"B{l}"], [y], name=f"fc{l}", transB=1))
        if l < 3:
            nodes.append(helper.make_node("Relu", [y], [f"h{l}"], name=f"relu{l}"))
g = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8192])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8192])], inits)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "big/m.onnx")
np.save("x.npy", np.random.default_rng(7).standard_normal((2, 8192), dtype=np.float32))
PY
size=$(stat -c %s big/weights.bin)
echo "model: 4 x Gemm 16384x8192 float32, $((size / 1048576)) MiB of weights"

# measure NAME COMMAND...: runs it under /usr/bin/time and prints its peak RSS against the
# model's size; fails the check when the command fails or takes over 1.5 times the size.
measure() {
	local what=$1; shift
	if ! /usr/bin/time -f %M -o rss.txt "$@" >/dev/null; then
		bad "$what: the command failed"; return
	fi
	local kb
	kb=$(tail -n 1 rss.txt)
	awk -v w="$what" -v kb="$kb" -v size="$size" 'BEGIN {
		printf "peak RSS %-28s %6.0f MiB  %.2fx the model\n", w, kb / 1024, kb * 1024 / size }'
	if [ $((kb * 1024 * 2)) -le $((size * 3)) ]; then ok; else bad "$what: over 1.5x the model's size"; fi
}

# compare OUT.npy FROM TO: OUT against numpy computing the layers FROM..TO-1 on x.npy (or on
# the reference value before layer FROM), within 1e-4 of the output's largest magnitude.
compare() {
	$PY - "$@" <<'PY'
import sys, numpy as np, onnx
from onnx import numpy_helper
out, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dims = [8192, 16384, 8192, 16384, 8192]
m = onnx.load("big/m.onnx", load_external_data=False)
bias = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer if t.name.startswith("B")}
w = np.memmap("big/weights.bin", np.float32, "r")
h = np.load("x.npy").astype(np.float64)
off = 0
for l in range(4):
    k, n = dims[l], dims[l + 1]
    if l == first:
        h0 = h
    if first <= l < last or l < first:
        y = np.empty((h.shape[0], n))
        for r in range(0, n, 1024):        # 1024 rows of W at a time: the test stays small
            y[:, r:r + 1024] = h @ w[off + r * k:off + (r + 1024) * k].reshape(1024, k).T
        h = y + bias[f"B{l}"]
        if l < 3:
            h = np.maximum(h, 0)
    off += n * k
got = np.load(out)
if first > 0:
    np.save("h_in.npy", h0.astype(np.float32))
err = np.abs(got - h).max() / np.abs(h).max()
print(f"{out}: max error {err:.2e} of the largest output")
sys.exit(0 if got.shape == h.shape and err < 1e-4 else 1)
PY
}

measure "graft-import m.onnx" graft-import big/m.onnx -o m.graft
measure "graft-slice --from h0 --to h2" graft-slice m.graft --from h0 --to h2 -o s.graft
measure "graft-export -o out.onnx" graft-export m.graft -o out.onnx
check "the export's weights went to out.onnx.data" test "$(stat -c %s out.onnx.data)" -ge "$size"
measure "graft-run m.graft (batch 2)" graft-run m.graft -i x.npy -o r1
check "graft-run m.graft matches numpy" compare r1/y.npy 0 4
measure "graft-run m.onnx (batch 2)" graft-run big/m.onnx -i x.npy -o r2
check "graft-run m.onnx gives the same bytes" cmp r1/y.npy r2/y.npy
measure "graft-run out.onnx (batch 2)" graft-run out.onnx -i x.npy -o r3
check "graft-run out.onnx gives the same bytes" cmp r1/y.npy r3/y.npy
rm -f out.onnx out.onnx.data
# the slice reads h0 (the first layer's output, after Relu, as numpy computes it: the
# comparison writes it to h_in.npy) and computes h2
check "numpy's h0 for the slice" compare r1/y.npy 1 4
measure "graft-run s.graft (batch 2)" graft-run s.graft -i h_in.npy -o r4
check "graft-run s.graft matches numpy" compare r4/h2.npy 1 3

# --max-memory: refused up front, with the tool, the file and both sizes on one line.
expect_error "a budget below the run refuses it" \
	"^graft-run: m\.graft: needs about 2 GiB, over the --max-memory budget of 1 GiB$" \
	graft-run m.graft -i x.npy --max-memory 1G
check "a budget above the run runs it" graft-run m.graft -i x.npy --max-memory 2500M -o r5
check "to the same bytes" cmp r1/y.npy r5/y.npy
expect_error "sizes in K" "^graft-run: s\.graft: needs about 1 GiB, over the --max-memory budget of 512 MiB$" \
	graft-run s.graft -i h_in.npy --max-memory 524288K
check "a bad size is a usage error" sh -c 'graft-run m.graft --max-memory 2X 2>/dev/null; [ $? -eq 2 ]'
rm -rf big m.graft s.graft r1 r2 r3 r4 r5

# The other tools that run models: graft-eval, graft-train and graft-plan.
$PY - <<'PY'
import numpy as np, onnx
from onnx import helper, TensorProto
rng = np.random.default_rng(3)
w = helper.make_tensor("W", TensorProto.FLOAT, [3, 64], rng.standard_normal((3, 64)).astype(np.float32))
b = helper.make_tensor("B", TensorProto.FLOAT, [3], np.zeros(3, np.float32))
g = helper.make_graph([helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)], "lin",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, b])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "lin.onnx")
np.save("dx.npy", rng.standard_normal((256, 64)).astype(np.float32))
np.save("dy.npy", rng.integers(0, 3, 256).astype(np.int64))
PY
check "a small dataset" graft-data npy dx.npy dy.npy -o d.graft
for tool in "graft-eval lin.onnx --data d.graft" "graft-train lin.onnx --data d.graft --steps 1 -o t.graft" \
	    "graft-plan lin.onnx --data d.graft --rule"; do
	name=${tool%% *}
	expect_error "$name refuses a budget of 1K" \
		"^$name: lin\.onnx: needs about [0-9.]+ (KiB|MiB), over the --max-memory budget of 1 KiB$" \
		$tool --max-memory 1K
	check "$name runs with 64M" sh -c "$tool --max-memory 64M >/dev/null 2>&1"
done
finish
