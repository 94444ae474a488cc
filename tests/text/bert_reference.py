#!/usr/bin/python3
"""bert_reference.py VOCAB SENTENCES [--cased]: BERT's tokenization, written from Google's
tokenization.py (BasicTokenizer, WordpieceTokenizer) with Hugging Face's word limit of 100
characters, as the reference graft's C tokenizer (lib/format/wordpiece.c) is checked
against.  VOCAB: vocab.txt (a token a line).  SENTENCES: one text a line, with \\t, \\n,
\\r, \\\\ and \\uXXXX (\\UXXXXXXXX) escapes.  Prints each sentence's ids, space-separated,
a line each."""
import re
import sys
import unicodedata

WORD_MAX = 100


def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf")


def is_punctuation(c):
    cp = ord(c)
    return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
            or unicodedata.category(c).startswith("P"))


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F
            or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def basic(text, lower):
    out = []
    for c in text:
        cp = ord(c)
        if cp == 0 or cp == 0xFFFD or is_control(c):
            continue
        if is_whitespace(c):
            out.append(" ")
        elif is_cjk(cp):
            out.append(" %s " % c)
        else:
            out.append(c)
    words = []
    for tok in "".join(out).split():
        if lower:
            tok = tok.lower()
            tok = "".join(c for c in unicodedata.normalize("NFD", tok)
                          if unicodedata.category(c) != "Mn")
        cur = []
        for c in tok:
            if is_punctuation(c):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(c)
            else:
                cur.append(c)
        if cur:
            words.append("".join(cur))
    return " ".join(words).split()


def wordpiece(word, vocab):
    if len(word) > WORD_MAX:
        return [vocab["[UNK]"]]
    ids, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            sub = ("##" if start else "") + word[start:end]
            if sub in vocab:
                found = vocab[sub]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        ids.append(found)
        start = end
    return ids


ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[tnr\\])")


def unescape(line):
    """\\t, \\n, \\r, \\\\ and \\uXXXX or \\UXXXXXXXX code points; the rest as it is."""
    def one(m):
        e = m.group(1)
        return {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(e) or chr(int(e[1:], 16))
    return ESCAPE.sub(one, line)


def main():
    vocab = {}
    for i, t in enumerate(open(sys.argv[1], encoding="utf-8").read().split("\n")):
        vocab.setdefault(t.rstrip("\r"), i)
    lower = "--cased" not in sys.argv
    for line in open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]:
        text = unescape(line)
        print(" ".join(str(i) for w in basic(text, lower) for i in wordpiece(w, vocab)))


if __name__ == "__main__":
    main()
