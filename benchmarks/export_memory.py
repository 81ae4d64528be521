"""Peak memory and wall time of `model.export(format=...)` for a DeBERTa-v3-base-shaped classifier
(random weights, microsoft/deberta-v3-base's architecture), and how far the artifact's outputs are
from the Keras model's in its runtime.

    python benchmarks/export_memory.py [--format onnx] [--layers 12] [--vocab 128100] [--backend tensorflow]

One export per process (peak RSS is the process's high-water mark, read from the kernel after the
export, children included): run it once per setting. The weights' own size is printed beside the
peak, so the figure reads as a multiple of the model.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args):
    import keras

    sys.path.insert(0, ROOT)
    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification
    from presets import known_config
    from presets.runtimes import ExportedModel

    keras.utils.set_random_seed(0)
    model = TFDebertaV2ForSequenceClassification(DebertaV2Config.from_dict(dict(
        known_config("microsoft/deberta-v3-base"), num_labels=2, num_hidden_layers=args.layers, vocab_size=args.vocab)))
    weights = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
    with tempfile.TemporaryDirectory() as scratch:
        target = os.path.join(scratch, "export")
        start = time.perf_counter()
        model.export(target, format=args.format)
        wall = time.perf_counter() - start
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
        served = ExportedModel(target)
        rng = np.random.default_rng(0)
        worst = 0.0
        for batch, length in ((1, 1), (3, 17), (2, 40)):
            ids = rng.integers(0, args.vocab, (batch, length)).astype("int32")
            mask = np.ones_like(ids)
            mask[0, length // 2:] = 0  # padding in the first row
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            expected = keras.ops.convert_to_numpy(model(feed, training=False)["logits"])
            worst = max(worst, float(np.abs(served(feed)["logits"] - expected).max()))
    print(json.dumps({"backend": keras.backend.backend(), "format": args.format, "layers": args.layers,
                      "vocab": args.vocab, "weights_gb": weights / 1e9, "peak_rss_gb": peak / 1e9,
                      "wall_s": round(wall, 1), "max_abs_diff": worst}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", default="onnx", choices=["onnx", "openvino", "litert"])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=128100)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run(args)
    env = dict(os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", *sys.argv[1:]], check=True, env=env)


if __name__ == "__main__":
    main()
