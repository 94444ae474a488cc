#!/bin/bash
# faults.sh: fault injection on the real tools.
#  1. A full disk during -o writes, as a file-size limit (ulimit -f: EFBIG, SIGXFSZ) and,
#     where a 1 MiB tmpfs can be mounted (root), a real ENOSPC: graft-import, graft-export
#     (also --external-data), graft-train -o and --checkpoint, graft-data --split (two
#     outputs), graft-run -o DIR exit 1 with one line naming the tool and the file, the
#     old output stays as it was, and no temporary file is left.
#  2. Pipes: a reader that goes away ends the writer (SIGPIPE, or exit 1) without hanging
#     or leaving files; a writer killed mid-stream gives "truncated" and no output.
#  3. kill -9 of graft-train once seeded steps are reached (checkpoints every 5 steps), each
#     time resumed from the checkpoint: it always loads, the chain reaches the planned
#     end, and the result equals an uninterrupted run bit for bit.
#  4. A checkpoint write interrupted (kill -9 while a 4 MiB checkpoint is written; a
#     file-size limit) never replaces the previous good checkpoint.
#  5. Paths: external data never leaves the model's folder (symlinked folders, '..' in
#     the middle, absolute paths), a FIFO or device there is refused without hanging, and
#     archive member names are never used as paths.
# Ends with the fault matrix (fault, tool: outcome as measured).
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1        # one thread: bit-identical resumes, and a fair share of 2 cores

cleanup() {
	[ -n "${mnt:-}" ] && umount "$mnt" 2>/dev/null
	cd / && rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

matrix=()
row() { matrix+=("$1"$'\t'"$2"$'\t'"$3"); }
# verdict FAULT TOOL OUTCOME PROBLEMS: counts a check and records its row
verdict() {
	if [ -z "$4" ]; then ok; row "$1" "$2" "$3"; else bad "$1: $2:$4"; row "$1" "$2" "FAIL:$4"; fi
}
# temps DIR...: the temporary files left in the folders
temps() { find "$@" -maxdepth 1 -name '*.tmp*' 2>/dev/null | sort | tr '\n' ' '; }
# orphan_names KILL TARGET: after a kill -9, what the writer of TARGET left beside it may
# only be the temporary name of a replacement caught between its link and its rename
# (TARGET.tmpXXXXXX, at most one); counted in $orphans, checked gone after a later writer.
orphans=0
orphan_names() {
	local left n
	left=$(temps .)
	[ -z "$left" ] && return
	n=$(echo "$left" | wc -w)
	if [ "$n" -ne 1 ] || ! [[ "$left" =~ ^\./$2\.tmp[A-Za-z0-9]{6}\ $ ]]; then
		p="$p kill $1 left $left;"
	fi
	orphans=$((orphans + n))
}

# ---- fixtures: a small CNN and its data, a 256 KiB model, a 4 MiB one ----------------------
$PY - <<'PY'
import numpy as np, onnx
from onnx import helper, numpy_helper as nh, TensorProto
r = np.random.default_rng(0)
def cnn(path, ballast=0):
    inits = [nh.from_array((r.normal(size=(8, 1, 3, 3)) * 0.3).astype(np.float32), "conv.weight"),
             nh.from_array(np.zeros(8, np.float32), "conv.bias"),
             nh.from_array((r.normal(size=(4, 512)) * 0.05).astype(np.float32), "fc.weight"),
             nh.from_array(np.zeros(4, np.float32), "fc.bias")]
    if ballast:     # frozen weight nobody reads: a large checkpoint
        inits.append(nh.from_array(r.normal(size=ballast).astype(np.float32), "ballast"))
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
cnn("cnn.onnx")
cnn("heavy.onnx", ballast=1 << 20)
n = 1 << 16
w = nh.from_array(np.linspace(-1, 1, n, dtype=np.float32), "W")
g = helper.make_graph([helper.make_node("Relu", ["W"], ["y"])], "relu", [],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "relu.onnx")
# 300 KiB of small tensors that stay inline, and one for --external-data
small = [nh.from_array(np.full(255, i, np.float32), "s%d" % i) for i in range(300)]
g = helper.make_graph([helper.make_node("Sum", [t.name for t in small], ["y"])], "many", [],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [255])],
    small + [nh.from_array(np.ones(n, np.float32), "big")])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "many.onnx")
