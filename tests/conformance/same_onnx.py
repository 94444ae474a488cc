#!/usr/bin/python3
"""same_onnx.py A.onnx B.onnx: exit 0 when the two ONNX files are equal but for their
"provenance" metadata (graft-export writes there the command lines that made a model,
which differ between two ways of reaching the same weights: a resumed run, a recipe
against the same options by hand), else 1."""
import sys
import onnx


def bare(path):
    m = onnx.load(path)
    keep = [p for p in m.metadata_props if p.key != "provenance"]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    return m.SerializeToString()


sys.exit(0 if bare(sys.argv[1]) == bare(sys.argv[2]) else 1)
