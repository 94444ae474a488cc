#!/usr/bin/python3
"""make_images.py N DIR: a folder of N photo-like JPEG images, DIR/CLASS/NNNNNN.jpg, made
from Fashion-MNIST (Debian's dataset-fashion-mnist: 70,000 real 28x28 grey images in 10
classes, train and test together, taken in order and again from the start past 70,000).

Each image is upscaled to 224x224 (bicubic) and tinted: its grey values mix a colour of
its class with a colour drawn per image, over a background drawn per image, plus a
little noise, so that the JPEGs have colour and texture like small photos (about
10 KB each at quality 90).  Seeded: the same N gives the same files.  Two processes.
"""
import gzip
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image

FM = "/usr/share/datasets/fashion-mnist"
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "boot"]


def idx(path, header):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=header)


def load():
    xs, ys = [], []
    for part in ("train", "t10k"):
        xs.append(idx(f"{FM}/{part}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28))
        ys.append(idx(f"{FM}/{part}-labels-idx1-ubyte.gz", 8))
    return np.concatenate(xs), np.concatenate(ys)


DATA = None


def init():
    global DATA
    DATA = load()


def work(args):
    out, start, stop = args
    x, y = DATA
    base = np.random.default_rng(12345).uniform(0.2, 1.0, (10, 3))
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        k = i % len(x)
        g = np.asarray(Image.fromarray(x[k]).resize((224, 224), Image.BICUBIC), np.float32) / 255
        tint = 0.6 * base[y[k]] + 0.4 * rng.uniform(0, 1, 3)
        bg = rng.uniform(0, 0.5, 3)
        rgb = g[..., None] * tint + (1 - g[..., None]) * bg
        rgb += rng.normal(0, 0.03, rgb.shape)
        img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
        img.save(os.path.join(out, CLASSES[y[k]], f"{i:06d}.jpg"), quality=90)


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    for c in CLASSES:
        os.makedirs(os.path.join(out, c), exist_ok=True)
    chunks = [(out, s, min(s + 1000, n)) for s in range(0, n, 1000)]
    with Pool(2, initializer=init) as p:
        p.map(work, chunks)


if __name__ == "__main__":
    main()
