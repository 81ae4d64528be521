"""The DeBERTa encoder shared by v1 and v2/v3: one encoder block and the main layer (embeddings,
relative table, blocks, nGiE conv), with the table of its transformers tensor names. The v1
differences (fused q/k/v, talking heads) are options of `DisentangledSelfAttention` that the
config switches on."""

import keras
from keras import ops

from layers.activations import get_activation
from layers.disentangled_attention import DisentangledSelfAttention
from layers.embeddings import DebertaEmbeddings, RelativeEmbedding
from layers.ngie import NGIEConv
from keras_deberta.configuration_deberta import DebertaConfig, DebertaV2Config
from presets.mapping import add_dense_specs, add_layer_norm_specs
from presets.remat import remat_call

_register = keras.saving.register_keras_serializable(package="keras_deberta")
_CONFIG_CLASSES = {c.model_type: c for c in (DebertaConfig, DebertaV2Config)}


def _dense(units, config, name, use_bias=True):
    return keras.layers.Dense(
        units, use_bias=use_bias, name=name,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
    )


class _ConfiguredLayer(keras.layers.Layer):
    """A layer built from a DeBERTa config (v1 or v2/v3): `get_config` carries the config dict, so
    a functional model around the layer saves and reloads (.keras)."""

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model_config = config.pop("config")
        return cls(_CONFIG_CLASSES[model_config["model_type"]].from_dict(model_config), **config)


