"""Training-step throughput of a deberta-v3-small-sized classifier: ours on each Keras backend
beside transformers (PyTorch), in the same run, as ratios.

    python benchmarks/train_step.py [--backends tensorflow jax torch] [--repeats 5] [--quick]

A step is forward + backward + AdamW update on batch 8 x length 128 (random weights and data,
2 labels). Ours runs `model.train_on_batch` after `compile(optimizer=AdamW)` with no loss (the
model's own loss), i.e. what `fit` runs: XLA-compiled on JAX and TensorFlow, eager on torch.
transformers runs loss.backward() + torch.optim.AdamW, in this process before and after the
backends' subprocesses; its faster run is the reference (`common.bracketed_reference`).
"""

import argparse
import json
import os

import numpy as np

from common import bracketed_reference, deberta_forward_flops, matmul_ceiling, median_seconds, print_ratio_table, run_backend_workers

SHAPES = [(8, 128)]


def _config(quick):
    from presets import known_config

    config = known_config("microsoft/deberta-v3-small")
    if quick:
        config.update(num_hidden_layers=2)
    return config


def _data(batch, length, vocab):
    rng = np.random.RandomState(0)
    ids = rng.randint(5, vocab, size=(batch, length)).astype("int32")
    return ids, np.ones_like(ids), rng.randint(0, 2, size=(batch,)).astype("int32")


def run_worker(backend, repeats, quick):
    os.environ["KERAS_BACKEND"] = backend
    import keras

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    config = _config(quick)
    model = TFDebertaV2ForSequenceClassification(DebertaV2Config.from_dict(config))
    model.compile(optimizer=keras.optimizers.AdamW(1e-5))
    results = {}
    for batch, length in SHAPES:
        ids, mask, labels = _data(batch, length, config["vocab_size"])
        x = {"input_ids": ids, "attention_mask": mask}
        seconds = median_seconds(lambda: model.train_on_batch(x, labels), repeats)
        results[f"ours|{batch}x{length}"] = batch * length / seconds
    results["ceiling"] = matmul_ceiling(backend)
    print(json.dumps(results))


def run_transformers(repeats, quick):
    import torch
    import transformers

    model = transformers.DebertaV2ForSequenceClassification(transformers.DebertaV2Config(**_config(quick)))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    results = {}
    for batch, length in SHAPES:
        ids, mask, labels = (torch.tensor(a, dtype=torch.long) for a in _data(batch, length, model.config.vocab_size))

        def step():
            optimizer.zero_grad()
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            optimizer.step()

        results[f"{batch}x{length}"] = batch * length / median_seconds(step, repeats)
    results["ceiling"] = matmul_ceiling("torch")
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 layers instead of 6 (smoke run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.repeats, args.quick)
    import transformers

    extra = ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
    hf, measured = bracketed_reference(lambda: run_transformers(args.repeats, args.quick),
                                       lambda: run_backend_workers(__file__, args.backends, extra))
    print_ratio_table(
        f"deberta-v3-small-sized classifier, training step (forward + backward + AdamW), tokens/s "
        f"(median of {args.repeats}); ratio over transformers {transformers.__version__} in the same run (its faster of two)",
        "transformers (torch)", hf, measured, lambda impl, backend: f"ours ({backend})",
        # forward + backward: 3x the forward's matmul FLOPs
        flops_per_token={f"{b}x{l}": 3 * deberta_forward_flops(_config(args.quick), b, l) / (b * l) for b, l in SHAPES},
    )


if __name__ == "__main__":
    main()
