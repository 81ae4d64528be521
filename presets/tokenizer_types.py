"""What every tokenizer family shares: `TokenizerFileError`, `BatchEncoding` (with the per-row
`SequenceEncoding` behind `word_ids()` and friends) and the rule that finds a checkpoint's input
length limit (`model_max_length_of`).

They live here, on the shared floor, so that `keras_deberta` and `keras_deepseek` raise and return
the same classes (an `except TokenizerFileError` or `isinstance(x, BatchEncoding)` works for both).
"""

import numbers
import os

import numpy as np

from presets.io import read_json_object

VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length for "no limit"
LARGE_INTEGER = int(1e20)  # above this, transformers treats model_max_length as no limit


TENSOR_TYPES = ("np", "tf", "pt", "jax")  # transformers' return_tensors values


def tensor_type_of(return_tensors):
    """None or one of TENSOR_TYPES from `return_tensors`: a string or transformers' `TensorType`
    (an enum whose value is the string)."""
    value = getattr(return_tensors, "value", return_tensors)
    if value is None or value in TENSOR_TYPES:
        return value
    raise ValueError(f"return_tensors={return_tensors!r}: use None (lists) or one of {list(TENSOR_TYPES)}")


def padding_of(padding, pad_to_max_length, max_length):
    """`padding` with transformers 4's deprecated `pad_to_max_length=True` folded in (its rule: pad to
    `max_length` when one is given, else to the longest row)."""
    if padding is False and pad_to_max_length:
        return "longest" if max_length is None else "max_length"
    return padding


def as_framework_tensors(encoding, tensor_type):
    """`encoding` (a BatchEncoding of numpy arrays) with each array as `tensor_type`'s tensor, the
    framework imported only now; "np" and None leave it as it is."""
    if tensor_type in (None, "np"):
        return encoding
    if tensor_type == "tf":
        import tensorflow as tf
        convert = tf.convert_to_tensor
    elif tensor_type == "pt":
        import torch
        convert = torch.from_numpy
    else:
        import jax.numpy as jnp
        convert = jnp.asarray
    for key, value in list(encoding.items()):
        if isinstance(value, np.ndarray):
            dict.__setitem__(encoding, key, convert(value))
    return encoding


class TokenizerFileError(ValueError):
    """A tokenizer directory or file is missing, unreadable or corrupt; the message names the file
    and the problem."""


def model_max_length_of(directory, configured, default):
    """The longest input (in tokens) a checkpoint directory takes: `configured` (tokenizer_config.json's
    model_max_length) when it is a real limit, else config.json's max_position_embeddings beside it,
    else `default`. transformers writes 1e30 for "no limit", so that value counts as unset."""
    if isinstance(configured, numbers.Real) and not isinstance(configured, bool) and 0 < configured <= LARGE_INTEGER:
        return int(configured)
    path = os.path.join(directory, "config.json")
    if os.path.isfile(path):
        positions = read_json_object(path, TokenizerFileError).get("max_position_embeddings")
        if isinstance(positions, int) and not isinstance(positions, bool) and positions > 0:
            return positions
    return default


class SequenceEncoding:
    """One row of a tokenizer's output, as transformers' fast tokenizers keep it (`enc.encodings[i]`).

    `ids` and `offsets` ((start, end) character spans; (0, 0) for added special tokens and padding)
    are stored; `type_ids`, `attention_mask`, `special_tokens_mask`, `word_ids` (index of the word a
    token comes from, None for special tokens and padding) and `sequence_ids` (0 or 1 for the first
    or second text of a pair, None for special tokens and padding) are derived from the row's layout
    when read, so that a batch of thousands of rows allocates a few lists per row, not eight.

    Args:
        segments: a flat tuple (length, sequence id or None for special tokens, token type id, ...),
            one triple per run of tokens, in order.
        words: the word id of each token of sequence 0 and of sequence 1 (a list each, or None).
        padding: number of pad tokens; pad_left: whether they come first.
    """

    __slots__ = ("ids", "offsets", "segments", "words", "padding", "pad_left")

    def __init__(self, ids, offsets, segments, words, padding=0, pad_left=False):
        self.ids, self.offsets, self.segments, self.words = ids, offsets, segments, words
        self.padding, self.pad_left = padding, pad_left

    def _per_token(self, pad_value, special_value, sequence_value):
        """[value per token]: pad_value on padding, special_value(type id) on special tokens,
        sequence_value(sequence id, type id, length) (a list) on each text."""
        out = [pad_value] * self.padding if self.pad_left else []
        for length, sequence, type_id in zip(*[iter(self.segments)] * 3):
            out += [special_value(type_id)] * length if sequence is None else sequence_value(sequence, type_id, length)
        return out if self.pad_left else out + [pad_value] * self.padding

    @property
    def type_ids(self):
        return self._per_token(0, lambda t: t, lambda s, t, n: [t] * n)

    @property
    def attention_mask(self):
        return self._per_token(0, lambda t: 1, lambda s, t, n: [1] * n)

    @property
    def special_tokens_mask(self):
        return self._per_token(1, lambda t: 1, lambda s, t, n: [0] * n)

    @property
    def sequence_ids(self):
        return self._per_token(None, lambda t: None, lambda s, t, n: [s] * n)

    @property
    def word_ids(self):
        return self._per_token(None, lambda t: None, lambda s, t, n: list(self.words[s]))

    def pad(self, n, pad_id, left=False):
        """Adds n pad tokens in place (a row is padded once, when its batch is)."""
        if n <= 0:
            return
        if left:
            self.ids[:0] = [pad_id] * n
            if self.offsets is not None:
                self.offsets[:0] = [(0, 0)] * n
        else:
            self.ids.extend([pad_id] * n)
            if self.offsets is not None:
                self.offsets.extend([(0, 0)] * n)
        self.padding, self.pad_left = n, left

    def __len__(self):
        return len(self.ids)

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self):
        return f"SequenceEncoding(num_tokens={len(self.ids)})"


