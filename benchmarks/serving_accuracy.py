"""What the faster serving paths cost in accuracy: SST-2 dev accuracy of the built-in sentiment
model (keras_deberta/assets/sst2-tiny, a trained DeBERTa-v2 classifier) in float32,
`mixed_bfloat16` and int8 (`model.quantize("int8")`) on every backend, and of its ONNX export
(onnxruntime float32 and int8 dynamic quantization) and OpenVINO export (f32, bf16).

    python benchmarks/serving_accuracy.py [--backends tensorflow jax torch] [--runtimes onnx openvino]
        [--limit N]

Every row is scored on the same tokenised sentences (the model's own tokenizer, padded to the
longest); besides accuracy it prints how many predictions differ from our float32 model on the
same backend and the largest logit difference, so a change that flips no label still shows.
Needs ../shared/data/sentiment/SST-2/dev.tsv (872 sentences).
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

from common import run_backend_workers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "keras_deberta", "assets", "sst2-tiny")
DEV = os.path.join(ROOT, "..", "shared", "data", "sentiment", "SST-2", "dev.tsv")
BATCH = 64


def dev_set(limit):
    """(sentences, labels [N]) from SST-2's dev.tsv (header line, then sentence<TAB>label)."""
    if not os.path.isfile(DEV):
        sys.exit(f"SST-2 dev set not found at {os.path.normpath(DEV)} (see ../shared/data/README.md)")
    with open(DEV, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    rows = rows[:limit] if limit else rows
    return [text for text, _ in rows], np.array([int(label) for _, label in rows], dtype="int32")


def encoded(limit):
    """{"input_ids", "attention_mask"} [N, L] int32, tokenised once for every row of the table."""
    from keras_deberta import AutoTokenizer

    texts, labels = dev_set(limit)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    return {k: np.asarray(enc[k], dtype="int32") for k in ("input_ids", "attention_mask")}, labels


def batched_logits(call, inputs):
    """Logits [N, labels] of `call(input_ids, attention_mask)` over batches of BATCH rows."""
    n = len(inputs["input_ids"])
    parts = [np.asarray(call(inputs["input_ids"][i:i + BATCH], inputs["attention_mask"][i:i + BATCH]),
                        dtype="float32") for i in range(0, n, BATCH)]
    return np.concatenate(parts)


def run_worker(backend, limit):
    os.environ["KERAS_BACKEND"] = backend
    from keras import ops

    from keras_deberta import TFDebertaV2ForSequenceClassification

    inputs, _ = encoded(limit)
    logits = {}
    for variant in ("float32", "mixed_bfloat16", "int8"):
        dtype = "mixed_bfloat16" if variant == "mixed_bfloat16" else None
        model = TFDebertaV2ForSequenceClassification.from_pretrained(MODEL, dtype=dtype)
        if variant == "int8":
            model.quantize("int8")
        logits[variant] = batched_logits(
            lambda ids, mask: ops.convert_to_numpy(model(input_ids=ids, attention_mask=mask).logits), inputs).tolist()
    print(json.dumps(logits))


def runtime_logits(formats, limit, scratch):
    """{label: logits} of our exports, made by one TensorFlow subprocess from the same checkpoint."""
    import shutil
    import subprocess

    from presets.runtimes import ExportedModel

    targets = {fmt: os.path.join(scratch, fmt) for fmt in formats}
    code = ("import sys; sys.path.insert(0, %r); from keras_deberta import TFDebertaV2ForSequenceClassification; "
            "m = TFDebertaV2ForSequenceClassification.from_pretrained(%r); "
            "[m.export(path, format=fmt) for fmt, path in %r.items()]") % (ROOT, MODEL, targets)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    sessions = {}
    if "onnx" in targets:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = os.path.join(scratch, "onnx-int8")
        shutil.copytree(targets["onnx"], int8)
        quantize_dynamic(os.path.join(targets["onnx"], "model.onnx"), os.path.join(int8, "model.onnx"),
                         weight_type=QuantType.QInt8, per_channel=True)
        sessions["onnxruntime f32"] = ExportedModel(targets["onnx"])
        sessions["onnxruntime int8 dynamic"] = ExportedModel(int8)
    if "openvino" in targets:
        for precision in ("f32", "bf16"):
            sessions[f"OpenVINO {precision}"] = ExportedModel(targets["openvino"], precision=precision)
    inputs, _ = encoded(limit)
    return {label: batched_logits(lambda ids, mask: session(input_ids=ids, attention_mask=mask).logits, inputs)
            for label, session in sessions.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--runtimes", nargs="*", default=["onnx", "openvino"], choices=["onnx", "openvino"])
    parser.add_argument("--limit", type=int, default=0, help="score only the first N dev sentences")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.limit)

    sys.path.insert(0, ROOT)
    _, labels = dev_set(args.limit)
    measured = run_backend_workers(__file__, args.backends, ["--limit", str(args.limit)])
    with tempfile.TemporaryDirectory() as scratch:
        runtimes = runtime_logits(args.runtimes, args.limit, scratch) if args.runtimes else {}
    print(f"SST-2 dev ({len(labels)} sentences), built-in model {os.path.relpath(MODEL, ROOT)}")
    print(f"{'implementation':<36}{'accuracy':>10}{'vs f32':>9}{'flipped':>9}{'max |dlogit|':>14}")
    reference = None
    for backend, rows in measured.items():
        reference = np.asarray(rows["float32"])
        for variant, values in rows.items():
            _row(f"ours {backend} {variant}", np.asarray(values), reference, labels)
    for label, values in runtimes.items():  # against the float32 model of the last backend measured
        _row(f"our export, {label}", values, reference, labels)


def _row(label, logits, reference, labels):
    predictions = logits.argmax(-1)
    accuracy = float((predictions == labels).mean())
    if reference is None:
        print(f"{label:<36}{accuracy:>10.2%}")
        return
    base = float((reference.argmax(-1) == labels).mean())
    flipped = int((predictions != reference.argmax(-1)).sum())
    print(f"{label:<36}{accuracy:>10.2%}{(accuracy - base) * 100:>+8.2f}p{flipped:>9}"
          f"{float(np.abs(logits - reference).max()):>14.2e}")


if __name__ == "__main__":
    main()
