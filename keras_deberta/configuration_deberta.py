"""DebertaConfig (v1, `model_type` "deberta"): transformers' field names, defaults and format."""

from keras_deberta.configuration_deberta_v2 import _parse_pos_att_type
from presets.config import BaseConfig


class DebertaConfig(BaseConfig):
    """Configuration of DeBERTa v1 (microsoft/deberta-base, -large, ...).

    Fields and defaults are transformers' `DebertaConfig`, plus what its modeling reads with
    `getattr` (talking_head, embedding_size, pooler_hidden_size, cls_dropout). The v2-only
    architecture knobs (log buckets, shared keys, layer-normed relative table, nGiE convolution)
    do not exist in v1: they read as fixed properties, so a stray key in a config.json cannot
    change the math (transformers ignores such keys too; they are kept for round trips).
    """

    model_type = "deberta"

    def __init__(
        self,
        vocab_size=50265,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_vocab_size=0,
        initializer_range=0.02,
        layer_norm_eps=1e-7,
        relative_attention=False,
        max_relative_positions=-1,
        pad_token_id=0,
        position_biased_input=True,
        pos_att_type=None,
        pooler_dropout=0.0,
        pooler_hidden_act="gelu",
        legacy=True,
        talking_head=False,
        embedding_size=None,
        pooler_hidden_size=None,
        cls_dropout=None,
        **kwargs,
    ):
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k in _V2_ONLY}
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self._v2_only_keys = extra  # kept for the round trip, never read
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.relative_attention = relative_attention
        self.max_relative_positions = max_relative_positions
        self.position_biased_input = position_biased_input
        self.pos_att_type = _parse_pos_att_type(pos_att_type)
        self.pooler_dropout = pooler_dropout
        self.pooler_hidden_act = pooler_hidden_act
        self.legacy = legacy
        self.talking_head = talking_head
        self.embedding_size = embedding_size if embedding_size is not None else hidden_size
        self.pooler_hidden_size = pooler_hidden_size if pooler_hidden_size is not None else hidden_size
        self.cls_dropout = cls_dropout
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) is not a multiple of num_attention_heads ({num_attention_heads})"
            )

    # v1's fixed architecture, in the names the shared DeBERTa layers read.
    fused_qkv = True
    position_buckets = -1
    share_att_key = False
    conv_kernel_size = 0
    layer_norm_relative_table = False

    @property
    def attention_head_size(self):
        return self.hidden_size // self.num_attention_heads

    @property
    def resolved_max_relative_positions(self):
        if self.max_relative_positions < 1:
            return self.max_position_embeddings
        return self.max_relative_positions

    @property
    def relative_table_rows(self):
        return 2 * self.resolved_max_relative_positions

    def to_dict(self):
        out = super().to_dict()
        out.update(out.pop("_v2_only_keys", {}))
        if out.get("cls_dropout") is None:
            out.pop("cls_dropout", None)
        return out


_V2_ONLY = ("position_buckets", "share_att_key", "norm_rel_ebd", "conv_kernel_size", "conv_groups", "conv_act",
            "attention_head_size")
