"""DeepseekV2Config: transformers 5.x field names and defaults, reading both config.json forms."""

from layers.rotary import normalize_rope_parameters
from presets import config_bounds as cb
from presets.config import BaseConfig

# Types and ranges of the fields (presets/config_bounds.py): checked on configs read from files and
# where a model is built.
_FIELD_SPECS = dict(
    vocab_size=cb.int_field(1, cb.MAX_VOCAB_SIZE), hidden_size=cb.int_field(1, cb.MAX_WIDTH),
    intermediate_size=cb.int_field(1, cb.MAX_INTERMEDIATE_SIZE), num_hidden_layers=cb.int_field(1, cb.MAX_LAYERS),
    num_attention_heads=cb.int_field(1, cb.MAX_HEADS), num_key_value_heads=cb.int_field(1, cb.MAX_HEADS, True),
    max_position_embeddings=cb.int_field(1, cb.MAX_ROTARY_POSITIONS),
    kv_lora_rank=cb.int_field(1, cb.MAX_WIDTH), q_lora_rank=cb.int_field(1, cb.MAX_WIDTH, optional=True),
    qk_nope_head_dim=cb.int_field(0, cb.MAX_HEAD_DIM), qk_rope_head_dim=cb.int_field(2, cb.MAX_HEAD_DIM),
    v_head_dim=cb.int_field(1, cb.MAX_HEAD_DIM), n_routed_experts=cb.int_field(0, cb.MAX_EXPERTS, optional=True),
    n_shared_experts=cb.int_field(0, cb.MAX_EXPERTS, optional=True),
    num_experts_per_tok=cb.int_field(1, cb.MAX_EXPERTS, optional=True),
    moe_intermediate_size=cb.int_field(1, cb.MAX_INTERMEDIATE_SIZE),
    first_k_dense_replace=cb.int_field(0, cb.MAX_LAYERS), moe_layer_freq=cb.int_field(1, cb.MAX_LAYERS),
    n_group=cb.int_field(1, cb.MAX_EXPERTS, optional=True), topk_group=cb.int_field(1, cb.MAX_EXPERTS, optional=True),
    rms_norm_eps=cb.float_field(0, low_open=True), initializer_range=cb.float_field(0),
    routed_scaling_factor=cb.float_field(), attention_dropout=cb.float_field(0, 1),
    aux_loss_alpha=cb.float_field(), hidden_act=cb.STR, topk_method=cb.STR, scoring_func=cb.STR,
    attention_bias=cb.BOOL, mlp_bias=cb.BOOL, norm_topk_prob=cb.BOOL, seq_aux=cb.BOOL, use_cache=cb.BOOL,
)


