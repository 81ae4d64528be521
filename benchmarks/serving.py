"""CPU serving speed of a DeBERTa-v3-base-sized classifier: ours per backend in float32,
`mixed_bfloat16` and int8 (`model.quantize("int8")`; TensorFlow both with XLA and as the plain
graph a SavedModel serves), our OpenVINO export in f32 and bf16 and our ONNX export in onnxruntime
in float32 and with its int8 dynamic quantization, beside transformers (eager PyTorch), in the
same run.

    python benchmarks/serving.py [--backends tensorflow jax torch] [--repeats 5] [--quick]
        [--runtimes openvino onnx]  (default: both)

Random weights (microsoft/deberta-v3-base's architecture, 2 labels). Each Keras backend runs in its
own subprocess; transformers and the runtimes run in the parent before and after them, and each
keeps its faster run (`common.bracketed_reference`). Figures are tokens per second (median of
`repeats` timed calls after warm-up) and the ratio to transformers. The CPU model and its matrix
instructions (AMX, AVX512_BF16, AVX512_VNNI) are printed first: bf16 and int8 only pay where the
CPU has them.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

from common import bracketed_reference, median_seconds, run_backend_workers
from encoder import _compiled, _inputs  # the same inputs and per-backend compilation as the encoder benchmark

SHAPES = [(8, 128), (2, 512)]  # (batch, length)
MATRIX_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f")


def cpu_description():
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    present = [flag for flag in MATRIX_FLAGS if flag in flags]
    return f"{model}, {os.cpu_count()} logical cores; matrix flags: {', '.join(present) or 'none'}"


def _config(quick):
    from presets import known_config

    config = dict(known_config("microsoft/deberta-v3-base"), num_labels=2)
    if quick:
        config.update(num_hidden_layers=2)
    return config


def run_worker(backend, repeats, quick):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    from keras import ops

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    config = DebertaV2Config.from_dict(_config(quick))
    results = {}

    def as_inputs(ids, mask):
        return {"input_ids": ids, "attention_mask": mask}

    for variant in ("float32", "mixed_bfloat16", "int8"):
        keras.utils.set_random_seed(0)
        model = TFDebertaV2ForSequenceClassification(config, dtype="mixed_bfloat16" if variant == "mixed_bfloat16" else None)
        if variant == "int8":
            model.quantize("int8")
        compilations = {"": _compiled(backend, model, as_inputs)}
        if backend == "tensorflow":
            # A TF SavedModel serves the graph without XLA (oneDNN's kernels): timed beside XLA.
            import tensorflow as tf

            compilations[" graph"] = tf.function(lambda ids, mask, m=model: m(as_inputs(ids, mask)), jit_compile=False)
        for suffix, fn in compilations.items():
            for batch, length in SHAPES:
                ids, mask = _inputs(batch, length, config.vocab_size)
                if backend != "jax":
                    ids, mask = ops.convert_to_tensor(ids), ops.convert_to_tensor(mask)
                results[f"{variant}{suffix}|{batch}x{length}"] = batch * length / median_seconds(
                    lambda: ops.convert_to_numpy(fn(ids, mask)["logits"]), repeats)
        del model, fn, compilations
    print(json.dumps(results))


def run_transformers(repeats, quick):
    import torch
    import transformers

    model = transformers.DebertaV2ForSequenceClassification(transformers.DebertaV2Config(**_config(quick))).eval()
    results = {}
    for batch, length in SHAPES:
        ids, mask = (torch.tensor(a, dtype=torch.long) for a in _inputs(batch, length, model.config.vocab_size))

        def step():
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)

        results[f"{batch}x{length}"] = batch * length / median_seconds(step, repeats)
    return results


def export_runtimes(directory, quick, formats):
    """Our exports of the same architecture and weights (one TensorFlow subprocess): {format: dir}."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    targets = {fmt: os.path.join(directory, fmt) for fmt in formats}
    code = ("import keras, sys; sys.path[:0] = [%r, %r]; from serving import _config; "
            "from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification; "
            "keras.utils.set_random_seed(0); "
            "m = TFDebertaV2ForSequenceClassification(DebertaV2Config.from_dict(_config(%r))); "
            "[m.export(path, format=fmt) for fmt, path in %r.items()]") % (here, os.path.dirname(here), quick, targets)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return targets


