"""DebertaV2Config: transformers' field names, defaults and config.json format."""

from presets.config import BaseConfig


def _parse_pos_att_type(value):
    if value is None:
        return None
    if isinstance(value, str):
        return [x.strip() for x in value.lower().split("|") if x.strip()]
    return [str(x).strip().lower() for x in value]


class DebertaV2Config(BaseConfig):
    """Configuration of DeBERTa-v2 and v3 (`model_type` "deberta-v2").

    Fields and defaults are transformers' `DebertaV2Config`. The fields transformers reads with
    `getattr` (position_buckets, share_att_key, norm_rel_ebd, conv_*, attention_head_size,
    embedding_size, cls_dropout) are explicit here, with the defaults transformers falls back to.
    `pos_att_type` may be a list or a "p2c|c2p" string; it is stored as a list.
    """

    model_type = "deberta-v2"

    def __init__(
        self,
        vocab_size=128100,
        hidden_size=1536,
        num_hidden_layers=24,
        num_attention_heads=24,
        intermediate_size=6144,
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
        position_buckets=-1,
        share_att_key=False,
        norm_rel_ebd="none",
        conv_kernel_size=0,
        conv_groups=1,
        conv_act="tanh",
        attention_head_size=None,
        embedding_size=None,
        pooler_hidden_size=None,
        cls_dropout=None,
        **kwargs,
    ):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
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
        self.position_buckets = position_buckets
        self.share_att_key = share_att_key
        self.norm_rel_ebd = norm_rel_ebd
        self.conv_kernel_size = conv_kernel_size
        self.conv_groups = conv_groups
        self.conv_act = conv_act
        self.attention_head_size = (
            attention_head_size if attention_head_size is not None else hidden_size // num_attention_heads
        )
        self.embedding_size = embedding_size if embedding_size is not None else hidden_size
        self.pooler_hidden_size = pooler_hidden_size if pooler_hidden_size is not None else hidden_size
        self.cls_dropout = cls_dropout
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) is not a multiple of num_attention_heads ({num_attention_heads})"
            )

    # --- values the model derives, in one place ------------------------------------------------
    fused_qkv = False  # v2/v3 have separate query/key/value projections (v1 fuses them)
    talking_head = False

    @property
    def resolved_max_relative_positions(self):
        """The relative span: max_relative_positions, or max_position_embeddings when < 1."""
        if self.max_relative_positions < 1:
            return self.max_position_embeddings
        return self.max_relative_positions

    @property
    def relative_table_rows(self):
        """Rows of `encoder.rel_embeddings`: 2 * position_buckets, else 2 * the relative span."""
        if self.position_buckets > 0:
            return 2 * self.position_buckets
        return 2 * self.resolved_max_relative_positions

    @property
    def layer_norm_relative_table(self):
        return "layer_norm" in [x.strip() for x in str(self.norm_rel_ebd).lower().split("|")]

    def to_dict(self):
        out = super().to_dict()
        if out.get("cls_dropout") is None:
            out.pop("cls_dropout", None)
        return out