y = r.integers(0, 4, 256); x = r.normal(size=(256, 1, 8, 8)) * 0.5
for c in range(4): x[y == c, 0, 2 * c:2 * c + 2] += 0.5
np.save("x.npy", x.astype(np.float32)); np.save("y.npy", y)
np.save("xb.npy", r.normal(size=(4096, 64)).astype(np.float32)); np.save("yb.npy", y.repeat(16))
PY
graft-data npy x.npy y.npy -o d.graft 2>/dev/null
graft-import relu.onnx -o relu.graft
graft-import heavy.onnx -o heavy.graft
graft-import many.onnx -o many.graft
if ! check "fixtures" test -s d.graft -a -s relu.graft -a -s heavy.graft -a -s many.graft; then
	finish; exit 1
fi

# ---- 1. a full disk during -o writes ----------------------------------------------------------
# disk_fault FAULT DIR LIMIT_KIB TOOL FILE COMMAND...: COMMAND writes FILE (and perhaps
# more) in DIR, where ${olds[@]} hold known old contents, limited to LIMIT_KIB by ulimit -f
# (LIMIT_KIB "-": DIR is the tmpfs, already filled).  The run must exit 1 with one line
# "TOOL: ...FILE: ..." and leave the old files and no temporary file.
olds=()
disk_fault() {
	local fault=$1 dir=$2 limit=$3 tool=$4 file=$5 f p=""; shift 5
	( [ "$limit" = - ] || ulimit -f "$limit"; exec timeout 60 "$@" ) >out.txt 2>err.txt
	local rc=$?
	[ $rc -eq 1 ] || p="$p exit $rc;"
	[ "$(wc -l <err.txt)" -eq 1 ] || p="$p stderr has $(wc -l <err.txt) lines;"
	grep -qE "^$tool: .*$file.*(File too large|No space left)" err.txt ||
		p="$p message '$(head -n1 err.txt)';"
	for f in "${olds[@]}"; do
		[ "$(cat "$dir/$f" 2>/dev/null)" = "old $f" ] || p="$p $f not kept;"
	done
	local left; left=$(temps "$dir" "$dir"/*/)
	[ -z "$left" ] || { p="$p left $left;"; rm -f $left; }
	local cmd="$*"; [ "$1" = sh ] && cmd=${3#exec }
	verdict "$fault" "$cmd" "exit 1: $(sed "s/^$tool: //" err.txt)" "$p"
}
# write_olds DIR NAME...: the known old outputs
write_olds() {
	local dir=$1 f; shift
	olds=("$@")
	for f in "$@"; do mkdir -p "$(dirname "$dir/$f")"; echo "old $f" > "$dir/$f"; done
}
# fill DIR KIB: leaves about KIB free on the tmpfs DIR
fill() {
	rm -f "$1/.fill"
	local avail; avail=$(df --output=avail -k "$1" | tail -n1)
	[ "$avail" -gt "$2" ] && head -c $(((avail - $2) * 1024)) /dev/zero > "$1/.fill" 2>/dev/null
	return 0
}

# disk_faults FAULT DIR ulimit|tmpfs: every writer, with the room (KiB) each call names:
# as a file-size limit, or as what is left free on the tmpfs DIR.
disk_faults() {
	local fault=$1 dir=$2 how=$3
	room() { if [ "$how" = ulimit ]; then echo "$1"; else fill "$dir" "$1"; echo -; fi; }
	write_olds "$dir"       # stdout a file: written in place, so only the error is checked
	disk_fault "$fault" "$dir" "$(room 64)" graft-import "<stdout>" \
		sh -c "exec graft-import relu.onnx > $dir/stdout.graft"
	rm -f "$dir/stdout.graft"
	write_olds "$dir" o.graft
	disk_fault "$fault" "$dir" "$(room 64)" graft-import o.graft graft-import relu.onnx -o "$dir/o.graft"
	write_olds "$dir" o.onnx
	disk_fault "$fault" "$dir" "$(room 64)" graft-export o.onnx graft-export relu.graft -o "$dir/o.onnx"
	write_olds "$dir" o.onnx d.bin
	disk_fault "$fault" "$dir" "$(room 64)" graft-export "external data 'd.bin'" \
		graft-export relu.graft -o "$dir/o.onnx" --external-data d.bin
	write_olds "$dir" t.graft
	disk_fault "$fault" "$dir" "$(room 16)" graft-train t.graft \
		graft-train cnn.onnx --data d.graft --steps 3 -q -o "$dir/t.graft"
	write_olds "$dir" c.graft
	disk_fault "$fault" "$dir" "$(room 16)" graft-train c.graft \
		graft-train cnn.onnx --data d.graft --steps 3 -q --checkpoint "$dir/c.graft" \
		--checkpoint-every 1 -o t-unused.graft
	# --split 0.8: the first output fails; --split 0.2: the first fits, the second fails
	write_olds "$dir" tr.graft va.graft
	disk_fault "$fault" "$dir" "$(room 32)" graft-data tr.graft \
		graft-data npy x.npy y.npy --split 0.8 -o "$dir/tr.graft" --val-out "$dir/va.graft"
	write_olds "$dir" tr.graft va.graft
	disk_fault "$fault" "$dir" "$(room 32)" graft-data va.graft \
		graft-data npy x.npy y.npy --split 0.2 -o "$dir/tr.graft" --val-out "$dir/va.graft"
	write_olds "$dir" rd/y.npy
	disk_fault "$fault" "$dir" "$(room 64)" graft-run rd/y.npy graft-run relu.graft -o "$dir/rd"
	rm -f "$dir/.fill" t-unused.graft
}
mkdir -p files
disk_faults "ulimit -f (EFBIG)" files ulimit

mnt=$work/mnt
mkdir -p "$mnt"
if mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null; then
	disk_faults "full tmpfs (ENOSPC)" mnt tmpfs
	umount "$mnt"
else
	echo "note: cannot mount a tmpfs here (not root?): no real ENOSPC, only ulimit -f"
	row "full tmpfs (ENOSPC)" "all writers" "skipped: mount not permitted"
fi
mnt=

# ---- 2. pipes -----------------------------------------------------------------------------------
# A reader that goes away: the writer ends by SIGPIPE (141) or with one error line,
# within 20 s, and the folder is as it was.
# reader_gone TOOL COMMAND: COMMAND is a pipeline whose writer's status it prints
reader_gone() {
	local label=$1 p="" before after; shift
	rm -rf pipe && mkdir pipe && before=$(cd pipe && ls -A)
	local rc; rc=$(cd pipe && timeout 20 bash -c "$1" 2>../err.txt)
	[ $? -ne 124 ] || p="$p hangs;"
	if [ "$rc" = 141 ]; then
		[ ! -s err.txt ] || p="$p SIGPIPE but stderr '$(head -n1 err.txt)';"
	elif [ "$rc" = 1 ]; then
		[ "$(wc -l <err.txt)" -eq 1 ] || p="$p stderr has $(wc -l <err.txt) lines;"
	else
		p="$p writer exit '$rc';"
	fi
	after=$(cd pipe && ls -A)
	[ "$before" = "$after" ] || p="$p left '$after';"
	local how="SIGPIPE (141), quiet"
	[ "$rc" = 1 ] && how="exit 1: $(head -n1 err.txt)"
	verdict "reader gone mid-pipe" "$label" "$how, nothing left" "$p"
}
reader_gone "graft-import | head -c 1000" \
	'graft-import ../heavy.onnx | head -c 1000 >/dev/null; echo ${PIPESTATUS[0]}'
reader_gone "graft-export | (read 16 bytes; exit)" \
	'graft-export ../heavy.graft | (dd bs=16 count=1 status=none >/dev/null; exit); echo ${PIPESTATUS[0]}'
reader_gone "graft-train | head -c 100" \
	'graft-train ../heavy.graft --data ../d.graft --steps 2 -q | head -c 100 >/dev/null; echo ${PIPESTATUS[0]}'
reader_gone "graft-data | head -c 100" \
	'graft-data npy ../xb.npy ../yb.npy 2>/dev/null | head -c 100 >/dev/null; echo ${PIPESTATUS[0]}'
# Two outputs, one of them a file: its temporary must go too.
reader_gone "graft-export --external-data d.bin | head -c 100" \
	'graft-export ../many.graft --external-data d.bin | head -c 100 >/dev/null; echo ${PIPESTATUS[0]}'
reader_gone "graft-data --split --val-out v.graft | head -c 100" \
	'graft-data npy ../xb.npy ../yb.npy --split 0.5 --val-out v.graft 2>/dev/null | head -c 100 >/dev/null; echo ${PIPESTATUS[0]}'

# A writer killed (kill -9) half-way through a .graft: the reader says "truncated", and
# writes nothing.
half=$(($(stat -c %s heavy.graft) / 2))
# writer_killed TOOL PATTERN OUTPUT COMMAND...: COMMAND reads the half archive on stdin
writer_killed() {
	local tool=$1 pattern=$2 out=$3 p=""; shift 3
	sh -c "head -c $half heavy.graft; kill -9 \$\$" | timeout 20 "$@" >out.txt 2>err.txt
	local rc=${PIPESTATUS[1]}
	[ "$rc" -eq 1 ] || p="$p exit $rc;"
	[ "$(wc -l <err.txt)" -eq 1 ] || p="$p stderr has $(wc -l <err.txt) lines;"
	grep -qE "$pattern" err.txt || p="$p message '$(head -n1 err.txt)';"
	[ ! -e "$out" ] || p="$p $out written;"
	[ -z "$(temps .)" ] || p="$p left $(temps .);"
	verdict "writer killed mid-pipe" "$tool" "exit 1: $(sed "s/^[^:]*: //; s/ (.*//" err.txt), no $out" "$p"
}
writer_killed "(head -c half; kill -9) | graft-export -o out.onnx" \
	"^graft-export: <stdin>: .*truncated" out.onnx graft-export -o out.onnx
writer_killed "(head -c half; kill -9) | graft-train -o out.graft" \
	"^graft-train: <stdin>: .*truncated" out.graft graft-train --data d.graft --steps 1 -q -o out.graft
writer_killed "(head -c half; kill -9) | graft-run -o outdir" \
	"^graft-run: <stdin>: .*truncated" outdir graft-run - -o outdir

# ---- 3. kill -9 of graft-train at random moments, then --resume ----------------------------------
# step FILE: the step a checkpoint holds
step() {
	local member
	# a copy: the checkpoint may be replaced between the two reads
	cp "$1" step.snap 2>/dev/null || return 1
	member=$(tar -xOf step.snap manifest | awk '$3 == "graft.train/step" { print $2 }') &&
		tar -xOf step.snap "$member" | od -An -t d8 | tr -d ' '
}
steps=2000
train=(--data d.graft --batch 16 --optimizer adam --lr 0.002 --augment flip,crop --seed 7 -q
       --steps $steps --checkpoint-every 5)
check "uninterrupted run" graft-train cnn.onnx "${train[@]}" --checkpoint straight.ck -o straight.graft
check "uninterrupted: exported" graft-export straight.graft -o straight.onnx
# Each kill lands once the run's checkpoint has reached a seeded step (the 5 of them
# within the run's first 80%), a few milliseconds later at random: by progress, not by
# the clock, so that a faster or slower machine than the one that wrote this changes
# only where in a step the kill lands, never whether it does.
RANDOM=20240611
kills=0 p="" last=-1 trail="" rc=0 target=0
for i in 1 2 3 4 5; do
	target=$((target + 5 * (10 + RANDOM % 50)))       # 50 to 295 steps further on
	resume=(); [ -e ck.graft ] && resume=(--resume ck.graft)
	graft-train cnn.onnx "${train[@]}" "${resume[@]}" --checkpoint ck.graft -o chain.graft &
	pid=$!
	while kill -0 $pid 2>/dev/null; do
		k=$(step ck.graft 2>/dev/null)
		[ -n "$k" ] && [ "$k" -ge $target ] && break
		sleep 0.01
	done
	sleep "0.0$((RANDOM % 10))"
	kill -9 $pid 2>/dev/null
	{ wait $pid; } 2>/dev/null     # no "Killed" note
	rc=$?
	[ $rc -eq 0 ] && break          # finished before the kill
	[ $rc -eq 137 ] || { p="$p run $i exit $rc;"; break; }
	kills=$((kills + 1))
	if [ -e ck.graft ]; then
		graft-info ck.graft >/dev/null 2>err.txt || p="$p checkpoint after kill $i does not load: $(cat err.txt);"
		k=$(step ck.graft)
		[ -n "$k" ] && [ "$k" -ge "$last" ] && [ $((k % 5)) -eq 0 ] ||
			p="$p checkpoint step '$k' after $last;"
		last=$k
		trail="$trail ${target}:$k"
	else
		trail="$trail ${target}:none"
	fi
	# The temporary file has no name until its commit (O_TMPFILE), but for the moment
	# of the rename that replaces the old checkpoint: a kill there leaves the name, which
	# the next writer of ck.graft removes (orphans, checked after the final run).
	orphan_names "$i" ck.graft
done
if [ $rc -ne 0 ] && [ -z "$p" ]; then
	resume=(); [ -e ck.graft ] && resume=(--resume ck.graft)
	graft-train cnn.onnx "${train[@]}" "${resume[@]}" --checkpoint ck.graft -o chain.graft ||
		p="$p final resume failed;"
fi
[ $kills -ge 3 ] || p="$p only $kills kills landed;"
graft-export chain.graft -o chain.onnx 2>err.txt || p="$p final model does not export: $(cat err.txt);"
# (equal but for the provenance: the resumed runs' command lines differ)
$PY "$SRC/tests/conformance/same_onnx.py" chain.onnx straight.onnx ||
	p="$p resumed model differs from the uninterrupted one;"
[ "$(step ck.graft)" = $steps ] || p="$p final checkpoint at step $(step ck.graft);"
[ -z "$(temps .)" ] || p="$p left after the final run: $(temps .);"
verdict "kill -9 x$kills + --resume" "graft-train ($steps steps, kills past step:checkpoint at$trail)" \
	"checkpoint loads each time; final = uninterrupted (graft-export, same_onnx.py); $orphans orphaned names, all removed by the next writer" "$p"

# ---- 4. an interrupted checkpoint write never replaces the previous one ------------------------
# kill -9 while 4 MiB checkpoints are written every step: each time the checkpoint loads
# and is no older than before, and no temporary file is left beside it (the kills that
# hit a write are counted from the tool's open files just before).
heavy=(--data d.graft --batch 16 --steps 2000 --checkpoint hk.graft --checkpoint-every 1 -q)
graft-train heavy.graft "${heavy[@]}" --steps 1 -o /dev/null     # the first good checkpoint
p="" mid=0 orphans=0 last=$(step hk.graft)
for i in 1 2 3 4 5; do
	graft-train heavy.graft "${heavy[@]}" --resume hk.graft -o hk-out.graft &
	pid=$!
	sleep "0.$((10 + RANDOM % 30))"
	# mid-write: the tool holds an unnamed temporary file open (/proc shows it deleted)
	ls -l /proc/$pid/fd 2>/dev/null | grep -q "/#[0-9]* (deleted)$" && mid=$((mid + 1))
	kill -9 $pid 2>/dev/null
	{ wait $pid; } 2>/dev/null     # no "Killed" note
	orphan_names "$i" hk.graft
	graft-export hk.graft -o /dev/null 2>err.txt || { p="$p kill $i: checkpoint broken: $(cat err.txt);"; break; }
	k=$(step hk.graft)
	[ "$k" -ge "$last" ] || p="$p kill $i: checkpoint went back from $last to $k;"
	last=$k
done
[ ! -e hk-out.graft ] || p="$p a killed run wrote its output;"
# the next writer of hk.graft (one more step) removes what the kills left
graft-train heavy.graft "${heavy[@]}" --resume hk.graft --steps $((last + 1)) -o /dev/null ||
	p="$p the run after the kills failed;"
[ -z "$(temps .)" ] || p="$p left after the next writer: $(temps .);"
verdict "kill -9 during checkpoint writes" "graft-train --checkpoint (4 MiB, $mid of 5 mid-write)" \
	"previous checkpoint intact and loadable each time (at step $last); $orphans orphaned names, all removed by the next writer" "$p"
# A file-size limit below the checkpoint's size: its next write fails, the old one stays.
cp hk.graft hk-good.graft
p=""
( ulimit -f 1024; exec graft-train heavy.graft "${heavy[@]}" --resume hk.graft -o /dev/null ) 2>err.txt
rc=$?
[ $rc -eq 1 ] || p="$p exit $rc;"
grep -qE "^graft-train: hk.graft: write failed: File too large$" err.txt || p="$p message '$(cat err.txt)';"
cmp -s hk.graft hk-good.graft || p="$p the checkpoint changed;"
[ -z "$(temps .)" ] || p="$p left $(temps .);"
verdict "checkpoint write fails (ulimit -f)" "graft-train --resume F --checkpoint F" \
	"exit 1: $(sed 's/^graft-train: //' err.txt); F unchanged" "$p"

# SIGTERM during a save ends graft-train at once (else it would finish the save first).
# ends_by_term PID: sends SIGTERM, waits (a bound of 30 s only against a hang); sets rc
# and ms, the time from the signal to the end.
ends_by_term() {
	local t0 i
	t0=$(date +%s%N)
	kill -TERM "$1"
	for i in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
	kill -0 "$1" 2>/dev/null && { p="$p still running 30 s after SIGTERM;"; kill -9 "$1"; }
	{ wait "$1"; } 2>/dev/null
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
}
# A save that cannot finish: the checkpoint is a FIFO whose reader (this shell) never
# reads, so the write blocks once the pipe is full; the tool holds the FIFO open only
# while it saves (it must not inherit the shell's descriptor 3, or it would seem to
# hold it from the start, and a SIGTERM sent during a step would be taken for one sent
# during the save).
p=""
mkfifo ck.fifo
exec 3<>ck.fifo
graft-train heavy.graft "${heavy[@]}" --steps 5 --checkpoint ck.fifo -o st.graft 2>err.txt 3<&- &
pid=$!
for _ in $(seq 600); do ls -l /proc/$pid/fd 2>/dev/null | grep -q "ck.fifo$" && break; sleep 0.05; done
ls -l /proc/$pid/fd 2>/dev/null | grep -q "ck.fifo$" || p="$p never began its save;"
ends_by_term $pid
exec 3<&-
[ $rc -eq 143 ] || p="$p exit $rc;"
[ ! -e st.graft ] || p="$p wrote its output;"
verdict "SIGTERM during a stalled save" "graft-train --checkpoint FIFO (never read)" \
	"exit 143 after ${ms} ms, nothing else written" "$p"
# A save to a file: SIGTERM once a save is under way (the tool holds an unnamed
# temporary file); if it lands between saves instead, the step is finished and saved.
p="" mid=no
cp hk-good.graft hk.graft
graft-train heavy.graft "${heavy[@]}" --resume hk.graft -o hk-out.graft &
pid=$!
for _ in $(seq 600); do
	ls -l /proc/$pid/fd 2>/dev/null | grep -q "/#[0-9]* (deleted)$" && { mid=yes; break; }
	kill -0 $pid 2>/dev/null || break
done
ends_by_term $pid
[ $rc -eq 143 ] || p="$p exit $rc;"
graft-export hk.graft -o /dev/null 2>err.txt || p="$p checkpoint broken: $(cat err.txt);"
[ "$(step hk.graft)" -ge "$(step hk-good.graft)" ] || p="$p checkpoint went back;"
[ -z "$(temps .)" ] || p="$p left $(temps .);"
[ ! -e hk-out.graft ] || p="$p wrote its output;"
verdict "SIGTERM during checkpoint writes" "graft-train --checkpoint (4 MiB, mid-save: $mid)" \
	"exit 143 after ${ms} ms; checkpoint intact, no temporary" "$p"
rm -f hk*.graft heavy.graft ck.fifo st.graft

# ---- 5. paths -------------------------------------------------------------------------------------
mkdir -p m/in m/a outside
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
for name, loc in (("linkdir-out", "lout/w.bin"), ("linkdir-in", "lin/w.bin"),
                  ("dotdot-mid", "a/../../outside/w.bin"), ("dotdot-inside", "a/../in/w.bin"),
                  ("backslash", "a\\..\\..\\outside\\w.bin"), ("abs-file", "/etc/hostname"),
                  ("abs-zero", "/dev/zero"), ("fifo", "fifo.bin"), ("link-fifo", "lfifo.bin"),
                  ("link-zero", "lzero.bin"), ("device", "zero.bin"), ("folder", "in"),
                  ("dot", "."), ("empty", "")):
    onnx.save(model(loc), "m/%s.onnx" % name)
PY
head -c 16 /dev/zero > outside/w.bin
head -c 16 /dev/zero > m/in/w.bin
ln -s ../outside m/lout
ln -s in m/lin
mkfifo m/fifo.bin outside/fifo.bin
ln -s ../outside/fifo.bin m/lfifo.bin
ln -s /dev/zero m/lzero.bin
mknod m/zero.bin c 1 5 2>/dev/null || echo "note: mknod not permitted: no device inside the model's folder"
# refused LABEL MODEL PATTERN: graft-import refuses it with one line, at once
refused() {
	local p=""
	timeout 10 graft-import "m/$2.onnx" -o x.graft >/dev/null 2>err.txt
	local rc=$?
	[ $rc -ne 124 ] || p="$p hangs;"
	[ $rc -eq 1 ] || p="$p exit $rc;"
	[ "$(wc -l <err.txt)" -eq 1 ] || p="$p stderr has $(wc -l <err.txt) lines;"
	grep -qE "^graft-import: m/$2.onnx: tensor 'W': .*$3" err.txt || p="$p message '$(head -n1 err.txt)';"
	[ ! -e x.graft ] || { p="$p x.graft written;"; rm -f x.graft; }
	verdict "external data: $1" "graft-import" "refused: $(sed 's/.*tensor .W.: //' err.txt)" "$p"
}
refused "symlinked folder out" linkdir-out "escapes the model's folder"
check "symlinked folder inside the model's folder is followed" graft-import m/linkdir-in.onnx -o x.graft
row "external data: symlinked folder inside" "graft-import" "allowed (stays inside)"
rm -f x.graft
refused "'..' in the middle, out" dotdot-mid "escapes the model's folder"
refused "'..' in the middle, back in" dotdot-inside "escapes the model's folder"
refused "backslashes and '..'" backslash "escapes the model's folder"
refused "absolute path" abs-file "not a relative path"
refused "absolute /dev/zero" abs-zero "not a relative path"
refused "a FIFO in the folder" fifo "is not a file"
refused "a symlink to a FIFO outside" link-fifo "escapes the model's folder"
refused "a symlink to /dev/zero" link-zero "escapes the model's folder"
[ -c m/zero.bin ] && refused "a device node in the folder" device "is not a file"
refused "the folder itself" folder "is not a file"
refused "'.'" dot "(is not a file|escapes the model's folder)"
refused "empty location" empty "not a relative path"
# The same through a symlinked model folder, and a model path with '..' in it: allowed,
# and still confined.
ln -s m mlink
check "model read through a symlinked folder" graft-import mlink/linkdir-in.onnx -o x.graft
rm -f x.graft
expect_error "symlinked model folder still confines" "escapes the model's folder" \
	graft-import mlink/../m/linkdir-out.onnx -o x.graft

# A symlink swapped while it is read: m/race.bin flips between a file inside the folder
# and one outside, as fast as a process can rename, while graft-import reads a model
# naming it, 200 times.  Each import either reads the inside bytes or refuses the
# outside file; none ever holds the outside bytes (the check and the open are one step
# for the kernel, openat2 RESOLVE_BENEATH, or the open is checked after the fact).
printf 'inside..inside..' > m/in/race.bin
printf 'OUTSIDE!OUTSIDE!' > outside/race.bin
ln -s in/race.bin m/race.bin
$PY - <<'PY'
import onnx
from onnx import helper, TensorProto
t = helper.make_tensor("W", TensorProto.FLOAT, [4], [0.0] * 4)
t.ClearField("float_data")
t.data_location = TensorProto.EXTERNAL
for k, v in (("location", "race.bin"), ("offset", "0"), ("length", "16")):
    e = t.external_data.add(); e.key = k; e.value = v
g = helper.make_graph([helper.make_node("Relu", ["W"], ["y"])], "g", [],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [t])
onnx.save(helper.make_model(g), "m/race.onnx")
PY
$PY -c "
import os, time
end = time.time() + 60
while time.time() < end and not os.path.exists('race.stop'):
    for target in ('in/race.bin', '../outside/race.bin'):
        os.symlink(target, 'm/race.tmp')
        os.rename('m/race.tmp', 'm/race.bin')
" &
swapper=$!
inside=0 refused=0 other=0 leaked=0
for i in $(seq 200); do
	if graft-import m/race.onnx -o race.graft 2>race.err; then
		if grep -q OUTSIDE race.graft; then leaked=$((leaked + 1)); else inside=$((inside + 1)); fi
	elif grep -q "escapes the model's folder" race.err; then
		refused=$((refused + 1))
	else
		other=$((other + 1)); sed -n 1p race.err
	fi
	rm -f race.graft
done
touch race.stop
wait $swapper
p=""
[ $leaked -eq 0 ] || p="$p $leaked imports read the file outside;"
[ $other -eq 0 ] || p="$p $other failed otherwise;"
[ $inside -gt 0 ] && [ $refused -gt 0 ] || p="$p the swap did not alternate ($inside inside, $refused refused);"
verdict "external data: symlink swapped during reads" "graft-import x200" \
	"$inside read inside, $refused refused, $leaked read outside" "$p"
rm -f race.stop race.err m/race.bin m/race.tmp

# Archive member names are never paths: archives whose members are named ../evil,
# /abs/evil, hold a symlink or a folder; reading them (from a folder two deep in a fresh
# tree) fails with one line and creates nothing anywhere.
mkdir -p tree/a/b
graft-import cnn.onnx -o tree/good.graft
evil=$work/abs-evil
$PY - "$evil" <<'PY'
import io, sys, tarfile
evil = sys.argv[1]
src = tarfile.open("tree/good.graft")
members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
def write(path, items):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
        for info, data in items:
            if data is None:
                t.addfile(info)
            else:
                info.size = len(data); t.addfile(info, io.BytesIO(data))
def renamed(i, name=None):     # fresh headers, member i renamed
    return [(tarfile.TarInfo(name if j == i else m.name), d) for j, (m, d) in enumerate(members)]
write("tree/dotdot-manifest.graft", renamed(0, "../evil"))
write("tree/abs-manifest.graft", renamed(0, evil))
write("tree/dotdot-tensor.graft", renamed(2, "../../evil"))
items = renamed(2, "../evil000000")
items[0] = (items[0][0], members[0][1].replace(b"tensors/000000", b"../evil000000"))
write("tree/manifest-names-dotdot.graft", items)
extra = renamed(-1)
extra.append((tarfile.TarInfo(evil), b"evil\n"))
extra.append((tarfile.TarInfo("../evil"), b"evil\n"))
write("tree/extra-members.graft", extra)
link = renamed(-1)
sl = tarfile.TarInfo("tensors/000000"); sl.type = tarfile.SYMTYPE; sl.linkname = evil
link[2] = (sl, None)
write("tree/symlink-member.graft", link)
hl = renamed(-1)
h = tarfile.TarInfo("tensors/000000"); h.type = tarfile.LNKTYPE; h.linkname = "../evil"
hl[2] = (h, None)
write("tree/hardlink-member.graft", hl)
d = renamed(-1)
dm = tarfile.TarInfo("../evildir"); dm.type = tarfile.DIRTYPE
d.insert(1, (dm, None))
write("tree/dir-member.graft", d)
PY
(cd tree && find . | sort) > tree-before.txt
for f in dotdot-manifest abs-manifest dotdot-tensor manifest-names-dotdot extra-members \
	 symlink-member hardlink-member dir-member; do
	p="" msg=""
	for t in graft-info graft-export graft-train; do
		case $t in
		graft-info) cmd=(graft-info ../../$f.graft) ;;
		graft-export) cmd=(graft-export ../../$f.graft -o x.onnx) ;;
		graft-train) cmd=(graft-train ../../$f.graft --data ../../../d.graft --steps 1 -q -o x.graft) ;;
		esac
		(cd tree/a/b && timeout 20 "${cmd[@]}") >out.txt 2>err.txt
		rc=$?
		[ $rc -eq 1 ] || p="$p exit $rc;"
		[ "$(wc -l <err.txt)" -eq 1 ] || p="$p stderr has $(wc -l <err.txt) lines;"
		now=$( (cd tree && find . | sort) | diff tree-before.txt - | grep '^>' | tr '\n' ' ')
		[ -z "$now" ] || p="$p created $now;"
		ls "$work" | grep -q evil && p="$p created $(ls "$work" | grep evil);"
		[ -n "$msg" ] || msg=$(sed 's/^[^:]*: [^:]*: //' err.txt | cut -c1-70)
	done
	verdict "archive members: $f" "graft-info, graft-export, graft-train" \
		"exit 1: $msg; no file made" "$p"
done

# ---- the matrix ------------------------------------------------------------------------------------
echo
echo "fault matrix (fault | tool | outcome, as measured):"
for r in "${matrix[@]}"; do
	IFS=$'\t' read -r f t o <<<"$r"
	printf '  %-36s | %-58s | %s\n' "$f" "$t" "$o"
done
echo
finish