class BatchEncoding(dict):
    """The result of calling a tokenizer: a dict (`enc["input_ids"]`) with attribute access
    (`enc.input_ids`), and, when the tokenizer kept them, the per-row alignments transformers' fast
    tokenizers give: `word_ids()`, `sequence_ids()`, `tokens()`, `token_to_word()`,
    `token_to_sequence()`, `token_to_chars()`, `char_to_token()`, `word_to_tokens()`; `enc[i]`
    (an int) is row i's `SequenceEncoding`.
    """

    def __init__(self, data=None, encodings=None, tokenizer=None):
        super().__init__(data or {})
        # Set through object.__setattr__: plain attributes, not dict keys.
        object.__setattr__(self, "_encodings", encodings)
        object.__setattr__(self, "_tokenizer", tokenizer)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self._row(int(key))
        return super().__getitem__(key)

    def __getstate__(self):
        # A pickled encoding travels without the tokenizer that made it.
        return {"encodings": self._encodings}

    def __setstate__(self, state):
        object.__setattr__(self, "_encodings", state.get("encodings"))
        object.__setattr__(self, "_tokenizer", None)

    @property
    def data(self):
        return dict(self)

    @property
    def encodings(self):
        """The rows as `SequenceEncoding`s, or None when the encoding was built by `pad()` or by hand."""
        return self._encodings

    @property
    def is_fast(self):
        return self._encodings is not None

    @property
    def n_sequences(self):
        """1 or 2 (a pair): how many texts went into each row; None without alignments."""
        if not self._encodings:
            return None
        return max((max((s for s in e.sequence_ids if s is not None), default=0) for e in self._encodings),
                   default=0) + 1

    def _row(self, batch_index):
        if self._encodings is None:
            raise ValueError("token alignments (word_ids, sequence_ids, ...) are only kept on the output of a "
                             "tokenizer call, not on one built by pad() or by hand")
        return self._encodings[batch_index]

    def _split(self, batch_or_index, index):
        """transformers' (batch_or_token_index, token_index) convention: one number is a position in row 0."""
        return (0, batch_or_index) if index is None else (batch_or_index, index)

    def tokens(self, batch_index=0):
        """Row `batch_index` as token strings (each id's token)."""
        if self._tokenizer is None:
            raise ValueError("tokens() needs the tokenizer that made this encoding (not kept after pickling)")
        return self._tokenizer.convert_ids_to_tokens(self._row(batch_index).ids)

    def word_ids(self, batch_index=0):
        return list(self._row(batch_index).word_ids)

    def sequence_ids(self, batch_index=0):
        return list(self._row(batch_index).sequence_ids)

    def token_to_sequence(self, batch_or_token_index, token_index=None):
        row, token = self._split(batch_or_token_index, token_index)
        return self._row(row).sequence_ids[token]

    def token_to_word(self, batch_or_token_index, token_index=None):
        row, token = self._split(batch_or_token_index, token_index)
        return self._row(row).word_ids[token]

    def token_to_chars(self, batch_or_token_index, token_index=None):
        """(start, end) characters of a token in its text, or None for special tokens and padding."""
        row, token = self._split(batch_or_token_index, token_index)
        encoding = self._row(row)
        if encoding.sequence_ids[token] is None:
            return None
        return tuple(encoding.offsets[token])

    def char_to_token(self, batch_or_char_index, char_index=None, sequence_index=0):
        """The first token whose span holds the character, in text `sequence_index`; None if none does."""
        row, char = self._split(batch_or_char_index, char_index)
        encoding = self._row(row)
        for i, ((start, end), seq) in enumerate(zip(encoding.offsets, encoding.sequence_ids)):
            if seq == sequence_index and start <= char < end:
                return i
        return None

    def word_to_tokens(self, batch_or_word_index, word_index=None, sequence_index=0):
        """(start, end) token span of a word of text `sequence_index`, or None if it has no token here."""
        row, word = self._split(batch_or_word_index, word_index)
        encoding = self._row(row)
        hits = [i for i, (w, s) in enumerate(zip(encoding.word_ids, encoding.sequence_ids))
                if w == word and s == sequence_index]
        return (hits[0], hits[-1] + 1) if hits else None
