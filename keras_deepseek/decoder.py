"""The DeepSeek-V2 decoder (transformers' `DeepseekV2Model`): decoder layers of Multi-head Latent
Attention and DeepSeekMoE (or a dense MLP), and the main layer with embeddings and final norm."""

import keras
from keras import ops

from keras_deepseek.configuration_deepseek_v2 import DeepseekV2Config

from layers.latent_attention import MultiHeadLatentAttention, attention_bias
from layers.moe import GatedMLP, MoEBlock
from layers.rms_norm import RMSNorm
from layers.rotary import rope_cos_sin, rope_frequencies, softmax_scale
from presets.remat import remat_call


def weight_initializer(config):
    return keras.initializers.RandomNormal(stddev=config.initializer_range)


_register = keras.saving.register_keras_serializable(package="keras_deepseek")


@_register
class DeepseekV2DecoderLayer(keras.layers.Layer):
    """RMSNorm -> MLA -> residual -> RMSNorm -> MoE (or dense MLP) -> residual."""

    def __init__(self, config, layer_index, **kwargs):
        super().__init__(**kwargs)
        self.config, self.layer_index = config, layer_index
        self.hidden_size = config.hidden_size
        self.self_attn = MultiHeadLatentAttention(
            hidden_size=config.hidden_size, num_heads=config.num_attention_heads,
            kv_lora_rank=config.kv_lora_rank, qk_nope_head_dim=config.qk_nope_head_dim,
            qk_rope_head_dim=config.qk_rope_head_dim, v_head_dim=config.v_head_dim,
            q_lora_rank=config.q_lora_rank,
            scale=softmax_scale(config.rope_parameters, config.qk_head_dim),
            use_bias=config.attention_bias, attention_dropout=config.attention_dropout or 0.0,
            kernel_initializer=weight_initializer(config), name="self_attn")
        if config.is_moe_layer(layer_index):
            self.mlp = MoEBlock(
                config.hidden_size, config.moe_intermediate_size, config.n_routed_experts,
                config.num_experts_per_tok, config.n_shared_experts, config.topk_method, config.n_group,
                config.topk_group, config.routed_scaling_factor, config.norm_topk_prob, config.hidden_act,
                config.mlp_bias, config.aux_loss_alpha or 0.0, config.seq_aux, config.initializer_range,
                name="mlp")
        else:
            self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act,
                                config.mlp_bias, weight_initializer(config), name="mlp")
        self.input_layernorm = RMSNorm(config.rms_norm_eps, name="input_layernorm")
        self.post_attention_layernorm = RMSNorm(config.rms_norm_eps, name="post_attention_layernorm")

    @property
    def adds_loss(self):
        """Whether training adds a loss here (the MoE expert-balance loss, aux_loss_alpha > 0)."""
        return isinstance(self.mlp, MoEBlock) and self.mlp.aux_loss_alpha > 0

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "layer_index": self.layer_index}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(DeepseekV2Config.from_dict(config.pop("config")), **config)

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.self_attn.build(shape)
        self.mlp.build(shape)
        self.input_layernorm.build(shape)
        self.post_attention_layernorm.build(shape)
        self.built = True

    def call(self, hidden, cos, sin, bias, cache=None, cache_index=0, absorb=False, training=False,
             return_attention_scores=False, cache_in_place=False, absorbed=None):
        attended, cache, probs = self.self_attn(
            self.input_layernorm(hidden), cos, sin, bias, cache=cache, cache_index=cache_index,
            absorb=absorb, training=training, return_attention_scores=return_attention_scores,
            cache_in_place=cache_in_place, absorbed=absorbed)
        hidden = hidden + attended
        normed = self.post_attention_layernorm(hidden)
        if isinstance(self.mlp, MoEBlock):
            out = self.mlp(normed, training=training)
        else:
            out = self.mlp(normed)
        return hidden + out, cache, probs


