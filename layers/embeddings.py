"""Input embeddings of the DeBERTa family: word (+ absolute position) (+ token type), projection,
LayerNorm, then the padding mask applied to the result."""

import keras
from keras import ops


def embedding_table(layer, dtype=None):
    """The [vocab, width] float table a Keras Embedding computes with, for heads that reuse it
    (tied MLM / LM decoders). `layer.embeddings` is that table for a float layer (LoRA included),
    but the raw integer codes once the layer is quantized; then every row is looked up through
    the layer, which dequantises exactly as a lookup of those ids would."""
    if layer.quantization_mode is None:
        table = layer.embeddings
    else:
        table = layer(ops.arange(layer.input_dim, dtype="int32"))
    return ops.cast(table, dtype or layer.compute_dtype)


@keras.saving.register_keras_serializable(package="layers")
class DebertaEmbeddings(keras.layers.Layer):
    """Word, optional absolute-position and token-type embeddings -> [proj] -> LayerNorm -> * mask.

    Args:
        vocab_size, hidden_size: table size and model width.
        embedding_size: width of the tables; when it differs from hidden_size a bias-free
            `embed_proj` maps to hidden_size (DeBERTa-v2 `embedding_size`).
        max_position_embeddings: rows of the absolute-position table.
        position_biased_input: whether absolute positions are added at all.
        type_vocab_size: 0 means no token-type table.
    Call args:
        input_ids: int [B, L]; token_type_ids, position_ids: int [B, L] or None;
        padding_mask: [B, L] (1 = token, 0 = padding) or None.
    Returns:
        [B, L, hidden_size].
    """

    def __init__(
        self,
        vocab_size,
        hidden_size,
        embedding_size=None,
        max_position_embeddings=512,
        position_biased_input=True,
        type_vocab_size=0,
        layer_norm_eps=1e-7,
        dropout=0.0,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.embedding_size = int(embedding_size or hidden_size)
        self.max_position_embeddings = int(max_position_embeddings)
        self.position_biased_input = bool(position_biased_input)
        self.type_vocab_size = int(type_vocab_size)
        self.layer_norm_eps = float(layer_norm_eps)
        self.dropout_rate = float(dropout)
        self.initializer_range = float(initializer_range)

        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        policy = self.dtype_policy
        self.word_embeddings = keras.layers.Embedding(
            self.vocab_size, self.embedding_size, embeddings_initializer=init, dtype=policy,
            name="word_embeddings",
        )
        self.position_embeddings = None
        if self.position_biased_input:
            self.position_embeddings = keras.layers.Embedding(
                self.max_position_embeddings, self.embedding_size, embeddings_initializer=init,
                dtype=policy, name="position_embeddings",
            )
        self.token_type_embeddings = None
        if self.type_vocab_size > 0:
            self.token_type_embeddings = keras.layers.Embedding(
                self.type_vocab_size, self.embedding_size, embeddings_initializer=init, dtype=policy,
                name="token_type_embeddings",
            )
        self.embed_proj = None
        if self.embedding_size != self.hidden_size:
            self.embed_proj = keras.layers.Dense(
                self.hidden_size, use_bias=False, kernel_initializer=init, dtype=policy, name="embed_proj"
            )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_eps, dtype=policy, name="LayerNorm"
        )
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape=None):
        self.word_embeddings.build(None)
        if self.position_embeddings is not None:
            self.position_embeddings.build(None)
        if self.token_type_embeddings is not None:
            self.token_type_embeddings.build(None)
        if self.embed_proj is not None:
            self.embed_proj.build((None, None, self.embedding_size))
        self.layer_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, input_ids=None, token_type_ids=None, position_ids=None, padding_mask=None, inputs_embeds=None,
             training=False):
        # inputs_embeds [B, L, E] replaces the word-embedding lookup of input_ids [B, L], as in HF.
        embeddings = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # [B, L, E]
        positions_shape = ops.shape(embeddings)[:2]
        if self.position_embeddings is not None:
            if position_ids is None:
                position_ids = ops.expand_dims(ops.arange(positions_shape[1], dtype="int32"), 0)
            embeddings = embeddings + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = ops.zeros(positions_shape, dtype="int32")
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if self.embed_proj is not None:
            embeddings = self.embed_proj(embeddings)  # [B, L, hidden]
        embeddings = self.layer_norm(embeddings)
        if padding_mask is not None:
            embeddings = embeddings * ops.expand_dims(ops.cast(padding_mask, embeddings.dtype), -1)
        return self.dropout(embeddings, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            embedding_size=self.embedding_size,
            max_position_embeddings=self.max_position_embeddings,
            position_biased_input=self.position_biased_input,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            dropout=self.dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config


@keras.saving.register_keras_serializable(package="layers")
class RelativeEmbedding(keras.layers.Layer):
    """The shared relative-position table [num_rows, hidden], optionally layer-normed (v2/v3
    `norm_rel_ebd="layer_norm"`). `table()` returns it ready for every attention layer (a method,
    not `call`: the table takes no input)."""

    def __init__(self, num_rows, hidden_size, layer_norm=False, layer_norm_eps=1e-7,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_rows = int(num_rows)
        self.hidden_size = int(hidden_size)
        self.use_layer_norm = bool(layer_norm)
        self.layer_norm_eps = float(layer_norm_eps)
        self.initializer_range = float(initializer_range)
        self.layer_norm = None
        if self.use_layer_norm:
            self.layer_norm = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_eps, dtype=self.dtype_policy, name="LayerNorm"
            )

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_rows, self.hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range),
        )
        if self.layer_norm is not None:
            self.layer_norm.build((None, self.hidden_size))
        self.built = True

    def table(self):
        table = ops.cast(self.embeddings, self.compute_dtype)
        if self.layer_norm is not None:
            table = self.layer_norm(table)
        return table

    def get_config(self):
        config = super().get_config()
        config.update(
            num_rows=self.num_rows,
            hidden_size=self.hidden_size,
            layer_norm=self.use_layer_norm,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        return config
