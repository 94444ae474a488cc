#!/bin/bash
# errors.sh: bad input gets one line on stderr naming the tool and the file, exit 1, and
# no output file; usage errors exit 2.
. "$(dirname "$0")/lib.sh"

m=$DATA/pytorch-converted/test_ConvTranspose2d/model.onnx
graft-import "$m" -o good.graft

echo "hello, world" > text.onnx
expect_error "not ONNX" "^graft-import: text.onnx: not an ONNX model" graft-import text.onnx -o out.graft
check "no output after a failure" test ! -e out.graft
head -c 100 "$m" > cut.onnx
expect_error "truncated ONNX" "^graft-import: cut.onnx: .*(truncated|not an ONNX)" graft-import cut.onnx
size=$(stat -c %s good.graft)
head -c $((size / 2)) good.graft > cut.graft
expect_error "truncated .graft" "^graft-export: cut.graft: .*truncated" graft-export cut.graft -o out.onnx
check "no output after a truncated archive" test -z "$(ls | grep out.onnx)"
expect_error "truncated .graft through a pipe" "^graft-export: <stdin>: .*truncated" \
	sh -c "head -c $((size / 2)) good.graft | graft-export -o out.onnx"
check "no output after a truncated pipe" test -z "$(ls | grep out.onnx)"
cp good.graft corrupt.graft
block=$(tar -R -tvf good.graft | awk '/tensors\/000000/ { sub(":", "", $2); print $2 }')
printf '\377' | dd of=corrupt.graft bs=1 seek=$(((block + 1) * 512 + 3)) conv=notrunc status=none
expect_error "corrupted tensor" "^graft-export: corrupt.graft: member .* corrupted \(checksum" \
	graft-export corrupt.graft -o out.onnx
sed 's/graft-archive 1/graft-archive 7/' good.graft > newer.graft
expect_error "newer format" "^graft-info: newer.graft: format version 7 is newer" graft-info newer.graft
: > empty.onnx
expect_error "empty file" "^graft-export: empty.onnx: empty input" graft-export empty.onnx
expect_error "empty input" "^graft-export: <stdin>: empty input" sh -c "graft-export < empty.onnx"
expect_error "empty pipe" "^graft-export: <stdin>: empty input" sh -c "printf '' | graft-export"

# An output that is no regular file is written in place, never renamed over: a FIFO's
# reader gets the bytes, and /dev/null stays the device (renaming a temporary file over
# it, as root, would replace the device with a file for everyone).
mkfifo out.fifo
cat out.fifo > from-fifo.graft &
check "-o FIFO" graft-import "$m" -o out.fifo
wait
check "-o FIFO: the reader got the model" sh -c "graft-export from-fifo.graft | cmp -s - '$m'"
check "-o FIFO: still a FIFO, no temporary beside it" sh -c "test -p out.fifo && test -z \"\$(ls | grep 'out.fifo.tmp')\""
if [ -c /dev/null ]; then
	check "-o /dev/null" graft-import "$m" -o /dev/null
	check "-o /dev/null: still a character device" test -c /dev/null
fi
expect_error "missing file" "^graft-info: nothing.onnx: No such file" graft-info nothing.onnx
expect_error "unwritable output" "^graft-import: .*nodir/x.graft: cannot create" graft-import "$m" -o nodir/x.graft

# External data that escapes the model's folder, or is missing.
mkdir -p sub
$PY - <<'PY'
import onnx
from onnx import helper, TensorProto
def model(loc):
    t = helper.make_tensor("W", TensorProto.FLOAT, [4], [0.0] * 4)
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", loc), ("offset", "0"), ("length", "16")):
        e = t.external_data.add(); e.key = k; e.value = v
    g = helper.make_graph([helper.make_node("Relu", ["W"], ["y"])], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [t])
    return helper.make_model(g)
onnx.save(model("../secret.bin"), "sub/dotdot.onnx")
onnx.save(model("/etc/hostname"), "sub/absolute.onnx")
onnx.save(model("missing.bin"), "sub/missing.onnx")
onnx.save(model("link.bin"), "sub/link.onnx")
PY
head -c 16 /dev/zero > secret.bin
ln -s ../secret.bin sub/link.bin
expect_error "external data with .." "^graft-import: sub/dotdot.onnx: tensor 'W': .*escapes" graft-import sub/dotdot.onnx -o x.graft
expect_error "external data absolute" "^graft-import: sub/absolute.onnx: .*not a relative path" graft-import sub/absolute.onnx -o x.graft
expect_error "external data symlink out" "^graft-import: sub/link.onnx: .*escapes" graft-import sub/link.onnx -o x.graft
expect_error "external data missing" "^graft-import: sub/missing.onnx: .*missing.bin.*No such file" graft-import sub/missing.onnx -o x.graft
expect_error "external data from stdin" "^graft-import: <stdin>: .*cannot be resolved" sh -c "graft-import < sub/missing.onnx > /dev/null"
check "no output after external-data failures" test ! -e x.graft

# graft-export with external data: a refusal or failure leaves neither file behind.
good=$DATA/pytorch-converted/test_ConvTranspose2d/model.onnx
script -qec "graft-export '$good' --external-data d.bin" /dev/null > tty.txt 2>&1
check "external data: terminal refusal leaves no data file" test -z "$(ls | grep d.bin)"
mkdir -p t2/x.onnx
expect_error "external data: model cannot be renamed" "^graft-export: t2/x.onnx: cannot rename" \
	graft-export "$good" -o t2/x.onnx --external-data d.bin
check "external data: failed export leaves no data file" test -z "$(ls t2 | grep -v '^x.onnx$')"
graft-export "$good" --external-data sub/d.bin > /dev/null 2>err.txt
check "--external-data with a slash exits 2" test $? -eq 2

# Usage errors: exit 2 with the synopsis.
for t in graft-import graft-export graft-info; do
	$t --no-such-option >/dev/null 2>err.txt
	check "$t: unknown option exits 2" test $? -eq 2
	check "$t: usage names the tool" grep -q "^$t: unknown option '--no-such-option'" err.txt
	check "$t --help exits 0 with usage" sh -c "$t --help | grep -q '^usage: $t'"
	check "$t --version" sh -c "$t --version | grep -q '(graft)'"
	$t a b >/dev/null 2>&1
	check "$t: two inputs is a usage error" test $? -eq 2
done
# script(1) gives the tool a terminal and copies what it prints to our stdout.
script -qec "graft-import '$m'" /dev/null > tty.txt 2>&1
check "binary to a terminal is refused" test $? -eq 1
check "terminal refusal says why" grep -q "^graft-import: <stdout>: refusing to write a binary model to a terminal" tty.txt

# Every tool has a man page in docs/ that names each long option its --help lists (as
# roff writes it, \-\-name; --help and --version are said once, in graft(7)).
for t in "$TOOLS"/graft-*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	name=$(basename "$t")
	page=$SRC/docs/$name.1
	check "$name has a man page" test -f "$page"
	for o in $("$t" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u); do
		case $o in --help|--version) continue ;; esac
		check "$name(1) names $o" grep -qF -- "$(printf '%s' "$o" | sed 's/-/\\-/g')" "$page"
	done
done
finish