@_register
class DeepseekV2MainLayer(keras.layers.Layer):
    """Embeddings + decoder layers + final norm (transformers' `DeepseekV2Model`).

    Call (full sequence): input_ids [B, S], attention_mask [B, S], position_ids [B, S] (default
    0..S-1, as transformers) -> dict(last_hidden_state [B, S, d], hidden_states?, attentions?).

    With `caches` (a list of [B, T, kv_lora_rank + qk_rope_head_dim], one per layer) the new
    tokens' latents are written at slot `cache_index`, `key_valid` [B, T] says which slots hold
    tokens (the new ones included) and attention runs over the cache; the dict then has `caches`.
    With the Python int `cache_index=0` (a prefill) the tokens attend over their own entries only.
    `cache_in_place=True` lets PyTorch overwrite the given caches (see `write_cache`).
    """

    def __init__(self, config, remat=False, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.remat = bool(remat)  # recompute each decoder layer in the backward pass (keras.remat)
        self.embed_tokens = keras.layers.Embedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=weight_initializer(config), name="embed_tokens")
        self.decoder_layers = [DeepseekV2DecoderLayer(config, i, name=f"layers_{i}")
                               for i in range(config.num_hidden_layers)]
        self.norm = RMSNorm(config.rms_norm_eps, name="norm")
        self.inv_freq, self.attention_factor = rope_frequencies(
            config.rope_parameters, config.qk_rope_head_dim, config.max_position_embeddings)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "remat": self.remat}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(DeepseekV2Config.from_dict(config.pop("config")), **config)

    def build(self, input_shape=None):
        self.embed_tokens.build((None, None))
        for layer in self.decoder_layers:
            layer.build()
        self.norm.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, input_ids=None, attention_mask=None, position_ids=None, caches=None, cache_index=0,
             key_valid=None, absorb=False, training=False, output_hidden_states=False,
             output_attentions=False, inputs_embeds=None, cache_in_place=False, absorbed=None):
        # input_ids [B, S], or inputs_embeds [B, S, d] in their place.
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        token_shape = ops.shape(hidden)[:2]
        length = hidden.shape[1] if hidden.shape[1] is not None else token_shape[1]
        if position_ids is None:
            position_ids = (ops.arange(length, dtype="int32") + cache_index)[None, :]
            position_ids = ops.broadcast_to(position_ids, token_shape)
        if key_valid is None:
            key_valid = attention_mask if attention_mask is not None else ops.ones(token_shape, dtype="int32")
        if caches is not None and isinstance(cache_index, int) and cache_index == 0:
            key_valid = key_valid[:, :length]  # a prefill sees only its own slots (causality)
        bias = attention_bias(key_valid, length, cache_index)
        cos, sin = rope_cos_sin(position_ids, self.inv_freq, self.attention_factor)
        all_hidden, all_attentions, new_caches = [hidden], [], []
        for i, layer in enumerate(self.decoder_layers):
            if self.remat and caches is None and not output_attentions and not (training and layer.adds_loss):
                # keras.remat takes tensors only: the Python options stay in the closure. A block
                # whose MoE adds the balance loss in training is not recomputed (the loss would be
                # created inside the recomputed function and escape it).
                def block(hidden, cos, sin, bias, layer=layer):
                    return layer(hidden, cos, sin, bias, training=training)[0]

                hidden, cache, probs = remat_call(layer, block, hidden, cos, sin, bias), None, None
            else:
                hidden, cache, probs = layer(
                    hidden, cos, sin, bias, cache=None if caches is None else caches[i], cache_index=cache_index,
                    absorb=absorb, training=training, return_attention_scores=output_attentions,
                    cache_in_place=cache_in_place, absorbed=None if absorbed is None else absorbed[i])
            new_caches.append(cache)
            all_hidden.append(hidden)
            all_attentions.append(probs)
        hidden = self.norm(hidden)
        out = {"last_hidden_state": hidden}
        if output_hidden_states:
            out["hidden_states"] = tuple(all_hidden[:-1]) + (hidden,)
        if output_attentions:
            out["attentions"] = tuple(all_attentions)
        if caches is not None:
            out["caches"] = new_caches
        return out
