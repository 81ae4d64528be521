"""DeepSeek-V2 inference speed: ours on each Keras backend beside transformers (PyTorch), same run.

    python benchmarks/deepseek.py [--backends jax tensorflow torch] [--scale full|small] [--repeats 3]

Random weights, a scaled DeepSeek-V2 architecture (full: hidden 1024, 8 layers, 16 heads, 32 routed
experts top-6 + 2 shared, kv_lora_rank 256; small: hidden 512, 4 layers, 8 heads, same routing).
Each Keras backend runs in its own subprocess; transformers runs in the parent. Reported:
  prefill tokens/s (batch 1 x prompt), decode tokens/s at batch 1 and 8 after `cached` prompt
  tokens (the difference of two generate() runs of different lengths, so prefill cancels out),
  cache bytes per token (ours: latent + rope key; per-head K/V as the Hub's remote code caches),
  and one MoE layer (sparse dispatch) against a dense all-experts einsum on the same tokens.
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
    if scale == "full":
        base.update(hidden_size=1024, num_hidden_layers=8, num_attention_heads=16, intermediate_size=2816,
                    moe_intermediate_size=512)
    else:
        base.update(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1408,
                    moe_intermediate_size=256)
    return base


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
    for batch in (1, 8):
        prompt = rng.randint(5, config.vocab_size, size=(batch, args.cached)).astype("int32")
        gen = lambda n: keras.ops.convert_to_numpy(model.generate(prompt, max_new_tokens=n, eos_token_id=None))  # noqa: E731
        out[f"decode_b{batch}"] = _generate_rate(gen, batch, 1, 1 + args.new_tokens, args.repeats)
    # MoE layer: sparse dispatch vs every expert on every token.
    moe = next(l.mlp for l in model.model.decoder_layers if hasattr(l.mlp, "experts"))
    x = keras.ops.convert_to_tensor(rng.randn(args.moe_tokens, config.hidden_size).astype("float32"))
    _, idx, w = moe.gate(x)
    sparse = model._compiled(lambda x, i, w: moe.experts(x, i, w))
    dense = model._compiled(lambda x, i, w: moe.experts.dense_reference(x, i, w))
    out["moe_sparse"] = args.moe_tokens / median_seconds(lambda: keras.ops.convert_to_numpy(sparse(x, idx, w)), args.repeats)
    out["moe_dense"] = args.moe_tokens / median_seconds(lambda: keras.ops.convert_to_numpy(dense(x, idx, w)), args.repeats)
    rows = moe.experts.last_dispatch
    out["moe_rows"] = f"{rows['rows']} of {rows['dense_rows']} dense rows ({rows['assignments']} selected)"
    out["cache_bytes"] = model.cache_bytes_per_token()
    print(json.dumps(out))


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
    for batch in (1, 8):
        prompt = torch.tensor(rng.randint(5, config.vocab_size, size=(batch, args.cached)))
        gen = lambda n: model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,  # noqa: E731
                                       min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
        out[f"decode_b{batch}"] = _generate_rate(gen, batch, 1, 1 + args.new_tokens, args.repeats)
    layers, width = config.num_hidden_layers, config.kv_lora_rank + config.qk_rope_head_dim
    out["cache_bytes_latent"] = layers * width * 4  # transformers 5.23 caches the latent too
    out["cache_bytes_per_head"] = layers * config.num_attention_heads * (
        config.qk_nope_head_dim + config.qk_rope_head_dim + config.v_head_dim) * 4
    moe = model.model.layers[1].mlp
    x = torch.tensor(rng.randn(args.moe_tokens, config.hidden_size).astype("float32"))
    out["moe"] = args.moe_tokens / median_seconds(lambda: moe(x[None]), args.repeats)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--scale", default="full", choices=["full", "small"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--cached", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--moe-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both sides)")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args)
    extra = [a for a in sys.argv[1:]]
    start = time.time()
    ref = reference(args)
    measured = run_backend_workers(os.path.abspath(__file__), args.backends, extra)
    print(f"\nDeepSeek-V2 scaled ({args.scale}) config, prompt {args.prompt}, {args.cached} cached tokens, "
          f"{args.new_tokens} new tokens, {os.cpu_count()} CPU cores, torch threads {args.threads}, took {time.time() - start:.0f}s")
    print(f"{'implementation':<22}{'prefill tok/s':>14}{'decode b1':>11}{'decode b8':>11}{'MoE tok/s':>11}")
    print(f"{'transformers (torch)':<22}{ref['prefill']:>14.0f}{ref['decode_b1']:>11.1f}{ref['decode_b8']:>11.1f}"
          f"{ref['moe']:>11.0f}")
    for backend, r in measured.items():
        print(f"{'ours (' + backend + ')':<22}{r['prefill']:>14.0f}{r['decode_b1']:>11.1f}{r['decode_b8']:>11.1f}"
              f"{r['moe_sparse']:>11.0f}   dense all-experts einsum: {r['moe_dense']:.0f} tok/s; {r['moe_rows']}")
    any_r = next(iter(measured.values()), {})
    print(f"cache bytes/token (fp32, all layers): ours {any_r.get('cache_bytes')}, transformers 5.23 "
          f"{ref['cache_bytes_latent']} (latent too), per-head K/V (Hub remote code) {ref['cache_bytes_per_head']} "
          f"({ref['cache_bytes_per_head'] / ref['cache_bytes_latent']:.1f}x)")


if __name__ == "__main__":
    main()