def runtime_sessions(targets, scratch):
    """{label: callable(feed)}: OpenVINO in float32 and bf16; onnxruntime in float32 and on its
    int8 dynamic quantization (weights int8 per channel, activations quantized per call)."""
    from presets.runtimes import ExportedModel

    sessions = {}
    if "openvino" in targets:
        for precision in ("f32", "bf16"):
            sessions[f"OpenVINO {precision}"] = ExportedModel(targets["openvino"], precision=precision)
    if "onnx" in targets:
        import shutil

        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = os.path.join(scratch, "onnx-int8")
        shutil.copytree(targets["onnx"], int8)
        model = os.path.join(int8, "model.onnx")
        quantize_dynamic(os.path.join(targets["onnx"], "model.onnx"), model, weight_type=QuantType.QInt8,
                         per_channel=True)
        sessions["onnxruntime f32"] = ExportedModel(targets["onnx"])
        sessions["onnxruntime int8 dynamic"] = ExportedModel(int8)
    return sessions


def run_runtimes(sessions, repeats, quick):
    vocab = _config(quick)["vocab_size"]
    results = {}
    for label, session in sessions.items():
        for batch, length in SHAPES:
            ids, mask = _inputs(batch, length, vocab)
            results[f"{label}|{batch}x{length}"] = batch * length / median_seconds(
                lambda: session(input_ids=ids, attention_mask=mask), repeats)
    return results


def torch_int8_kernels(repeats):
    """Why int8 is slow on PyTorch CPU: Keras 3.15's `ops.matmul` of two int8 tensors takes
    `torch._int_mm` (an int8 GEMM) only on CUDA and otherwise multiplies in int32 with
    `torch.matmul`, which has no BLAS kernel. Times that path beside `torch._int_mm`, float32
    and bfloat16 on one FFN-sized product (1024 tokens x 768 -> 3072). Returns {label: seconds}."""
    import torch
    from keras.src.backend.torch import numpy as keras_torch_numpy  # the backend op int8 Dense calls

    m, k, n = 1024, 768, 3072
    a = torch.randint(-127, 128, (m, k), dtype=torch.int8)
    b = torch.randint(-127, 128, (k, n), dtype=torch.int8)
    af, bf = a.float(), b.float()
    ah, bh = af.bfloat16(), bf.bfloat16()
    return {"Keras ops.matmul(int8, int8) on CPU": median_seconds(lambda: keras_torch_numpy.matmul(a, b), repeats),
            "torch._int_mm (int8 GEMM)": median_seconds(lambda: torch._int_mm(a, b), repeats),
            "torch.matmul float32": median_seconds(lambda: af @ bf, repeats),
            "torch.matmul bfloat16": median_seconds(lambda: ah @ bh, repeats)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 layers instead of 12 (smoke run)")
    parser.add_argument("--runtimes", nargs="*", default=["openvino", "onnx"], choices=["openvino", "onnx"],
                        help="exported runtimes to time (default both)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.repeats, args.quick)

    print(cpu_description())
    with tempfile.TemporaryDirectory() as scratch:
        sessions = runtime_sessions(export_runtimes(scratch, args.quick, args.runtimes), scratch)

        def references():
            return {**{f"transformers|{k}": v for k, v in run_transformers(args.repeats, args.quick).items()},
                    **run_runtimes(sessions, args.repeats, args.quick)}

        extra = ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
        reference, measured = bracketed_reference(
            references, lambda: run_backend_workers(__file__, args.backends, extra))
    print(f"\nDeBERTa-v3-base-sized classifier{' (2 layers)' if args.quick else ''}, tokens/s (median of "
          f"{args.repeats}); ratio to transformers (eager PyTorch, float32) in the same run")
    print(f"{'implementation':<40}{'batch x length':>16}{'tokens/s':>11}{'vs HF':>8}")
    rows = [(name.split("|")[0], name.split("|")[1], tps) for name, tps in reference.items()]
    rows += [(f"ours {backend} {name.split('|')[0]}", name.split("|")[1], tps)
             for backend, results in measured.items() for name, tps in results.items()]
    for shape in (f"{b}x{l}" for b, l in SHAPES):
        hf = reference[f"transformers|{shape}"]
        for label, row_shape, tps in rows:
            if row_shape == shape:
                print(f"{label:<40}{shape:>16}{tps:>11.0f}{tps / hf:>8.2f}")
    if "torch" in args.backends:
        print("\nPyTorch CPU matmul kernels, 1024 x 768 -> 3072 (median ms):")
        for label, seconds in torch_int8_kernels(args.repeats).items():
            print(f"  {label:<40}{seconds * 1e3:>9.1f}")


if __name__ == "__main__":
    main()
