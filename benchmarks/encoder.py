"""Forward throughput of a deberta-v3-base-sized encoder: ours on each Keras backend, beside
transformers (PyTorch) and KerasHub's DebertaV3Backbone, in the same run, as ratios.

    python benchmarks/encoder.py [--backends tensorflow jax torch] [--repeats 5] [--quick]

Random weights (the architecture of microsoft/deberta-v3-base). Each Keras backend runs in its
own subprocess (the backend is fixed at import); transformers runs in the parent, before and
after them, and its faster run is the reference (`common.bracketed_reference`). Figures are
tokens per second over `repeats` timed calls after warm-up (compilation excluded), median.
"of ceiling" is the share of this machine's fp32 matmul rate (the best backend's, measured in the
same run) that the encoder's matmul FLOPs (`common.deberta_forward_flops`) reach.
"""

import argparse
import json
import os
import sys

import numpy as np

from common import bracketed_reference, deberta_forward_flops, matmul_ceiling, median_seconds, print_ratio_table, run_backend_workers

SHAPES = [(8, 128), (2, 512)]  # (batch, length)


def _inputs(batch, length, vocab):
    rng = np.random.RandomState(0)
    ids = rng.randint(5, vocab, size=(batch, length)).astype("int32")
    return ids, np.ones_like(ids)


def _config(quick):
    from presets import known_config

    config = known_config("microsoft/deberta-v3-base")
    if quick:
        config.update(num_hidden_layers=2)
    return config


def _compiled(backend, model, make_inputs):
    """The model's inference call compiled as each backend does best: jax.jit over a stateless
    call, tf.function with XLA, torch eager under no_grad."""
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def fn(tv, ntv, ids, mask):
            out, _ = model.stateless_call(tv, ntv, make_inputs(ids, mask))
            return out

        return lambda ids, mask: fn(trainable, non_trainable, ids, mask)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda ids, mask: model(make_inputs(ids, mask)), jit_compile=True)
    import torch

    def fn(ids, mask):
        with torch.no_grad():
            return model(make_inputs(ids, mask))

    return fn


def run_worker(backend, repeats, quick):
    os.environ["KERAS_BACKEND"] = backend
    from keras import ops

    from keras_deberta import DebertaV2Config, TFDebertaV2Model

    config_dict = _config(quick)
    model = TFDebertaV2Model(DebertaV2Config.from_dict(config_dict))
    model.build_with_dummy_inputs()
    results = {}
    impls = {"ours": _compiled(backend, model, lambda ids, mask: {"input_ids": ids, "attention_mask": mask})}
    try:
        import keras_hub

        backbone = keras_hub.models.DebertaV3Backbone(
            vocabulary_size=config_dict["vocab_size"], num_layers=config_dict["num_hidden_layers"],
            num_heads=config_dict["num_attention_heads"], hidden_dim=config_dict["hidden_size"],
            intermediate_dim=config_dict["intermediate_size"], max_sequence_length=512,
            bucket_size=config_dict["position_buckets"], dropout=0.0,
        )
        impls["keras_hub"] = _compiled(
            backend, backbone, lambda ids, mask: {"token_ids": ids, "padding_mask": mask}
        )
    except Exception as e:  # keras-hub missing or its API changed: report ours only
        print(f"keras_hub unavailable: {e}", file=sys.stderr)

    for batch, length in SHAPES:
        ids, mask = _inputs(batch, length, config_dict["vocab_size"])
        if backend != "jax":
            ids, mask = ops.convert_to_tensor(ids), ops.convert_to_tensor(mask)
        for name, fn in impls.items():
            def step(fn=fn):
                out = fn(ids, mask)
                if isinstance(out, dict):
                    out = next(iter(out.values()))
                ops.convert_to_numpy(out[:1, :1, :1])  # wait for the device
            seconds = median_seconds(step, repeats)
            results[f"{name}|{batch}x{length}"] = batch * length / seconds
    results["ceiling"] = matmul_ceiling(backend)
    print(json.dumps(results))


def run_transformers(repeats, quick):
    import torch
    import transformers

    config = transformers.DebertaV2Config(**_config(quick))
    model = transformers.DebertaV2Model(config).eval()
    results = {}
    for batch, length in SHAPES:
        ids, mask = _inputs(batch, length, config.vocab_size)
        ids, mask = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)

        def step():
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)

        results[f"{batch}x{length}"] = batch * length / median_seconds(step, repeats)
    results["ceiling"] = matmul_ceiling("torch")
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 layers instead of 12 (smoke run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.repeats, args.quick)

    extra = ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
    hf, measured = bracketed_reference(lambda: run_transformers(args.repeats, args.quick),
                                       lambda: run_backend_workers(__file__, args.backends, extra))
    print_ratio_table(
        f"DeBERTa-v3-base-sized encoder forward, tokens/s (median of {args.repeats}); "
        f"ratio = tokens/s over transformers {transformers_version()} PyTorch in the same run (its faster of two)",
        "transformers (torch)", hf, measured,
        lambda impl, backend: f"{'ours' if impl == 'ours' else 'KerasHub'} ({backend})",
        flops_per_token={f"{b}x{l}": deberta_forward_flops(_config(args.quick), b, l) / (b * l) for b, l in SHAPES},
    )


def transformers_version():
    import transformers

    return transformers.__version__


if __name__ == "__main__":
    main()
