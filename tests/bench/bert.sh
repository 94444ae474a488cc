#!/bin/bash
# bert.sh TOOLDIR MATMUL_PEAK: full fine-tuning of a BERT-mini-sized encoder (4 layers,
# hidden 256, 4 heads, feed-forward 1024, 128 tokens; exported by PyTorch 1.13 at opset
# 14 with its padding mask, tests/conformance/bert_train_ref.py --size mini) on 512
# made-up labelled texts tokenized by graft-data text, batch 16, AdamW, 2 threads:
# graft-train against PyTorch 1.13 (the same model and batches, bert_train_ref.py
# --time) in the same run, samples/s (graft: its --profile's 24 steps, the first
# excluded from neither; PyTorch: 8 steps after the first), and the MatMul and Gemm
# nodes' share of the oneDNN matmul peak (matmul_peak.c, 2048^3), from their time in
# graft-train --profile and their FLOPs: 3 x 872.4 MFLOP a sample (forward, and backward
# for the weights and the inputs; the classifier's few left out).  Prints the CPU; WARN
# lines below the goals (>= 1.5x PyTorch's samples/s, MatMuls >= 60% of the peak).
# Reports only: exit 1 only when a tool fails.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bert.sh TOOLDIR MATMUL_PEAK" >&2; exit 2; }
tooldir=$(cd "$1" && pwd)
peak_bin=$2
here=$(cd "$(dirname "$0")" && pwd)
R=$here/../conformance
PY=${PYTHON:-/usr/bin/python3}
export PATH=$tooldir:$PATH OMP_NUM_THREADS=2 GRAFT_WISDOM=off
w=$(mktemp -d "${TMPDIR:-/tmp}/graft-bert-bench.XXXXXX")
trap 'rm -rf "$w"' EXIT
cd "$w"
peak=$("$peak_bin" 2048 10 2>/dev/null | sed -n 's/^matmul 2048^3: \([0-9.]*\) GFLOP\/s$/\1/p')
[ -n "$peak" ] || { echo "bert bench: matmul_peak failed" >&2; exit 1; }
$PY "$R/bert_train_ref.py" text m.tsv "$here/../text/vocab.txt"
graft-data text m.tsv --vocab "$here/../text/vocab.txt" --text text --label label --max-len 128 \
	-o m.graft 2>/dev/null
$PY "$R/bert_train_ref.py" export mini.onnx --opset 14 --size mini 2>/dev/null
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
printf 'bert benchmark: BERT-mini full fine-tuning, batch 16, 2 threads, load %s; oneDNN matmul 2048^3 peak %.0f GFLOP/s\nCPU: %s; flags: %s\n' \
	"$(cut -d' ' -f1 /proc/loadavg)" "$peak" "${cpu:-?}" \
	"$(grep -o -w -m1 -E 'avx512_vnni|avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
graft-train mini.onnx --data m.graft --steps 24 --batch 16 --optimizer adamw --lr 1e-3 \
	--profile -q -o g.graft 2>prof.txt || { echo "bert bench: graft-train failed" >&2; exit 1; }
torch=$($PY "$R/bert_train_ref.py" train mini.onnx m.graft ref --steps 9 --batch 16 --optim adamw \
	--size mini --time | sed -n 's/^pytorch \([0-9.]*\) samples\/s$/\1/p')
[ -n "$torch" ] || { echo "bert bench: PyTorch failed" >&2; exit 1; }
$PY - "$peak" "$torch" <<'PYEOF'
import re, sys
peak, torch = float(sys.argv[1]), float(sys.argv[2])
text = open("prof.txt").read()
m = re.search(r"profile: (\d+) steps: data ([\d.]+) s, forward and loss ([\d.]+) s, backward ([\d.]+) s, update ([\d.]+) s", text)
steps, total = int(m[1]), sum(float(m[i]) for i in range(2, 6))
mm = sum(float(f) + float(b) for f, b in re.findall(r"^\s+(?:MatMul|Gemm)\s+\d+ nodes\s+([\d.]+)\s+([\d.]+)", text, re.M))
graft = steps * 16 / total
gflops = steps * 16 * 3 * 872.4e6 / mm / 1e9
print("graft  %7.1f samples/s  (%.0f ms a step; MatMul and Gemm %.0f%% of it)" % (graft, 1000 * total / steps, 100 * mm / total))
print("torch  %7.1f samples/s" % torch)
print("graft / torch %.2fx" % (graft / torch))
print("MatMuls: %.0f GFLOP/s, %.0f%% of the matmul peak" % (gflops, 100 * gflops / peak))
if graft / torch < 1.5:
    print("WARN: graft is %.2fx PyTorch's samples/s (goal 1.5x)" % (graft / torch))
if gflops / peak < 0.6:
    print("WARN: the MatMuls run at %.0f%% of the matmul peak (goal 60%%)" % (100 * gflops / peak))
PYEOF
