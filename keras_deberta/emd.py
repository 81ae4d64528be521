"""DeBERTa's enhanced mask decoder (EMD), as the original pretraining code runs it
(DeBERTa/apps/models/masked_language_model.py, `EnhancedMaskDecoder`); transformers has none.

It replaces the encoder's last output before the masked-LM head. With H the output of the
second-to-last layer and P the absolute position embeddings of the tokens, the *last* encoder
layer runs twice more with its own weights: q1 = layer(H, query=P + H), q2 = layer(H, query=q1).
Keys and values always come from H; the residual of each pass is its query stream. q2 goes to the
MLM head. Absolute positions thus enter only here, just before the prediction, which is why the
models pretrained with it (v1 and v3, `position_biased_input` false) keep a position table that
their encoder never reads.

When the encoder adds absolute positions to its input (`position_biased_input` true) the original
skips the two passes and uses the last layer's output as is; so does this layer.
"""

import keras
from keras import ops

_register = keras.saving.register_keras_serializable(package="keras_deberta")

DECODER_PASSES = 2  # the original runs the last layer twice (fixed in its code)


@_register
class EnhancedMaskDecoder(keras.layers.Layer):
    """The EMD of one model; `position_embeddings` [max_position_embeddings, hidden] is the table
    checkpoints store as `deberta.embeddings.position_embeddings.weight`.

    Call args:
        hidden_states: the encoder's per-layer outputs (embedding output first), each [B, L, hidden].
        decoder_layer: the encoder's last `DebertaEncoderLayer` (its weights are shared).
        attention_mask: bool [B, L]; rel_embeddings: the relative table or None;
        position_ids: int [B, L] or None (0..L-1).
    Returns:
        [B, L, hidden], the states the MLM head reads.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        if config.num_hidden_layers < 2:
            # The original reads the second-to-last layer's output (it fails with an IndexError).
            raise ValueError(
                f"enhanced_mask_decoder needs num_hidden_layers >= 2 (it decodes from the second-to-last "
                f"layer's output), got {config.num_hidden_layers}")
        self.uses_positions = not config.position_biased_input
        if self.uses_positions and config.embedding_size != config.hidden_size:
            raise ValueError(
                f"enhanced_mask_decoder adds the position table (embedding_size {config.embedding_size}) to "
                f"hidden states (hidden_size {config.hidden_size}); they must be equal")
        self.max_position_embeddings = config.max_position_embeddings
        self.position_embeddings = None
        if self.uses_positions:
            self.position_embeddings = keras.layers.Embedding(
                config.max_position_embeddings, config.hidden_size, name="position_embeddings",
                embeddings_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range))

    def build(self, input_shape=None):
        if self.position_embeddings is not None:
            self.position_embeddings.build(None)
        self.built = True

    def call(self, hidden_states, decoder_layer, attention_mask, rel_embeddings=None, position_ids=None,
             training=False):
        if not self.uses_positions:
            return hidden_states[-1]
        context = hidden_states[-2]  # [B, L, hidden]: keys and values of both passes
        if position_ids is None:
            position_ids = ops.arange(ops.shape(context)[1], dtype="int32")[None, :]
        query = self.position_embeddings(position_ids) + context  # [B, L, hidden]
        for _ in range(DECODER_PASSES):
            query, _ = decoder_layer(context, attention_mask, rel_embeddings=rel_embeddings, training=training,
                                     query_states=query)
        return query
