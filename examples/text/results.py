"""results.py WORK: the text example's table (results.md) from what the Makefile wrote:
the pretrained encoder's accuracy on its own validation set, each target-task run's on
the target's test set, and the best run's in ONNX Runtime."""
import json, os, sys

w = sys.argv[1]
ev = {k: json.load(open(os.path.join(w, k + ".eval.json")))
      for k in ("pretrained", "headed", "scratch", "head-only", "full", "plan")}
best = open(os.path.join(w, "best.txt")).read().strip()
ort = json.load(open(os.path.join(w, "best.ort.json")))
test = ev["scratch"]
counts = [sum(row) for row in test["confusion"]]
print("# Text: a BERT-like encoder on Debian's fortunes\n")
print("Made by `make` (Makefile, results.py); graft-data text tokenizes with "
      "bert-base-uncased's vocabulary; load average %s when written.\n"
      % open("/proc/loadavg").read().split()[0])
print("The source task (8 collections, 6,445 fortunes): the pretrained encoder's accuracy "
      "on its validation tenth: %.2f%%.\n" % (100 * ev["pretrained"]["accuracy"]))
print("The target task (men-women, art, wisdom, law): 40 fortunes a class to train, 10 to "
      "validate; the test set is the %d held out (%s a class; always guessing the largest "
      "class scores %.2f%%).\n" % (sum(counts), ", ".join(str(c) for c in counts),
                                   100 * max(counts) / sum(counts)))
print("| start | trained | test accuracy |")
print("|---|---|---|")
pick = next((l.split(":", 1)[1].split(":")[0].strip() for l in
             open(os.path.join(w, "plan.txt")) if l.startswith("pick:")), "?")
rows = [("the pretrained encoder, a new head", "nothing yet (before)", "headed"),
        ("random weights", "everything, on the target alone", "scratch"),
        ("the pretrained encoder, a new head", "the head only", "head-only"),
        ("the pretrained encoder, a new head", "everything", "full"),
        ("the pretrained encoder, a new head", "graft-plan's pick (%s)" % pick, "plan")]
for start, what, k in rows:
    print("| %s | %s | %.2f%% |" % (start, what, 100 * ev[k]["accuracy"]))
line = next((l.strip() for l in open(os.path.join(w, "plan.txt")) if l.startswith("pick:")), "")
print("\ngraft-plan's trials (5-fold on the 160 training fortunes): `%s`. With 32 fortunes "
      "a fold, a trial's score moves by several points from fold to fold, so a pick by a "
      "point or less is a guess between near ties." % line)
same = ort["confusion"] == ev[best]["confusion"]
print("\nThe best (%s) exported to ONNX: %.2f%% in ONNX Runtime %s on the same tokens, "
      "%.2f%% in graft; %s.\n" % (
          best, 100 * ort["accuracy"], ort["ort"], 100 * ev[best]["accuracy"],
          "the same confusion matrix" if same else "confusion matrices that differ"))
acc = {k: ev[k]["accuracy"] for k in ("scratch", "head-only", "full", "plan")}
best_pre = max(("head-only", "full", "plan"), key=acc.get)
if acc["scratch"] < acc[best_pre]:
    print("Pretraining on other fortune collections helped: %s beat the encoder trained "
          "from random weights by %.2f points." % (best_pre,
                                                   100 * (acc[best_pre] - acc["scratch"])))
    sys.exit(0)
print("Pretraining on other fortune collections did not help here: the encoder trained "
      "from random weights on the 160 target fortunes alone does better. The "
      "source task (which collection a fortune comes from) teaches features of little use "
      "for telling these four apart, and 6,445 fortunes are far from the text a real BERT "
      "is pretrained on (with masked words, not labels). Measured, not assumed: the "
      "classic guidance (little data, similar task: train the head) fails here, as "
      "examples/four-cases found for images.")
