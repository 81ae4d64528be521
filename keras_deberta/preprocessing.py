"""In-graph DeBERTa preprocessing: strings in, `input_ids` / `attention_mask` / `token_type_ids` out.

The tokenisation runs in TensorFlow ops (keras-hub's `SentencePieceTokenizer` / `BytePairTokenizer`,
which wrap tf-text), so the layers work inside `tf.data` on every Keras backend and inside an exported
SavedModel. Around the tokenizer they do what the Python tokenizers do: special tokens written in the
text ([CLS] [SEP] [PAD] [UNK] [MASK]) are matched first, pairs get the model's template, truncation
follows transformers' strategies ("longest_first", "only_first", "only_second") and padding is to a
fixed `sequence_length` or, with `sequence_length=None`, to the longest row of the batch.

Call with a batch of strings (list or tensor), a single string, or a pair as a tuple
`(texts_a, texts_b)`:

    pre = DebertaV2Preprocessor.from_pretrained("path/to/dir", sequence_length=128)
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(32).map(pre)

Length: `sequence_length=N` pads and truncates every row to exactly N tokens; `max_length=N`
truncates to at most N tokens and pads each batch to its longest row (what a server wants: a bound
without padding short requests). With `truncation=None`, a row longer than the bound fails with an
InvalidArgumentError instead of being cut.

Eager calls outside TensorFlow graphs return tensors of the active backend.

TensorFlow, tensorflow-text and keras-hub are imported when a layer is built, not when this module
is imported: the model classes name these layers, and `import keras_deberta` on JAX or PyTorch must
not pay for (or log from) TensorFlow.

Known difference: tf-text bundles an older SentencePiece whose Viterbi breaks exact ties between
equally scored segmentations differently from the `sentencepiece` Python package (e.g. "excitedddd":
"d"+"dd" vs "dd"+"d", same pieces, same score). The Python tokenizer follows the package.
Offsets are not produced in-graph.
"""

import importlib.util

import keras

from keras_deberta.tokenization_deberta import DebertaTokenizer
from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
REQUIRED_PACKAGES = ("tensorflow", "tensorflow_text", "keras_hub")


def _require_tf():
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the in-graph preprocessing layers need {', '.join(missing)}: "
                          "pip install tensorflow tensorflow-text keras-hub")


