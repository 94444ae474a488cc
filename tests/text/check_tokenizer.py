#!/usr/bin/python3
"""check_tokenizer.py TEST_WORDPIECE VOCAB SENTENCES: graft's BERT tokenizer
(test_wordpiece --print, lib/format/wordpiece.c) against the reference written from BERT's
rules (bert_reference.py), uncased and cased: the same ids on every sentence, or each
difference printed and exit 1."""
import os
import subprocess
import sys

exe, vocab, sentences = sys.argv[1:4]
here = os.path.dirname(os.path.abspath(__file__))
bad = 0
for mode in ([], ["--cased"]):
    want = subprocess.run([sys.executable, os.path.join(here, "bert_reference.py"), vocab,
                           sentences, *mode], check=True, capture_output=True,
                          text=True).stdout.split("\n")
    got = subprocess.run([exe, "--print", vocab, sentences, *mode], check=True,
                         capture_output=True, text=True).stdout.split("\n")
    lines = open(sentences, encoding="utf-8").read().split("\n")
    if len(want) != len(got):
        print("FAIL %s: %d lines against the reference's %d" % (mode, len(got), len(want)))
        bad += 1
        continue
    for i, (w, g) in enumerate(zip(want, got)):
        if w != g:
            print("FAIL %s line %d %r:\n  reference %s\n  graft     %s" % (
                " ".join(mode) or "uncased", i + 1, lines[i][:60], w, g))
            bad += 1
    print("%s: %d sentences, %d differ" % (" ".join(mode) or "uncased", len(want) - 1,
                                            sum(a != b for a, b in zip(want, got))))
sys.exit(1 if bad else 0)
