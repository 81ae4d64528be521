"""The part of transformers' TF model API that HF TF code and tests call besides the model itself:
embedding accessors, `resize_token_embeddings`, `dummy_inputs`, `input_signature`, `serving`.

A family names its layers through three hooks: `input_embedding_layer()` (the word-embedding
`keras.layers.Embedding`), `output_embedding_layer()` (the LM decoder: the same Embedding when
tied, a Dense `lm_head` when not, None for other heads) and `output_bias_variables()` (the LM
decoder's bias by name, or None).
"""

import re

import keras
import numpy as np
from keras import ops

from presets import keras_compat
from presets.mapping import variable_of
from presets.model_io import ModelOutput


# HF names of nn.Embedding tables (word_embeddings, position_embeddings, token_type_embeddings,
# rel_embeddings, embed_tokens): what transformers' num_parameters(exclude_embeddings=True) leaves out.
EMBEDDING_TABLE = re.compile(r"(embeddings|embed_tokens)\.weight$")


class HFModelAPIMixin:
    """Accessors and utilities with transformers' TF semantics (names, return values)."""

    # --- family hooks ----------------------------------------------------------------------------
    def input_embedding_layer(self):
        raise NotImplementedError

    def output_embedding_layer(self):
        return None

    def output_bias_variables(self):
        return None

    def lm_head_layer(self):
        return None

    # --- embeddings ------------------------------------------------------------------------------
    def get_input_embeddings(self):
        """The word-embedding layer (a `keras.layers.Embedding`; its table is `.embeddings`)."""
        return self.input_embedding_layer()

    def set_input_embeddings(self, value):
        """Replaces the word-embedding table with `value` ([vocab, width] array or an Embedding
        layer's table); another vocabulary size resizes the model first (tied heads too)."""
        table = _table_of(value)
        if table.shape[0] != self.input_embedding_layer().input_dim:
            self.resize_token_embeddings(table.shape[0])
        self.input_embedding_layer().embeddings.assign(table.astype(self.input_embedding_layer().embeddings.dtype))

    def get_output_embeddings(self):
        """The LM decoder layer: the word embeddings when tied, the `lm_head` Dense when not; None
        for heads without one."""
        return self.output_embedding_layer()

    def get_bias(self):
        """{name: variable} of the LM decoder's bias, or None (transformers' TF `get_bias`). On
        TensorFlow each value is the `tf.Variable` itself, as transformers returned it (Keras 3
        wraps it; TF code reads and assigns the tf.Variable); elsewhere the Keras variable."""
        biases = self.output_bias_variables()
        if biases is None or keras.backend.backend() != "tensorflow":
            return biases
        return {name: variable.value for name, variable in biases.items()}

    def set_bias(self, value):
        current = self.output_bias_variables()
        if current is None:
            raise ValueError(f"{type(self).__name__} has no output bias")
        for name, array in value.items():
            current[name].assign(np.asarray(ops.convert_to_numpy(array)).astype(current[name].dtype))

    @classmethod
    def can_generate(cls):
        """Whether `generate` exists on this class (transformers' check before it writes a
        generation_config.json)."""
        return callable(getattr(cls, "generate", None))

    def build_in_name_scope(self):
        """transformers' TF models built their variables here; ours are built at construction."""
        self.build()

    def get_lm_head(self):
        """The language-modelling head layer, or None."""
        return self.lm_head_layer()

    def num_parameters(self, only_trainable=False, exclude_embeddings=False):
        """The number of parameters, as transformers counts them: each variable once (tied
        embeddings are one table), only trainable ones when asked, without the embedding tables
        (word, position, token type, relative position) when `exclude_embeddings`."""
        variables = self.trainable_variables if only_trainable else self.weights
        excluded = set()
        if exclude_embeddings:  # the variables behind HF's nn.Embedding tables, found by their HF names
            excluded = {id(variable_of(slot)) for name, (slot, _) in self.hf_weight_specs().items()
                        if EMBEDDING_TABLE.search(name)}
        seen, total = set(), 0
        for variable in variables:
            if id(variable) in seen or id(variable) in excluded:
                continue
            seen.add(id(variable))
            total += int(np.prod(variable.shape))
        return total

    def resize_token_embeddings(self, new_num_tokens=None):
        """Gives the model a vocabulary of `new_num_tokens` ids, as transformers does: the first
        min(old, new) rows of the word embeddings (and of an untied LM head and the decoder bias)
        keep their values, new rows start from the model's initializer (biases at zero), and
        `config.vocab_size` follows. Returns the word-embedding layer. The model is compiled again
        before further training (optimizer state belonged to the old variables)."""
        embedding = self.input_embedding_layer()
        if new_num_tokens is None:
            return embedding
        new = int(new_num_tokens)
        if new <= 0:
            raise ValueError(f"new_num_tokens must be a positive integer, got {new_num_tokens!r}")
        layers = [embedding] + [layer for layer in (self.output_embedding_layer(),) if layer is not None]
        for layer in layers:
            if layer.quantization_mode or getattr(layer, "lora_enabled", False):
                raise ValueError(f"cannot resize {layer.name}: it is quantized or has LoRA adapters")
        std = getattr(self.config, "initializer_range", 0.02)
        rng = np.random.default_rng(0)

        def grown(old, axis, fill):
            old = np.asarray(ops.convert_to_numpy(old))
            keep = min(old.shape[axis], new)
            shape = list(old.shape)
            shape[axis] = new
            out = (fill(shape) if fill else np.zeros(shape)).astype(old.dtype)
            index = [slice(None)] * old.ndim
            index[axis] = slice(0, keep)
            out[tuple(index)] = old[tuple(index)]
            return out

        def normal(shape):
            return rng.normal(0.0, std, size=shape)

        keras_compat.replace_variable(embedding, "_embeddings", grown(embedding.embeddings, 0, normal))
        embedding.input_dim = new
        head = self.output_embedding_layer()
        if head is not None and head is not embedding:  # an untied Dense lm_head [width, vocab]
            keras_compat.replace_variable(head, "_kernel", grown(head.kernel, 1, normal))
            if head.use_bias:
                keras_compat.replace_variable(head, "bias", grown(head.bias, 0, None))
            head.units = new
        for owner, name in self.output_bias_owners():
            keras_compat.replace_variable(owner, name, grown(getattr(owner, name), 0, None))
        self.config.vocab_size = new
        if getattr(self, "optimizer", None) is not None:
            self.optimizer = None
            self.compiled = False
        self._reset_compiled_functions()
        return embedding

    def output_bias_owners(self):
        """(layer, attribute) of each decoder bias outside the lm_head Dense (resized with the
        vocabulary)."""
        return []

    # --- inputs transformers' TF code builds from the model ----------------------------------------
    @property
    def input_signature(self):
        """{input name: tf.TensorSpec} of the serving inputs (int32, dynamic batch and length), as
        transformers' TF models declare it. Imports TensorFlow."""
        import tensorflow as tf

        shape = [None] * self.input_rank
        return {name: tf.TensorSpec(shape, tf.int32, name=name) for name in self.export_input_names}

    @property
    def dummy_inputs(self):
        """Small inputs that run the model ({name: int32 tensor of the backend}, a tf.Tensor on
        TensorFlow as transformers gave): ones of shape [1, 2] (multiple choice [1, 2, 2]), zero
        token types, as transformers' TF models build them."""
        shape = (1,) + (2,) * (self.input_rank - 1)
        return {name: (ops.zeros if name == "token_type_ids" else ops.ones)(shape, dtype="int32")
                for name in self.export_input_names}

    def serving(self, inputs):
        """transformers' TF `serving`: the call on a dict of serving inputs, through `serving_output`."""
        return self.serving_output(self(inputs, training=False))

    def serving_output(self, output):
        """The output with per-layer tuples stacked into tensors ([layers, ...]), as the TF
        `serving_output` of transformers returns them."""
        stacked = {k: ops.stack(v) if isinstance(v, (tuple, list)) else v for k, v in output.items()}
        return ModelOutput(stacked)


def _table_of(value):
    if isinstance(value, keras.layers.Embedding):
        value = value.embeddings
    table = np.asarray(ops.convert_to_numpy(value))
    if table.ndim != 2:
        raise ValueError(f"an embedding table must be [vocab, width], got shape {table.shape}")
    return table
