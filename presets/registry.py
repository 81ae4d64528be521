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
}


def known_config(name):
    """The registry's config dict for a Hub id (a copy), or None."""
    config = KNOWN_CHECKPOINTS.get(name)
    return copy.deepcopy(config) if config is not None else None


def list_known(model_type=None):
    return sorted(n for n, c in KNOWN_CHECKPOINTS.items() if model_type in (None, c["model_type"]))
