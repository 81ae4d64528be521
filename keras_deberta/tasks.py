"""The DeBERTa task models' shared machinery: input parsing, the call flow, and one mixin per head
(base, masked LM, sequence / token classification, question answering, multiple choice).

A concrete class combines a head mixin with a family base (v1 or v2), e.g.
`class TFDebertaV2ForSequenceClassification(SequenceClassificationTask, TFDebertaV2PreTrainedModel)`.
Heads, checkpoint names and losses are those of transformers' DeBERTa classes.
"""

import keras
from keras import ops

from keras_deberta import heads, layout
from keras_deberta.emd import EnhancedMaskDecoder
from keras_deberta.preprocessing import serving_module
from layers import losses
from layers.embeddings import embedding_table
from presets import keras_compat
from presets.config_bounds import require_labels
from presets.model_io import check_index_range, check_same_shape, sequence_reference
from presets.mapping import add_dense_specs, add_layer_norm_specs
from presets.pretrained import TFPreTrainedModel

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")
ALL_LABEL_NAMES = ("labels", "start_positions", "end_positions")


def _is_int(x):
    return "int" in str(x.dtype)


def _dense(units, config, name):
    return keras.layers.Dense(
        units, kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range), name=name
    )


class DebertaTaskModel(TFPreTrainedModel):
    """A DeBERTa main layer (`self.deberta`) plus the head a mixin defines, on the shared task
    protocol (presets/task_protocol.py)."""

    # keras.distribution: `get_layout_map(device_mesh, ...)` from these rules (keras_deberta/layout.py).
    layout_rules = layout.LAYOUT_RULES
    layout_counts = staticmethod(layout.layout_counts)

    base_model_prefix = "deberta"
    main_layer_class = None
    input_names = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")
    family_label_names = ALL_LABEL_NAMES
    ignorable_checkpoint_keys = (r"(^|\.)embeddings\.position_ids$",)  # a buffer older checkpoints saved
    # SavedModel export (presets/export.py): the signature's inputs and the in-graph tokenisation.
    export_input_names = ("input_ids", "attention_mask", "token_type_ids")
    # enable_lora(): adapters on the attention projections (v1: the fused in_proj); task heads stay
    # trainable (the pooler too: base checkpoints do not have it, so it starts untrained).
    lora_target_modules = ("query_proj", "key_proj", "value_proj", "in_proj")
    lora_modules_to_save = ("pooler", "classifier", "qa_outputs")
    text_serving_module = staticmethod(serving_module)

    def create_layers(self, config):
        if not getattr(config, "position_biased_input", True):
            # transformers ignores a stored absolute-position table the config does not use.
            self.ignorable_checkpoint_keys = self.ignorable_checkpoint_keys + (
                r"(^|\.)embeddings\.position_embeddings\.weight$",
            )
        self.deberta = self.main_layer_class(config, remat=self.remat, name="deberta")
        self.build_head(config)

    def build_layers(self):
        self.deberta.build()
        for layer, shape in self.head_layer_shapes():
            layer.build(shape)

    # --- what a head mixin provides -------------------------------------------------------------
    encoder_prefix = "deberta."

    def build_head(self, config):
        pass

    def head_layer_shapes(self):
        """(layer, input shape) of every head layer with weights, to build them eagerly."""
        return []

    def head_specs(self):
        return {}

    # --- shared ---------------------------------------------------------------------------------
    def hf_weight_specs(self):
        specs = self.deberta.hf_weight_specs(prefix=self.encoder_prefix)
        specs.update(self.head_specs())
        return specs

    def input_embedding_layer(self):
        return self.deberta.embeddings.word_embeddings

    def check_family_inputs(self, values, reference):
        config = self.config
        length = reference.shape[-1]
        if config.position_biased_input and "position_ids" not in values and isinstance(length, int) \
                and length > config.max_position_embeddings and not keras_compat.in_shape_inference():
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings "
                f"({config.max_position_embeddings}) of this model's absolute position table"
            )
        if "token_type_ids" in values and config.type_vocab_size > 0:
            values["token_type_ids"] = check_index_range("token_type_ids", values["token_type_ids"], config.type_vocab_size)
        if "position_ids" in values and config.position_biased_input:
            values["position_ids"] = check_index_range(
                "position_ids", values["position_ids"], config.max_position_embeddings
            )
        return values

    def run_backbone(self, inputs, training, output_hidden_states, output_attentions):
        return self.deberta(
            inputs.get("input_ids"), attention_mask=inputs.get("attention_mask"),
            token_type_ids=inputs.get("token_type_ids"), position_ids=inputs.get("position_ids"),
            inputs_embeds=inputs.get("inputs_embeds"), training=training,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)

    def export_input_limits(self):  # what parse_inputs checks, asserted by the exported signatures
        limits = {"input_ids": self.config.vocab_size}
        if self.config.type_vocab_size > 0:
            limits["token_type_ids"] = self.config.type_vocab_size
        return limits

    def export_max_length(self):  # the absolute position table bounds the length; relative attention does not
        return self.config.max_position_embeddings if self.config.position_biased_input else None

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             labels=None, start_positions=None, end_positions=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        return self.run_task(input_ids, dict(
            attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
            inputs_embeds=inputs_embeds, labels=labels, start_positions=start_positions,
            end_positions=end_positions, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=return_dict), training=training)


