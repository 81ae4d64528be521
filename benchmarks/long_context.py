"""Long-sequence forward of a deberta-v3-base-sized encoder: tokens/s and peak memory, ours on
each Keras backend beside transformers (PyTorch) and KerasHub's DebertaV3Backbone.

    python benchmarks/long_context.py [--lengths 1024 2048 4096 8192] [--impls ...] [--cap-gib 10]
                                      [--timeout 900] [--repeats 1] [--layers 12]

Random weights, the architecture of microsoft/deberta-v3-base (hidden 768, 12 layers, 12 heads,
256 log buckets over 512 positions, c2p + p2c), batch 1. Every (implementation, length) runs in a
fresh subprocess, so peak RSS is that case's alone (the forward's peak resident size,
weights included: the peak is reset after the model is built, where Linux allows); the parent
polls the child's resident size and kills it past --cap-gib (reported "over cap") or after
--timeout seconds, so one case cannot swamp a shared machine. tokens/s = L / median of --repeats
timed calls after one warm-up call (which compiles: jax.jit, tf.function with XLA; torch and
transformers run eagerly under no_grad). Ours uses its automatic blocked attention above 1024
tokens (blocks of 256 query rows).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

from common import ROOT, median_seconds

IMPLS = ["ours-jax", "ours-tensorflow", "ours-torch", "transformers", "keras_hub-jax"]


def _config(length, layers):
    from presets import known_config

    config = known_config("microsoft/deberta-v3-base")
    # No absolute positions in v3: the table size only bounds the input length checks.
    config.update(num_hidden_layers=layers, max_position_embeddings=max(512, length))
    return config


def _ids(length, vocab):
    return np.random.RandomState(0).randint(5, vocab, size=(1, length)).astype("int32")


def _keras_forward(impl, config, length):
    backend = impl.split("-")[1]
    from keras import ops

    if impl.startswith("ours"):
        from keras_deberta import DebertaV2Config, TFDebertaV2Model

        model = TFDebertaV2Model(DebertaV2Config.from_dict(config))
        model.build_with_dummy_inputs()
        make = lambda ids, mask: {"input_ids": ids, "attention_mask": mask}
    else:
        import keras_hub

        model = keras_hub.models.DebertaV3Backbone(
            vocabulary_size=config["vocab_size"], num_layers=config["num_hidden_layers"],
            num_heads=config["num_attention_heads"], hidden_dim=config["hidden_size"],
            intermediate_dim=config["intermediate_size"], max_sequence_length=length,
            bucket_size=config["position_buckets"], dropout=0.0,
        )
        make = lambda ids, mask: {"token_ids": ids, "padding_mask": mask}
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        fn = jax.jit(lambda tv, ntv, ids, mask: model.stateless_call(tv, ntv, make(ids, mask))[0])
        call = lambda ids, mask: fn(trainable, non_trainable, ids, mask)
    elif backend == "tensorflow":
        import tensorflow as tf

        call = tf.function(lambda ids, mask: model(make(ids, mask)), jit_compile=True)
    else:
        import torch

        def call(ids, mask):
            with torch.no_grad():
                return model(make(ids, mask))

    ids = _ids(length, config["vocab_size"])
    ids, mask = ops.convert_to_tensor(ids), ops.convert_to_tensor(np.ones_like(ids))

    def step():
        out = call(ids, mask)
        if isinstance(out, dict):
            out = out["last_hidden_state"] if "last_hidden_state" in out else next(iter(out.values()))
        ops.convert_to_numpy(out[:1, :1, :1])  # wait for the result

    return step


def _transformers_forward(config, length):
    import torch
    import transformers

    model = transformers.DebertaV2Model(transformers.DebertaV2Config(**config)).eval()
    ids = torch.tensor(_ids(length, config["vocab_size"]), dtype=torch.long)

    def step():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))

    return step


def run_worker(impl, length, repeats, layers):
    if impl != "transformers":
        os.environ["KERAS_BACKEND"] = impl.split("-")[1]
    config = _config(length, layers)
    step = _transformers_forward(config, length) if impl == "transformers" else _keras_forward(impl, config, length)
    _reset_peak_rss()  # building the model (random init) peaks higher on some backends than a forward
    start = time.perf_counter()
    step()  # warm-up: compilation, first-call allocations
    warmup = time.perf_counter() - start
    seconds = median_seconds(step, repeats, warmup=0)
    print(json.dumps({"tokens_per_s": length / seconds, "seconds": seconds, "warmup_s": warmup,
                      "peak_rss_gib": _peak_rss_bytes() / 2**30}))


def _reset_peak_rss():
    """Linux: writing 5 to clear_refs resets the process's peak resident size (VmHWM)."""
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # elsewhere the peak includes the build


def _peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def run_case(impl, length, args):
    """One subprocess; -> its JSON result, or {"failed": why}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--length", str(length),
           "--repeats", str(args.repeats), "--layers", str(args.layers)]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start, cap, peak_seen = time.time(), args.cap_gib * 2**30, 0
    while proc.poll() is None:
        peak_seen = max(peak_seen, _rss_bytes(proc.pid))
        if peak_seen > cap or time.time() - start > args.timeout:
            proc.kill()
            proc.communicate()
            if peak_seen > cap:
                return {"failed": f"over cap ({args.cap_gib} GiB)"}
            return {"failed": f"timeout ({args.timeout} s)"}
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["?"])[-1]
        return {"failed": f"exit {proc.returncode}: {last[:80]}"}
    return json.loads(out.strip().splitlines()[-1])


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", nargs="+", type=int, default=[1024, 2048, 4096, 8192])
    parser.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--cap-gib", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.length, args.repeats, args.layers)

    print(f"DeBERTa-v3-base-sized encoder ({args.layers} layers), batch 1, forward; {cpu_model()}; "
          f"cap {args.cap_gib} GiB RSS, timeout {args.timeout:.0f} s per case")
    print(f"{'implementation':<22}{'length':>8}{'tokens/s':>10}{'vs HF':>8}{'peak RSS GiB':>14}{'warm-up s':>11}")
    for length in args.lengths:
        reference = None
        for impl in sorted(args.impls, key=lambda i: i != "transformers"):  # transformers first: the ratios
            r = run_case(impl, length, args)
            if impl == "transformers" and "failed" not in r:
                reference = r["tokens_per_s"]
            if "failed" in r:
                print(f"{impl:<22}{length:>8}  {r['failed']}", flush=True)
                continue
            ratio = f"{r['tokens_per_s'] / reference:.2f}" if reference else "-"
            print(f"{impl:<22}{length:>8}{r['tokens_per_s']:>10.0f}{ratio:>8}{r['peak_rss_gib']:>14.2f}"
                  f"{r['warmup_s']:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
