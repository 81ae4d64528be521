"""DeepSeek-V2 inference speed: ours on each Keras backend beside transformers (PyTorch), same run.

    python benchmarks/deepseek.py [--backends jax tensorflow torch] [--scale realistic|full|small]
                                  [--cached 256 1024 4096] [--repeats 3]

Random weights, a scaled DeepSeek-V2 architecture (realistic: hidden 1024, 3 layers (the first
dense), 16 heads with V2-Lite's head sizes, kv_lora_rank 512, rope 64, 64 routed experts top-6 + 2
shared; full: hidden 1024, 8 layers, 32 experts, kv_lora_rank 256; small: hidden 512, 4 layers).
Each Keras backend runs in its own subprocess; transformers runs in the parent. Reported:
  prefill tokens/s (batch 1 x prompt);
  decode tokens/s at batch 1 and 8 after N cached tokens, for each N of --cached: both sides
  start from a cache already holding N random latents (ours: the compiled decode loop of
  `generate` over a bucketed static cache; transformers: `generate` with a DynamicCache holding the
  same latent shapes, so it runs one uncached token, then decodes), and the rate is the
  difference of two runs of different lengths, so setup cancels out;
  one MoE layer (routed + shared experts, 512 tokens) against transformers' `DeepseekV2Moe`
  (its default experts implementation), and our dense all-experts einsum for scale;
  cache bytes per token; peak RSS of each process.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from common import median_seconds, run_backend_workers


def _config(scale):
    base = dict(vocab_size=32000, max_position_embeddings=8192, n_routed_experts=32, num_experts_per_tok=6,
                n_shared_experts=2, first_k_dense_replace=1, topk_method="greedy", q_lora_rank=None,
                qk_rope_head_dim=32, qk_nope_head_dim=64, v_head_dim=64, kv_lora_rank=256,
                rope_theta=10000.0, rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=2048,
                                                      beta_fast=32, beta_slow=1, mscale=0.707, mscale_all_dim=0.707),
                pad_token_id=0, eos_token_id=None, bos_token_id=1, tie_word_embeddings=False)
    if scale == "realistic":
        base.update(hidden_size=1024, num_hidden_layers=3, num_attention_heads=16, intermediate_size=2816,
                    moe_intermediate_size=512, n_routed_experts=64, kv_lora_rank=512, qk_rope_head_dim=64,
                    qk_nope_head_dim=128, v_head_dim=128)
    elif scale == "full":
        base.update(hidden_size=1024, num_hidden_layers=8, num_attention_heads=16, intermediate_size=2816,
                    moe_intermediate_size=512)
    else:
        base.update(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1408,
                    moe_intermediate_size=256)
    return base


def _peak_rss_gib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: KiB


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def _generate_rate(generate, batch, n_short, n_long, repeats):
    t_short = median_seconds(lambda: generate(n_short), repeats, warmup=1)
    t_long = median_seconds(lambda: generate(n_long), repeats, warmup=1)
    return batch * (n_long - n_short) / max(t_long - t_short, 1e-9)


def _threads(args):
    import torch

    torch.set_num_threads(args.threads)


def worker(backend, args):
    _threads(args)
    import keras

    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM
    from keras_deepseek.generation import cache_bucket, sampling_settings

    config = DeepseekV2Config(**_config(args.scale))
    model = TFDeepseekV2ForCausalLM(config)
    model.build_with_dummy_inputs()
    rng = np.random.RandomState(0)
    out = {}
    ids = rng.randint(5, config.vocab_size, size=(1, args.prompt)).astype("int32")

    def forward(tokens, mask, positions):
        h = model.model(tokens, attention_mask=mask, position_ids=positions)["last_hidden_state"]
        return model.logits_from_hidden(h[:, -1:])

    compiled = model._compiled(forward)
    pos = np.arange(args.prompt, dtype="int32")[None]
    mask = np.ones_like(ids)

    def run_prefill():
        keras.ops.convert_to_numpy(compiled(ids, mask, pos))

    if backend == "torch":
        import torch

        torch.set_grad_enabled(False)
    out["prefill"] = args.prompt / median_seconds(run_prefill, args.repeats, warmup=1)
    # Decoding after N cached tokens: the compiled decode loop of generate() over a static cache
    # holding N random latents (the values do not change the work).
    settings = sampling_settings(temperature=1.0, top_k=0, top_p=1.0, eos=(), pad=0)
    for cached in args.cached:
        for batch in (1, 8):
            total = cache_bucket(cached + 1 + args.new_tokens, config.max_position_embeddings)
            decode = model._decode_function(batch, total, do_sample=False)
            caches = tuple(keras.ops.convert_to_tensor(
                rng.randn(batch, total, config.cache_values_per_token).astype("float32"))
                for _ in range(config.num_hidden_layers))
            valid = np.zeros((batch, total), "int32")
            valid[:, :cached] = 1
            logits = rng.randn(batch, config.vocab_size).astype("float32")
            next_pos = np.full((batch,), cached, "int32")
            uniforms = np.zeros((total, batch), "float32")

            def gen(n):
                keras.ops.convert_to_numpy(decode(logits, caches, valid, next_pos, np.asarray(cached, "int32"),
                                                  np.asarray(n, "int32"), uniforms, settings)[0])

            out[f"decode_b{batch}_{cached}"] = _generate_rate(gen, batch, 1, 1 + args.new_tokens, args.repeats)
            out[f"bucket_{cached}"] = total
    # One MoE layer (router + routed + shared experts) on 512 tokens, and the routed experts alone
    # against every expert on every token.
    moe = next(l.mlp for l in model.model.decoder_layers if hasattr(l.mlp, "experts"))
    x = keras.ops.convert_to_tensor(rng.randn(args.moe_tokens, config.hidden_size).astype("float32"))
    layer = model._compiled(lambda x: moe(x[None]))
    out["moe_layer"] = args.moe_tokens / median_seconds(lambda: keras.ops.convert_to_numpy(layer(x)), args.repeats)
    _, idx, w = moe.gate(x)
    dense = model._compiled(lambda x, i, w: moe.experts.dense_reference(x, i, w))
    out["moe_dense"] = args.moe_tokens / median_seconds(lambda: keras.ops.convert_to_numpy(dense(x, idx, w)), args.repeats)
    rows = moe.experts.last_dispatch
    out["moe_rows"] = f"<= {rows['rows']} of {rows['dense_rows']} dense rows ({rows['assignments']} selected)"
    out["cache_bytes"] = model.cache_bytes_per_token()
    out["rss_gib"] = _peak_rss_gib()
    print(json.dumps(out))


def _random_cache(config, batch, cached, rng):
    """A transformers DynamicCache holding `cached` random latents per layer (the shapes
    DeepseekV2Attention stores: k_nope [B, 1, N, kv_lora_rank], k_pe [B, 1, N, rope])."""
    import torch
    import transformers

    cache = transformers.DynamicCache(config=config)
    for layer in range(config.num_hidden_layers):
        cache.update(torch.tensor(rng.randn(batch, 1, cached, config.kv_lora_rank).astype("float32")),
                     torch.tensor(rng.randn(batch, 1, cached, config.qk_rope_head_dim).astype("float32")), layer)
    return cache


def reference(args):
    import torch
    import transformers

    _threads(args)
    torch.set_grad_enabled(False)
    config = transformers.DeepseekV2Config(**_config(args.scale))
    model = transformers.DeepseekV2ForCausalLM(config).eval()
    rng = np.random.RandomState(0)
    ids = torch.tensor(rng.randint(5, config.vocab_size, size=(1, args.prompt)))
    out = {"prefill": args.prompt / median_seconds(lambda: model(ids, logits_to_keep=1), args.repeats, warmup=1)}
    for cached in args.cached:
        for batch in (1, 8):
            prompt = torch.tensor(rng.randint(5, config.vocab_size, size=(batch, cached + 1)))

            def gen(n):  # the cache is rebuilt each call (generate appends to it); setup cancels out
                model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                               past_key_values=_random_cache(config, batch, cached, rng), do_sample=False,
                               eos_token_id=None, pad_token_id=0)

            out[f"decode_b{batch}_{cached}"] = _generate_rate(gen, batch, 1, 1 + args.new_tokens, args.repeats)
    layers, width = config.num_hidden_layers, config.kv_lora_rank + config.qk_rope_head_dim
    out["cache_bytes_latent"] = layers * width * 4  # transformers 5.23 caches the latent too
    out["cache_bytes_per_head"] = layers * config.num_attention_heads * (
        config.qk_nope_head_dim + config.qk_rope_head_dim + config.v_head_dim) * 4
    moe = model.model.layers[config.first_k_dense_replace].mlp
    out["experts_implementation"] = config._experts_implementation
    x = torch.tensor(rng.randn(args.moe_tokens, config.hidden_size).astype("float32"))
    out["moe_layer"] = args.moe_tokens / median_seconds(lambda: moe(x[None]), args.repeats)
    out["rss_gib"] = _peak_rss_gib()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--scale", default="realistic", choices=["realistic", "full", "small"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--cached", type=int, nargs="+", default=[256],
                        help="cached tokens before decoding (one or more)")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--moe-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both sides)")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args)
    start = time.time()
    ref = reference(args)
    measured = run_backend_workers(os.path.abspath(__file__), args.backends, sys.argv[1:])
    print(f"\nDeepSeek-V2 scaled ({args.scale}) config, random weights; {_cpu_model()}, {os.cpu_count()} CPU "
          f"cores, torch threads {args.threads}; prompt {args.prompt}, {args.new_tokens} timed new tokens; "
          f"took {time.time() - start:.0f}s")
    rows = [("transformers (torch)", ref)] + [(f"ours ({b})", r) for b, r in measured.items()]
    print("\ndecode tokens/s (ratio to transformers) after N cached tokens")
    header = "".join(f"{f'b{b} @ {n}':>18}" for n in args.cached for b in (1, 8))
    print(f"{'implementation':<22}{header}")
    for label, r in rows:
        cells = "".join(f"{r[f'decode_b{b}_{n}']:>9.1f} ({r[f'decode_b{b}_{n}'] / ref[f'decode_b{b}_{n}']:>4.1f}x)"
                        for n in args.cached for b in (1, 8))
        print(f"{label:<22}{cells}")
    for label, r in rows[1:]:
        for b in (1, 8):
            per_token = [1 / r[f"decode_b{b}_{n}"] for n in args.cached]
            print(f"{label} b{b}: time per token at {args.cached[-1]} / at {args.cached[0]} cached = "
                  f"{per_token[-1] / per_token[0]:.2f}  (cache buckets {[r[f'bucket_{n}'] for n in args.cached]})")
    print(f"\n{'implementation':<22}{'prefill tok/s':>14}{'ratio':>7}{'MoE layer tok/s':>17}{'ratio':>7}{'peak RSS GiB':>14}")
    for label, r in rows:
        print(f"{label:<22}{r['prefill']:>14.0f}{r['prefill'] / ref['prefill']:>7.2f}{r['moe_layer']:>17.0f}"
              f"{r['moe_layer'] / ref['moe_layer']:>7.2f}{r['rss_gib']:>14.2f}")
    print(f"(transformers experts implementation: {ref['experts_implementation']})")
    for label, r in rows[1:]:
        print(f"{label}: routed experts {r['moe_rows']}; dense all-experts einsum {r['moe_dense']:.0f} tok/s")
    any_r = next(iter(measured.values()), {})
    print(f"cache bytes/token (fp32, all layers): ours {any_r.get('cache_bytes')}, transformers 5.23 "
          f"{ref['cache_bytes_latent']} (latent too), per-head K/V (Hub remote code) {ref['cache_bytes_per_head']} "
          f"({ref['cache_bytes_per_head'] / ref['cache_bytes_latent']:.1f}x)")


if __name__ == "__main__":
    main()
