"""NGIEConv: DeBERTa-v2's nGram-induced input encoding (a 1-D convolution beside layer 0)."""

import keras
from keras import ops

from layers.activations import get_activation


@keras.saving.register_keras_serializable(package="layers")
class NGIEConv(keras.layers.Layer):
    """out = LayerNorm(layer0_output + act(dropout(mask * conv1d(embeddings)))) * mask.

    The convolution runs over the sequence axis with "same" length (the kernel size must be odd,
    as the reference pads (k - 1) // 2 on both sides) and may be grouped.

    Call args:
        embeddings: [B, L, hidden], the encoder's input (embedding output).
        layer_output: [B, L, hidden], the output of encoder layer 0.
        padding_mask: [B, L] (1 = token) or None.
    """

    def __init__(self, hidden_size, kernel_size=3, groups=1, activation="tanh", layer_norm_eps=1e-7,
                 dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.kernel_size = int(kernel_size)
        self.groups = int(groups)
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"conv_kernel_size must be a positive odd number (the reference keeps the length only "
                f"for odd sizes), got {self.kernel_size}"
            )
        if self.hidden_size % self.groups:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by conv_groups {self.groups}")
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.layer_norm_eps = float(layer_norm_eps)
        self.dropout_rate = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.conv = keras.layers.Conv1D(
            self.hidden_size, self.kernel_size, padding="same", groups=self.groups,
            kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name="conv",
        )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_eps, dtype=self.dtype_policy, name="LayerNorm"
        )
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape=None):
        self.conv.build((None, None, self.hidden_size))
        self.layer_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, embeddings, layer_output, padding_mask=None, training=False):
        out = self.conv(embeddings)  # [B, L, hidden]
        mask = None
        if padding_mask is not None:
            mask = ops.expand_dims(ops.cast(padding_mask, out.dtype), -1)
            out = out * mask
        out = self.activation(self.dropout(out, training=training))
        out = self.layer_norm(layer_output + out)
        if mask is not None:
            out = out * mask
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            kernel_size=self.kernel_size,
            groups=self.groups,
            activation=self.activation_name,
            layer_norm_eps=self.layer_norm_eps,
            dropout=self.dropout_rate,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
