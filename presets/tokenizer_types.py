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

    Attributes (lists of one entry per token): `ids`, `type_ids`, `attention_mask`,
    `special_tokens_mask`, `offsets` ((start, end) character spans; (0, 0) for added special
    tokens and padding), `word_ids` (index of the word a token comes from, None for special tokens
    and padding) and `sequence_ids` (0 or 1 for the first or second text of a pair, None for
    special tokens and padding).
    """

    __slots__ = ("ids", "type_ids", "attention_mask", "special_tokens_mask", "offsets", "word_ids", "sequence_ids")

    def __init__(self, ids, type_ids, special_tokens_mask, offsets, word_ids, sequence_ids, attention_mask=None):
        self.ids = ids
        self.type_ids = type_ids
        self.special_tokens_mask = special_tokens_mask
        self.offsets = offsets
        self.word_ids = word_ids
        self.sequence_ids = sequence_ids
        self.attention_mask = [1] * len(ids) if attention_mask is None else attention_mask

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

    def __init__(self, data=None, encodings=None, id_to_token=None):
        super().__init__(data or {})
        # Set through object.__setattr__: plain attributes, not dict keys.
        object.__setattr__(self, "_encodings", encodings)
        object.__setattr__(self, "_id_to_token", id_to_token)

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
        # The token lookup refers back to the tokenizer; a pickled encoding travels without it.
        return {"encodings": self._encodings}

    def __setstate__(self, state):
        object.__setattr__(self, "_encodings", state.get("encodings"))
        object.__setattr__(self, "_id_to_token", None)

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
        if self._id_to_token is None:
            raise ValueError("tokens() needs the tokenizer that made this encoding (not kept after pickling)")
        return self._id_to_token(self._row(batch_index).ids)

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
