"""int8 post-training quantization, measured: each model before and after `model.quantize("int8")`,
beside transformers' CPU int8 route (torch dynamic quantization of every nn.Linear) on the same
weights, in the same run.

    python benchmarks/quantization.py [--backends jax tensorflow torch] [--repeats 3] [--quick]

Models (every one is a Hugging Face checkpoint directory that transformers and we both load):
- "sst2-tiny": the built-in trained classifier (keras_deberta/assets/sst2-tiny), on all 872
  sentences of SST-2 dev (../shared/data) when present: real accuracy before and after.
- "deberta-v3-small": a DeBERTa-v3-small-sized classifier (hidden 768, 6 layers, 128k vocabulary,
  3 labels) with transformers' random initialisation; batch 8 x 128 random ids.
- "deepseek-v2 MoE": the small DeepSeek-V2 of benchmarks/deepseek.py (hidden 512, 4 layers, 32
  routed experts top-6 + 2 shared), random initialisation; 2 x 128 next-token predictions.
The random checkpoints are written once by transformers (`save_pretrained`) into a temporary
directory; each Keras backend loads them in its own subprocess.

Per model and implementation: argmax agreement with the same implementation in float32, accuracy
(SST-2 only), the largest logit change (absolute and relative to the largest float32 logit), the
share of parameters held in int8, megabytes of weights before/after (int8 tensors plus their float
scales, float norms/biases/router), and forward time int8 / float32 (median of `repeats`; ours
compiled as each backend does best, transformers eager under no_grad).

Keras' int8 Dense quantizes activations per row too (W8A8, int8 x int8 -> int32); our MoE experts
are weight-only int8, dequantised per gathered block. torch's dynamic quantization covers nn.Linear
only: transformers' fused expert tensors (DeepseekV2Experts) and the embeddings stay float32.
"""

import argparse
import csv
import json
import os
import sys
import tempfile

import numpy as np

from common import ROOT, median_seconds, run_backend_workers

SST2_DEV = os.path.join(ROOT, "..", "shared", "data", "sentiment", "SST-2", "dev.tsv")
SST2_TINY = os.path.join(ROOT, "keras_deberta", "assets", "sst2-tiny")


# --- the cases: checkpoints and inputs, shared by transformers and every backend ----------------
def _deepseek_config(quick):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from deepseek import _config

    config = _config("small")
    if quick:
        config.update(num_hidden_layers=2)
    return config