class _DebertaPreprocessorBase(keras.layers.Layer):
    """Special tokens, pair template, truncation and padding in TensorFlow ops.

    Subclasses set `self.tokenizer` (a Python tokenizer for ids and special tokens) and implement
    `_tokenize_segments(strings) -> tf.RaggedTensor [N, (T)]` for text that holds no special token.
    """

    pair_separators = 1
    pair_type_ids = True

    def __init__(self, tokenizer, sequence_length=None, truncation="longest_first", dtype="int32", max_length=None,
                 **kwargs):
        _require_tf()
        import tensorflow as tf

        super().__init__(**kwargs)
        # As keras-hub's preprocessing layers: strings stay TensorFlow tensors on every backend.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if truncation is True:
            truncation = "longest_first"
        if truncation not in TRUNCATION_STRATEGIES + (None, False):
            raise ValueError(f"truncation must be one of {TRUNCATION_STRATEGIES} or None, got {truncation!r}")
        for name, value in (("sequence_length", sequence_length), ("max_length", max_length)):
            if value is not None and (isinstance(value, bool) or int(value) != value or int(value) < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if sequence_length is not None and max_length is not None:
            raise ValueError("pass sequence_length (pad to exactly that length) or max_length (pad to the "
                             "longest row, at most that length), not both")
        self.tokenizer = tokenizer
        self.sequence_length = None if sequence_length is None else int(sequence_length)
        self.max_length = None if max_length is None else int(max_length)
        self.truncation = truncation or None
        self.output_dtype = dtype
        self.cls_id = int(tokenizer.cls_token_id)
        self.sep_id = int(tokenizer.sep_token_id)
        self.pad_id = int(tokenizer.pad_token_id)
        # Special tokens matched in the text, longest first (as the Python tokenizers).
        specials = sorted(tokenizer._added, key=len, reverse=True)
        self._special_pattern = None
        self._special_table = None
        if specials:
            alternatives = []
            for content in specials:
                lstrip, rstrip = tokenizer._added_flags.get(content, (False, False))
                alternatives.append((r"\s*" if lstrip else "") + _re2_escape(content) + (r"\s*" if rstrip else ""))
            self._special_pattern = "|".join(alternatives)
            self._special_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(specials), tf.constant([tokenizer._added[s] for s in specials], tf.int64)),
                default_value=-1)
        self._graph_fn = None

    def build(self, input_shape=None):
        self.built = True

    # ---- tokenisation -----------------------------------------------------------------------
    def _tokenize(self, texts):
        """texts: tf.string [B] -> int64 ragged [B, (T)], special tokens in the text recognised."""
        import tensorflow as tf

        if self._special_pattern is None:
            return tf.cast(self._tokenize_segments(texts), tf.int64)
        import tensorflow_text as tf_text

        segments = tf_text.regex_split(texts, self._special_pattern, self._special_pattern)  # [B, (S)]
        flat = segments.flat_values
        is_special = tf.strings.regex_full_match(flat, self._special_pattern)
        tokens = tf.cast(self._tokenize_segments(tf.where(is_special, "", flat)), tf.int64)
        keys = tf.strings.regex_replace(flat, r"^\s+|\s+$", "")
        special_ids = tf.boolean_mask(self._special_table.lookup(keys), is_special)
        special_rows = tf.RaggedTensor.from_row_lengths(special_ids, tf.cast(is_special, tf.int64))
        tokens = tf.concat([tokens, special_rows], axis=1)  # special rows are empty in `tokens`
        return tf.RaggedTensor.from_row_splits(tokens, segments.row_splits).merge_dims(1, 2)

    # ---- packing --------------------------------------------------------------------------------
    @property
    def length_bound(self):
        """The most tokens a row may have (None: unbounded): sequence_length or max_length."""
        return self.sequence_length if self.sequence_length is not None else self.max_length

    def _keep_lengths(self, n1, n2):
        """How many tokens of each sequence to keep (transformers' truncation), int64 [B]."""
        import tensorflow as tf

        n_special = 2 if n2 is None else 2 + self.pair_separators
        budget_value = self.length_bound - n_special
        if budget_value < 0:
            raise ValueError(f"a length of {self.length_bound} leaves no room for the {n_special} "
                             "special tokens of the template")
        budget = tf.constant(budget_value, tf.int64)
        if n2 is None:
            if self.truncation == "only_second" and budget_value > 0:
                tf.debugging.assert_less_equal(n1, budget, "truncation='only_second' needs a pair")
            return tf.minimum(n1, budget), None
        fits = n1 + n2 <= budget
        zero = tf.zeros_like(n1)
        message = "Truncation error: Sequence to truncate too short to respect the provided max_length"
        if self.truncation == "only_first":
            k1, k2 = budget - n2, n2
            if budget_value > 0:
                tf.debugging.assert_equal(tf.logical_or(fits, k1 > 0), True, message)
            k1 = tf.maximum(k1, zero)
        elif self.truncation == "only_second":
            k1, k2 = n1, budget - n1
            if budget_value > 0:
                tf.debugging.assert_equal(tf.logical_or(fits, k2 > 0), True, message)
            k2 = tf.maximum(k2, zero)
        else:  # longest_first: the shorter keeps min(len, budget // 2), the longer the rest
            half = budget // 2
            first_longer = n1 > n2
            k2 = tf.where(first_longer, tf.minimum(n2, half), budget - tf.minimum(n1, half))
            k1 = tf.where(first_longer, budget - tf.minimum(n2, half), tf.minimum(n1, half))
        k1 = tf.where(fits, n1, k1)
        k2 = tf.where(fits, n2, k2)
        if budget_value == 0:  # tokenizers empties both sequences
            k1, k2 = zero, zero
        return k1, k2

    @staticmethod
    def _head(ragged, keep):
        import tensorflow as tf

        positions = tf.ragged.range(ragged.row_lengths())
        return tf.ragged.boolean_mask(ragged, positions < keep[:, None])

    def _pack(self, a, b):
        import tensorflow as tf

        batch = a.nrows()

        def column(value):
            return tf.RaggedTensor.from_tensor(tf.fill(tf.stack([batch, 1]), tf.constant(value, tf.int64)))

        checks = []
        if self.length_bound is not None and self.truncation is not None:
            k1, k2 = self._keep_lengths(a.row_lengths(), None if b is None else b.row_lengths())
            a = self._head(a, k1)
            if b is not None:
                b = self._head(b, k2)
        elif self.length_bound is not None:  # no truncation: a longer row is an error, never cut silently
            n_special = 2 if b is None else 2 + self.pair_separators
            total = a.row_lengths() + (0 if b is None else b.row_lengths()) + n_special
            checks.append(tf.debugging.assert_less_equal(
                total, tf.constant(self.length_bound, tf.int64),
                message=f"text too long: more than {self.length_bound} tokens and truncation is off"))
        cls, sep = column(self.cls_id), column(self.sep_id)
        first = tf.concat([cls, a, sep], axis=1)
        if b is None:
            ids = first
            types = tf.zeros_like(first)
        else:
            second = tf.concat([sep] * (self.pair_separators - 1) + [b, sep], axis=1)
            ids = tf.concat([first, second], axis=1)
            second_type = tf.ones_like(second) if self.pair_type_ids else tf.zeros_like(second)
            types = tf.concat([tf.zeros_like(first), second_type], axis=1)
        shape = None if self.sequence_length is None else tf.stack([batch, self.sequence_length])
        dtype = tf.as_dtype(self.output_dtype)
        outputs = {
            "input_ids": tf.cast(ids.to_tensor(default_value=self.pad_id, shape=shape), dtype),
            "token_type_ids": tf.cast(types.to_tensor(default_value=0, shape=shape), dtype),
            "attention_mask": tf.cast(tf.ones_like(ids).to_tensor(default_value=0, shape=shape), dtype),
        }
        with tf.control_dependencies(checks):
            return {name: tf.identity(value) for name, value in outputs.items()}

    def _graph(self, a, b=None):
        """Batched strings [B] (and [B]) -> dict of [B, L] tensors, in TensorFlow ops."""
        return self._pack(self._tokenize(a), None if b is None else self._tokenize(b))

    def call(self, inputs):
        import tensorflow as tf

        if isinstance(inputs, dict):
            raise TypeError("pass strings, or a pair (texts_a, texts_b)")
        if isinstance(inputs, tuple) and len(inputs) == 2:  # a pair; a list is a batch
            a, b = (tf.convert_to_tensor(x, tf.string) for x in inputs)
        else:
            a, b = tf.convert_to_tensor(inputs, tf.string), None
        single = a.shape.rank == 0
        if single:
            a, b = a[None], None if b is None else b[None]
        if not tf.executing_eagerly():  # tf.data, tf.function, SavedModel
            out = self._graph(a, b)
        else:
            # Eager: run the same graph compiled (the tokenizers' eager paths are slow), traced once
            # for single texts and once for pairs, whatever the batch size.
            if self._graph_fn is None:
                spec = tf.TensorSpec([None], tf.string)
                self._graph_fn = (tf.function(lambda x: self._graph(x), input_signature=[spec]),
                                  tf.function(lambda x, y: self._graph(x, y), input_signature=[spec, spec]))
            try:
                out = self._graph_fn[0](a) if b is None else self._graph_fn[1](a, b)
            except tf.errors.InvalidArgumentError as error:
                # A failed assert (too long, truncation impossible). Outside TensorFlow, Keras would
                # re-raise it as a bare RuntimeError without this message.
                raise ValueError(error.message.splitlines()[0]) from None
        if single:
            out = {k: v[0] for k, v in out.items()}
        if tf.executing_eagerly() and keras.backend.backend() != "tensorflow":
            # Hand back tensors of the active backend.
            out = {k: keras.ops.convert_to_tensor(v.numpy()) for k, v in out.items()}
        return out

    def compute_output_spec(self, inputs):
        shape = (None, self.sequence_length)
        return {k: keras.KerasTensor(shape, dtype=self.output_dtype)
                for k in ("input_ids", "token_type_ids", "attention_mask")}

    def get_config(self):
        config = super().get_config()
        config.update(sequence_length=self.sequence_length, max_length=self.max_length, truncation=self.truncation,
                      dtype=self.output_dtype)
        return config


