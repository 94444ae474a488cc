#!/usr/bin/python3
"""Time PyTorch training steps: the baseline graft-train is measured against.

Usage: train_torch.py --arch small_cnn|resnet18|mobilenet_v2 --batch B --mode full|head
                      --steps N [--threads 2] [--json]

The model is built by tests/fixtures/make_reference_models.py's constructor (seed 0;
weights do not matter for speed). Inputs are random N(0,1) of the model's shape
(1x28x28 for small_cnn, 3x224x224 otherwise), labels random; one fixed batch is reused.
Loss: mean softmax cross-entropy; torch.optim.SGD(lr 0.01, momentum 0.9).
  full  every parameter trainable, model.train() (BatchNorm on batch statistics).
  head  PyTorch's idiomatic head-only loop: every parameter but the last Linear's has
        requires_grad False; the backbone (all but the head) runs in eval mode under
        torch.no_grad() each step, the head (small_cnn: the last Linear; resnet18: fc;
        mobilenet_v2: classifier = Dropout + Linear) in train mode.
Warms up 2 steps, then times N steps (time.perf_counter around each step).
Prints images/s (N * B / total time), mean and median ms per step, and the peak RSS
(getrusage ru_maxrss of this process: import, model, data and training together; the
RSS before the warm-up is printed too). The RSS is only meaningful for one
configuration per process: run one configuration per invocation (this script does not
re-exec itself). With --json, prints one JSON object on stdout instead of the text.
Run with /usr/bin/python3 (python3-torch, torchvision). Exit 0, 1 on error, 2 on usage."""
import argparse, json, os, resource, statistics, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = ("small_cnn", "resnet18", "mobilenet_v2")

def rss_now_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0

def split_head(arch, model):
    """(backbone, head): backbone(x) feeds head; head holds the last Linear."""
    import torch.nn as nn
    if arch == "small_cnn":
        return model[:-1], model[-1]
    if arch == "resnet18":
        head = model.fc
        model.fc = nn.Identity()
        return model, head
    head = model.classifier
    model.classifier = nn.Identity()
    return model, head

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=ARCHS, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--mode", choices=("full", "head"), required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.batch < 1 or a.steps < 1 or a.threads < 1:
        ap.error("--batch, --steps and --threads must be >= 1")

    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
    import make_reference_models as mrm
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    make, example = mrm.MODELS[a.arch]
    model = make()
    shape = tuple(example().shape[1:])
    x = torch.randn((a.batch,) + shape)
    with torch.no_grad():
        classes = model.eval()(x[:1]).shape[1]
    y = torch.randint(0, classes, (a.batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    if a.mode == "full":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        def step():
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
    else:
        backbone, head = split_head(a.arch, model)
        for p in backbone.parameters():
            p.requires_grad_(False)
        backbone.eval()
        head.train()
        opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9)
        def step():
            with torch.no_grad():
                feat = backbone(x)
            loss = loss_fn(head(feat), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

    rss_before = rss_now_mib()
    for _ in range(2):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        print("train_torch: loss is %s" % float(loss), file=sys.stderr)
        return 1
    total = sum(times)
    res = {"framework": "pytorch", "torch": torch.__version__, "arch": a.arch,
           "mode": a.mode, "batch": a.batch, "steps": a.steps, "threads": a.threads,
           "img_per_s": a.steps * a.batch / total,
           "ms_per_step_mean": 1e3 * total / a.steps,
           "ms_per_step_median": 1e3 * statistics.median(times),
           "rss_before_mib": rss_before,
           "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if a.json:
        print(json.dumps(res))
    else:
        print("pytorch %s %s batch %d, %d threads: %.1f img/s, %.1f ms/step (median %.1f), "
              "peak RSS %.0f MiB (%.0f before training)"
              % (a.arch, a.mode, a.batch, a.threads, res["img_per_s"],
                 res["ms_per_step_mean"], res["ms_per_step_median"], res["rss_peak_mib"],
                 res["rss_before_mib"]))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
