#!/usr/bin/python3
"""Lossless round trip over the ONNX backend test suite.

Usage: roundtrip_testdata.py TOOLDIR [DATADIR...] [-j N] [--file-every N] [--strict-bytes]

For every model.onnx under each DATADIR (default: /usr/share/libonnx-testdata/data,
i.e. node, pytorch-converted, pytorch-operator, simple, real: 1072 models), runs
    TOOLDIR/graft-import MODEL | TOOLDIR/graft-export > out.onnx
through a real OS pipe and checks onnx.load(MODEL) == onnx.load(out.onnx). Every
--file-every'th model (default 10) also takes the file-path route
    graft-import MODEL -o x.graft && graft-export x.graft -o y.onnx
with the same check. --strict-bytes additionally requires the output bytes to equal
the input bytes (off by default: the contract is message equality).

Prints one line per failing model ("FAIL path: why"), then exactly one final line
"N passed, M failed" (CI counts tests from it; N + M = number of models), and exits 1
on any failure. Runs models in a pool of -j workers (default 2, one per core).
Run with /usr/bin/python3 (python3-onnx; a pyenv python3 may shadow it on PATH)."""
import argparse, multiprocessing, os, signal, subprocess, sys, tempfile

import onnx
from google.protobuf.message import Message

DEFAULT_DATA = "/usr/share/libonnx-testdata/data"
TIMEOUT = 300  # seconds per tool invocation

_cfg = {}


def describe(x, y):
    """Short account of how two scalar field values differ."""
    if isinstance(x, (bytes, str)) and isinstance(y, (bytes, str)) and len(x) + len(y) > 80:
        i = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        return f"{len(x)} vs {len(y)} {'bytes' if isinstance(x, bytes) else 'chars'}, first difference at offset {i}"
    return f"{x!r:.60} vs {y!r:.60}"


def first_difference(a, b, path="model"):
    """Path of the first field where two protobuf messages differ (for the report)."""
    fa = {f.name: v for f, v in a.ListFields()}
    fb = {f.name: v for f, v in b.ListFields()}
    for name in sorted(set(fa) | set(fb)):
        if name not in fa or name not in fb:
            return f"{path}.{name} only in {'original' if name in fa else 'round trip'}"
        va, vb = fa[name], fb[name]
        if va == vb:
            continue
        if isinstance(va, Message):
            return first_difference(va, vb, f"{path}.{name}")
        if hasattr(va, "__len__") and not isinstance(va, (str, bytes)):
            if len(va) != len(vb):
                return f"{path}.{name}: {len(va)} vs {len(vb)} entries"
            for i, (x, y) in enumerate(zip(va, vb)):
                if x != y:
                    if isinstance(x, Message):
                        return first_difference(x, y, f"{path}.{name}[{i}]")
                    return f"{path}.{name}[{i}]: {describe(x, y)}"
        return f"{path}.{name}: {describe(va, vb)}"
    try:  # equal known fields: the difference can only be in unknown fields
        if list(a.UnknownFields()) != list(b.UnknownFields()):
            return f"{path}: unknown fields differ"
    except Exception:
        pass
    return f"{path}: differs (no field-level difference found)"


def why(proc_name, rc, err):
    lines = err.decode("utf-8", "replace").strip().splitlines()
    if rc < 0:
        try:
            status = f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            status = f"killed by signal {-rc}"
    else:
        status = f"exit {rc}"
    return f"{proc_name} {status}" + (f": {lines[-1]}" if lines else "")


def compare(orig_path, orig_model, orig_bytes, out_path, route):
    try:
        with open(out_path, "rb") as f:
            out_bytes = f.read()
    except OSError as e:
        return f"{route}: no output: {e.strerror}"
    if not out_bytes and orig_bytes:
        return f"{route}: empty output"
    try:
        out_model = onnx.load_from_string(out_bytes)
    except Exception as e:  # protobuf DecodeError and friends
        return f"{route}: output does not parse as ONNX: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    if out_model != orig_model:
        return f"{route}: models differ: {first_difference(orig_model, out_model)}"
    if _cfg["strict_bytes"] and out_bytes != orig_bytes:
        return f"{route}: equal messages but bytes differ ({len(orig_bytes)} vs {len(out_bytes)} bytes)"
    return None