class BaseModelTask:
    """The bare encoder: its checkpoint carries no "deberta." prefix."""

    encoder_prefix = ""
    primary_output_names = ("last_hidden_state",)

    def head(self, sequence_output, inputs, training=False):
        return {"last_hidden_state": sequence_output}


class MaskedLMTask:
    label_names = ("labels",)
    export_text_signatures = ("serve_text",)
    ignorable_checkpoint_keys = DebertaTaskModel.ignorable_checkpoint_keys + (
        r"^cls\.predictions\.decoder\.(weight|bias)$",  # tied to the word embeddings / the bias
        r"^mask_predictions\.",  # the original enhanced mask decoder, absent from transformers
    )

    def build_head(self, config):
        self.enhanced_mask_decoder = None
        if getattr(config, "enhanced_mask_decoder", False):
            # The original EMD feeds its own head, `lm_predictions.lm_head` (the v1 Hub checkpoints
            # store it): the config says so, so transformers loads that head from our saved files.
            config.legacy = False
            self.enhanced_mask_decoder = EnhancedMaskDecoder(config, name="enhanced_mask_decoder")
        self.legacy = bool(getattr(config, "legacy", True))
        self.lm_head = heads.MaskedLMHead(config, legacy=self.legacy, name="cls" if self.legacy else "lm_predictions")

    def head_layer_shapes(self):
        if self.enhanced_mask_decoder is not None:
            return [(self.lm_head, None), (self.enhanced_mask_decoder, None)]
        return [(self.lm_head, None)]

    def run_backbone(self, inputs, training, output_hidden_states, output_attentions):
        if self.enhanced_mask_decoder is None:
            return super().run_backbone(inputs, training, output_hidden_states, output_attentions)
        features = dict(super().run_backbone(inputs, training, True, output_attentions))
        position_ids = inputs.get("position_ids")
        if position_ids is not None:  # they index the decoder's position table
            position_ids = check_index_range("position_ids", position_ids, self.config.max_position_embeddings)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones(ops.shape(features["last_hidden_state"])[:2], dtype="int32")
        rel = self.deberta.rel_embeddings.table() if self.deberta.rel_embeddings is not None else None
        # The MLM head reads the decoder's output in place of the last layer's.
        features["last_hidden_state"] = self.enhanced_mask_decoder(
            features["hidden_states"], decoder_layer=self.deberta.encoder_layers[-1],
            attention_mask=ops.cast(mask, "bool"), rel_embeddings=rel,
            position_ids=position_ids, training=training)
        if not output_hidden_states:
            features.pop("hidden_states")
        return features

    def output_embedding_layer(self):  # the decoder is tied to the word embeddings
        return self.deberta.embeddings.word_embeddings

    def output_bias_variables(self):
        return {"bias": self.lm_head.bias}

    def output_bias_owners(self):
        return [(self.lm_head, "bias")]

    def lm_head_layer(self):
        return self.lm_head

    def head(self, sequence_output, inputs, training=False):
        table = embedding_table(self.deberta.embeddings.word_embeddings)  # dequantised if quantized
        return {"logits": self.lm_head(sequence_output, table)}

    def head_specs(self):
        specs = {}
        base = "cls.predictions.transform" if self.legacy else "lm_predictions.lm_head"
        add_dense_specs(specs, f"{base}.dense", self.lm_head.dense)
        add_layer_norm_specs(specs, f"{base}.LayerNorm", self.lm_head.layer_norm)
        specs["cls.predictions.bias" if self.legacy else "lm_predictions.lm_head.bias"] = (self.lm_head.bias, "identity")
        emd = self.enhanced_mask_decoder
        if emd is not None and emd.position_embeddings is not None:
            specs["deberta.embeddings.position_embeddings.weight"] = (emd.position_embeddings.embeddings, "identity")
        return specs

    def check_labels(self, inputs):
        labels = inputs["labels"]
        check_same_shape("labels", labels, sequence_reference(inputs))
        inputs["labels"] = check_index_range("labels", labels, self.config.vocab_size, ignore_value=-100)

    def hf_loss(self, outputs, labels, sample_weight=None):
        return losses.sparse_cross_entropy(outputs["logits"], labels["labels"], sample_weight=sample_weight)