def prepare_cases(directory, quick):
    """Writes the random checkpoints and every input array; returns {name: case dict} (JSON-able)."""
    import torch
    import transformers

    from presets import known_config

    cases = {}
    if os.path.isfile(SST2_DEV):
        with open(SST2_DEV, encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        if quick:
            rows = rows[:128]
        tokenizer = transformers.AutoTokenizer.from_pretrained(SST2_TINY)
        batch = tokenizer([r["sentence"] for r in rows], padding=True, return_tensors="np")
        labels = np.array([int(r["label"]) for r in rows], "int32")
        np.savez(os.path.join(directory, "sst2.npz"), input_ids=batch["input_ids"].astype("int32"),
                 attention_mask=batch["attention_mask"].astype("int32"), labels=labels)
        cases["sst2-tiny, SST-2 dev"] = dict(kind="deberta", path=SST2_TINY,
                                             inputs=os.path.join(directory, "sst2.npz"), batch=64)
    else:
        print(f"note: {SST2_DEV} not found; the trained-classifier row is left out", file=sys.stderr)

    torch.manual_seed(0)
    rng = np.random.RandomState(0)
    deberta = known_config("microsoft/deberta-v3-small")
    deberta.update(num_labels=3, **({"num_hidden_layers": 2} if quick else {}))
    random_models = (  # name, kind, transformers classes, config, batch
        ("deberta-v3-small (random)", "deberta", (transformers.DebertaV2ForSequenceClassification,
                                                  transformers.DebertaV2Config), deberta, 8),
        ("deepseek-v2 MoE (random)", "deepseek", (transformers.DeepseekV2ForCausalLM,
                                                  transformers.DeepseekV2Config), _deepseek_config(quick), 2),
    )
    for name, kind, (model_class, config_class), config, batch in random_models:
        path = os.path.join(directory, kind)
        model_class(config_class(**config)).save_pretrained(path)
        ids = rng.randint(5, config["vocab_size"], size=(batch, 128)).astype("int32")
        inputs = os.path.join(directory, f"{kind}.npz")
        np.savez(inputs, input_ids=ids, attention_mask=np.ones_like(ids))
        cases[name] = dict(kind=kind, path=path, inputs=inputs, batch=batch)
    return cases


def _batches(inputs, size):
    """Every row, in batches of `size` (the last one may be shorter); timing uses the first."""
    n = len(inputs["input_ids"])
    return [(inputs["input_ids"][i:i + size], inputs["attention_mask"][i:i + size]) for i in range(0, n, size)]


def _summary(before, after, labels, int8_fraction, bytes_float, bytes_int8, t_float, t_int8):
    drift = float(np.abs(after - before).max())
    out = {"agreement": float((after.argmax(-1) == before.argmax(-1)).mean()), "predictions": int(before[..., 0].size),
           "max_drift": drift, "relative_drift": drift / float(np.abs(before).max()), "int8_fraction": int8_fraction,
           "mb_float32": bytes_float / 2**20, "mb_int8": bytes_int8 / 2**20, "time_ratio": t_int8 / t_float}
    if labels is not None:
        out["accuracy_float32"] = float((before.argmax(-1) == labels[:len(before)]).mean())
        out["accuracy_int8"] = float((after.argmax(-1) == labels[:len(after)]).mean())
    return out


# --- ours, one backend per subprocess ---------------------------------------------------------------
def _forward_fn(backend, model, call):
    """`call(ids, mask)` compiled as each backend does best: jax.jit over the variables (passed in,
    so a function built after quantization sees the int8 ones), tf.function with XLA, torch eager."""
    import keras

    if backend == "jax":
        import jax

        variables = list(model.variables)

        @jax.jit
        def fn(values, ids, mask):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return call(ids, mask)

        return lambda ids, mask: fn([v.value for v in variables], ids, mask)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(call, jit_compile=True)
    import torch

    def fn(ids, mask):
        with torch.no_grad():
            return call(ids, mask)

    return fn


def _keras_pass(backend, model, batches, repeats):
    """(logits of every batch, concatenated; median seconds of one batch; weight bytes; int8 share)."""
    from keras import ops

    forward = _forward_fn(backend, model, lambda ids, mask: model({"input_ids": ids, "attention_mask": mask}).logits)
    tensors = [(ops.convert_to_tensor(i), ops.convert_to_tensor(m)) for i, m in batches]
    logits = np.concatenate([np.asarray(ops.convert_to_numpy(forward(*t)), np.float32) for t in tensors])
    seconds = median_seconds(lambda: ops.convert_to_numpy(forward(*tensors[0])), repeats, warmup=1)
    sizes = [(int(np.prod(v.shape)), np.dtype(str(v.dtype))) for v in model.weights]
    total = sum(n for n, _ in sizes)
    int8 = sum(n for n, dtype in sizes if dtype == np.int8)
    return logits, seconds, sum(n * dtype.itemsize for n, dtype in sizes), int8 / total


def run_worker(backend, cases_file, repeats):
    os.environ["KERAS_BACKEND"] = backend
    from keras_deberta import TFDebertaV2ForSequenceClassification
    from keras_deepseek import TFDeepseekV2ForCausalLM

    with open(cases_file) as f:
        cases = json.load(f)
    results = {}
    for name, case in cases.items():
        cls = TFDeepseekV2ForCausalLM if case["kind"] == "deepseek" else TFDebertaV2ForSequenceClassification
        model = cls.from_pretrained(case["path"])
        inputs = dict(np.load(case["inputs"]))
        batches = _batches(inputs, case["batch"])
        before, t_float, b_float, _ = _keras_pass(backend, model, batches, repeats)
        model.quantize("int8")
        after, t_int8, b_int8, fraction = _keras_pass(backend, model, batches, repeats)
        results[name] = _summary(before, after, inputs.get("labels"), fraction, b_float, b_int8, t_float, t_int8)
    print(json.dumps(results))


# --- transformers, in the parent --------------------------------------------------------------------
def _torch_weights(model):
    """(bytes, int8 share) of every parameter and buffer, quantized Linear packed weights included."""
    import torch

    sizes = []
    for value in model.state_dict().values():
        for t in (value if isinstance(value, tuple) else (value,)):
            if isinstance(t, torch.Tensor) and t.dtype not in (torch.int64,):
                sizes.append((t.numel(), t.element_size(), t.dtype in (torch.qint8, torch.int8)))
    total = sum(n for n, _, _ in sizes)
    return sum(n * b for n, b, _ in sizes), sum(n for n, _, q in sizes if q) / total


def run_transformers(cases, repeats):
    import warnings

    import torch
    import transformers
    from torch.ao.quantization import quantize_dynamic

    results = {}
    for name, case in cases.items():
        cls = (transformers.DeepseekV2ForCausalLM if case["kind"] == "deepseek"
               else transformers.DebertaV2ForSequenceClassification)
        model = cls.from_pretrained(case["path"]).eval()
        inputs = dict(np.load(case["inputs"]))
        batches = [(torch.from_numpy(i).long(), torch.from_numpy(m).long()) for i, m in _batches(inputs, case["batch"])]

        def run(m):
            with torch.no_grad():
                logits = np.concatenate([m(input_ids=i, attention_mask=a).logits.float().numpy() for i, a in batches])
                seconds = median_seconds(lambda: m(input_ids=batches[0][0], attention_mask=batches[0][1]), repeats,
                                         warmup=1)
            return logits, seconds

        before, t_float = run(model)
        b_float, _ = _torch_weights(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.13 deprecates its quantized tensor types
            quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            after, t_int8 = run(quantized)
            b_int8, fraction = _torch_weights(quantized)
        results[name] = _summary(before, after, inputs.get("labels"), fraction, b_float, b_int8, t_float, t_int8)
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 layers per random model, 128 SST-2 sentences")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cases", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.cases, args.repeats)
    import torch
    import transformers

    with tempfile.TemporaryDirectory() as directory:
        cases = prepare_cases(directory, args.quick)
        cases_file = os.path.join(directory, "cases.json")
        with open(cases_file, "w") as f:
            json.dump(cases, f)
        reference = run_transformers(cases, args.repeats)
        measured = run_backend_workers(os.path.abspath(__file__), args.backends,
                                       ["--cases", cases_file, "--repeats", str(args.repeats)])
    rows = [("transformers+torch int8", reference)] + [(f"ours, {b}", r) for b, r in measured.items()]
    print(f"\nint8 vs float32 of the same implementation; transformers {transformers.__version__} with torch "
          f"{torch.__version__} dynamic int8 (nn.Linear); median of {args.repeats} forwards, {os.cpu_count()} CPU cores")
    print(f"{'model':<28}{'implementation':<26}{'agree':>7}{'of':>6}{'acc fp32':>9}{'acc int8':>9}{'max drift':>10}"
          f"{'rel':>7}{'int8 %':>7}{'MB fp32':>9}{'MB int8':>9}{'time':>7}")
    for name in cases:
        for label, results in rows:
            r = results.get(name)
            if r is None:
                continue
            acc = (f"{r['accuracy_float32']:>9.3f}{r['accuracy_int8']:>9.3f}" if "accuracy_int8" in r
                   else f"{'-':>9}{'-':>9}")
            print(f"{name:<28}{label:<26}{r['agreement']:>7.3f}{r['predictions']:>6}{acc}{r['max_drift']:>10.4f}"
                  f"{r['relative_drift']:>7.3f}{100 * r['int8_fraction']:>7.1f}{r['mb_float32']:>9.1f}"
                  f"{r['mb_int8']:>9.1f}{r['time_ratio']:>6.2f}x")
    print("time = forward int8 / float32 (below 1: int8 is faster). int8 % = share of parameters held in int8.")


if __name__ == "__main__":
    main()
