"""int8 post-training quantization, measured: the same model before and after `model.quantize("int8")`.

    python benchmarks/quantization.py [--backends jax tensorflow torch] [--repeats 3] [--quick]

Two models with random weights: a DeBERTa-v3-small-sized classifier (hidden 768, 6 layers, 12 heads,
128,100-token vocabulary, 3 labels; batch 8 x 128) and the small DeepSeek-V2 MoE of
benchmarks/deepseek.py (hidden 512, 4 layers, 32 routed experts top-6 + 2 shared, 32,000-token
vocabulary; batch 2 x 128 next-token predictions). Each Keras backend runs in its own subprocess.
Reported per model and backend: argmax agreement with float32 (classes / next tokens), the largest
logit change (absolute, and relative to the largest float32 logit), bytes of all weights (float32 vs
after int8: int8 kernels, embeddings and experts plus their float32 scales, the float32 router and
norms), and the compiled forward time of int8 over float32 (median of `repeats`, compilation excluded).

Keras' int8 Dense quantizes activations per row as well (W8A8: int8 x int8 -> int32 matmul); the MoE
experts dequantise the gathered expert blocks (weight-only). On CPU backends whose int8 matmul is not
a fast kernel the int8 forward may be slower: the win this script shows first is memory.
"""

import argparse
import json
import os
import sys

import numpy as np

from common import median_seconds, run_backend_workers


def _deberta_config(quick):
    from presets import known_config

    config = known_config("microsoft/deberta-v3-small")
    config.update(num_labels=3)
    if quick:
        config.update(num_hidden_layers=2)
    return config


def _deepseek_config(quick):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from deepseek import _config

    config = _config("small")
    if quick:
        config.update(num_hidden_layers=2)
    return config


def _weight_bytes(model):
    return int(sum(np.prod(v.shape) * np.dtype(str(v.dtype)).itemsize for v in model.weights))


def _forward_fn(backend, model, call):
    """`call(ids)` compiled as each backend does best: jax.jit over the variables (passed in, so a
    function built after quantization sees the int8 ones), tf.function with XLA, torch eager."""
    import keras

    if backend == "jax":
        import jax

        variables = list(model.variables)

        @jax.jit
        def fn(values, ids):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return call(ids)

        return lambda ids: fn([v.value for v in variables], ids)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(call, jit_compile=True)
    import torch

    def fn(ids):
        with torch.no_grad():
            return call(ids)

    return fn


def _measure(backend, model, call, ids, repeats):
    from keras import ops

    forward = _forward_fn(backend, model, call)
    logits = np.asarray(ops.convert_to_numpy(forward(ids)), dtype=np.float32)
    seconds = median_seconds(lambda: ops.convert_to_numpy(forward(ids)), repeats, warmup=1)
    return logits, seconds, _weight_bytes(model)


def run_worker(backend, repeats, quick):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    from keras import ops

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification
    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM

    rng = np.random.RandomState(0)
    keras.utils.set_random_seed(0)
    deberta = TFDebertaV2ForSequenceClassification(DebertaV2Config.from_dict(_deberta_config(quick)))
    deepseek = TFDeepseekV2ForCausalLM(DeepseekV2Config(**_deepseek_config(quick))).build_with_dummy_inputs()
    cases = {
        "deberta-v3-small classifier": (
            deberta, lambda ids: deberta({"input_ids": ids}).logits,
            rng.randint(5, deberta.config.vocab_size, size=(8, 128)).astype("int32")),
        "deepseek-v2 small MoE LM": (
            deepseek, lambda ids: deepseek({"input_ids": ids}).logits,
            rng.randint(5, deepseek.config.vocab_size, size=(2, 128)).astype("int32")),
    }
    results = {}
    for name, (model, call, ids) in cases.items():
        ids = ops.convert_to_tensor(ids)
        before, t_float, b_float = _measure(backend, model, call, ids, repeats)
        model.quantize("int8")
        after, t_int8, b_int8 = _measure(backend, model, call, ids, repeats)
        drift = float(np.abs(after - before).max())
        results[name] = {
            "agreement": float((after.argmax(-1) == before.argmax(-1)).mean()),
            "predictions": int(before[..., 0].size),
            "max_drift": drift, "relative_drift": drift / float(np.abs(before).max()),
            "bytes_float32": b_float, "bytes_int8": b_int8, "time_ratio": t_int8 / t_float,
            "ms_float32": 1000 * t_float, "ms_int8": 1000 * t_int8,
        }
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 layers per model (smoke run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.repeats, args.quick)
    extra = ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
    measured = run_backend_workers(os.path.abspath(__file__), args.backends, extra)
    print(f"\nint8 vs float32, random weights, median of {args.repeats} compiled forwards, {os.cpu_count()} CPU cores")
    print(f"{'model':<30}{'backend':<12}{'agree':>7}{'of':>6}{'max drift':>11}{'rel':>7}"
          f"{'MB fp32':>9}{'MB int8':>9}{'x smaller':>10}{'ms fp32':>9}{'ms int8':>9}{'time':>7}")
    for backend, models in measured.items():
        for name, r in models.items():
            print(f"{name:<30}{backend:<12}{r['agreement']:>7.3f}{r['predictions']:>6}{r['max_drift']:>11.4f}"
                  f"{r['relative_drift']:>7.3f}{r['bytes_float32'] / 2**20:>9.1f}{r['bytes_int8'] / 2**20:>9.1f}"
                  f"{r['bytes_float32'] / r['bytes_int8']:>10.2f}{r['ms_float32']:>9.1f}{r['ms_int8']:>9.1f}"
                  f"{r['time_ratio']:>6.2f}x")


if __name__ == "__main__":
    main()
