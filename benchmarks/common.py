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


def print_ratio_table(title, reference_label, reference, measured, label_of):
    """reference: {shape: tokens/s}; measured: {backend: {"impl|shape": tokens/s}}."""
    print(f"\n{title}")
    print(f"{'implementation':<28}{'batch x length':>16}{'tokens/s':>12}{'vs HF':>8}")
    for shape, tps in reference.items():
        print(f"{reference_label:<28}{shape:>16}{tps:>12.0f}{1.0:>8.2f}")
    for backend, results in measured.items():
        for key, tps in results.items():
            impl, shape = key.split("|")
            print(f"{label_of(impl, backend):<28}{shape:>16}{tps:>12.0f}{tps / reference[shape]:>8.2f}")
