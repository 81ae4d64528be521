"""Task heads of the DeBERTa family (v1 and v2/v3 share them)."""

import keras
from keras import ops

from layers.activations import get_activation


def _init(config):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


@keras.saving.register_keras_serializable(package="keras_deberta")
class ContextPooler(keras.layers.Layer):
    """[CLS] state -> dropout -> dense (pooler_hidden_size) -> pooler_hidden_act (HF ContextPooler)."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = keras.layers.Dense(config.pooler_hidden_size, kernel_initializer=_init(config), name="dense")
        self.dropout = keras.layers.Dropout(config.pooler_dropout)
        self.activation = get_activation(config.pooler_hidden_act)

    def build(self, input_shape=None):
        self.dense.build((None, self.hidden_size))
        self.built = True

    def call(self, hidden_states, training=False):
        context = self.dropout(hidden_states[:, 0], training=training)  # [B, hidden]
        return self.activation(self.dense(context))


@keras.saving.register_keras_serializable(package="keras_deberta")
class MaskedLMHead(keras.layers.Layer):
    """Both DeBERTa MLM heads; the decoder is the word-embedding table (tied), plus a bias.

    legacy=True (BERT-style `cls.predictions`): dense hidden -> embedding_size, act, LayerNorm.
    legacy=False (`lm_predictions.lm_head`): dense hidden -> hidden, act, LayerNorm.
    Then logits = x @ E^T + bias, E the [vocab, width] word embeddings.
    """

    def __init__(self, config, legacy=True, **kwargs):
        super().__init__(**kwargs)
        self.legacy = bool(legacy)
        self.hidden_size = config.hidden_size
        self.vocab_size = config.vocab_size
        width = getattr(config, "embedding_size", config.hidden_size) if self.legacy else config.hidden_size
        self.width = width
        self.dense = keras.layers.Dense(width, kernel_initializer=_init(config), name="dense")
        self.activation = get_activation(config.hidden_act)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="LayerNorm")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden_size))
        self.layer_norm.build((None, None, self.width))
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, hidden_states, word_embeddings):
        x = self.layer_norm(self.activation(self.dense(hidden_states)))  # [B, L, width]
        table = ops.cast(word_embeddings, x.dtype)  # [vocab, width]
        return ops.einsum("blw,vw->blv", x, table) + ops.cast(self.bias, x.dtype)
