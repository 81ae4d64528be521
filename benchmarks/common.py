"""Shared pieces of the benchmark scripts: timing, one subprocess per Keras backend, tables."""

import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def median_seconds(fn, repeats, warmup=2):
    """Median wall time of `fn()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_backend_workers(script, backends, extra_args):
    """Runs `script --worker BACKEND ...` per backend; each prints one JSON line of results."""
    measured = {}
    for backend in backends:
        cmd = [sys.executable, script, "--worker", backend, *extra_args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend})
        if proc.returncode != 0:
            print(f"{backend} worker failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        measured[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
    return measured


def bracketed_reference(run_reference, run_ours):
    """Times the reference before and after ours and keeps its faster run per shape.

    The reference runs in this process and ours in subprocesses afterwards, so a change of load in
    between would land in the ratio; bracketing makes "vs transformers" conservative for us (the
    reference gets its better window). Returns (reference, measured); prints both reference runs."""
    before = run_reference()
    measured = run_ours()
    after = run_reference()
    print("reference before / after ours: " + ", ".join(
        f"{k} {before[k]:.0f} / {after[k]:.0f}" for k in before if k != "ceiling"))
    return {k: max(before[k], after[k]) for k in before}, measured


def print_ratio_table(title, reference_label, reference, measured, label_of, flops_per_token=None):
    """reference: {shape: tokens/s}; measured: {backend: {"impl|shape": tokens/s}}.

    With `flops_per_token` ({shape: FLOPs}), each row also shows its share of the machine's fp32
    matmul ceiling: the best rate over `reference["ceiling"]` and every `measured[b]["ceiling"]`
    (each backend's own matmul, measured in the same run)."""
    reference = dict(reference)
    measured = {backend: dict(results) for backend, results in measured.items()}
    rates = [reference.pop("ceiling", 0.0)] + [r.pop("ceiling", 0.0) for r in measured.values()]
    ceiling = max(rates)
    share = flops_per_token is not None and ceiling > 0

    def row(label, shape, tps, ratio):
        line = f"{label:<28}{shape:>16}{tps:>12.0f}{ratio:>8.2f}"
        if share:
            line += f"{100 * tps * flops_per_token[shape] / ceiling:>11.0f}%"
        print(line)

    print(f"\n{title}")
    if share:
        print(f"fp32 matmul ceiling of this machine: {ceiling / 1e9:.0f} GFLOP/s (best backend, shapes "
              f"{', '.join('x'.join(map(str, s)) for s in CEILING_SHAPES)})")
    print(f"{'implementation':<28}{'batch x length':>16}{'tokens/s':>12}{'vs HF':>8}"
          + (f"{'of ceiling':>12}" if share else ""))
    for shape, tps in reference.items():
        row(reference_label, shape, tps, 1.0)
    for backend, results in measured.items():
        for key, tps in results.items():
            impl, shape = key.split("|")
            row(label_of(impl, backend), shape, tps, tps / reference[shape])


# --- the machine's matmul ceiling ----------------------------------------------------------------

CEILING_SHAPES = ((1024, 768, 3072), (2048, 2048, 2048))  # an encoder FFN's [tokens, d] x [d, ff]; square


def matmul_ceiling(backend):
    """The best fp32 matmul rate (FLOP/s) this backend reaches on this machine over
    CEILING_SHAPES: compiled (jax.jit, tf.function with XLA), torch eager. The ceiling of the
    machine is the best over every backend measured in the same run."""
    import numpy as np

    best = 0.0
    for m, k, n in CEILING_SHAPES:
        a = np.random.RandomState(0).standard_normal((m, k)).astype("float32")
        b = np.random.RandomState(1).standard_normal((k, n)).astype("float32")
        if backend == "jax":
            import jax

            a, b = jax.device_put(a), jax.device_put(b)
            mm = jax.jit(lambda x, y: x @ y)
            fn = lambda: mm(a, b).block_until_ready()  # noqa: E731
        elif backend == "tensorflow":
            import tensorflow as tf

            a, b = tf.constant(a), tf.constant(b)
            mm = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=True)
            fn = lambda: mm(a, b).numpy()  # noqa: E731
        else:
            import torch

            a, b = torch.from_numpy(a), torch.from_numpy(b)
            fn = lambda: torch.mm(a, b)  # noqa: E731
        best = max(best, 2.0 * m * k * n / median_seconds(fn, repeats=7, warmup=2))
    return best


def deberta_forward_flops(config, batch, length):
    """Matmul FLOPs of one DeBERTa-v2/v3 encoder forward (2 per multiply-add), counted from the
    model's formulas, not from any implementation's shortcuts or redundancies: per layer the Q, K,
    V, O projections and the FFN over every token; content scores and the attention-weighted sum;
    c2p and p2c as one head-width dot product per (query, key) pair, like the content score; and
    the relative table's projection through the key (c2p) and query (p2c) weights for the rows a
    sequence of this length can reach (min(2 x span, 2 x length - 1)), once per layer."""
    d, ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    span = config.get("position_buckets") or 0
    if span <= 0:
        span = config.get("max_relative_positions") or 0
    if span <= 0:
        span = config.get("max_position_embeddings", 512)
    rows = min(2 * span, 2 * length - 1)
    tokens = batch * length
    terms = len([t for t in ("c2p", "p2c") if t in str(config.get("pos_att_type", ""))])
    per_layer = (
        2 * tokens * d * d * 4  # Q, K, V, O
        + 2 * tokens * d * ff * 2  # FFN in and out
        + 2 * batch * length * length * d * (2 + terms)  # Q K^T, P V, and c2p / p2c per pair
        + 2 * rows * d * d * terms  # the reachable table rows through W_k (c2p) and W_q (p2c)
    )
    return layers * per_layer
