"""Known Hub checkpoints and their configs, so an architecture can be built with no download.

The configs are the public `config.json` files of these repositories, reduced to the fields that
describe the architecture (defaults of the config classes fill the rest).
"""

import copy

_V3_COMMON = dict(
    model_type="deberta-v2", vocab_size=128100, max_position_embeddings=512, relative_attention=True,
    position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
    layer_norm_eps=1e-7, max_relative_positions=-1, position_biased_input=False, type_vocab_size=0,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    initializer_range=0.02, pad_token_id=0, pooler_dropout=0, pooler_hidden_act="gelu",
)
_V2_COMMON = dict(
    _V3_COMMON, conv_kernel_size=3, conv_act="gelu", attention_head_size=64, hidden_size=1536,
    num_attention_heads=24, intermediate_size=6144, pooler_hidden_size=1536,
)
_V1_COMMON = dict(
    model_type="deberta", vocab_size=50265, max_position_embeddings=512, relative_attention=True,
    max_relative_positions=-1, pos_att_type=["c2p", "p2c"], position_biased_input=False,
    type_vocab_size=0, layer_norm_eps=1e-7, hidden_act="gelu", hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, initializer_range=0.02, pad_token_id=0, pooler_dropout=0,
    pooler_hidden_act="gelu",
)
_MNLI_LABELS = dict(
    id2label={"0": "CONTRADICTION", "1": "NEUTRAL", "2": "ENTAILMENT"},
    label2id={"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2},
)


# DeepSeek-V2 (model_type "deepseek_v2"): the Hub's config.json form (rope_theta + rope_scaling).
_DEEPSEEK_YARN = dict(type="yarn", factor=40, original_max_position_embeddings=4096, beta_fast=32,
                      beta_slow=1, mscale=0.707, mscale_all_dim=0.707)
_DEEPSEEK_V2_COMMON = dict(
    model_type="deepseek_v2", vocab_size=102400, max_position_embeddings=163840, hidden_act="silu",
    kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_shared_experts=2,
    num_experts_per_tok=6, first_k_dense_replace=1, moe_layer_freq=1, norm_topk_prob=False,
    scoring_func="softmax", seq_aux=True, ep_size=1, rms_norm_eps=1e-6, rope_theta=10000,
    rope_scaling=_DEEPSEEK_YARN, attention_bias=False, attention_dropout=0.0, initializer_range=0.02,
    bos_token_id=100000, eos_token_id=100001, tie_word_embeddings=False, pretraining_tp=1,
    torch_dtype="bfloat16", architectures=["DeepseekV2ForCausalLM"],
)
_DEEPSEEK_V2_LITE = dict(
    _DEEPSEEK_V2_COMMON, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
    num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16, n_routed_experts=64,
    q_lora_rank=None, topk_method="greedy", n_group=1, topk_group=1, routed_scaling_factor=1.0,
    aux_loss_alpha=0.001,
)
_DEEPSEEK_V2 = dict(
    _DEEPSEEK_V2_COMMON, hidden_size=5120, intermediate_size=12288, moe_intermediate_size=1536,
    num_hidden_layers=60, num_attention_heads=128, num_key_value_heads=128, n_routed_experts=160,
    q_lora_rank=1536, topk_method="group_limited_greedy", n_group=8, topk_group=3,
    routed_scaling_factor=16.0, aux_loss_alpha=0.003,
)


def _size(hidden, layers, heads, intermediate):
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=intermediate, pooler_hidden_size=hidden)


KNOWN_CHECKPOINTS = {
    "microsoft/deberta-v3-xsmall": dict(_V3_COMMON, **_size(384, 12, 6, 1536)),
    "microsoft/deberta-v3-small": dict(_V3_COMMON, **_size(768, 6, 12, 3072)),
    "microsoft/deberta-v3-base": dict(_V3_COMMON, **_size(768, 12, 12, 3072)),
    "microsoft/deberta-v3-large": dict(_V3_COMMON, **_size(1024, 24, 16, 4096)),
    "microsoft/mdeberta-v3-base": dict(_V3_COMMON, vocab_size=251000, **_size(768, 12, 12, 3072)),
    "microsoft/deberta-v2-xlarge": dict(_V2_COMMON, num_hidden_layers=24),
    "microsoft/deberta-v2-xxlarge": dict(_V2_COMMON, num_hidden_layers=48),
    "microsoft/deberta-v2-xlarge-mnli": dict(_V2_COMMON, num_hidden_layers=24, **_MNLI_LABELS),
    "microsoft/deberta-v2-xxlarge-mnli": dict(_V2_COMMON, num_hidden_layers=48, **_MNLI_LABELS),
    "microsoft/deberta-base": dict(_V1_COMMON, **_size(768, 12, 12, 3072)),
    "microsoft/deberta-large": dict(_V1_COMMON, **_size(1024, 24, 16, 4096)),
    "microsoft/deberta-base-mnli": dict(_V1_COMMON, **_size(768, 12, 12, 3072), **_MNLI_LABELS),
    "microsoft/deberta-large-mnli": dict(_V1_COMMON, **_size(1024, 24, 16, 4096), **_MNLI_LABELS),
    "deepseek-ai/DeepSeek-V2-Lite": dict(_DEEPSEEK_V2_LITE),
    "deepseek-ai/DeepSeek-V2-Lite-Chat": dict(_DEEPSEEK_V2_LITE),
    "deepseek-ai/DeepSeek-V2": dict(_DEEPSEEK_V2),
    "deepseek-ai/DeepSeek-V2-Chat": dict(_DEEPSEEK_V2),
}


def known_config(name):
    """The registry's config dict for a Hub id (a copy), or None."""
    config = KNOWN_CHECKPOINTS.get(name)
    return copy.deepcopy(config) if config is not None else None


def list_known(model_type=None):
    return sorted(n for n, c in KNOWN_CHECKPOINTS.items() if model_type in (None, c["model_type"]))
