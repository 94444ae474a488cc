#!/usr/bin/python3
"""layers.py: lib/'s layers, checked from the source.

Also checks that the library has no hidden inputs or outputs: no file of lib/ reads the
environment (getenv), prints (printf, fprintf, puts...) or ends the process (exit,
abort); options come through the API, messages through struct graft_err.

Each folder of lib/ is a layer, in this order from the bottom:
    base < model < format < data < engine < surgery < dist < train < report
A file of lib/ includes headers from its own layer and the layers below, never from
one above; graft.h (the public header, at lib/) and system headers are open to all;
tools include graft.h and tools/ headers only.  Prints every include with its verdict
grouped by layer (the allowed ones counted), then each upward one, and fails if there is
one.  With --objects LIBDIR (the build's lib/), also the calls: no layer's static library
uses a symbol a layer above defines.  Usage: layers.py [--self-test] [--objects LIBDIR] SRCDIR
"""
import os
import re
import sys

LAYERS = ["base", "model", "format", "data", "engine", "surgery", "dist", "train", "report"]
RANK = {name: i for i, name in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
FORBIDDEN = re.compile(r'\b(getenv|secure_getenv|environ|printf|fprintf|vfprintf|puts|fputs|'
                       r'putchar|perror|exit|_exit|_Exit|abort|atexit)\s*\(')
COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.S)
STRING = re.compile(r'"(\\.|[^"\\])*"')


def layer_of(path):
    """The layer a path under lib/ belongs to, or None for lib/graft.h and lib/meson.build."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "lib" else None


def resolve(src, path, inc):
    """The lib/-relative path an include names: beside the including file first (as the
    compiler looks), then from lib/; None for generated or outside headers."""
    beside = os.path.normpath(os.path.join(os.path.dirname(path), inc))
    if os.path.exists(os.path.join(src, beside)):
        return beside
    from_lib = os.path.normpath(os.path.join("lib", inc))
    if os.path.exists(os.path.join(src, from_lib)):
        return from_lib
    return None


def symbol_check(libdir):
    """Calls across layers, as the linker sees them: no layer's static library
    (libgraft-LAYER.a in libdir) uses a symbol that a layer above it defines.  Returns
    the failures; prints what it checked."""
    import subprocess

    def nm(layer, *flags):
        out = subprocess.run(["nm", *flags, os.path.join(libdir, f"libgraft-{layer}.a")],
                             capture_output=True, text=True, check=True).stdout
        return out.split("\n")

    undefined = {l: {ln.split()[-1] for ln in nm(l, "-u") if ln.strip().startswith("U ")}
                 for l in LAYERS}
    defined = {l: {ln.split()[2] for ln in nm(l, "--defined-only")
                   if len(ln.split()) == 3 and ln.split()[1] in "TDBR"} for l in LAYERS}
    bad = []
    for i, low in enumerate(LAYERS):
        for high in LAYERS[i + 1:]:
            for sym in sorted(undefined[low] & defined[high]):
                bad.append(f"libgraft-{low}.a uses {sym}, which {high} defines")
    print(f"  symbols: {sum(len(u) for u in undefined.values())} undefined references "
          f"of the {len(LAYERS)} layer libraries checked")
    return bad


def main():
    libdir = None
    if len(sys.argv) > 2 and sys.argv[1] == "--objects":
        libdir = sys.argv[2]
        sys.argv[1:3] = []
    src = sys.argv[1] if len(sys.argv) > 1 else "."
    files = []
    for top in ("lib", "tools"):
        for root, _, names in os.walk(os.path.join(src, top)):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    files.append(os.path.relpath(os.path.join(root, n), src))
    unknown = [f for f in files if f.startswith("lib/") and f.count("/") > 1
               and layer_of(f) not in RANK]
    upward, counts, hidden = [], {}, []
    for path in sorted(files):
        text = open(os.path.join(src, path), encoding="utf-8").read()
        mine = layer_of(path)
        if path.startswith("lib/"):
            code = STRING.sub('""', COMMENT.sub(" ", text))
            for k, line in enumerate(code.split("\n"), 1):
                m = FORBIDDEN.search(line)
                if m:
                    hidden.append(f"{path}:{k}: calls {m.group(1)}")
        for inc in INCLUDE.findall(text):
            target = resolve(src, path, inc)
            theirs = layer_of(target) if target else None
            if path.startswith("tools/"):
                ok = target is None or target == "lib/graft.h" or target.startswith("tools/")
                key = "tools"
            elif theirs is None:        # graft.h, onnx.pb-c.h
                ok, key = True, mine or "lib"
            else:
                ok = mine is not None and RANK[theirs] <= RANK[mine]
                key = mine or "lib"
            counts[key] = counts.get(key, 0) + 1
            if not ok:
                upward.append(f"{path}: includes \"{inc}\" ({theirs or target} is above "
                              f"{mine or 'tools'})")
    print("layers, bottom first: " + " < ".join(LAYERS))
    for key in LAYERS + ["lib", "tools"]:
        if key in counts:
            print(f"  {key:8s} {counts[key]:4d} includes checked")
    for f in unknown:
        print(f"FAIL: {f} lies in no known layer folder")
    for u in upward:
        print(f"FAIL: {u}")
    for h in hidden:
        print(f"FAIL: {h} (the library reads no environment, prints nothing, never exits)")
    calls = symbol_check(libdir) if libdir else []
    for c in calls:
        print(f"FAIL: {c} (a call from a layer to one above)")
    print(f"{len(upward)} upward includes, {len(unknown)} files outside the layers, "
          f"{len(hidden)} calls to getenv, printing or exit in lib/")
    return 1 if upward or unknown or hidden or calls else 0


def self_test():
    """The check fails on an upward include and passes once it is gone."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for sub in ("lib/base", "lib/model", "tools"):
            os.makedirs(os.path.join(d, sub))
        open(os.path.join(d, "lib/graft.h"), "w").write("")
        open(os.path.join(d, "lib/model/model.h"), "w").write('#include "base/base.h"\n')
        open(os.path.join(d, "lib/base/base.h"), "w").write('#include "graft.h"\n')
        bad = os.path.join(d, "lib/base/util.c")
        open(bad, "w").write('#include "base/base.h"\n#include "model/model.h"\n')
        run = lambda: subprocess.run([sys.executable, __file__, d], capture_output=True,
                                     text=True)
        r = run()
        assert r.returncode == 1 and "lib/base/util.c: includes \"model/model.h\"" in r.stdout, r.stdout
        open(bad, "w").write('#include "base/base.h"\n')
        r = run()
        assert r.returncode == 0, r.stdout
        open(bad, "w").write('#include "base/base.h"\n/* getenv() in a comment */\n'
                             'int f(void) { return getenv ("X") != 0; }\n')
        r = run()
        assert r.returncode == 1 and "util.c:3: calls getenv" in r.stdout, r.stdout
    print("self-test: an upward include fails the check, its removal passes it, "
          "a getenv call fails it")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        self_test()
        sys.argv[1:2] = []
    sys.exit(main())
