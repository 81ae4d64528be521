"""DeBERTa-v3's replaced-token-detection (RTD) discriminator: the encoder plus Microsoft's RTD head.

The head is the original code's `LMMaskPredictionHead` (DeBERTa/apps/models/
replaced_token_detection_model.py), in its order: the [CLS] state is added to every token, then
LayerNorm -> dense -> activation -> a 1-unit classifier, one logit per token. Its weights load and
save under the names the Hub's v3 checkpoints carry (`mask_predictions.*`), which transformers
ignores: our saved checkpoints still load there as `DebertaV2Model`.
"""

import keras
from keras import ops

from keras_deberta.modeling_deberta_v2 import TFDebertaV2PreTrainedModel
from layers import losses
from layers.activations import get_activation
from presets.mapping import add_dense_specs, add_layer_norm_specs
from presets.model_io import check_index_range, check_same_shape, sequence_reference

_register = keras.saving.register_keras_serializable(package="keras_deberta")


def _dense(units, config, name):
    return keras.layers.Dense(
        units, kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range), name=name)


@_register
class ReplacedTokenDetectionHead(keras.layers.Layer):
    """hidden [B, L, hidden] -> logits [B, L]: classifier(act(dense(LayerNorm(h_i + h_CLS))))."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="LayerNorm")
        self.dense = _dense(config.hidden_size, config, "dense")
        self.activation = get_activation(config.hidden_act)
        self.classifier = _dense(1, config, "classifier")

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.layer_norm.build(shape)
        self.dense.build(shape)
        self.classifier.build(shape)
        self.built = True

    def call(self, hidden_states):
        with_context = hidden_states + hidden_states[:, :1]  # [B, L, hidden]: [CLS] state added to every token
        x = self.activation(self.dense(self.layer_norm(with_context)))
        return self.classifier(x)[..., 0]  # [B, L]


class ReplacedTokenDetectionTask:
    """The RTD head on the task protocol: `logits` [B, L]; `labels` [B, L] in {0, 1} (1 = replaced)
    add the original binary cross-entropy, averaged over every non-padding token ([CLS] and [SEP]
    included); -100 also excludes a token."""

    label_names = ("labels",)
    ignorable_checkpoint_keys = TFDebertaV2PreTrainedModel.ignorable_checkpoint_keys + (
        r"^lm_predictions\.",  # the generator's MLM head, when a full pretraining state is loaded
    )

    def build_head(self, config):
        self.mask_predictions = ReplacedTokenDetectionHead(config, name="mask_predictions")

    def head_layer_shapes(self):
        return [(self.mask_predictions, None)]

    def head(self, sequence_output, inputs, training=False):
        return {"logits": self.mask_predictions(sequence_output)}

    def head_specs(self):
        specs = {}
        add_layer_norm_specs(specs, "mask_predictions.LayerNorm", self.mask_predictions.layer_norm)
        add_dense_specs(specs, "mask_predictions.dense", self.mask_predictions.dense)
        add_dense_specs(specs, "mask_predictions.classifier", self.mask_predictions.classifier)
        return specs

    def check_labels(self, inputs):
        labels = inputs["labels"]
        check_same_shape("labels", labels, sequence_reference(inputs))
        if "int" not in str(labels.dtype):
            labels = ops.cast(labels, "int32")
        labels = check_index_range("labels (1 = replaced, 0 = original)", labels, 2, ignore_value=-100)
        if inputs.get("attention_mask") is not None:  # padding is not a token: -100 there
            labels = ops.where(ops.cast(inputs["attention_mask"], "bool"), labels, ops.full_like(labels, -100))
        inputs["labels"] = labels

    def hf_loss(self, outputs, labels, sample_weight=None):
        targets = labels["labels"]
        keep = ops.not_equal(targets, -100)
        return losses.binary_cross_entropy_with_logits(
            outputs["logits"], ops.where(keep, targets, ops.zeros_like(targets)), sample_weight, keep=keep)


@_register
class TFDebertaV2ForReplacedTokenDetection(ReplacedTokenDetectionTask, TFDebertaV2PreTrainedModel):
    """DeBERTa-v3's RTD discriminator: `logits` [B, L] (> 0: replaced); `labels` [B, L] add `loss`.

    `from_pretrained` of a Hub v3 checkpoint keeps its trained head (`mask_predictions.*`).
    """

    # transformers has no RTD class; its DebertaV2Model loads the encoder and ignores the head.
    hf_architecture = "DebertaV2Model"