class _PooledClassifier:
    """ContextPooler + dropout (cls_dropout, else hidden_dropout_prob) + classifier."""

    def _build_pooled(self, config, units):
        self.pooler = heads.ContextPooler(config, name="pooler")
        rate = config.cls_dropout if getattr(config, "cls_dropout", None) is not None else config.hidden_dropout_prob
        self.classifier_dropout = keras.layers.Dropout(rate)
        self.classifier = _dense(units, config, "classifier")

    def head_layer_shapes(self):
        return [(self.pooler, None), (self.classifier, (None, self.config.pooler_hidden_size))]

    def _pooled_logits(self, sequence_output, training):
        pooled = self.classifier_dropout(self.pooler(sequence_output, training=training), training=training)
        return self.classifier(pooled)

    def head_specs(self):
        specs = {}
        add_dense_specs(specs, "pooler.dense", self.pooler.dense)
        add_dense_specs(specs, "classifier", self.classifier)
        return specs


class SequenceClassificationTask(_PooledClassifier):
    label_names = ("labels",)
    export_text_signatures = ("serve_text", "serve_text_pair")

    def build_head(self, config):
        self._build_pooled(config, require_labels(config))

    def head(self, sequence_output, inputs, training=False):
        return {"logits": self._pooled_logits(sequence_output, training)}

    def _label_kind(self, labels):
        problem, n = self.config.problem_type, self.config.num_labels
        if problem is None:
            if n == 1:
                return "regression"
            if len(labels.shape) == 1 or labels.shape[-1] == 1:
                return "hard_ignore_negative"
            return "soft"
        return {"regression": "regression", "single_label_classification": "hard",
                "multi_label_classification": "multi_label"}[problem]

    def check_labels(self, inputs):
        labels, ids = inputs["labels"], sequence_reference(inputs)
        n = self.config.num_labels
        if isinstance(labels.shape[0], int) and isinstance(ids.shape[0], int) and labels.shape[0] != ids.shape[0]:
            raise ValueError(f"labels have batch size {labels.shape[0]} but input_ids {ids.shape[0]}")
        kind = self._label_kind(labels)
        if kind in ("hard", "hard_ignore_negative"):
            if len(labels.shape) > 2 or (len(labels.shape) == 2 and labels.shape[-1] != 1):
                raise ValueError(f"class labels must have shape [batch], got {tuple(labels.shape)}")
            labels = ops.reshape(labels, (-1,))
            if not _is_int(labels):
                labels = ops.cast(labels, "int32")
            inputs["labels"] = check_index_range(
                "labels", labels, n, ignore_value=-100, ignore_negative=(kind == "hard_ignore_negative")
            )
        elif kind in ("soft", "multi_label") and (len(labels.shape) != 2 or labels.shape[-1] not in (None, n)):
            raise ValueError(f"{kind} labels must have shape [batch, {n}], got {tuple(labels.shape)}")

    def hf_loss(self, outputs, labels, sample_weight=None):
        logits, y = outputs["logits"], labels["labels"]
        kind = self._label_kind(y)
        if kind == "regression":
            if self.config.num_labels == 1:
                return losses.mean_squared_error(ops.reshape(logits, (-1,)), ops.reshape(y, (-1,)), sample_weight)
            return losses.mean_squared_error(logits, y, sample_weight)
        if kind == "soft":
            return losses.soft_cross_entropy(logits, y, sample_weight)
        if kind == "multi_label":
            return losses.binary_cross_entropy_with_logits(logits, y, sample_weight)
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        return losses.sparse_cross_entropy(
            logits, y, ignore_negative=(kind == "hard_ignore_negative"), sample_weight=sample_weight
        )


