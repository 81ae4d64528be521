"""DeepSeek-V2 as Keras 3 layers and models, weight-compatible with transformers' DeepseekV2*."""

import keras
import numpy as np
from keras import ops

from keras_deepseek.configuration_deepseek_v2 import DeepseekV2Config
from keras_deepseek.generation import GenerationMixin
from layers.embeddings import embedding_table
from layers.latent_attention import MultiHeadLatentAttention, attention_bias
from layers.model_io import ModelOutput, check_index_range, check_same_shape, unpack_inputs
from layers.moe import GatedMLP, MoEBlock
from layers.rms_norm import RMSNorm
from layers.rotary import rope_cos_sin, rope_frequencies, softmax_scale
from presets.pretrained import TFPreTrainedModel

DECODER_INPUTS = ("input_ids", "attention_mask", "position_ids")

_register = keras.saving.register_keras_serializable(package="keras_deepseek")


def _init(config):
    return keras.initializers.RandomNormal(stddev=config.initializer_range)


class DeepseekV2DecoderLayer(keras.layers.Layer):
    """RMSNorm -> MLA -> residual -> RMSNorm -> MoE (or dense MLP) -> residual."""

    def __init__(self, config, layer_index, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.self_attn = MultiHeadLatentAttention(
            hidden_size=config.hidden_size, num_heads=config.num_attention_heads,
            kv_lora_rank=config.kv_lora_rank, qk_nope_head_dim=config.qk_nope_head_dim,
            qk_rope_head_dim=config.qk_rope_head_dim, v_head_dim=config.v_head_dim,
            q_lora_rank=config.q_lora_rank,
            scale=softmax_scale(config.rope_parameters, config.qk_head_dim),
            use_bias=config.attention_bias, attention_dropout=config.attention_dropout or 0.0,
            kernel_initializer=_init(config), name="self_attn")
        if config.is_moe_layer(layer_index):
            self.mlp = MoEBlock(
                config.hidden_size, config.moe_intermediate_size, config.n_routed_experts,
                config.num_experts_per_tok, config.n_shared_experts, config.topk_method, config.n_group,
                config.topk_group, config.routed_scaling_factor, config.norm_topk_prob, config.hidden_act,
                config.mlp_bias, config.aux_loss_alpha or 0.0, config.seq_aux, config.initializer_range,
                name="mlp")
        else:
            self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act,
                                config.mlp_bias, _init(config), name="mlp")
        self.input_layernorm = RMSNorm(config.rms_norm_eps, name="input_layernorm")
        self.post_attention_layernorm = RMSNorm(config.rms_norm_eps, name="post_attention_layernorm")

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.self_attn.build(shape)
        self.mlp.build(shape)
        self.input_layernorm.build(shape)
        self.post_attention_layernorm.build(shape)
        self.built = True

    def call(self, hidden, cos, sin, bias, cache=None, cache_index=0, absorb=False, training=False,
             return_attention_scores=False):
        attended, cache, probs = self.self_attn(
            self.input_layernorm(hidden), cos, sin, bias, cache=cache, cache_index=cache_index,
            absorb=absorb, training=training, return_attention_scores=return_attention_scores)
        hidden = hidden + attended
        normed = self.post_attention_layernorm(hidden)
        if isinstance(self.mlp, MoEBlock):
            out = self.mlp(normed, training=training)
        else:
            out = self.mlp(normed)
        return hidden + out, cache, probs