def via_pipe(model, tmp):
    out = os.path.join(tmp, "pipe.onnx")
    imp_cmd = [_cfg["import"], model]
    exp_cmd = [_cfg["export"]]
    with open(out, "wb") as fout, tempfile.TemporaryFile() as e1, tempfile.TemporaryFile() as e2:
        imp = subprocess.Popen(imp_cmd, stdout=subprocess.PIPE, stderr=e1, stdin=subprocess.DEVNULL)
        exp = subprocess.Popen(exp_cmd, stdin=imp.stdout, stdout=fout, stderr=e2)
        imp.stdout.close()  # so graft-import sees EPIPE/SIGPIPE if graft-export dies early
        try:
            rc_exp = exp.wait(TIMEOUT)
            rc_imp = imp.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            imp.kill(); exp.kill(); imp.wait(); exp.wait()
            return out, f"pipe: timed out after {TIMEOUT}s"
        e1.seek(0); e2.seek(0)
        # an import killed by SIGPIPE is a consequence of the export failing: blame that
        if rc_imp != 0 and not (rc_imp == -signal.SIGPIPE and rc_exp != 0):
            return out, "pipe: " + why("graft-import", rc_imp, e1.read())
        if rc_exp != 0:
            return out, "pipe: " + why("graft-export", rc_exp, e2.read())
    return out, None


def via_files(model, tmp):
    graft = os.path.join(tmp, "x.graft")
    out = os.path.join(tmp, "y.onnx")
    for name, cmd in (("graft-import", [_cfg["import"], model, "-o", graft]),
                      ("graft-export", [_cfg["export"], graft, "-o", out])):
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return out, f"files: {name} timed out after {TIMEOUT}s"
        if p.returncode != 0:
            return out, "files: " + why(name, p.returncode, p.stderr)
        if p.stdout:
            return out, f"files: {name} -o wrote {len(p.stdout)} bytes to stdout"
    return out, None


def check_one(job):
    index, model, rel = job
    with tempfile.TemporaryDirectory(dir=_cfg["tmp"]) as tmp:
        try:
            with open(model, "rb") as f:
                orig_bytes = f.read()
            orig_model = onnx.load_from_string(orig_bytes)
        except Exception as e:
            return rel, f"cannot load original: {e}"
        routes = [("pipe", via_pipe)]
        if _cfg["every"] and index % _cfg["every"] == 0:
            routes.append(("files", via_files))
        for route, run in routes:
            out, err = run(model, tmp)
            if err is None:
                err = compare(model, orig_model, orig_bytes, out, route)
            if err:
                return rel, err
    return rel, None


def init(cfg):
    _cfg.update(cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tooldir")
    ap.add_argument("datadirs", nargs="*", default=[DEFAULT_DATA])
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--file-every", type=int, default=10,
                    help="also test the -o file route on every Nth model (0: never)")
    ap.add_argument("--strict-bytes", action="store_true")
    a = ap.parse_intermixed_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet exit under | head

    tooldir = os.path.abspath(a.tooldir)
    cfg = {"import": os.path.join(tooldir, "graft-import"),
           "export": os.path.join(tooldir, "graft-export"),
           "every": a.file_every, "strict_bytes": a.strict_bytes}
    for t in (cfg["import"], cfg["export"]):
        if not os.access(t, os.X_OK):
            sys.exit(f"roundtrip_testdata: {t}: not an executable")

    jobs = []
    for d in a.datadirs:
        if not os.path.isdir(d):
            sys.exit(f"roundtrip_testdata: {d}: not a directory")
        found = []
        for root, dirs, files in os.walk(d):
            dirs.sort()
            if "model.onnx" in files:
                found.append(os.path.join(root, "model.onnx"))
        if not found:  # e.g. data/real: only data.json files pointing at downloads
            print(f"roundtrip_testdata: {d}: no model.onnx found, skipped", file=sys.stderr)
        base = os.path.dirname(os.path.abspath(d))
        jobs += [(p, os.path.relpath(p, base)) for p in sorted(found)]
    if not jobs:
        sys.exit("roundtrip_testdata: no models to test")
    jobs = [(i, p, rel) for i, (p, rel) in enumerate(jobs)]

    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="graft-rt-") as tmp:
        cfg["tmp"] = tmp
        with multiprocessing.Pool(max(1, a.jobs), initializer=init, initargs=(cfg,)) as pool:
            for rel, err in pool.imap(check_one, jobs, chunksize=4):
                if err:
                    failed += 1
                    print(f"FAIL {rel}: {err}", flush=True)
                else:
                    passed += 1
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
