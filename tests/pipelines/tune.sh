#!/bin/bash
# tune.sh: kernel choice per layer shape (docs/engine.md).  graft-run times the
# convolution kernels oneDNN offers for each shape it has not seen, keeps the winners in
# the wisdom file, and reuses them; --no-tune and GRAFT_WISDOM=off run the default
# kernels.  Which kernel wins depends on the machine and its load, so no check here
# depends on the choice: only on what any choice must satisfy (a result within the
# tuner's tolerance of the default kernel's, the same result once the choice is kept,
# the file's form, merging, and the warnings).
. "$(dirname "$0")/lib.sh"
unset GRAFT_WISDOM XDG_CACHE_HOME

# x (4, 16, 14, 14) -> 3x3 Conv (32) -> Relu -> 3x3 Conv (32) -> 1x1 Conv (16) -> y;
# b.onnx: the same with 8 input channels (other shapes)
$PY - <<'EOF'
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
rng = np.random.default_rng(1)
def model(path, c):
    w = lambda name, *shape: numpy_helper.from_array(
        (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name)
    inits = [w('w1', 32, c, 3, 3), w('w2', 32, 32, 3, 3), w('w3', 16, 32, 1, 1),
             numpy_helper.from_array(np.zeros(32, np.float32), 'b1')]
    nodes = [helper.make_node('Conv', ['x', 'w1', 'b1'], ['c1'], pads=[1, 1, 1, 1]),
             helper.make_node('Relu', ['c1'], ['r1']),
             helper.make_node('Conv', ['r1', 'w2'], ['c2'], pads=[1, 1, 1, 1]),
             helper.make_node('Conv', ['c2', 'w3'], ['y'])]
    g = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [4, c, 14, 14])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [4, 16, 14, 14])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), path)
    np.save(path.replace('.onnx', '-x.npy'), rng.standard_normal((4, c, 14, 14)).astype(np.float32))
model('a.onnx', 16)
model('b.onnx', 8)
EOF
export GRAFT_WISDOM=$work/wisdom
run() { # run MODEL OUTDIR [options]: graft-run on the model's input, stderr in OUTDIR.err
	local m=$1 out=$2; shift 2
	graft-run "$m.onnx" -i "$m-x.npy" -o "$out" "$@" 2>"$out.err"
}
close() { # close A B: y.npy of two runs within the tuner's tolerance (1e-5 of max |y|)
	$PY -c "
import numpy as np, sys
a, b = np.load('$1/y.npy'), np.load('$2/y.npy')
d = np.abs(a - b).max() / np.abs(b).max()
sys.exit(0 if d <= 1e-5 else print('relative difference', d) or 1)"
}
export -f run close
export PY

check "the first run times its 3 shapes" run a t1
check "and says so on stderr" grep -q "^graft-run: timed the kernels of 3 new layer shapes on this machine (kept in $work/wisdom)$" t1.err
check "the wisdom file: a header and 3 entries" bash -c "[ \"\$(head -n1 wisdom)\" = 'graft-wisdom 1' ] && [ \$(wc -l <wisdom) = 4 ]"
check "entries: KEY, CHOICE, MICROSECONDS, DIFFERENCE" bash -c "tail -n +2 wisdom | awk -F'\t' '
	NF != 4 || \$1 !~ /\\|conv fwd x=4x(16|32)x14x14 / || \$2 !~ /^(direct|winograd)\\/(default|any)\\/[a-z]/ ||
	\$3 !~ /^[0-9.]+\$/ || \$4 + 0 > 1e-5 { bad = 1 } END { exit bad }'"
check "keyed by this machine: the CPU's model name" bash -c "tail -n +2 wisdom | grep -qF \"\$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)|\""
cp wisdom wisdom.first
check "a second run times nothing" bash -c "run a t2 && [ ! -s t2.err ]"
check "and computes exactly what the first did (the same kernels)" cmp t1/y.npy t2/y.npy
check "the file is as it was" cmp wisdom wisdom.first
check "--no-tune: the default kernels, no timing" bash -c "run a n1 --no-tune && [ ! -s n1.err ]"
check "the tuned result is within 1e-5 of the default kernels'" close t1 n1
check "GRAFT_WISDOM=off: the default kernels" bash -c "GRAFT_WISDOM=off run a off1 && [ ! -s off1.err ] && cmp n1/y.npy off1/y.npy"
check "--no-tune leaves the file alone" cmp wisdom wisdom.first

# Other machines' entries stay, and the default path is under the user's cache folder.
printf 'Other CPU|avx2|onednn 2.6.3|conv fwd x=1 w=1\tdirect/any/jit:avx2\t1.0\t0\n' >>wisdom
check "another model adds its shapes to the file" bash -c \
	"run b tb && grep -q 'conv fwd x=4x8x14x14 .* in=plain ' wisdom && [ \$(wc -l <wisdom) -ge 6 ]"
check "and keeps the other machine's entry" grep -q '^Other CPU|avx2|' wisdom
mkdir home
check "the default file is ~/.cache/graft/wisdom" env -u GRAFT_WISDOM HOME="$work/home" \
	bash -c "run a h1 && [ \$(wc -l <home/.cache/graft/wisdom) = 4 ]"
check "or \$XDG_CACHE_HOME/graft/wisdom" env -u GRAFT_WISDOM XDG_CACHE_HOME="$work/xdg" \
	bash -c "run a x1 && [ -s xdg/graft/wisdom ]"

# Processes timing at the same time lose nothing: the file is merged under a lock.
export GRAFT_WISDOM=$work/shared
run a p1 & run b p2 & wait
# (the later layers' keys name the layout the earlier winner left: only the first
# layers' keys are the same whatever wins)
check "two processes at once: both their shapes are kept" bash -c \
	"grep -q 'conv fwd x=4x16x14x14 .* in=plain ' shared && grep -q 'conv fwd x=4x8x14x14 .* in=plain ' shared &&
	 [ \$(wc -l <shared) -ge 5 ] && [ -z \"\$(cut -f1 shared | sort | uniq -d)\" ]"

# A file that cannot be used is a warning: the run goes on with the default kernels.
echo garbage >bad
check "a malformed file: exit 0" bash -c "GRAFT_WISDOM=$work/bad run a c1"
check "one warning line naming it" grep -q "^graft-run: warning: $work/bad: not a graft wisdom file .*; running the default kernels$" c1.err
check "the default kernels' result" cmp n1/y.npy c1/y.npy
check "the malformed file is left alone" bash -c "[ \"\$(cat bad)\" = garbage ]"
touch afile
check "a file that cannot be read (a path through a file): exit 0" bash -c "GRAFT_WISDOM=$work/afile/wisdom run a u1"
check "one warning line" grep -q "^graft-run: warning: $work/afile/wisdom: Not a directory; running the default kernels$" u1.err
check "the default kernels' result" cmp n1/y.npy u1/y.npy
check "a file that cannot be written: exit 0" bash -c "GRAFT_WISDOM=/proc/graft-none/wisdom run a u2"
check "one warning line" grep -q "^graft-run: warning: kernel timings not kept: " u2.err
check "the tuned result all the same" close u2 n1
finish