def _tf_trackables(obj, seen=None, depth=0):
    """TensorFlow resources (lookup tables, tf-text models) held by a layer and its sub-layers.

    On the TensorFlow backend Keras layers are tracked by `tf.Module`; on JAX and PyTorch they are
    not, so an exported module must hold the resources itself."""
    import tensorflow as tf

    seen = set() if seen is None else seen
    found = []
    if id(obj) in seen or depth > 6:
        return found
    seen.add(id(obj))
    if isinstance(obj, (tf.Variable, tf.lookup.StaticHashTable, tf.lookup.experimental.MutableHashTable)) or (
            isinstance(obj, tf.__internal__.tracking.Trackable) and not isinstance(obj, keras.layers.Layer)
            and not isinstance(obj, (tf.Tensor, tf.TensorSpec))):
        found.append(obj)
        return found
    values = obj.__dict__.values() if hasattr(obj, "__dict__") else ()
    if isinstance(obj, (list, tuple)):
        values = obj
    elif isinstance(obj, dict):
        values = obj.values()
    for value in list(values):
        if isinstance(value, (keras.layers.Layer, list, tuple, dict)) or type(value).__module__.startswith(
                ("keras_hub", "keras_deberta", "tensorflow_text")):
            found.extend(_tf_trackables(value, seen, depth + 1))
        elif isinstance(value, (tf.Variable, tf.__internal__.tracking.Trackable)) and not isinstance(
                value, (tf.Tensor, keras.layers.Layer)):
            found.append(value)
    return found


