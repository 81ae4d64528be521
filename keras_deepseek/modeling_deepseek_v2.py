"""DeepSeek-V2 task models (`model_type` "deepseek_v2"), weight-compatible with transformers'
DeepseekV2Model / ForCausalLM / ForSequenceClassification: the decoder (keras_deepseek/decoder.py)
plus a head, on the task protocol both families share (presets/task_protocol.py)."""

import keras
import numpy as np
from keras import ops

from keras_deepseek import layout
from keras_deepseek.configuration_deepseek_v2 import DeepseekV2Config
from keras_deepseek.decoder import DeepseekV2MainLayer, weight_initializer
from keras_deepseek.generation import GenerationMixin
from keras_deepseek.weight_map import decoder_weight_specs
from layers import losses
from layers.embeddings import embedding_table
from presets.config_bounds import require_labels
from presets.model_io import check_index_range, check_same_shape, sequence_reference
from presets.pretrained import TFPreTrainedModel

_register = keras.saving.register_keras_serializable(package="keras_deepseek")


@_register
class TFDeepseekV2PreTrainedModel(TFPreTrainedModel):
    """The `model` decoder plus the head a subclass adds."""

    config_class = DeepseekV2Config
    # keras.distribution: `get_layout_map(device_mesh, ...)` from these rules (keras_deepseek/layout.py).
    layout_rules = layout.LAYOUT_RULES
    layout_counts = staticmethod(layout.layout_counts)
    base_model_prefix = "model"
    input_names = ("input_ids", "attention_mask", "position_ids", "inputs_embeds")
    ignorable_checkpoint_keys = (r"rotary_emb\.(original_)?inv_freq$",)
    # enable_lora(): adapters on MLA's projections (q_proj without q_lora, else q_a_proj / q_b_proj);
    # a sequence classifier's `score` stays trainable.
    lora_target_modules = ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
    lora_modules_to_save = ("score",)
    decoder_prefix = "model."  # the decoder's tensor names inside a task checkpoint
    # LiteRT's builtin ops lack what the decoder's graph needs (strided slices that add an axis);
    # ONNX and OpenVINO convert it.
    export_runtime_formats = ("onnx", "openvino")

    def create_layers(self, config):
        self.model = DeepseekV2MainLayer(config, remat=self.remat, name="model")
        self.create_head(config)

    def create_head(self, config):
        pass

    def head_layers(self):
        """The head's layers that hold weights (built on [.., hidden] inputs)."""
        return []

    def build_layers(self):
        self.model.build()
        for layer in self.head_layers():
            layer.build((None, None, self.config.hidden_size))

    def input_embedding_layer(self):
        return self.model.embed_tokens

    def run_backbone(self, inputs, training, output_hidden_states, output_attentions):
        return self.model(
            inputs.get("input_ids"), attention_mask=inputs.get("attention_mask"),
            position_ids=inputs.get("position_ids"), inputs_embeds=inputs.get("inputs_embeds"), training=training,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)

    def call(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        return self.run_task(input_ids, dict(
            attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds, labels=labels,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=return_dict), training=training)

    def hf_weight_specs(self):
        return decoder_weight_specs(self.model, prefix=self.decoder_prefix)

    def cache_bytes_per_token(self):
        """Bytes the decoding cache holds per token (all layers)."""
        itemsize = np.dtype(self.compute_dtype if self.compute_dtype != "bfloat16" else "float16").itemsize
        return self.config.num_hidden_layers * self.config.cache_values_per_token * itemsize


@_register
class TFDeepseekV2Model(TFDeepseekV2PreTrainedModel):
    """The bare decoder: `last_hidden_state` [B, S, hidden] (after the final RMSNorm)."""

    hf_architecture = "DeepseekV2Model"
    primary_output_names = ("last_hidden_state",)  # what Keras losses and the SavedModel export see
    decoder_prefix = ""

    def head(self, sequence_output, values, training=False):
        return {"last_hidden_state": sequence_output}


@_register
class TFDeepseekV2ForCausalLM(GenerationMixin, TFDeepseekV2PreTrainedModel):
    """Decoder + lm_head: `logits` [B, S, vocab]; `labels` [B, S] (-100 ignored) add the shifted LM
    `loss`; `generate()`."""

    hf_architecture = "DeepseekV2ForCausalLM"
    label_names = ("labels",)

    def create_head(self, config):
        self.lm_head = None
        if not config.tie_word_embeddings:
            self.lm_head = keras.layers.Dense(config.vocab_size, use_bias=False, name="lm_head",
                                              kernel_initializer=weight_initializer(config))
        else:
            self.ignorable_checkpoint_keys = self.ignorable_checkpoint_keys + (r"^lm_head\.weight$",)

    def head_layers(self):
        return [self.lm_head] if self.lm_head is not None else []

    def output_embedding_layer(self):
        return self.lm_head if self.lm_head is not None else self.model.embed_tokens

    def lm_head_layer(self):
        return self.lm_head

    def logits_from_hidden(self, hidden):
        if self.lm_head is not None:
            return self.lm_head(hidden)
        return ops.einsum("bsd,vd->bsv", hidden, embedding_table(self.model.embed_tokens, hidden.dtype))

    def head(self, sequence_output, values, training=False):
        return {"logits": self.logits_from_hidden(sequence_output)}

    def check_labels(self, values):
        check_same_shape("labels", values["labels"], sequence_reference(values))
        values["labels"] = check_index_range("labels", values["labels"], self.config.vocab_size, ignore_value=-100)

    def hf_loss(self, outputs, labels, sample_weight=None):
        return losses.causal_lm_loss(outputs["logits"], labels["labels"], sample_weight=sample_weight)

    def hf_weight_specs(self):
        specs = super().hf_weight_specs()
        if self.lm_head is not None:
            specs["lm_head.weight"] = (self.lm_head.kernel, "linear")
        return specs


@_register
class TFDeepseekV2ForSequenceClassification(TFDeepseekV2PreTrainedModel):
    """Decoder + `score` (no bias), pooled at the last non-pad token as transformers does:
    `logits` [B, num_labels]; `labels` [B] (-100 ignored) or [B, num_labels] (multi-label)."""

    hf_architecture = "DeepseekV2ForSequenceClassification"
    label_names = ("labels",)

    def create_head(self, config):
        self.score = keras.layers.Dense(require_labels(config), use_bias=False, name="score",
                                        kernel_initializer=weight_initializer(config))

    def head_layers(self):
        return [self.score]

    def head(self, sequence_output, values, training=False):
        logits = self.score(sequence_output)  # [B, S, num_labels]
        ids = values.get("input_ids")
        pad = self.config.pad_token_id
        length = ops.shape(logits)[1]  # a tensor when traced with a dynamic length (SavedModel export)
        batch = logits.shape[0]
        if pad is None and isinstance(batch, int) and batch != 1:
            raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
        if ids is None or pad is None:
            # transformers pools the last position (inputs_embeds, or no pad token with a batch of one).
            last = ops.full((ops.shape(logits)[0],), length - 1, dtype="int32")
        else:
            non_pad = ops.cast(ops.not_equal(ids, pad), "int32")
            last = ops.argmax(ops.arange(length, dtype="int32")[None, :] * non_pad, axis=-1)
        pooled = ops.take_along_axis(logits, ops.cast(last, "int32")[:, None, None], axis=1)[:, 0]
        return {"logits": pooled}

    def check_labels(self, values):
        labels, reference = values["labels"], sequence_reference(values)
        if isinstance(labels.shape[0], int) and isinstance(reference.shape[0], int) \
                and labels.shape[0] != reference.shape[0]:
            raise ValueError(f"labels have batch size {labels.shape[0]} but the inputs {reference.shape[0]}")
        if losses.classification_problem(labels, self.config.num_labels,
                                         self.config.problem_type) == "single_label_classification":
            values["labels"] = check_index_range("labels", labels, self.config.num_labels, ignore_value=-100)

    def hf_loss(self, outputs, labels, sample_weight=None):
        return losses.sequence_classification_loss(
            outputs["logits"], labels["labels"], self.config.num_labels, self.config.problem_type,
            sample_weight=sample_weight)

    def hf_weight_specs(self):
        specs = super().hf_weight_specs()
        specs["score.weight"] = (self.score.kernel, "linear")
        return specs
