"""How DeBERTa (v1 and v2/v3) variables are split over a device mesh (keras.distribution).

Megatron-style tensor parallelism on the MODEL axis, per encoder block:

    hidden [B, L, d] (replicated over MODEL)
      -> query/key/value (v1: in_proj + q_bias / v_bias) split on the output axis: each device
         computes whole heads [B, H/n, L, D], the relative-position terms of those heads included
         (the shared relative table is replicated, projected by the device's columns of the same
         projections, or of the separate pos_key_proj / pos_query_proj, split alike)
      -> attention_output split on the input axis: partial sums, one all-reduce -> [B, L, d]
      -> intermediate split on the output axis -> [B, L, f/n] -> output split on the input axis,
         one all-reduce -> [B, L, d]

Embedding tables are split on the width (every device looks up its slice of each row; v3's vocab
of 128,100 is not divisible by 8, its width is); embed_proj (embedding_size != hidden) on its
input axis to match. Norms, the relative table, talking-head mixers (they mix heads across
devices), the nGiE conv (once per model, beside layer 0) and the small task classifiers are
replicated; the pooler and the MLM transform are split on their output axis.

The batch axis is the DATA role: the embedding output is laid out [batch, None, None], so a model
called directly (not through `fit`, which distributes its batches) still splits its batch.
"""

from presets.layout import (
    COLUMNS, DATA, MODEL, REPLICATED, ROWS, SEED_GENERATOR_RULES, LayoutRule, dense_rules, embedding_rules,
    replicated_rules,
)

HEADS = "attention heads"
_LAYER = r"deberta/layer_\d+"
_NORM = ("gamma", "beta")

LAYOUT_RULES = tuple(
    embedding_rules(r"deberta/embeddings/(word|position|token_type)_embeddings", COLUMNS)
    + dense_rules(r"deberta/embeddings/embed_proj", ROWS)
    + replicated_rules(r"deberta/embeddings/LayerNorm", _NORM)
    + [LayoutRule(r"deberta/embeddings/output", (DATA, None, None))]
    + [LayoutRule(r"deberta/rel_embeddings/embeddings", (None, None))]
    + replicated_rules(r"deberta/rel_embeddings/LayerNorm", _NORM)
    + [LayoutRule(r"deberta/conv/conv/kernel", (None, None, None)), LayoutRule(r"deberta/conv/conv/bias", (None,))]
    + replicated_rules(r"deberta/conv/LayerNorm", _NORM)
    # attention: whole heads per device
    + dense_rules(rf"{_LAYER}/self/(query_proj|key_proj|value_proj|pos_key_proj|pos_query_proj|in_proj)",
                  COLUMNS, HEADS)
    + [LayoutRule(rf"{_LAYER}/self/(q_bias|v_bias)", (MODEL,), (HEADS,))]
    + dense_rules(rf"{_LAYER}/self/(head_logits_proj|head_weights_proj)", REPLICATED)
    + dense_rules(rf"{_LAYER}/attention_output", ROWS, HEADS)
    + dense_rules(rf"{_LAYER}/intermediate", COLUMNS)
    + dense_rules(rf"{_LAYER}/output", ROWS)
    + replicated_rules(rf"{_LAYER}/(attention_LayerNorm|output_LayerNorm)", _NORM)
    # heads
    + dense_rules(r"pooler/dense", COLUMNS)
    + dense_rules(r"(classifier|qa_outputs)", REPLICATED)
    + dense_rules(r"(cls|lm_predictions)/dense", COLUMNS)
    + replicated_rules(r"(cls|lm_predictions)/LayerNorm", _NORM)
    + [LayoutRule(r"(cls|lm_predictions)/bias", (None,))]
    + SEED_GENERATOR_RULES
)


def layout_counts(config):
    """What split dimensions count, for the divisibility checks: {count name: value}."""
    return {HEADS: config.num_attention_heads}
