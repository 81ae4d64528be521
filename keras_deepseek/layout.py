"""How DeepSeek-V2 variables are split over a device mesh (keras.distribution).

Multi-head Latent Attention, tensor-parallel over whole heads on the MODEL axis:

    hidden [B, S, d] (replicated over MODEL)
      -> q_proj, or q_a_proj -> RMSNorm -> q_b_proj: the low-rank q_a_proj / its norm are
         replicated (the norm runs over the whole latent), q_proj / q_b_proj split on the output
         axis -> q [B, S, H/n, dn + dr]
      -> kv_a_proj_with_mqa and kv_a_layernorm replicated: every device holds the whole latent
         [B, S, r + dr], which is all the decoding cache stores (split along the batch, DATA)
      -> kv_b_proj split on the output axis: k_nope, v of the device's heads (the absorbed decode
         reads the same columns as W_UK / W_UV)
      -> o_proj split on the input axis: partial sums, one all-reduce -> [B, S, d]

DeepSeekMoE: the routed experts' stacked weights (gate/up [E, d, f], down [E, f, d]) are split on
their expert axis over the EXPERT role (default: the model axis), each device holding E / n
experts; the float32 router is replicated (every device routes every token); shared experts and
dense MLPs are tensor-parallel like an FFN (gate/up on the output axis, down on the input axis).

The embedding table is split on the width; lm_head on the vocabulary (logits [B, S, V/n], no
all-reduce of vocabulary-sized partial sums); the classifier `score` is replicated. The embedding
output is laid out [DATA, None, None], so direct calls and `generate` split their batch (and with
it the latent cache) over the batch axis.
"""

from presets.layout import (
    COLUMNS, DATA, EXPERT, REPLICATED, ROWS, SEED_GENERATOR_RULES, LayoutRule, dense_rules, embedding_rules,
    replicated_rules,
)

HEADS = "attention heads"
EXPERTS = "routed experts"
_LAYER = r"model/layers_\d+"

LAYOUT_RULES = tuple(
    embedding_rules(r"model/embed_tokens", COLUMNS)
    + [LayoutRule(r"model/embed_tokens/output", (DATA, None, None))]
    # Multi-head Latent Attention
    + dense_rules(rf"{_LAYER}/self_attn/(q_proj|q_b_proj|kv_b_proj)", COLUMNS, HEADS)
    + dense_rules(rf"{_LAYER}/self_attn/(q_a_proj|kv_a_proj_with_mqa)", REPLICATED)
    + replicated_rules(rf"{_LAYER}/self_attn/(q_a_layernorm|kv_a_layernorm)", ("weight",))
    + dense_rules(rf"{_LAYER}/self_attn/o_proj", ROWS, HEADS)
    # dense MLP and shared experts: an FFN
    + dense_rules(rf"{_LAYER}/mlp/(shared_experts/)?(gate_proj|up_proj)", COLUMNS)
    + dense_rules(rf"{_LAYER}/mlp/(shared_experts/)?down_proj", ROWS)
    # routed experts (and their int8 / int4 scales [E, 1, out]) on the expert axis; the router replicated
    + [LayoutRule(rf"{_LAYER}/mlp/experts/(gate|up|down)_kernel(_scale)?", (EXPERT, None, None), (EXPERTS,))]
    + [LayoutRule(rf"{_LAYER}/mlp/gate/kernel", (None, None))]
    + replicated_rules(rf"{_LAYER}/(input_layernorm|post_attention_layernorm)", ("weight",))
    + replicated_rules(r"model/norm", ("weight",))
    # heads
    + dense_rules(r"lm_head", COLUMNS)
    + dense_rules(r"score", REPLICATED)
    + SEED_GENERATOR_RULES
)


def layout_counts(config):
    """What split dimensions count, for the divisibility checks: {count name: value}."""
    return {HEADS: config.num_attention_heads, EXPERTS: config.n_routed_experts}
