#!/usr/bin/python3
"""results.py WORK: the deploy example's table (results.md) from what the Makefile wrote
in WORK: per model and kind (fp32, fp16, int8) the ONNX file's size, its accuracy in ONNX
Runtime on the example's test set, ONNX Runtime's median latency at batch 1 and
throughput at batch 32; the int8 model's parity against float32 in graft (graft-verify)
and the int8 file in graft against ONNX Runtime (parity.py);
the CPU, the thread count and the load average when the timings ran."""
import json, os, re, sys

work = sys.argv[1]
NAMES = {"quickstart": "the quickstart's compact CNN (Fashion-MNIST 5-9, 5,000 test images)",
         "ppocr": "PaddleOCR's MobileNetV3 on digits (public-model, 1,000 test images)"}
speed = {}
for line in open(os.path.join(work, "speed.txt")):
    m = re.match(r"(\S+) (\S+) (\d+) median ([\d.]+) ms per run .*: ([\d.]+) items/s", line)
    if not m:
        sys.exit("results.py: speed.txt: cannot read %r" % line)
    speed[(m[1], m[2], int(m[3]))] = (float(m[4]), float(m[5]))
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
print("# Deployment: float32, float16 and int8 in ONNX Runtime\n")
print("Made by `make` (Makefile, results.py); CPU: %s; ONNX Runtime with %s threads; "
      "load average %s when written.\n" % (cpu, os.environ.get("OMP_NUM_THREADS", "2"),
                                          open("/proc/loadavg").read().split()[0]))
print("| model | kind | file | accuracy in ORT | ORT batch 1 | ORT batch 32 |")
print("|---|---|---|---|---|---|")
for model in ("quickstart", "ppocr"):
    base = None
    for kind in ("fp32", "fp16", "int8"):
        path = os.path.join(work, "%s-%s" % (model, kind))
        acc = json.load(open(path + ".acc.json"))["accuracy"]
        size = os.path.getsize(path + ".onnx")
        lat, _ = speed[(model, kind, 1)]
        _, thr = speed[(model, kind, 32)]
        if kind == "fp32":
            base = (size, acc, lat, thr)
        rel = "" if kind == "fp32" else " (%.2fx)"
        print("| %s | %s | %.0f kB%s | %.2f%%%s | %.3f ms%s | %.0f images/s%s |" % (
            NAMES[model] if kind == "fp32" else "", kind, size / 1000,
            rel % (size / base[0]) if rel else "", 100 * acc,
            "" if kind == "fp32" else " (%+.2f)" % (100 * (acc - base[1])), lat,
            rel % (base[2] / lat) if rel else "", thr, rel % (thr / base[3]) if rel else ""))
print("\nFor fp16 and int8 the brackets give the ratio to fp32 (size, speed-up) and the change "
      "in accuracy, in points.\n")
print("int8 against float32 in graft (`graft-verify`, the same test sets):\n")
for model in ("quickstart", "ppocr"):
    v = json.load(open(os.path.join(work, "%s-verify.json" % model)))
    print("- %s: top-1 agreement %.2f%%, accuracy %.2f%% to %.2f%%, largest difference of "
          "the output %.3g of its largest value" % (
              model, 100 * v["top1_agreement"], 100 * v["reference_accuracy"],
              100 * v["candidate_accuracy"], v["outputs"][0]["max_rel"]))
print("\nThe int8 file in graft (its int8 kernels) against ONNX Runtime (parity.py, the same "
      "test sets):\n")
for model in ("quickstart", "ppocr"):
    p = json.load(open(os.path.join(work, "%s-parity.json" % model)))
    print("- %s: top-1 agreement %.2f%% on %d samples, largest logit difference %.3g (largest "
          "logit %.3g)" % (model, 100 * p["top1_agreement"], p["samples"], p["max_abs"],
                          p["max_logit"]))
