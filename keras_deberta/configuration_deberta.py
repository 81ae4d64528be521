"""Configurations of the DeBERTa family: transformers' field names, defaults and config.json.

`DebertaConfig` (v1, model_type "deberta") and `DebertaV2Config` (v2/v3, "deberta-v2") share the
fields below; each lists its own defaults. Fields transformers reads with `getattr` are explicit
here, with the defaults transformers falls back to. `pos_att_type` may be a list or a "p2c|c2p"
string; it is stored as a list.

One field is ours, not transformers': `attention_block_size` (None: automatic, blocked attention
above 1024 tokens; an int > 0: blocks of that many query rows whenever the sequence is longer; 0:
never blocked; see `layers.DisentangledSelfAttention`). It changes memory, not the math, and is
left out of `to_dict` while None, so config.json files stay as transformers writes them.

Another is `enhanced_mask_decoder` (default False, transformers' behaviour): True gives the masked-LM
classes the original enhanced mask decoder (keras_deberta/emd.py). It is left out of `to_dict`
while False.
"""

from presets import config_bounds as cb
from presets.config import BaseConfig

_SHARED_DEFAULTS = dict(
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
    type_vocab_size=0, initializer_range=0.02, layer_norm_eps=1e-7, relative_attention=False,
    max_relative_positions=-1, position_biased_input=True, pos_att_type=None, pooler_dropout=0.0,
    pooler_hidden_act="gelu", legacy=True, embedding_size=None, pooler_hidden_size=None, cls_dropout=None,
    attention_block_size=None, enhanced_mask_decoder=False,
)


# Types and ranges of the fields (presets/config_bounds.py): checked on configs read from files and
# where a model is built.
_FIELD_SPECS = dict(
    vocab_size=cb.int_field(1, cb.MAX_VOCAB_SIZE), hidden_size=cb.int_field(1, cb.MAX_WIDTH),
    num_hidden_layers=cb.int_field(1, cb.MAX_LAYERS), num_attention_heads=cb.int_field(1, cb.MAX_HEADS),
    intermediate_size=cb.int_field(1, cb.MAX_INTERMEDIATE_SIZE),
    max_position_embeddings=cb.int_field(1, cb.MAX_POSITIONS),
    max_relative_positions=cb.int_field(None, cb.MAX_POSITIONS),
    position_buckets=cb.int_field(None, cb.MAX_POSITIONS), type_vocab_size=cb.int_field(0, cb.MAX_SMALL_TABLE),
    embedding_size=cb.int_field(1, cb.MAX_WIDTH, optional=True),
    pooler_hidden_size=cb.int_field(1, cb.MAX_WIDTH, optional=True),
    attention_head_size=cb.int_field(1, cb.MAX_HEAD_DIM, optional=True),
    conv_kernel_size=cb.int_field(0, cb.MAX_SMALL_TABLE), conv_groups=cb.int_field(1, cb.MAX_SMALL_TABLE),
    attention_block_size=cb.int_field(0, cb.MAX_POSITIONS, optional=True),
    layer_norm_eps=cb.float_field(0, low_open=True), initializer_range=cb.float_field(0),
    hidden_dropout_prob=cb.float_field(0, 1), attention_probs_dropout_prob=cb.float_field(0, 1),
    pooler_dropout=cb.float_field(0, 1), cls_dropout=("float?", 0, 1),
    relative_attention=cb.BOOL, position_biased_input=cb.BOOL, share_att_key=cb.BOOL, legacy=cb.BOOL,
    talking_head=cb.BOOL, hidden_act=cb.STR, pooler_hidden_act=cb.STR, conv_act=cb.STR, norm_rel_ebd=cb.STR,
    pos_att_type=("pos_att_type", None, None),
)


def _parse_pos_att_type(value):
    if value is None:
        return None
    if isinstance(value, str):
        return [x.strip() for x in value.lower().split("|") if x.strip()]
    return [str(x).strip().lower() for x in value]


def _validate(config):
    """Values refused at construction, by name. The sizes (vocab_size, hidden_size, layers, heads,
    intermediate_size) are not among them: transformers accepts any integer there (its ConfigTester
    builds configs with each set to 0 or 1), so they are checked where a model is built
    (`check_buildable`, against `_FIELD_SPECS`), as is hidden_size % num_attention_heads."""
    if not config.layer_norm_eps > 0:
        raise ValueError(f"layer_norm_eps must be > 0, got {config.layer_norm_eps!r}")
    size = config.attention_block_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"attention_block_size must be None or an integer >= 0, got {size!r}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