@_register
class DebertaEncoderLayer(_ConfiguredLayer):
    """One encoder block: disentangled attention -> dense + LN residual -> FFN -> dense + LN residual."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        if config.hidden_size % config.num_attention_heads:  # where transformers checks it
            raise ValueError(
                f"The hidden size ({config.hidden_size}) is not a multiple of the number of attention "
                f"heads ({config.num_attention_heads})")
        self.config = config
        relative = bool(config.relative_attention)
        self.attention = DisentangledSelfAttention(
            hidden_size=config.hidden_size,
            num_heads=config.num_attention_heads,
            head_size=config.attention_head_size,
            pos_att_type=config.pos_att_type or (),
            relative_attention=relative,
            share_att_key=config.share_att_key,
            position_buckets=config.position_buckets if relative else -1,
            max_relative_positions=config.resolved_max_relative_positions,
            attention_dropout=config.attention_probs_dropout_prob,
            position_dropout=config.hidden_dropout_prob,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
            fused_qkv=config.fused_qkv,
            position_key_bias=not config.fused_qkv,  # v1's pos_proj has no bias
            talking_head=bool(getattr(config, "talking_head", False)),
            attention_block_size=config.attention_block_size,
            name="self",
        )
        eps = config.layer_norm_eps
        self.attention_output = _dense(config.hidden_size, config, "attention_output")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=eps, name="attention_LayerNorm")
        self.intermediate = _dense(config.intermediate_size, config, "intermediate")
        self.activation = get_activation(config.hidden_act)
        self.output_dense = _dense(config.hidden_size, config, "output")
        self.output_norm = keras.layers.LayerNormalization(epsilon=eps, name="output_LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.hidden_size = config.hidden_size
        self.inner_size = config.num_attention_heads * config.attention_head_size
        self.intermediate_size = config.intermediate_size

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.attention_output.build((None, None, self.inner_size))
        self.attention_norm.build((None, None, self.hidden_size))
        self.intermediate.build((None, None, self.hidden_size))
        self.output_dense.build((None, None, self.intermediate_size))
        self.output_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, hidden_states, attention_mask, rel_embeddings=None, training=False, return_attention_scores=False,
             query_states=None):
        # query_states [B, L, hidden] (the enhanced mask decoder): queries and the residual come
        # from it, keys and values from hidden_states.
        context, probs = self.attention(
            hidden_states, attention_mask=attention_mask, rel_embeddings=rel_embeddings,
            training=training, return_attention_scores=return_attention_scores, query_states=query_states,
        )
        attended = self.dropout(self.attention_output(context), training=training)
        residual = hidden_states if query_states is None else query_states
        attended = self.attention_norm(attended + residual)
        inner = self.activation(self.intermediate(attended))
        out = self.dropout(self.output_dense(inner), training=training)
        return self.output_norm(out + attended), probs


@_register
class DebertaMainLayer(_ConfiguredLayer):
    """Embeddings + encoder (HF's `deberta` sub-module): ids -> hidden states.

    Call returns a dict with `last_hidden_state` [B, L, hidden], and on request `hidden_states`
    (embedding output, then every layer) and `attentions` ([B, H, L, L] per layer).

    remat=True recomputes each encoder layer's activations in the backward pass (`keras.remat`)
    instead of keeping them: training memory no longer grows with the number of layers.
    """

    def __init__(self, config, remat=False, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.remat = bool(remat)
        self.embeddings = DebertaEmbeddings(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            embedding_size=config.embedding_size,
            max_position_embeddings=config.max_position_embeddings,
            position_biased_input=config.position_biased_input,
            type_vocab_size=config.type_vocab_size,
            layer_norm_eps=config.layer_norm_eps,
            dropout=config.hidden_dropout_prob,
            initializer_range=config.initializer_range,
            name="embeddings",
        )
        self.rel_embeddings = None
        if config.relative_attention:
            self.rel_embeddings = RelativeEmbedding(
                config.relative_table_rows,
                config.hidden_size,
                layer_norm=config.layer_norm_relative_table,
                layer_norm_eps=config.layer_norm_eps,
                initializer_range=config.initializer_range,
                name="rel_embeddings",
            )
        self.encoder_layers = [DebertaEncoderLayer(config, name=f"layer_{i}") for i in range(config.num_hidden_layers)]
        self.conv = None
        if config.conv_kernel_size > 0:
            self.conv = NGIEConv(
                config.hidden_size,
                kernel_size=config.conv_kernel_size,
                groups=config.conv_groups,
                activation=config.conv_act,
                layer_norm_eps=config.layer_norm_eps,
                dropout=config.hidden_dropout_prob,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
                name="conv",
            )

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.config.hidden_size)
        self.embeddings.build()
        if self.rel_embeddings is not None:
            self.rel_embeddings.build()
        for layer in self.encoder_layers:
            layer.build(hidden_shape)
        if self.conv is not None:
            self.conv.build(hidden_shape)
        self.built = True

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             training=False, output_hidden_states=False, output_attentions=False):
        # input_ids [B, L], or inputs_embeds [B, L, embedding_size] in their place.
        if attention_mask is None:
            shape = ops.shape(input_ids) if input_ids is not None else ops.shape(inputs_embeds)[:2]
            attention_mask = ops.ones(shape, dtype="int32")
        mask = ops.cast(attention_mask, "bool")
        embedding_output = self.embeddings(
            input_ids, token_type_ids=token_type_ids, position_ids=position_ids, padding_mask=attention_mask,
            inputs_embeds=inputs_embeds, training=training,
        )
        rel_embeddings = self.rel_embeddings.table() if self.rel_embeddings is not None else None
        hidden = embedding_output
        all_hidden = [hidden]
        all_attentions = []
        for i, layer in enumerate(self.encoder_layers):
            hidden, probs = self._run_block(layer, hidden, mask, rel_embeddings, training, output_attentions)
            if i == 0 and self.conv is not None:
                hidden = self.conv(embedding_output, hidden, padding_mask=attention_mask, training=training)
            all_hidden.append(hidden)
            all_attentions.append(probs)
        out = {"last_hidden_state": hidden}
        if output_hidden_states:
            out["hidden_states"] = tuple(all_hidden)
        if output_attentions:
            out["attentions"] = tuple(all_attentions)
        return out

    def _run_block(self, layer, hidden, mask, rel_embeddings, training, output_attentions):
        if not self.remat or output_attentions:
            return layer(hidden, mask, rel_embeddings=rel_embeddings, training=training,
                         return_attention_scores=output_attentions)
        # keras.remat takes float tensors only (TensorFlow's recompute_grad refuses bool inputs):
        # the mask crosses as 0/1 floats and the Python options stay in the closure.
        extra = [] if rel_embeddings is None else [rel_embeddings]

        def block(hidden, mask, *table):
            return layer(hidden, ops.cast(mask, "bool"), rel_embeddings=table[0] if table else None,
                         training=training)[0]

        return remat_call(layer, block, hidden, ops.cast(mask, hidden.dtype), *extra), None

    def get_config(self):
        return {**super().get_config(), "remat": self.remat}

    def hf_weight_specs(self, prefix=""):
        """{HF PyTorch name: (Keras variable, transform)} for every weight of this layer."""
        specs = {}
        dense = lambda name, layer: add_dense_specs(specs, prefix + name, layer)
        norm = lambda name, layer: add_layer_norm_specs(specs, prefix + name, layer)

        emb = self.embeddings
        specs[f"{prefix}embeddings.word_embeddings.weight"] = (emb.word_embeddings.embeddings, "identity")
        if emb.position_embeddings is not None:
            specs[f"{prefix}embeddings.position_embeddings.weight"] = (emb.position_embeddings.embeddings, "identity")
        if emb.token_type_embeddings is not None:
            specs[f"{prefix}embeddings.token_type_embeddings.weight"] = (emb.token_type_embeddings.embeddings, "identity")
        if emb.embed_proj is not None:
            dense("embeddings.embed_proj", emb.embed_proj)
        norm("embeddings.LayerNorm", emb.layer_norm)
        if self.rel_embeddings is not None:
            specs[f"{prefix}encoder.rel_embeddings.weight"] = (self.rel_embeddings.embeddings, "identity")
            if self.rel_embeddings.layer_norm is not None:
                norm("encoder.LayerNorm", self.rel_embeddings.layer_norm)
        if self.conv is not None:
            specs[f"{prefix}encoder.conv.conv.weight"] = (self.conv.conv.kernel, "conv1d")
            specs[f"{prefix}encoder.conv.conv.bias"] = (self.conv.conv.bias, "identity")
            norm("encoder.conv.LayerNorm", self.conv.layer_norm)
        for i, layer in enumerate(self.encoder_layers):
            base = f"encoder.layer.{i}."
            att = layer.attention
            if att.fused_qkv:  # DeBERTa v1 spellings
                dense(f"{base}attention.self.in_proj", att.in_proj)
                specs[f"{prefix}{base}attention.self.q_bias"] = (att.q_bias, "identity")
                specs[f"{prefix}{base}attention.self.v_bias"] = (att.v_bias, "identity")
                names = {"pos_key_proj": "pos_proj", "pos_query_proj": "pos_q_proj",
                         "head_logits_proj": "head_logits_proj", "head_weights_proj": "head_weights_proj"}
            else:
                names = {p: p for p in ("query_proj", "key_proj", "value_proj", "pos_key_proj", "pos_query_proj")}
            for attr, hf_name in names.items():
                if getattr(att, attr) is not None:
                    dense(f"{base}attention.self.{hf_name}", getattr(att, attr))
            dense(f"{base}attention.output.dense", layer.attention_output)
            norm(f"{base}attention.output.LayerNorm", layer.attention_norm)
            dense(f"{base}intermediate.dense", layer.intermediate)
            dense(f"{base}output.dense", layer.output_dense)
            norm(f"{base}output.LayerNorm", layer.output_norm)
        return specs


DebertaV2MainLayer = DebertaMainLayer  # the name HF's TF code used for this sub-module
