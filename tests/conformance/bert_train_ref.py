#!/usr/bin/python3
"""bert_train_ref.py: a tiny BERT-like encoder (token, position and token-type
embeddings, LayerNorm, 2 PyTorch TransformerEncoderLayers with GELU and a padding mask,
a classifier on [CLS]) for the test train_bert: what graft must train as PyTorch 1.13
does.

  bert_train_ref.py export OUT.onnx --opset K
      the model, seeded, exported in training mode (Dropout 0) with dynamic batch
  bert_train_ref.py text OUT.tsv VOCAB [--n N] [--seed S]
      N made-up texts of 40 to 140 random words from VOCAB (vocab.txt), labelled a and b
      in turn, as a TSV for graft-data text (BERT-mini's data: its 128 tokens filled)
  bert_train_ref.py train OUT.onnx DATA.graft REFDIR --steps S --batch B --optim sgd|adamw
      trains the same model (rebuilt from the same seed) on DATA's first S * B samples in
      order, batch by batch (graft-train --no-shuffle), and writes REFDIR/manifest.json
      and the trained tensors as compare_params.py reads them, by initializer name
Run with /usr/bin/python3."""
import argparse, json, os, sys, tarfile
import numpy as np
import torch, torch.nn as nn

V, C = 10522, 2
SIZES = {"tiny": (32, 2, 2, 64, 16),            # hidden, layers, heads, feed-forward, tokens
         "mini": (256, 4, 4, 1024, 128)}       # BERT-mini (Turc et al. 2019)
H, LAYERS, HEADS, FF, T = SIZES["tiny"]


def set_size(name):
    global H, LAYERS, HEADS, FF, T
    H, LAYERS, HEADS, FF, T = SIZES[name]


class Tiny(nn.Module):
    def __init__(s):
        super().__init__()
        s.tok = nn.Embedding(V, H)
        s.pos = nn.Embedding(T, H)
        s.typ = nn.Embedding(2, H)
        s.ln = nn.LayerNorm(H)
        layer = nn.TransformerEncoderLayer(H, HEADS, FF, dropout=0.0, activation="gelu",
                                           batch_first=True)
        s.enc = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        s.fc = nn.Linear(H, C)

    def forward(s, input_ids, attention_mask, token_type_ids):
        pos = torch.arange(input_ids.shape[1]).unsqueeze(0)
        h = s.ln(s.tok(input_ids) + s.pos(pos) + s.typ(token_type_ids))
        h = s.enc(h, src_key_padding_mask=attention_mask == 0)
        return s.fc(h[:, 0])


def model():
    torch.manual_seed(0)
    return Tiny()


def export(a):
    m = model().train()
    ids = torch.randint(0, V, (2, T))
    ones = torch.ones(2, T, dtype=torch.int64)
    torch.onnx.export(m, (ids, ones, ones * 0), a.out,
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["logits"], opset_version=a.opset,
                      dynamic_axes={k: {0: "batch"} for k in
                                    ("input_ids", "attention_mask", "token_type_ids", "logits")},
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)


def load(path):
    t = tarfile.open(path)
    arrs = {}
    for line in t.extractfile("manifest").read().decode().splitlines():
        tok = line.split(" ")
        if tok[0] == "tensor":
            dims = [int(d) for d in tok[4][1:-1].split(",")]
            arrs[tok[2]] = np.frombuffer(t.extractfile(tok[1]).read(), np.int64).reshape(dims)
    return arrs


def train(a):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")) if a.time else 1)
    d = load(a.data)
    m = model().train()
    if a.optim == "sgd":
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, eps=1e-6, weight_decay=0.01)
    losses = []
    import time
    t0 = None
    for s in range(a.steps):
        if s == 1:
            t0 = time.perf_counter()
        sl = slice(s * a.batch, (s + 1) * a.batch)
        x = [torch.from_numpy(d["x:" + k][sl].copy()) for k in
             ("input_ids", "attention_mask", "token_type_ids")]
        loss = nn.functional.cross_entropy(m(*x), torch.from_numpy(d["y"][sl].copy()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if a.time and t0 is not None:
        print("pytorch %.1f samples/s" % ((a.steps - 1) * a.batch / (time.perf_counter() - t0)))
    os.makedirs(a.ref, exist_ok=True)
    tensors = {}
    for k, v in m.state_dict().items():
        f = k.replace("/", "_") + ".npy"
        np.save(os.path.join(a.ref, f), v.detach().numpy().astype(np.float32))
        tensors[k] = {"file": f, "state_dict_key": k, "initializer": k, "kind": "parameter",
                      "shape": list(v.shape)}
        if k.endswith("in_proj_bias"):
            # its key third has no gradient: softmax ignores a shift of every score
            tensors[k]["noise"] = "the key bias: zero gradient"
    json.dump({"model": os.path.abspath(a.model), "arch": "tiny_bert", "options": vars(a),
               "torch": torch.__version__, "tensors": tensors, "unused_initializers": []},
              open(os.path.join(a.ref, "manifest.json"), "w"))
    json.dump(losses, open(os.path.join(a.ref, "losses.json"), "w"))


def text(a):
    import random
    random.seed(a.seed)
    words = open(a.vocab, encoding="utf-8").read().split("\n")[2000:7000]
    with open(a.out, "w") as f:
        f.write("text\tlabel\n")
        for i in range(a.n):
            f.write(" ".join(random.choice(words) for _ in range(random.randint(40, 140)))
                    + "\t" + "ab"[i % 2] + "\n")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("text")
    x.add_argument("out")
    x.add_argument("vocab")
    x.add_argument("--n", type=int, default=512)
    x.add_argument("--seed", type=int, default=3)
    e = sub.add_parser("export")
    e.add_argument("out")
    e.add_argument("--opset", type=int, default=14)
    e.add_argument("--size", choices=sorted(SIZES), default="tiny")
    t = sub.add_parser("train")
    t.add_argument("model")
    t.add_argument("data")
    t.add_argument("ref")
    t.add_argument("--steps", type=int, default=8)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--optim", choices=("sgd", "adamw"), default="sgd")
    t.add_argument("--size", choices=sorted(SIZES), default="tiny")
    t.add_argument("--time", action="store_true",
                   help="print the samples/s of the steps after the first")
    a = ap.parse_args()
    if a.cmd == "text":
        return text(a)
    set_size(a.size)
    export(a) if a.cmd == "export" else train(a)


if __name__ == "__main__":
    main()
