#!/usr/bin/python3
"""scaling_model.py [STEP_SECONDS...]: the expected efficiency of data-parallel
training with ring all-reduce (docs/distributed.md), weak scaling: every node runs the
same per-node batch, so its compute time per step stays; the gradients' mean adds

    t_comm = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * latency

(reduce-scatter then all-gather, each of N - 1 steps), and the efficiency is
t_step / (t_step + t_comm) when the exchange follows backward (graft today), or
t_step / max(t_step, t_comm + t_forward) with it hidden behind backward (DDP's buckets;
backward taken as 2/3 of a step).  Speed-up = N x efficiency.

Per-node step times: measured on this 2-core VM for resnet18 (graft-train full
fine-tuning, batch 32: about 1.28 s, docs/loading.md's runs) and mobilenet_v2 (batch 16
at 14.5 images/s: 1.10 s, ../shared/baseline.md), and derived for a BERT-base-sized
encoder (110 M parameters, sequence 128, batch 32: 3 x 2 x 110e6 x 128 x 32 FLOP at the
100 GFLOP/s graft's training reaches here: 27 s).  A cluster node with 16 times the
compute of this VM divides them by 16: the second table.
"""
import sys

MODELS = [  # name, gradient bytes (float32), step seconds on this VM
    ("resnet18", 46.8e6, 1.28),
    ("mobilenet_v2", 14.0e6, 1.10),
    ("BERT-base", 440e6, 27.0),
]
LINKS = [("10 Gb/s", 10e9 / 8), ("25 Gb/s", 25e9 / 8), ("100 Gb/s", 100e9 / 8)]
NODES = [2, 4, 8, 16, 32, 64]
LATENCY = 30e-6     # per message over TCP on Ethernet


def comm_seconds(nodes, size, bandwidth):
    return 2 * (nodes - 1) / nodes * size / bandwidth + 2 * (nodes - 1) * LATENCY


def table(speedup):
    print("| model | link | t_comm at 64 nodes | efficiency, exchange after backward / hidden behind it, at " +
          ", ".join("%d" % n for n in NODES) + " nodes |")
    print("|---|---|---|---|")
    for name, size, step in MODELS:
        step /= speedup
        for link, bw in LINKS:
            cells = []
            for n in NODES:
                c = comm_seconds(n, size, bw)
                after = step / (step + c)
                hidden = step / max(step, c + step / 3)
                cells.append("%.0f/%.0f%%" % (100 * after, 100 * hidden))
            print("| %s (%.3g s) | %s | %.3f s | %s |" % (name, step, link,
                                                         comm_seconds(64, size, bw), ", ".join(cells)))


if __name__ == "__main__":
    print("Nodes as fast as this 2-core VM:\n")
    table(1)
    print("\nNodes 16 times as fast:\n")
    table(16)