def serving_module(layer, pairs=False):
    """A `tf.Module` with a `serve` signature (strings [B] -> ids, type ids, mask) for
    `tf.saved_model.save`, on any Keras backend."""
    _require_tf()
    import tensorflow as tf

    module = tf.Module()
    module.resources = _tf_trackables(layer)
    spec = tf.TensorSpec([None], tf.string)
    if pairs:
        module.serve = tf.function(lambda a, b: layer._graph(a, b), input_signature=[spec, spec])
    else:
        module.serve = tf.function(lambda texts: layer._graph(texts), input_signature=[spec])
    return module


def _re2_escape(text):
    """Escape RE2's metacharacters (and only those: RE2 rejects escapes such as "\\_")."""
    return "".join("\\" + ch if ch in "\\.+*?()|[]{}^$-" else ch for ch in text)


def check_in_graph(tokenizer):
    """Refuses (NotImplementedError, saying what to do) a DeBERTa-v2 tokenizer that cannot run in
    the graph, before any export work starts."""
    if not isinstance(tokenizer, DebertaV2Tokenizer):
        return
    if tokenizer.split_by_punct:
        raise NotImplementedError("split_by_punct is not supported in-graph")
    if tokenizer._model_bytes is None:
        # keras-hub's SentencePieceTokenizer runs the SentencePiece model itself; without it it
        # fails deep inside the export with "No vocabulary has been set".
        raise NotImplementedError(
            "in-graph tokenization needs the SentencePiece model (spm.model), and this DebertaV2Tokenizer "
            "was loaded from tokenizer.json alone (what transformers 5 saves): copy spm.model from the "
            "original checkpoint (e.g. microsoft/deberta-v3-base) into the directory, or export without "
            "the tokenizer and tokenize in Python")


