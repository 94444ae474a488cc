"""record.py: what examples/pretrain/Makefile writes about the model it trains, and checks.

    record.py EVAL.json LOG.jsonl "TRAIN OPTIONS"   prints compact_cnn.json
    record.py --check compact_cnn.json EVAL.json --ort "COMMAND"
        the committed model's test accuracy (graft-eval now, and ONNX Runtime through
        COMMAND, which prints ort_accuracy.js's JSON) equals the recorded one; exit 1 if not
"""
import json, subprocess, sys


def record(eval_file, log_file, train):
    ev = json.load(open(eval_file))
    log = [json.loads(l) for l in open(log_file) if l.strip()]
    last = log[-1]
    print(json.dumps({
        "model": "compact_cnn.onnx",
        "architecture": "make_arch.py: 4 x (Conv 3x3, BatchNormalization, Relu), "
                        "MaxPool after blocks 1 and 2, GlobalAveragePool, Gemm 64->5",
        "pretraining_data": "Fashion-MNIST classes 0-4 (T-shirt/top, Trouser, Pullover, "
                            "Dress, Coat): 27,000 training images, 3,000 for validation",
        "trained_by": "graft-train " + train,
        "epochs": [{k: e[k] for k in ("epoch", "loss", "accuracy", "val_accuracy")
                    if k in e} for e in log],
        "train_seconds": round(last.get("seconds", 0), 1),
        "test_images": ev["count"],
        "test_accuracy": ev["accuracy"],
        "test_per_class": ev["per_class"],
    }, indent=1))


def check(recorded, eval_file, ort_cmd):
    want = json.load(open(recorded))["test_accuracy"]
    got = json.load(open(eval_file))["accuracy"]
    ort = json.loads(subprocess.run(ort_cmd, shell=True, check=True, stdout=subprocess.PIPE,
                                    text=True).stdout)["accuracy"]
    print(f"recorded {want:.4f}, graft-eval {got:.4f}, ONNX Runtime {ort:.4f}")
    # graft-eval rounds to 6 digits; ONNX Runtime may flip a tie-breaking sample
    ok = abs(got - want) < 1e-6 and abs(ort - want) <= 1.0 / json.load(open(eval_file))["count"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3], sys.argv[5])
    else:
        record(*sys.argv[1:4])