class _DebertaConfigBase(BaseConfig):
    field_defaults = {}
    field_specs = _FIELD_SPECS

    def __init__(self, pad_token_id=0, **kwargs):
        fields = {name: kwargs.pop(name, default) for name, default in self.field_defaults.items()}
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        for name, value in fields.items():
            setattr(self, name, value)
        self.pos_att_type = _parse_pos_att_type(self.pos_att_type)
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size
        if self.pooler_hidden_size is None:
            self.pooler_hidden_size = self.hidden_size
        _validate(self)

    # --- values the model derives, in one place ------------------------------------------------
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

    # --- what the checkpoint's tensors must agree with (presets/config_bounds.py) ---------------
    def checkpoint_shape_claims(self):
        claims = [("embeddings.word_embeddings.weight", 0, self.vocab_size, "vocab_size"),
                  ("embeddings.word_embeddings.weight", 1, self.embedding_size, "embedding_size"),
                  ("encoder.layer.0.intermediate.dense.weight", 0, self.intermediate_size, "intermediate_size")]
        if self.position_biased_input:
            claims.append(("embeddings.position_embeddings.weight", 0, self.max_position_embeddings,
                           "max_position_embeddings"))
        if self.type_vocab_size > 0:
            claims.append(("embeddings.token_type_embeddings.weight", 0, self.type_vocab_size, "type_vocab_size"))
        if self.relative_attention:
            claims.append(("encoder.rel_embeddings.weight", 0, self.relative_table_rows,
                           "position_buckets / max_relative_positions"))
        return claims

    def minimum_weight_count(self):
        # The word embeddings and each layer's attention and feed-forward kernels.
        layer = 4 * self.hidden_size ** 2 + 2 * self.hidden_size * self.intermediate_size
        return self.vocab_size * self.embedding_size + self.num_hidden_layers * layer

    def to_dict(self):
        out = super().to_dict()
        for name in ("cls_dropout", "attention_block_size"):  # absent from transformers' files when unset
            if out.get(name) is None:
                out.pop(name, None)
        if not out.get("enhanced_mask_decoder"):
            out.pop("enhanced_mask_decoder", None)
        return out


class DebertaV2Config(_DebertaConfigBase):
    """Configuration of DeBERTa-v2 and v3 (`model_type` "deberta-v2"), as transformers'."""

    model_type = "deberta-v2"
    field_defaults = dict(
        _SHARED_DEFAULTS, vocab_size=128100, hidden_size=1536, num_hidden_layers=24, num_attention_heads=24,
        intermediate_size=6144, position_buckets=-1, share_att_key=False, norm_rel_ebd="none",
        conv_kernel_size=0, conv_groups=1, conv_act="tanh", attention_head_size=None,
    )
    fused_qkv = False  # v2/v3 have separate query/key/value projections (v1 fuses them)
    talking_head = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        heads = self.num_attention_heads
        # Left unset for a head count no model can use (0 or not an integer): a config may hold it,
        # the model build refuses it by name.
        if self.attention_head_size is None and isinstance(heads, int) and heads > 0:
            self.attention_head_size = self.hidden_size // heads

    @property
    def layer_norm_relative_table(self):
        return "layer_norm" in [x.strip() for x in str(self.norm_rel_ebd).lower().split("|")]


# Keys of v2 that v1 does not have; a v1 config.json holding them keeps them, but they never act.
_V2_ONLY = ("position_buckets", "share_att_key", "norm_rel_ebd", "conv_kernel_size", "conv_groups", "conv_act",
            "attention_head_size")


class DebertaConfig(_DebertaConfigBase):
    """Configuration of DeBERTa v1 (`model_type` "deberta"), as transformers', plus the
    `talking_head` flag its modeling reads. The v2-only knobs (log buckets, shared keys,
    layer-normed relative table, nGiE) are fixed class properties here: a stray key in a
    config.json cannot change the math (transformers ignores such keys too)."""

    model_type = "deberta"
    field_defaults = dict(
        _SHARED_DEFAULTS, vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, talking_head=False,
    )
    fused_qkv = True
    position_buckets = -1
    share_att_key = False
    conv_kernel_size = 0
    layer_norm_relative_table = False

    def __init__(self, **kwargs):
        v2_only = {k: kwargs.pop(k) for k in list(kwargs) if k in _V2_ONLY}
        super().__init__(**kwargs)
        self._v2_only_keys = v2_only  # kept for the round trip, never read

    @property
    def attention_head_size(self):
        return self.hidden_size // self.num_attention_heads

    def to_dict(self):
        out = super().to_dict()
        out.update(out.pop("_v2_only_keys", {}))
        return out