class TokenClassificationTask:
    label_names = ("labels",)
    export_text_signatures = ("serve_text",)

    def build_head(self, config):
        self.classifier_dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.classifier = _dense(require_labels(config), config, "classifier")

    def head_layer_shapes(self):
        return [(self.classifier, (None, None, self.config.hidden_size))]

    def head(self, sequence_output, inputs, training=False):
        return {"logits": self.classifier(self.classifier_dropout(sequence_output, training=training))}

    def head_specs(self):
        specs = {}
        add_dense_specs(specs, "classifier", self.classifier)
        return specs

    def check_labels(self, inputs):
        check_same_shape("labels", inputs["labels"], sequence_reference(inputs))
        inputs["labels"] = check_index_range("labels", inputs["labels"], self.config.num_labels, ignore_value=-100)

    def hf_loss(self, outputs, labels, sample_weight=None):
        return losses.sparse_cross_entropy(outputs["logits"], labels["labels"], sample_weight=sample_weight)


class QuestionAnsweringTask:
    label_names = ("start_positions", "end_positions")
    primary_output_names = ("start_logits", "end_logits")

    def build_head(self, config):
        self.qa_outputs = _dense(require_labels(config), config, "qa_outputs")

    def head_layer_shapes(self):
        return [(self.qa_outputs, (None, None, self.config.hidden_size))]

    def head(self, sequence_output, inputs, training=False):
        logits = self.qa_outputs(sequence_output)  # [B, L, 2]
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    def head_specs(self):
        specs = {}
        add_dense_specs(specs, "qa_outputs", self.qa_outputs)
        return specs

    def check_labels(self, inputs):
        batch = sequence_reference(inputs).shape[0]
        for name in self.label_names:
            if name not in inputs:
                raise ValueError("question answering needs both start_positions and end_positions")
            value = inputs[name]
            if len(value.shape) > 2 or (len(value.shape) == 2 and value.shape[-1] != 1) \
                    or (batch is not None and value.shape[0] not in (None, batch)):
                raise ValueError(f"{name} must have shape [batch], got {tuple(value.shape)}")

    def hf_loss(self, outputs, labels, sample_weight=None):
        length = ops.shape(outputs["start_logits"])[1]
        total = 0.0
        for logits_name, label_name in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
            positions = ops.cast(ops.reshape(labels[label_name], (-1,)), "int32")
            # As transformers: positions outside the sequence are clamped to L and then ignored.
            positions = ops.clip(positions, 0, length)
            positions = ops.where(positions == length, -100, positions)
            total = total + losses.sparse_cross_entropy(outputs[logits_name], positions, sample_weight=sample_weight)
        return total / 2.0


class MultipleChoiceTask(_PooledClassifier):
    label_names = ("labels",)
    input_rank = 3

    def build_head(self, config):
        self._build_pooled(config, 1)

    def backbone_inputs(self, inputs):
        flat = {}  # [B, C, L(, E)] -> [B * C, L(, E)]
        for name in ENCODER_INPUTS:
            value = inputs.get(name)
            if value is not None:
                keep = 2 if name == "inputs_embeds" else 1
                flat[name] = ops.reshape(value, (-1,) + tuple(ops.shape(value)[-keep:]))
        return flat

    def head(self, sequence_output, inputs, training=False):
        num_choices = ops.shape(sequence_reference(inputs))[1]
        logits = self._pooled_logits(sequence_output, training)  # [B * C, 1]
        return {"logits": ops.reshape(logits, (-1, num_choices))}

    def check_labels(self, inputs):
        labels, ids = inputs["labels"], sequence_reference(inputs)
        if len(labels.shape) != 1 or (ids.shape[0] is not None and labels.shape[0] not in (None, ids.shape[0])):
            raise ValueError(f"labels must have shape [batch] = [{ids.shape[0]}], got {tuple(labels.shape)}")
        num_choices = ids.shape[1]
        if num_choices is not None:
            inputs["labels"] = check_index_range(
                "labels (the index of the right choice)", labels, num_choices, ignore_value=-100
            )

    def hf_loss(self, outputs, labels, sample_weight=None):
        return losses.sparse_cross_entropy(outputs["logits"], labels["labels"], sample_weight=sample_weight)