class DeepseekV2Config(BaseConfig):
    """Configuration of DeepSeek-V2 (`model_type` "deepseek_v2").

    Fields and defaults are transformers' `DeepseekV2Config`, plus the fields of the Hub's original
    config.json that transformers drops but the original model uses: `moe_layer_freq` (a layer is
    MoE when index >= first_k_dense_replace and index % moe_layer_freq == 0), `aux_loss_alpha` and
    `seq_aux` (the balance loss added in training), `scoring_func` (only "softmax" exists for V2)
    and `ep_size` (kept for round trips). RoPE comes as transformers-v5 `rope_parameters` or as the
    Hub's `rope_theta` + `rope_scaling`; both are read into `rope_parameters`, which is what
    `to_dict` writes. `auto_map` (remote code) is ignored and not written back.
    """

    model_type = "deepseek_v2"
    field_specs = _FIELD_SPECS

    def __init__(
        self,
        vocab_size=102400,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=None,
        hidden_act="silu",
        max_position_embeddings=2048,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        use_cache=True,
        pad_token_id=None,
        bos_token_id=1,
        eos_token_id=2,
        pretraining_tp=1,
        tie_word_embeddings=False,
        rope_parameters=None,
        rope_theta=None,
        rope_scaling=None,
        attention_bias=False,
        attention_dropout=0.0,
        mlp_bias=False,
        first_k_dense_replace=0,
        kv_lora_rank=512,
        q_lora_rank=1536,
        n_group=None,
        n_routed_experts=64,
        n_shared_experts=2,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        routed_scaling_factor=1.0,
        topk_group=None,
        topk_method="greedy",
        norm_topk_prob=False,
        v_head_dim=128,
        num_experts_per_tok=None,
        moe_intermediate_size=1407,
        output_router_logits=False,
        moe_layer_freq=1,
        scoring_func="softmax",
        aux_loss_alpha=0.001,
        seq_aux=True,
        ep_size=1,
        **kwargs,
    ):
        kwargs.pop("auto_map", None)
        for derived in ("qk_head_dim", "head_dim"):
            kwargs.pop(derived, None)
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.pretraining_tp = pretraining_tp
        self.rope_parameters = normalize_rope_parameters(
            rope_parameters, rope_theta, rope_scaling, max_position_embeddings)
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        self.mlp_bias = mlp_bias
        self.first_k_dense_replace = first_k_dense_replace
        self.kv_lora_rank = kv_lora_rank
        self.q_lora_rank = q_lora_rank
        self.n_group = n_group
        self.n_routed_experts = n_routed_experts
        self.n_shared_experts = n_shared_experts
        self.qk_nope_head_dim = qk_nope_head_dim
        self.qk_rope_head_dim = qk_rope_head_dim
        self.routed_scaling_factor = routed_scaling_factor
        self.topk_group = topk_group
        self.topk_method = topk_method
        self.norm_topk_prob = norm_topk_prob
        self.v_head_dim = v_head_dim
        self.num_experts_per_tok = num_experts_per_tok
        self.moe_intermediate_size = moe_intermediate_size
        self.output_router_logits = output_router_logits
        self.moe_layer_freq = moe_layer_freq
        self.scoring_func = scoring_func
        self.aux_loss_alpha = aux_loss_alpha
        self.seq_aux = seq_aux
        self.ep_size = ep_size
        # Values no model can be built from, refused by name (MLA's head widths are their own
        # fields, so hidden_size need not divide by the heads).
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank",
                     "v_head_dim", "qk_rope_head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not rms_norm_eps > 0:
            raise ValueError(f"rms_norm_eps must be > 0, got {rms_norm_eps!r}")
        if n_routed_experts and self.num_experts_per_tok is not None and \
                not 0 < self.num_experts_per_tok <= n_routed_experts:
            raise ValueError(f"num_experts_per_tok ({self.num_experts_per_tok}) must lie in [1, n_routed_experts "
                             f"= {n_routed_experts}]")
        if qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even for rotary pairs, got {qk_rope_head_dim}")
        if scoring_func != "softmax":
            raise ValueError(f"DeepSeek-V2 routes with scoring_func 'softmax', got {scoring_func!r}")
        if n_routed_experts and self.num_experts_per_tok is None and self.num_moe_layers:
            raise ValueError("num_experts_per_tok is required when the model has MoE layers")

    # --- derived values --------------------------------------------------------------------------
    @property
    def qk_head_dim(self):
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def head_dim(self):
        return self.qk_rope_head_dim

    @property
    def rope_theta(self):
        return self.rope_parameters["rope_theta"]

    @property
    def num_experts(self):
        return self.n_routed_experts

    def is_moe_layer(self, index):
        return bool(self.n_routed_experts) and index >= self.first_k_dense_replace and \
            index % max(int(self.moe_layer_freq or 1), 1) == 0

    @property
    def num_moe_layers(self):
        return sum(self.is_moe_layer(i) for i in range(self.num_hidden_layers))

    @property
    def cache_values_per_token(self):
        """Values one layer caches per token: kv_lora_rank + qk_rope_head_dim."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    # --- what the checkpoint's tensors must agree with (presets/config_bounds.py) ---------------
    def checkpoint_shape_claims(self):
        claims = [("embed_tokens.weight", 0, self.vocab_size, "vocab_size"),
                  ("embed_tokens.weight", 1, self.hidden_size, "hidden_size"),
                  ("lm_head.weight", 0, self.vocab_size, "vocab_size"),
                  ("layers.0.self_attn.kv_a_proj_with_mqa.weight", 0, self.cache_values_per_token,
                   "kv_lora_rank + qk_rope_head_dim")]
        if not self.is_moe_layer(0):
            claims.append(("layers.0.mlp.gate_proj.weight", 0, self.intermediate_size, "intermediate_size"))
        return claims

    def checkpoint_count_claims(self):
        return super().checkpoint_count_claims() + [
            (r"\.mlp\.experts\.(\d+)\.", self.n_routed_experts or 0, "n_routed_experts")]

    def minimum_weight_count(self):
        # The embeddings and each layer's latent KV projections and attention output.
        layer = self.hidden_size * self.cache_values_per_token + \
            self.num_attention_heads * self.v_head_dim * self.hidden_size
        return self.vocab_size * self.hidden_size + self.num_hidden_layers * layer

    def to_dict(self):
        out = super().to_dict()
        out["rope_parameters"] = dict(self.rope_parameters)
        return out
