#!/usr/bin/python3
"""parity.py MODEL.onnx TEST.graft TOOLDIR ORTDIR OUT.json: one ONNX model (the int8 one)
run by graft-run and by ONNX Runtime (../../tests/conformance/ort_run.js) on the same
test samples, the samples x of a graft dataset (docs/format.md); writes to OUT.json the
top-1 agreement of the two runtimes and the largest absolute difference of the first
output (the logits), with the largest logit for scale."""
import json, os, re, subprocess, sys, tarfile, tempfile

import numpy as np
import onnx

model, data, tooldir, ortdir, out = sys.argv[1:6]
here = os.path.dirname(os.path.abspath(__file__))
with tarfile.open(data) as t, tempfile.TemporaryDirectory() as w:
    x = None
    for line in t.extractfile("manifest").read().decode().splitlines():
        f = line.split()
        if f[:1] == ["tensor"] and f[2] == "x" and f[3] == "float":
            dims = [int(d) for d in f[4].strip("[]").split(",")]
            x = np.frombuffer(t.extractfile(f[1]).read(), np.float32).reshape(dims)
    if x is None:
        sys.exit("parity.py: %s has no float samples x" % data)
    np.save(os.path.join(w, "x.npy"), x)
    m = onnx.load(model, load_external_data=False)
    stored = {i.name for i in m.graph.initializer}
    name = next(i.name for i in m.graph.input if i.name not in stored)
    subprocess.run([os.path.join(tooldir, "graft-run"), model, "-i", os.path.join(w, "x.npy"),
                    "-o", os.path.join(w, "g")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["node", os.path.join(here, "../../tests/conformance/ort_run.js"), model,
                    os.path.join(w, "o"), "--input", "%s=%s" % (name, os.path.join(w, "x.npy")),
                    "--ort-dir", ortdir], check=True, stdout=subprocess.DEVNULL)
    # graft-run -o names a file by its output, ort_run.js lists its files in summary.json
    g = np.load(os.path.join(w, "g", re.sub(r"[^A-Za-z0-9._-]", "_", m.graph.output[0].name)
                             + ".npy"))
    summary = json.load(open(os.path.join(w, "o", "summary.json")))
    o = np.fromfile(os.path.join(w, "o", summary["outputs"][0]["file"]),
                    np.float32).reshape(g.shape)
json.dump({"samples": int(len(g)), "top1_agreement": float((g.argmax(1) == o.argmax(1)).mean()),
           "max_abs": float(np.abs(g - o).max()), "max_logit": float(np.abs(o).max())},
          open(out, "w"))
