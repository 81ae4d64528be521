"""DeepSeek-V2 task models (`model_type` "deepseek_v2"), weight-compatible with transformers'
DeepseekV2Model / ForCausalLM / ForSequenceClassification: the decoder (keras_deepseek/decoder.py)
plus a head."""

import keras
import numpy as np
from keras import ops

from keras_deepseek import layout
from keras_deepseek.configuration_deepseek_v2 import DeepseekV2Config
from keras_deepseek.decoder import DeepseekV2MainLayer, weight_initializer
from keras_deepseek.generation import GenerationMixin
from keras_deepseek.weight_map import decoder_weight_specs
from layers.embeddings import embedding_table
from layers.model_io import ModelOutput, check_index_range, check_same_shape, unpack_inputs
from presets.layout import LayoutMapMixin
from presets.pretrained import TFPreTrainedModel

DECODER_INPUTS = ("input_ids", "attention_mask", "position_ids")

_register = keras.saving.register_keras_serializable(package="keras_deepseek")


@_register
class TFDeepseekV2PreTrainedModel(LayoutMapMixin, TFPreTrainedModel):
    config_class = DeepseekV2Config
    # keras.distribution: `get_layout_map(device_mesh, ...)` from these rules (keras_deepseek/layout.py).
    layout_rules = layout.LAYOUT_RULES
    layout_counts = staticmethod(layout.layout_counts)
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
        return decoder_weight_specs(self.model)


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
                                              kernel_initializer=weight_initializer(self.config))
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
        specs = decoder_weight_specs(self.model, prefix="model.")
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
                                        kernel_initializer=weight_initializer(self.config))

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
        specs = decoder_weight_specs(self.model, prefix="model.")
        specs["score.weight"] = (self.score.kernel, "linear")
        return specs
