#!/usr/bin/python3
"""transforms.py LOADER_DUMP TOOLDIR: graft's loading of compact images against
torchvision 0.14's on PIL images, in a temporary folder.

Images of several sizes and aspects (landscape, portrait, square, smaller than the crop,
exactly the crop) as PNG (lossless: PIL and libpng decode the same pixels), RGB and grey,
made into datasets with graft-data images --store uint8 and --store encoded (and
--gray); loaded by loader_dump as evaluation sees them at 48x40 (resize 55, the default: 48 * 8/7 rounded), they must
equal T.Compose([T.Resize(55), T.CenterCrop((48, 40)), T.ToTensor()]) within 1.01/255
for RGB (PIL rounds to 8 bits after each of its two passes; graft keeps floats) and
2/255 for grey (PIL converts to grey before resizing, graft after).  Then with
--mean/--std: (v - mean) / std of the same.  And training draws: with flip only, every
sample is the evaluation one or its mirror, both kinds present; with rrc, samples differ
from the evaluation crop and between epochs, and stay in [0, 1].
Prints one line per check; exit 1 on a failure.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

dump, tools = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + (f" ({detail})" if detail else ""))
    failures += not ok


def graft_data(*args):
    subprocess.run([os.path.join(tools, "graft-data"), *args], check=True,
                   stderr=subprocess.DEVNULL)


def load(path, *extra):
    out = subprocess.run([dump, path, "48", "40", *extra], check=True,
                         capture_output=True).stdout
    with open("dump.npy", "wb") as f:
        f.write(out)
    return np.load("dump.npy")


SIZES = [(300, 400), (400, 300), (64, 64), (30, 20), (48, 40), (57, 133), (200, 90)]
os.chdir(tempfile.mkdtemp(prefix="graft-transforms."))
rng = np.random.default_rng(0)
files = []
for c in ("a", "b"):
    os.makedirs(c)
for i, (h, w) in enumerate(SIZES):
    # smooth structure plus noise, so that resampling is exercised at every scale
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(xx / (3 + k) + yy / (5 + 2 * k)) for k in range(3)], -1)
    img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    path = f"{'ab'[i % 2]}/{i}.png"
    Image.fromarray(img).save(path)
    files.append(path)
files.sort()            # graft-data's order: class folders, then names
os.makedirs("d/a")
os.makedirs("d/b")
for f in files:
    os.rename(f, "d/" + f)
files = ["d/" + f for f in files]

ref = T.Compose([T.Resize(55), T.CenterCrop((48, 40)), T.ToTensor()])
want = np.stack([ref(Image.open(f).convert("RGB")).numpy() for f in files])
want_grey = np.stack([ref(Image.open(f).convert("L")).numpy() for f in files])
for store in ("uint8", "encoded"):
    graft_data("images", "d", "--store", store, "-o", f"{store}.graft")
    got = load(f"{store}.graft")
    err = np.abs(got - want).max()
    check(f"{store}: Resize(55) + CenterCrop((48, 40)) as torchvision's", got.shape ==
          want.shape and err <= 1.01 / 255, f"largest difference {err * 255:.3f}/255")
    graft_data("images", "d", "--store", store, "--gray", "-o", f"{store}-grey.graft")
    got = load(f"{store}-grey.graft")
    err = np.abs(got - want_grey).max()
    check(f"{store} --gray: as torchvision's on PIL's grey", got.shape == want_grey.shape and
          err <= 2 / 255, f"largest difference {err * 255:.3f}/255")

mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
graft_data("images", "d", "--store", "encoded", "--mean", ",".join(map(str, mean)), "--std",
           ",".join(map(str, std)), "-o", "norm.graft")
got = load("norm.graft")
norm = T.Normalize(mean, std)(torch.from_numpy(want)).numpy()
err = np.abs(got - norm).max()
check("--mean, --std: Normalize as torchvision's", err <= 1.01 / 255 / min(std),
      f"largest difference {err:.5f}")

flip = load("uint8.graft", "7", "1", "0")           # GRAFT_AUGMENT_FLIP
plain = load("uint8.graft")
same = [np.array_equal(f, p) for f, p in zip(flip, plain)]
mirrored = [np.array_equal(f, p[..., ::-1]) for f, p in zip(flip, plain)]
check("flip: each sample as evaluation sees it or mirrored, both kinds",
      all(s or m for s, m in zip(same, mirrored)) and any(mirrored) and
      any(s and not m for s, m in zip(same, mirrored)), f"{sum(mirrored)} of {len(flip)} mirrored")
rrc0 = load("uint8.graft", "7", "4", "0")           # GRAFT_AUGMENT_RRC
rrc1 = load("uint8.graft", "7", "4", "1")
check("rrc: crops other than the centre, another in each epoch, values in [0, 1]",
      not np.array_equal(rrc0, plain) and not np.array_equal(rrc0, rrc1) and
      rrc0.min() >= 0 and rrc0.max() <= 1)
again = load("uint8.graft", "7", "4", "1")
check("rrc: the same seed and epoch, the same samples", np.array_equal(rrc1, again))
sys.exit(1 if failures else 0)