class DeepseekV2MainLayer(keras.layers.Layer):
    """Embeddings + decoder layers + final norm (transformers' `DeepseekV2Model`).

    Call (full sequence): input_ids [B, S], attention_mask [B, S], position_ids [B, S] (default
    0..S-1, as transformers) -> dict(last_hidden_state [B, S, d], hidden_states?, attentions?).

    With `caches` (a list of [B, T, kv_lora_rank + qk_rope_head_dim], one per layer) the new
    tokens' latents are written at slot `cache_index`, `key_valid` [B, T] says which slots hold
    tokens (the new ones included) and attention runs over the cache; the dict then has `caches`.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embed_tokens = keras.layers.Embedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=_init(config), name="embed_tokens")
        self.decoder_layers = [DeepseekV2DecoderLayer(config, i, name=f"layers_{i}")
                               for i in range(config.num_hidden_layers)]
        self.norm = RMSNorm(config.rms_norm_eps, name="norm")
        self.inv_freq, self.attention_factor = rope_frequencies(
            config.rope_parameters, config.qk_rope_head_dim, config.max_position_embeddings)

    def build(self, input_shape=None):
        self.embed_tokens.build((None, None))
        for layer in self.decoder_layers:
            layer.build()
        self.norm.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, input_ids, attention_mask=None, position_ids=None, caches=None, cache_index=0,
             key_valid=None, absorb=False, training=False, output_hidden_states=False,
             output_attentions=False):
        length = input_ids.shape[1] if input_ids.shape[1] is not None else ops.shape(input_ids)[1]
        if position_ids is None:
            position_ids = (ops.arange(length, dtype="int32") + cache_index)[None, :]
            position_ids = ops.broadcast_to(position_ids, ops.shape(input_ids))
        if key_valid is None:
            key_valid = attention_mask if attention_mask is not None else ops.ones_like(input_ids)
        bias = attention_bias(key_valid, length, cache_index)
        cos, sin = rope_cos_sin(position_ids, self.inv_freq, self.attention_factor)
        hidden = self.embed_tokens(input_ids)
        all_hidden, all_attentions, new_caches = [hidden], [], []
        for i, layer in enumerate(self.decoder_layers):
            hidden, cache, probs = layer(
                hidden, cos, sin, bias, cache=None if caches is None else caches[i], cache_index=cache_index,
                absorb=absorb, training=training, return_attention_scores=output_attentions)
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

    def hf_weight_specs(self, prefix=""):
        specs = {}

        def dense(name, layer):
            specs[f"{prefix}{name}.weight"] = (layer.kernel, "linear")
            if layer.use_bias:
                specs[f"{prefix}{name}.bias"] = (layer.bias, "identity")

        def norm(name, layer):
            specs[f"{prefix}{name}.weight"] = (layer.weight, "identity")

        def mlp(name, layer):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                dense(f"{name}.{proj}", getattr(layer, proj))

        specs[f"{prefix}embed_tokens.weight"] = (self.embed_tokens.embeddings, "identity")
        for i, layer in enumerate(self.decoder_layers):
            base = f"layers.{i}."
            att = layer.self_attn
            for proj in ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"):
                if getattr(att, proj) is not None:
                    dense(f"{base}self_attn.{proj}", getattr(att, proj))
            if att.q_a_layernorm is not None:
                norm(f"{base}self_attn.q_a_layernorm", att.q_a_layernorm)
            norm(f"{base}self_attn.kv_a_layernorm", att.kv_a_layernorm)
            norm(f"{base}input_layernorm", layer.input_layernorm)
            norm(f"{base}post_attention_layernorm", layer.post_attention_layernorm)
            if isinstance(layer.mlp, MoEBlock):
                moe = layer.mlp
                specs[f"{prefix}{base}mlp.gate.weight"] = (moe.gate.kernel, "linear")
                stack = _ExpertStacks(moe.experts)
                for j in range(moe.n_routed_experts):
                    for proj in ("gate_proj", "up_proj", "down_proj"):
                        specs[f"{prefix}{base}mlp.experts.{j}.{proj}.weight"] = (stack.slice(proj, j), "linear")
                if moe.shared_experts is not None:
                    mlp(f"{base}mlp.shared_experts", moe.shared_experts)
            else:
                mlp(f"{base}mlp", layer.mlp)
        norm("norm", self.norm)
        return specs


class _ExpertStacks:
    """Per-expert views of the stacked expert weights, so the generic loader / writer can address
    `mlp.experts.{j}.{proj}.weight` one at a time. Loading fills a numpy buffer and assigns the
    stacked variable once, when every expert of it has arrived."""

    _VARS = {"gate_proj": "gate_kernel", "up_proj": "up_kernel", "down_proj": "down_kernel"}

    def __init__(self, experts):
        if experts.quantized:
            raise NotImplementedError("reading or writing HF tensors of a quantized model is not supported")
        self.experts = experts
        self.pending = {}

    def slice(self, proj, index):
        return _ExpertSlice(self, self._VARS[proj], index)


class _ExpertSlice:
    def __init__(self, stacks, var_name, index):
        self.stacks, self.var_name, self.index = stacks, var_name, index
        self.variable = getattr(stacks.experts, var_name)
        self.shape = tuple(self.variable.shape[1:])
        self.dtype = self.variable.dtype

    def assign(self, value):
        buffer, seen = self.stacks.pending.setdefault(
            self.var_name, (np.array(ops.convert_to_numpy(self.variable)), set()))
        buffer[self.index] = value
        seen.add(self.index)
        if len(seen) == buffer.shape[0]:
            self.variable.assign(buffer)
            del self.stacks.pending[self.var_name]

    def __array__(self, dtype=None, copy=None):
        value = np.asarray(ops.convert_to_numpy(self.variable)[self.index])
        return value if dtype is None else value.astype(dtype)


@_register
class TFDeepseekV2PreTrainedModel(TFPreTrainedModel):
    config_class = DeepseekV2Config
    base_model_prefix = "model"
    ignorable_checkpoint_keys = (r"rotary_emb\.(original_)?inv_freq$",)
    # enable_lora(): adapters on MLA's projections (q_proj without q_lora, else q_a_proj / q_b_proj);
    # a sequence classifier's `score` stays trainable.
    lora_target_modules = ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
    lora_modules_to_save = ("score",)

    def build(self, input_shape=None):
        self.model.build()
        self.built = True

    def build_with_dummy_inputs(self):
        """Every variable is created by `build()` (shapes come from the config): no dummy forward."""
        if not self.built:
            self.build()
        return self

    def parse_inputs(self, input_ids, kwargs):
        values = unpack_inputs(input_ids, DECODER_INPUTS + tuple(self.label_names), kwargs)
        if "input_ids" not in values:
            raise ValueError("input_ids is required")
        ids = values["input_ids"]
        if not hasattr(ids, "shape"):
            ids = ops.convert_to_tensor(ids)
        if len(ids.shape) != 2:
            raise ValueError(f"input_ids must have shape [batch, length], got {tuple(ids.shape)}")
        if "int" not in str(ids.dtype):
            raise ValueError(f"input_ids must be integers, got dtype {ids.dtype}")
        values["input_ids"] = check_index_range("input_ids", ids, self.config.vocab_size)
        for name in ("attention_mask", "position_ids"):
            if name in values:
                if not hasattr(values[name], "shape"):
                    values[name] = ops.convert_to_tensor(values[name])
                check_same_shape(name, values[name], ids)
        return values

    def _base(self, inputs, training, output_hidden_states, output_attentions):
        return self.model(
            inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
            position_ids=inputs.get("position_ids"), training=training,
            output_hidden_states=bool(output_hidden_states), output_attentions=bool(output_attentions))

    def cache_bytes_per_token(self):
        """Bytes the decoding cache holds per token (all layers)."""
        itemsize = np.dtype(self.compute_dtype if self.compute_dtype != "bfloat16" else "float16").itemsize
        return self.config.num_hidden_layers * self.config.cache_values_per_token * itemsize


@_register
class TFDeepseekV2Model(TFDeepseekV2PreTrainedModel):
    """The bare decoder: `last_hidden_state` [B, S, hidden] (after the final RMSNorm)."""

    hf_architecture = "DeepseekV2Model"
    primary_output_names = ("last_hidden_state",)  # what Keras losses and the SavedModel export see

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.model = DeepseekV2MainLayer(self.config, name="model")

    def call(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        inputs = self.parse_inputs(input_ids, dict(attention_mask=attention_mask, position_ids=position_ids))
        out = self._base(inputs, training, output_hidden_states, output_attentions)
        return self.finish_output(ModelOutput(out), return_dict)

    def hf_weight_specs(self):
        return self.model.hf_weight_specs(prefix="")


def causal_lm_loss(logits, labels):
    """transformers' ForCausalLMLoss: predict token t+1 from t, -100 ignored, mean in float32."""
    logits = ops.cast(logits[:, :-1], "float32")
    labels = ops.cast(labels[:, 1:], "int32")
    valid = ops.not_equal(labels, -100)
    safe = ops.where(valid, labels, 0)
    nll = ops.sparse_categorical_crossentropy(safe, logits, from_logits=True)
    valid = ops.cast(valid, "float32")
    return ops.sum(nll * valid) / ops.maximum(ops.sum(valid), 1.0)


