"""Tiny DeepSeek-V2 reference checkpoints built with transformers 5.x (every parameter perturbed)."""

import numpy as np

import hf_reference

try:  # Tiny matmuls on a shared 2-core machine: one intra-op thread is ~6x faster than two.
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

_COMMON = dict(
    vocab_size=97, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_attention_heads=4,
    kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6, max_position_embeddings=64,
    rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
)
_YARN = dict(type="yarn", factor=4.0, original_max_position_embeddings=16, beta_fast=32, beta_slow=1,
             mscale=0.707, mscale_all_dim=0.707)

# V2-Lite-like: no q_lora, greedy routing, first layer dense, YaRN (Hub-style rope_theta + rope_scaling).
LITE = dict(_COMMON, num_hidden_layers=3, q_lora_rank=None, n_routed_experts=6, num_experts_per_tok=2,
            n_shared_experts=2, first_k_dense_replace=1, topk_method="greedy", n_group=1, topk_group=1,
            routed_scaling_factor=1.0, rope_theta=10000.0, rope_scaling=_YARN)
# V2-like: q_lora, group-limited greedy, routed_scaling_factor 16, every layer MoE, v5 rope_parameters.
V2 = dict(_COMMON, num_hidden_layers=2, q_lora_rank=12, n_routed_experts=8, num_experts_per_tok=3,
          n_shared_experts=1, first_k_dense_replace=0, topk_method="group_limited_greedy", n_group=4,
          topk_group=2, routed_scaling_factor=16.0,
          rope_parameters=dict(rope_type="yarn", rope_theta=5000.0, factor=8.0,
                               original_max_position_embeddings=8, beta_fast=32, beta_slow=1,
                               mscale=1.0, mscale_all_dim=0.8))
# Fields only the Hub's config.json has (transformers ignores them; we keep them).
HUB_ONLY = dict(moe_layer_freq=1, scoring_func="softmax", aux_loss_alpha=0.001, seq_aux=True, ep_size=1,
                auto_map={"AutoConfig": "configuration_deepseek.DeepseekV2Config",
                          "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"})
VARIANTS = {"lite": LITE, "v2": V2}


def hf_config(name, **overrides):
    import transformers

    return transformers.DeepseekV2Config(**{**VARIANTS[name], **overrides})


def build_hf_model(config, cls_name="DeepseekV2ForCausalLM", seed=0, scale=0.1):
    return hf_reference.build_hf_model(config, cls_name=cls_name, seed=seed, scale=scale)


def hf_forward(model, ids, mask=None, **kwargs):
    import torch

    args = {"input_ids": torch.tensor(np.asarray(ids), dtype=torch.long)}
    if mask is not None:
        args["attention_mask"] = torch.tensor(np.asarray(mask), dtype=torch.long)
    for k, v in list(kwargs.items()):
        if isinstance(v, np.ndarray):
            kwargs[k] = torch.tensor(v, dtype=torch.long)
    with torch.no_grad():
        return model(**args, **kwargs)


def batch(rng, vocab, length=12, rows=3):
    """Ids and a mask with a full row, a right-padded row and a left-padded row."""
    ids = rng.randint(3, vocab, size=(rows, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, length - 4:] = 0
    mask[2, :3] = 0
    ids[mask == 0] = 0
    return ids, mask
