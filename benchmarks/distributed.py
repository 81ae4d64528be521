"""The SPMD programs keras.distribution compiles for both families, on 1, 2, 4 and 8 simulated devices.

    python benchmarks/distributed.py [--devices 1 2 4 8] [--repeats 3] [--details]

JAX only. Each device count runs in its own process with
XLA_FLAGS=--xla_force_host_platform_device_count=N, so all "devices" share the same CPU cores: the
tokens/s measure the overhead of the partitioned program, not a speed-up. Layouts per device count:
`single` (1 device), `dp` (DataParallel(N)), `tp` (ModelParallel 1 x N with the family's
get_layout_map) and `dp2xtp` (ModelParallel 2 x N/2). Programs, random weights:

  deberta train: a DeBERTa-v3-style classifier (hidden 256, 4 layers, 8 heads, 256 log buckets),
      forward + backward + AdamW on batch 16 x 128;
  deepseek prefill / decode: DeepSeek-V2-style (hidden 256, 4 layers (1 dense, 3 MoE), 8 heads,
      q LoRA 96, kv LoRA 64, 16 routed experts top-4 + 2 shared), prefill 8 x 128 into a latent
      cache of 256, then one absorbed decoding step for 8 sequences.

For each, the collectives in the compiled (partitioned) HLO, per step: count and bytes of each op's
per-device result, next to the analytic minimum for that layout (see `minimum_collectives`).
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEBERTA = dict(vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1024,
               max_position_embeddings=512, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
               share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0,
               num_labels=2)
DEEPSEEK = dict(vocab_size=8000, hidden_size=256, intermediate_size=768, moe_intermediate_size=128,
                num_attention_heads=8, kv_lora_rank=64, q_lora_rank=96, qk_nope_head_dim=32, qk_rope_head_dim=16,
                v_head_dim=32, num_hidden_layers=4, first_k_dense_replace=1, n_routed_experts=16,
                num_experts_per_tok=4, n_shared_experts=2, topk_method="greedy", max_position_embeddings=1024,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
TRAIN_BATCH, TRAIN_LENGTH = 16, 128
PREFILL_BATCH, PREFILL_LENGTH, CACHE_LENGTH = 8, 128, 256
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "reduce-scatter", "collective-permute")
_BYTES = {"f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s8": 1, "u8": 1, "pred": 1, "f64": 8, "s64": 8,
          "u64": 8}


def hlo_collectives(hlo_text):
    """{op: (count, bytes)} of the collectives in compiled HLO text; bytes are each op's per-device
    result (tuples summed; async -start ops counted once, their -done halves skipped)."""
    found = collections.OrderedDict((op, [0, 0]) for op in COLLECTIVES)
    pattern = re.compile(r"=\s*(.+?)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\(")
    for line in hlo_text.splitlines():
        match = pattern.search(line)
        if not match:
            continue
        shapes = re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", match.group(1))
        size = sum(_BYTES.get(t, 4) * int(np.prod([int(x) for x in dims.split(",") if x] or [1]))
                   for t, dims in shapes)
        found[match.group(2)][0] += 1
        found[match.group(2)][1] += size
    return {op: tuple(v) for op, v in found.items() if v[0]}


def minimum_collectives(program, layout, devices, params):
    """Analytic minimum per step: {op: bytes} of per-device collective results (f32).

    Tensor parallelism (Megatron) needs, per layer, one all-reduce of the activations [b, s, d]
    after each row-parallel matmul (attention output, FFN / MoE output), and in training one more
    per column-parallel input (its gradient) in the backward pass; the width-split embedding
    lookup one all-gather of [b, s, d]; DeBERTa's shared relative table, used by every device's
    heads, one all-reduce of its gradient [rows, d]. Data parallelism needs one all-reduce of the
    gradients of the parameters each device holds. Inference under pure data parallelism needs
    nothing. b is the per-replica batch; routed experts add nothing beyond the MoE output's
    all-reduce when tokens are replicated over the expert axis.
    """
    dp = {"single": 1, "dp": devices, "tp": 1, "dp2xtp": 2}[layout]
    tp = devices // dp if layout != "dp" else 1
    out = collections.Counter()
    if program == "deberta train":
        cfg = DEBERTA
        act = TRAIN_BATCH // dp * TRAIN_LENGTH * cfg["hidden_size"] * 4
        if tp > 1:
            out["all-gather"] += act  # the width-split embedding output
            out["all-reduce"] += 4 * cfg["num_hidden_layers"] * act  # 2 forward + 2 backward per layer
            out["all-reduce"] += 2 * cfg["position_buckets"] * cfg["hidden_size"] * 4  # relative table gradient
        if dp > 1:
            out["all-reduce"] += 4 * (params["split"] / tp + params["replicated"])
    else:
        cfg = DEEPSEEK
        tokens = PREFILL_LENGTH if program == "deepseek prefill" else 1
        act = PREFILL_BATCH // dp * tokens * cfg["hidden_size"] * 4
        if tp > 1:
            out["all-gather"] += act
            out["all-reduce"] += 2 * cfg["num_hidden_layers"] * act
    return dict(out)


# --- worker: one device count ---------------------------------------------------------------------
def _layouts(devices):
    if devices == 1:
        return ["single"]
    return ["dp", "tp"] + (["dp2xtp"] if devices >= 4 else [])


def _distribution(layout, model_class, devices):
    import keras

    names = keras.distribution.list_devices()
    if layout == "single":
        return None
    if layout == "dp":
        return keras.distribution.DataParallel(devices=names)
    shape = (1, devices) if layout == "tp" else (2, devices // 2)
    mesh = keras.distribution.DeviceMesh(shape, ("batch", "model"), names)
    return keras.distribution.ModelParallel(layout_map=model_class.get_layout_map(mesh), batch_dim_name="batch")


def _batch_sharding(distribution, rank):
    import jax

    if distribution is None:
        return None
    mesh = distribution.device_mesh.backend_mesh
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(distribution.batch_dim_name,
                                                                       *([None] * (rank - 1))))


def _place(value, sharding):
    import jax

    return jax.device_put(value, sharding) if sharding is not None else jax.device_put(value)


def _split_and_replicated(model):
    split = sum(int(np.prod(v.shape)) for v in model.trainable_variables if not v.value.sharding.is_fully_replicated)
    total = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    return {"split": split, "replicated": total - split}


def _timed(fn, args, repeats):
    out = fn(*args)
    import jax

    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def deberta_train(layout, devices, repeats):
    import jax
    import keras

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    distribution = _distribution(layout, TFDebertaV2ForSequenceClassification, devices)
    scope = distribution.scope() if distribution else _null()
    with scope:
        keras.utils.set_random_seed(0)
        model = TFDebertaV2ForSequenceClassification(DebertaV2Config(**DEBERTA))
        optimizer = keras.optimizers.AdamW(1e-4)
        optimizer.build(model.trainable_variables)
        rng = np.random.RandomState(0)
        ids = _place(rng.randint(3, DEBERTA["vocab_size"], (TRAIN_BATCH, TRAIN_LENGTH)).astype("int32"),
                     _batch_sharding(distribution, 2))
        labels = _place(rng.randint(0, 2, (TRAIN_BATCH,)).astype("int32"), _batch_sharding(distribution, 1))

        def step(trainable, non_trainable, opt_vars, ids, labels):
            def loss_fn(trainable):
                out, non_trainable_out = model.stateless_call(trainable, non_trainable, {"input_ids": ids},
                                                              training=True)
                return model.hf_loss(out, {"labels": labels}), non_trainable_out

            (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return loss, trainable, non_trainable, opt_vars

        state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                 [v.value for v in optimizer.variables])
        shardings = jax.tree_util.tree_map(lambda a: a.sharding, state)
        compiled = jax.jit(step, out_shardings=(None, *shardings)).lower(*state, ids, labels).compile()
        seconds = _timed(compiled, (*state, ids, labels), repeats)
        return {"tokens_per_s": TRAIN_BATCH * TRAIN_LENGTH / seconds, "hlo": compiled.as_text(),
                "params": _split_and_replicated(model)}


def deepseek_inference(layout, devices, repeats):
    import jax
    import keras
    from keras import ops

    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM

    distribution = _distribution(layout, TFDeepseekV2ForCausalLM, devices)
    scope = distribution.scope() if distribution else _null()
    with scope:
        keras.utils.set_random_seed(0)
        config = DeepseekV2Config(**DEEPSEEK)
        model = TFDeepseekV2ForCausalLM(config).build_with_dummy_inputs()
        variables = model.variables
        B, P, T = PREFILL_BATCH, PREFILL_LENGTH, CACHE_LENGTH
        valid = np.zeros((B, T), "int32")
        valid[:, :P + 1] = 1

        def run(values, ids, caches, cache_index, key_valid, absorb):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                out = model.model(ids, caches=caches, cache_index=cache_index, key_valid=key_valid, absorb=absorb)
                return model.logits_from_hidden(out["last_hidden_state"][:, -1:]), out["caches"]

        def prefill(values, ids, key_valid):
            caches = [ops.zeros((B, T, config.cache_values_per_token)) for _ in range(config.num_hidden_layers)]
            return run(values, ids, caches, 0, key_valid, False)

        def decode(values, token, caches, key_valid):
            return run(values, token, caches, P, key_valid, True)

        values = [v.value for v in variables]
        batch2 = _batch_sharding(distribution, 2)
        ids = _place(np.random.RandomState(0).randint(3, DEEPSEEK["vocab_size"], (B, P)).astype("int32"), batch2)
        key_valid = _place(valid, batch2)
        prefill_c = jax.jit(prefill).lower(values, ids, key_valid).compile()
        _, caches = prefill_c(values, ids, key_valid)
        token = _place(np.ones((B, 1), "int32"), batch2)
        decode_c = jax.jit(decode).lower(values, token, caches, key_valid).compile()
        prefill_s = _timed(prefill_c, (values, ids, key_valid), repeats)
        decode_s = _timed(decode_c, (values, token, caches, key_valid), repeats)
        return ({"tokens_per_s": B * P / prefill_s, "hlo": prefill_c.as_text()},
                {"tokens_per_s": B / decode_s, "hlo": decode_c.as_text()})


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def worker(devices, repeats, details):
    rows = []
    for layout in _layouts(devices):
        train = deberta_train(layout, devices, repeats)
        prefill, decode = deepseek_inference(layout, devices, repeats)
        for program, result in (("deberta train", train), ("deepseek prefill", prefill), ("deepseek decode", decode)):
            row = {"devices": devices, "layout": layout, "program": program,
                   "tokens_per_s": result["tokens_per_s"], "collectives": hlo_collectives(result["hlo"]),
                   "minimum": minimum_collectives(program, layout, devices, train["params"])}
            if details:
                row["lines"] = [line.strip()[:240] for line in result["hlo"].splitlines()
                                if re.search(r"\s(" + "|".join(COLLECTIVES) + r")(-start)?\(", line)]
            rows.append(row)
            print(json.dumps(row), flush=True)


# --- parent: one process per device count, then the table ---------------------------------------------
def _format(collectives):
    if not collectives:
        return "-"
    return ", ".join(f"{op} {count}x {size / 2**20:.2f} MiB" if isinstance(count, int) else f"{op} {size / 2**20:.2f} MiB"
                     for op, (count, size) in collectives.items())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--details", action="store_true", help="print every collective line of the HLO")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.repeats, args.details)
        return
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; simulated devices share them (overhead, not speed-up)")
    header = f"{'program':<18}{'devices':>8}  {'layout':<8}{'tokens/s':>10}  collectives per step (measured | analytic minimum)"
    print(header)
    for devices in args.devices:
        env = {**os.environ, "KERAS_BACKEND": "jax",
               "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"}
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(devices), "--repeats", str(args.repeats)]
        if args.details:
            cmd.append("--details")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{devices} devices failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            minimum = {op: (None, size) for op, size in row["minimum"].items()}
            print(f"{row['program']:<18}{row['devices']:>8}  {row['layout']:<8}{row['tokens_per_s']:>10.0f}  "
                  f"{_format(row['collectives'])} | {_format(minimum)}")
            for hlo_line in row.get("lines", []):
                print("      " + hlo_line)


if __name__ == "__main__":
    main()