@_register
class TFDeepseekV2ForCausalLM(GenerationMixin, TFDeepseekV2PreTrainedModel):
    """Decoder + lm_head: `logits` [B, S, vocab]; `labels` adds the shifted LM `loss`; `generate()`."""

    hf_architecture = "DeepseekV2ForCausalLM"
    label_names = ("labels",)

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.model = DeepseekV2MainLayer(self.config, name="model")
        self.lm_head = None
        if not self.config.tie_word_embeddings:
            self.lm_head = keras.layers.Dense(self.config.vocab_size, use_bias=False, name="lm_head",
                                              kernel_initializer=_init(self.config))
        else:
            self.ignorable_checkpoint_keys = self.ignorable_checkpoint_keys + (r"^lm_head\.weight$",)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.lm_head is not None:
            self.lm_head.build((None, None, self.config.hidden_size))
        self.built = True

    def logits_from_hidden(self, hidden):
        if self.lm_head is not None:
            return self.lm_head(hidden)
        return ops.einsum("bsd,vd->bsv", hidden, embedding_table(self.model.embed_tokens, hidden.dtype))

    def call(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        inputs = self.parse_inputs(input_ids, dict(attention_mask=attention_mask, position_ids=position_ids,
                                                   labels=labels))
        labels = inputs.get("labels")
        out = self._base(inputs, training, output_hidden_states, output_attentions)
        logits = self.logits_from_hidden(out["last_hidden_state"])
        loss = None
        if labels is not None:
            if not hasattr(labels, "shape"):
                labels = ops.convert_to_tensor(labels)
            check_same_shape("labels", labels, inputs["input_ids"])
            loss = causal_lm_loss(logits, labels)
        result = ModelOutput(loss=loss, logits=logits, hidden_states=out.get("hidden_states"),
                             attentions=out.get("attentions"))
        return self.finish_output(result, return_dict)

    def hf_loss(self, outputs, labels, sample_weight=None):
        return causal_lm_loss(outputs["logits"], labels["labels"])

    def hf_weight_specs(self):
        specs = self.model.hf_weight_specs(prefix="model.")
        if self.lm_head is not None:
            specs["lm_head.weight"] = (self.lm_head.kernel, "linear")
        return specs


@_register
class TFDeepseekV2ForSequenceClassification(TFDeepseekV2PreTrainedModel):
    """Decoder + `score` (no bias), pooled at the last non-pad token as transformers does."""

    hf_architecture = "DeepseekV2ForSequenceClassification"
    label_names = ("labels",)

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.model = DeepseekV2MainLayer(self.config, name="model")
        self.score = keras.layers.Dense(self.config.num_labels, use_bias=False, name="score",
                                        kernel_initializer=_init(self.config))

    def build(self, input_shape=None):
        super().build(input_shape)
        self.score.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        inputs = self.parse_inputs(input_ids, dict(attention_mask=attention_mask, position_ids=position_ids,
                                                   labels=labels))
        labels = inputs.get("labels")
        ids = inputs["input_ids"]
        out = self._base(inputs, training, output_hidden_states, output_attentions)
        logits = self.score(out["last_hidden_state"])  # [B, S, num_labels]
        pad = self.config.pad_token_id
        length = ops.shape(ids)[1]  # a tensor when traced with a dynamic length (SavedModel export)
        if pad is None:
            if ids.shape[0] is not None and ids.shape[0] != 1:
                raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
            last = ops.full((ops.shape(ids)[0],), length - 1, dtype="int32")
        else:
            non_pad = ops.cast(ops.not_equal(ids, pad), "int32")
            last = ops.argmax(ops.arange(length, dtype="int32")[None, :] * non_pad, axis=-1)
        pooled = ops.take_along_axis(logits, ops.cast(last, "int32")[:, None, None], axis=1)[:, 0]
        loss = None
        if labels is not None:
            loss = self._classification_loss(pooled, labels)
        result = ModelOutput(loss=loss, logits=pooled, hidden_states=out.get("hidden_states"),
                             attentions=out.get("attentions"))
        return self.finish_output(result, return_dict)

    def hf_loss(self, outputs, labels, sample_weight=None):
        return self._classification_loss(outputs["logits"], labels["labels"])

    def _classification_loss(self, pooled, labels):
        labels = ops.convert_to_tensor(labels)
        num_labels = self.config.num_labels
        problem = self.config.problem_type
        if problem is None:
            if num_labels == 1:
                problem = "regression"
            elif "int" in str(labels.dtype):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        pooled = ops.cast(pooled, "float32")
        if problem == "regression":
            return ops.mean(ops.square(ops.reshape(pooled, (-1,)) - ops.cast(ops.reshape(labels, (-1,)), "float32")))
        if problem == "single_label_classification":
            return ops.mean(ops.sparse_categorical_crossentropy(ops.reshape(labels, (-1,)), pooled, from_logits=True))
        return ops.mean(ops.binary_crossentropy(ops.cast(labels, "float32"), pooled, from_logits=True))

    def hf_weight_specs(self):
        specs = self.model.hf_weight_specs(prefix="model.")
        specs["score.weight"] = (self.score.kernel, "linear")
        return specs