class DebertaV2Preprocessor(_DebertaPreprocessorBase):
    """DeBERTa-v2/v3 in-graph preprocessing over keras-hub's `SentencePieceTokenizer`.

    Args:
        tokenizer: a `DebertaV2Tokenizer` (its SentencePiece model, special tokens and ids are used).
        sequence_length: pad / truncate to this length; None pads each batch to its longest row.
        truncation: "longest_first" (default), "only_first", "only_second" or None (a row longer
            than sequence_length / max_length is then an error).
        dtype: dtype of the outputs.
        max_length: with sequence_length=None: truncate to at most this many tokens.
    """

    pair_separators = 1
    pair_type_ids = True

    def __init__(self, tokenizer, sequence_length=None, truncation="longest_first", dtype="int32", **kwargs):
        from keras_hub.tokenizers import SentencePieceTokenizer

        if not isinstance(tokenizer, DebertaV2Tokenizer):
            raise TypeError("tokenizer must be a DebertaV2Tokenizer")
        check_in_graph(tokenizer)
        super().__init__(tokenizer, sequence_length=sequence_length, truncation=truncation, dtype=dtype, **kwargs)
        self.sp = SentencePieceTokenizer(proto=tokenizer._model_bytes, dtype="int32")
        self.do_lower_case = tokenizer.do_lower_case

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        return cls(DebertaV2Tokenizer.from_pretrained(directory), **kwargs)

    def _tokenize_segments(self, strings):
        import tensorflow as tf

        if self.do_lower_case:  # as the Python tokenizer: after special tokens are split off
            strings = tf.strings.lower(strings, encoding="utf-8")
        return self.sp.tokenize(strings)


class DebertaPreprocessor(_DebertaPreprocessorBase):
    """DeBERTa v1 in-graph preprocessing over keras-hub's `BytePairTokenizer` (GPT-2 byte-level BPE).

    Same arguments as `DebertaV2Preprocessor`, with a `DebertaTokenizer`; the pair template is
    transformers 5.x's `[CLS] A [SEP] [SEP] B [SEP]` with all-zero token_type_ids.
    """

    pair_separators = 2
    pair_type_ids = False

    def __init__(self, tokenizer, sequence_length=None, truncation="longest_first", dtype="int32", **kwargs):
        from keras_hub.tokenizers import BytePairTokenizer

        if not isinstance(tokenizer, DebertaTokenizer):
            raise TypeError("tokenizer must be a DebertaTokenizer")
        super().__init__(tokenizer, sequence_length=sequence_length, truncation=truncation, dtype=dtype, **kwargs)
        merges = [f"{a} {b}" for (a, b), _ in sorted(tokenizer.bpe_ranks.items(), key=lambda kv: kv[1])]
        self.add_prefix_space = tokenizer.add_prefix_space
        self.bpe = BytePairTokenizer(vocabulary=dict(tokenizer.encoder), merges=merges, dtype="int32",
                                     unsplittable_tokens=[])

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        return cls(DebertaTokenizer.from_pretrained(directory), **kwargs)

    def _tokenize_segments(self, strings):
        import tensorflow as tf

        if self.add_prefix_space:  # as transformers: a space unless the segment starts with one
            strings = tf.where(tf.strings.regex_full_match(strings, "( |$).*"), strings,
                               tf.strings.join([" ", strings]))
        return self.bpe.tokenize(strings)


__all__ = ["DebertaV2Preprocessor", "DebertaPreprocessor", "check_in_graph", "serving_module"]
