"""torch_recipe.py: one cell of the four-case grid done the PyTorch way, for the wall time.

    torch_recipe.py MODEL.graft TRAIN.graft TEST.graft --epochs E --lr LR --seed S
                    --threads N [--json]

MODEL.graft is the run's starting point as graft-freeze wrote it (the pretrained
compact_cnn with its new seeded head, everything trainable): its weights are loaded into
the same architecture in PyTorch (make_arch.py's layout), so both frameworks start from
identical numbers.  The recipe is graft's: AdamW (PyTorch's defaults, weight decay 0.01),
the learning rate LR with a per-step cosine schedule, batch 32, BatchNormalization on
batch statistics (momentum 0.1 in PyTorch's convention, 0.9 in ONNX's), the training
set shuffled each epoch, softmax cross-entropy.  Prints the training wall time (data
already in memory, as graft-train has it), images per second and the test accuracy.
Run with /usr/bin/python3 (python3-torch, python3-numpy).
"""
import argparse, json, math, tarfile, time
import numpy as np
import torch
import torch.nn as nn


def archive(path):
    """The tensors of a .graft archive by name (docs/format.md), as numpy arrays."""
    t = tarfile.open(path)
    out = {}
    for line in t.extractfile("manifest").read().decode().splitlines():
        f = line.split()
        if f[0] != "tensor":
            continue
        member, name, dtype, dims = f[1], f[2], f[3], f[4]
        shape = [int(d) for d in dims.strip("[]").split(",") if d]
        dt = {"float": np.float32, "int64": np.int64}[dtype]
        out[name] = np.frombuffer(t.extractfile(member).read(), dt).reshape(shape).copy()
    return out


def model_from(weights, classes):
    layers = []
    for b, (cin, cout, pool) in enumerate([(1, 16, 1), (16, 32, 1), (32, 64, 0), (64, 64, 0)], 1):
        conv, bn = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        p = f"block{b}"
        conv.weight.data[:] = torch.from_numpy(weights[p + ".conv.weight"])
        conv.bias.data[:] = torch.from_numpy(weights[p + ".conv.bias"])
        bn.weight.data[:] = torch.from_numpy(weights[p + ".bn.weight"])
        bn.bias.data[:] = torch.from_numpy(weights[p + ".bn.bias"])
        bn.running_mean[:] = torch.from_numpy(weights[p + ".bn.running_mean"])
        bn.running_var[:] = torch.from_numpy(weights[p + ".bn.running_var"])
        layers += [conv, bn, nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])
    head = nn.Linear(64, classes)
    w = [k for k in weights if k.endswith("weight") and weights[k].shape == (classes, 64)][0]
    head.weight.data[:] = torch.from_numpy(weights[w])
    head.bias.data[:] = torch.from_numpy(weights[w[:-len("weight")] + "bias"])
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--epochs", type=float, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tr, te = archive(a.train), archive(a.test)
    x, y = torch.from_numpy(tr["x"]), torch.from_numpy(tr["y"])
    classes = int(max(y.max().item(), te["y"].max()) + 1)
    model = model_from(archive(a.model), classes)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
    steps = math.ceil(a.epochs * len(y) / a.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    t0 = time.perf_counter()
    order, pos = torch.randperm(len(y)), 0
    for _ in range(steps):
        if pos + a.batch > len(y):
            order, pos = torch.randperm(len(y)), 0
        idx = order[pos:pos + a.batch]
        pos += a.batch
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(te["x"][i:i + 512])).argmax(1)
                          for i in range(0, len(te["y"]), 512)])
    acc = (pred.numpy() == te["y"]).mean()
    r = {"seconds": round(seconds, 2), "steps": steps,
         "images_per_s": round(steps * a.batch / seconds, 1), "accuracy": float(acc)}
    print(json.dumps(r) if a.json else
          f"PyTorch: {steps} steps in {seconds:.1f} s ({r['images_per_s']} img/s), "
          f"test accuracy {100 * acc:.1f}%")


if __name__ == "__main__":
    main()
