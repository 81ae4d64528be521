"""transformers' `__call__` for the DeBERTa tokenizers (and `encode`, `encode_plus`,
`batch_encode_plus` on it).

It follows transformers 5.23's DeBERTa tokenizers, which are "fast" ones (the `tokenizers` library):
their truncation rule for pairs, `stride` windows returned as extra rows with
`overflow_to_sample_mapping`, offsets, word and sequence ids, `return_length` after padding.
"""

from typing import NamedTuple

import numpy as np

from keras_deberta.tokenization_arguments import check_length_arguments, check_valid_unicode
from presets.tokenizer_types import (LARGE_INTEGER, BatchEncoding, SequenceEncoding, as_framework_tensors,
                                     padding_of, tensor_type_of)

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


class Pieces(NamedTuple):
    """The tokens of one text: ids, (start, end) character offsets (None when not asked for), the
    index of the word each token comes from, the token strings (None when not asked for)."""
    ids: list
    offsets: list
    words: list
    tokens: list = None


def check_strategy(value, allowed, what):
    """`value` if it is one of `allowed`, else transformers' ValueError for an unknown strategy."""
    if value not in allowed:
        raise ValueError(f"{value!r} is not a valid {what}, please select one of {list(allowed)}")
    return value


def longest_first_lengths(n1, n2, budget):
    """How many tokens of each sequence of a pair `truncation="longest_first"` keeps (tokenizers'
    rule): the shorter keeps min(its length, budget // 2), the longer the rest; on a tie the second
    sequence counts as the longer one."""
    if n1 + n2 <= budget:
        return n1, n2
    if n1 > n2:
        keep2 = min(n2, budget // 2)
        return budget - keep2, keep2
    keep1 = min(n1, budget // 2)
    return keep1, budget - keep1


def truncation_windows(n, keep, stride, side):
    """[(start, stop)] of a sequence of n tokens cut to `keep` (tokenizers' Encoding.truncate): the
    first window is the part kept, the others overflow, each repeating `stride` tokens of the last."""
    if keep >= n:
        return [(0, n)]
    if keep == 0:
        return [(0, 0), (0, n)]
    if stride >= keep:
        raise ValueError(f"stride={stride} must be smaller than the {keep} tokens a window of this sequence "
                         f"holds after truncation")
    step, windows = keep - stride, []
    if side == "right":
        start = 0
        while True:
            windows.append((start, min(start + keep, n)))
            if start + keep >= n:
                return windows
            start += step
    stop = n
    while True:
        windows.append((max(stop - keep, 0), stop))
        if stop - keep <= 0:
            return windows
        stop -= step


def _cut(pieces, window):
    start, stop = window
    if start == 0 and stop == len(pieces.ids):
        return pieces
    return Pieces(pieces.ids[start:stop], None if pieces.offsets is None else pieces.offsets[start:stop],
                  pieces.words[start:stop])


class EncodingMixin:
    """The encoding half of `DebertaTokenizerBase` (which supplies `_encode_sequences`, the special
    token ids, `model_max_length`, `padding_side`, `truncation_side` and the pair template)."""

    # ---- strategies --------------------------------------------------------------------------
    def _padding_truncation(self, padding=False, truncation=None, max_length=None, pad_to_multiple_of=None):
        """(padding, truncation, max_length) as transformers' _get_padding_truncation_strategies:
        None stands for "do_not_pad" / "do_not_truncate"."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # transformers: a bare max_length truncates
        padding = "longest" if padding is True else "do_not_pad" if padding is False else padding
        padding = check_strategy(padding, PADDING_STRATEGIES, "PaddingStrategy")
        if truncation is True:
            truncation = "longest_first"
        elif truncation is False or truncation is None:
            truncation = "do_not_truncate"
        truncation = check_strategy(truncation, TRUNCATION_STRATEGIES, "TruncationStrategy")
        padding = None if padding == "do_not_pad" else padding
        truncation = None if truncation == "do_not_truncate" else truncation
        if max_length is None:
            unbounded = self.model_max_length > LARGE_INTEGER
            if padding == "max_length":
                padding, max_length = (None, None) if unbounded else (padding, self.model_max_length)
            if truncation is not None:
                truncation, max_length = (None, max_length) if unbounded else (truncation, self.model_max_length)
        if padding is not None and (self.pad_token is None or self.pad_token_id is None or self.pad_token_id < 0):
            raise ValueError("Asking to pad but the tokenizer does not have a padding token: set one with "
                             "`tokenizer.pad_token = ...` or `tokenizer.add_special_tokens({'pad_token': '[PAD]'})`")
        if (truncation is not None and padding is not None and pad_to_multiple_of is not None
                and max_length is not None and max_length % pad_to_multiple_of != 0):
            raise ValueError(f"Truncation and padding are both activated but truncation length ({max_length}) "
                             f"is not a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return padding, truncation, max_length

    # ---- inputs --------------------------------------------------------------------------------
    @staticmethod
    def _is_text(value, split_into_words):
        if split_into_words:
            return isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value)
        return isinstance(value, str)

    def _examples(self, text, text_pair, is_split_into_words):
        """(batched, [first sequences], [second sequences or None])."""
        is_text = lambda v: self._is_text(v, is_split_into_words)  # noqa: E731
        if is_text(text):
            if text_pair is not None and not is_text(text_pair):
                raise TypeError("text_pair must be a single example when text is one")
            # transformers: an empty second text means no pair
            return False, [text], [text_pair if text_pair else None]
        if not isinstance(text, (list, tuple)):
            raise ValueError("text input must be of type `str` (single example), `list[str]` (batch or single "
                             "pretokenized example) or `list[list[str]]` (batch of pretokenized examples)")
        if text_pair is None:
            firsts, seconds = [], []
            for item in text:
                if is_text(item):
                    firsts.append(item)
                    seconds.append(None)
                elif isinstance(item, (list, tuple)) and len(item) == 2 and all(is_text(x) for x in item):
                    firsts.append(item[0])  # a batch of (text, text_pair) tuples
                    seconds.append(item[1])
                else:
                    raise ValueError(f"cannot read {item!r} as a text or a (text, text_pair) pair")
            return True, firsts, seconds
        if is_text(text_pair):
            raise TypeError("when tokenizing batches of text, `text_pair` must be a list or tuple with the same "
                            "length as `text`.")
        if len(text_pair) != len(text):
            raise ValueError(f"batch length of `text`: {len(text)} does not match batch length of `text_pair`: "
                             f"{len(text_pair)}.")
        if not all(is_text(t) for t in list(text) + list(text_pair)):
            raise ValueError("every text and text_pair in a batch must be a string (a list of strings with "
                             "is_split_into_words=True)")
        return True, list(text), list(text_pair)

    # ---- __call__ ------------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, stride=0, is_split_into_words=False, pad_to_multiple_of=None, padding_side=None,
                 return_tensors=None, return_token_type_ids=None, return_attention_mask=None,
                 return_overflowing_tokens=False, return_special_tokens_mask=False, return_offsets_mapping=False,
                 return_length=False, verbose=True, split_special_tokens=None, pad_to_max_length=False):
        """Tokenizes one text, a pair, or a batch of them (transformers' `__call__`; see the module).

        `return_tensors`: None (lists), "np", "tf", "pt" or "jax" (or transformers' `TensorType`),
        that framework's tensors on any Keras backend. `pad_to_max_length=True` is transformers 4's
        deprecated spelling of `padding="max_length"` (or `padding=True` without a max_length).

        Returns a `BatchEncoding` with input_ids, token_type_ids, attention_mask (and
        special_tokens_mask, offset_mapping, length, overflow_to_sample_mapping when asked), and the
        alignments of `word_ids()` / `sequence_ids()` / `char_to_token()`.
        """
        del verbose
        padding = padding_of(padding, pad_to_max_length, max_length)
        check_length_arguments(self, padding, truncation, max_length, stride, pad_to_multiple_of,
                               add_special_tokens, pair=text_pair is not None)
        check_valid_unicode(text, text_pair)
        padding, truncation, max_length = self._padding_truncation(padding, truncation, max_length,
                                                                   pad_to_multiple_of)
        framework = tensor_type_of(return_tensors)
        return_tensors = framework and "np"  # numpy first; another framework's tensors at the end
        batched, firsts, seconds = self._examples(text, text_pair, is_split_into_words)
        stride = int(stride)
        if truncation is not None and stride and max_length >= self.num_special_tokens_to_add(False):
            effective = max_length - self.num_special_tokens_to_add(False)
            if stride > effective:
                raise ValueError(f"stride={stride} is larger than the effective max length {effective} "
                                 f"(max_length {max_length} - special tokens)")
        split_special = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        texts = firsts + [s for s in seconds if s is not None]
        encoded = iter(self._encode_sequences(texts, is_split_into_words, return_offsets_mapping, split_special))
        first_pieces = [next(encoded) for _ in firsts]
        rows, sample_of_row = [], []
        for i, (a, second) in enumerate(zip(first_pieces, seconds)):
            b = None if second is None else next(encoded)
            windows = self._windows(a, b, truncation, max_length, stride, add_special_tokens)
            for wa, wb in windows if return_overflowing_tokens else windows[:1]:
                rows.append(self._row(_cut(a, wa), None if b is None else _cut(b, wb), add_special_tokens))
                sample_of_row.append(i)
        if padding is not None:
            self._pad_rows(rows, padding, max_length, pad_to_multiple_of, padding_side)
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        data = {"input_ids": [r.ids for r in rows]}
        if return_token_type_ids:
            data["token_type_ids"] = [r.type_ids for r in rows]
        if return_attention_mask:
            data["attention_mask"] = [r.attention_mask for r in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [r.special_tokens_mask for r in rows]
        if return_offsets_mapping:
            data["offset_mapping"] = [r.offsets for r in rows]
        if return_length:
            data["length"] = [len(r.ids) for r in rows]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_of_row
        if return_tensors == "np":
            data = {key: as_int64_array(key, value) for key, value in data.items()}
        elif not batched and not return_overflowing_tokens:  # as transformers: "length" stays a list
            data = {key: value[0] if value and isinstance(value[0], list) else value for key, value in data.items()}
        return as_framework_tensors(BatchEncoding(data, rows, self), framework)

    def _windows(self, a, b, strategy, max_length, stride, add_special_tokens):
        """[(window of a, window of b or None)]: the kept row first, then the overflow rows in the
        order tokenizers merges them (each overflow of a with all of b, then a with b's overflows)."""
        n1, n2 = len(a.ids), 0 if b is None else len(b.ids)
        if strategy is None or max_length is None:
            return [((0, n1), None if b is None else (0, n2))]
        budget = max_length - (self.num_special_tokens_to_add(b is not None) if add_special_tokens else 0)
        side = self.truncation_side
        if budget < 0 or (budget > 0 and n1 + n2 <= budget):
            # transformers logs an error when the special tokens alone exceed max_length, and keeps all
            return [((0, n1), None if b is None else (0, n2))]
        if budget == 0:
            wa, wb = truncation_windows(n1, 0, stride, side), truncation_windows(n2, 0, stride, side)
        elif b is None:
            if strategy == "only_second":
                raise ValueError("Truncation error: Second sequence not provided")
            wa, wb = truncation_windows(n1, budget, stride, side), None
        elif strategy == "longest_first":
            k1, k2 = longest_first_lengths(n1, n2, budget)
            wa, wb = truncation_windows(n1, k1, stride, side), truncation_windows(n2, k2, stride, side)
        else:
            first = strategy == "only_first"
            target, to_remove = (n1 if first else n2), n1 + n2 - budget
            if target <= to_remove:
                raise ValueError("Truncation error: Sequence to truncate too short to respect the provided "
                                 "max_length")
            cut = truncation_windows(target, target - to_remove, stride, side)
            wa, wb = (cut, [(0, n2)]) if first else ([(0, n1)], cut)
        if b is None:
            return [(w, None) for w in wa]
        rows = [(wa[0], wb[0])]
        for overflow_a in wa[1:]:
            rows += [(overflow_a, w) for w in wb]
        return rows + [(wa[0], w) for w in wb[1:]]

    def _row(self, a, b, add_special_tokens):
        """One row (`SequenceEncoding`) from the tokens of a and b: the pair template around them."""
        cls, sep = ([self.cls_token_id], [self.sep_token_id]) if add_special_tokens else ([], [])
        ids = cls + a.ids + sep
        segments = (len(cls), None, 0, len(a.ids), 0, 0, len(sep), None, 0)
        offsets = None if a.offsets is None else [(0, 0)] * len(cls) + a.offsets + [(0, 0)] * len(sep)
        if b is None:
            return SequenceEncoding(ids, offsets, segments, (a.words, None))
        seps, second_type = sep * (self._pair_separators - 1), 1 if self._pair_type_ids else 0
        ids += seps + b.ids + sep
        segments += (len(seps), None, second_type, len(b.ids), 1, second_type, len(sep), None, second_type)
        if offsets is not None:
            offsets += [(0, 0)] * len(seps) + b.offsets + [(0, 0)] * len(sep)
        return SequenceEncoding(ids, offsets, segments, (a.words, b.words))

    def _pad_rows(self, rows, padding, max_length, pad_to_multiple_of, padding_side):
        target = max(len(r.ids) for r in rows) if padding == "longest" else max_length
        if target is not None and pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        left = (padding_side or self.padding_side) == "left"
        for r in rows:
            r.pad(target - len(r.ids), self.pad_token_id, left)

    # ---- shorthands --------------------------------------------------------------------------
    def encode(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
               max_length=None, stride=0, padding_side=None, return_tensors=None, **kwargs):
        """The input_ids of one text (or pair): a list of ints, or a [1, L] array with return_tensors="np"."""
        return self(text, text_pair=text_pair, add_special_tokens=add_special_tokens, padding=padding,
                    truncation=truncation, max_length=max_length, stride=stride, padding_side=padding_side,
                    return_tensors=return_tensors, **kwargs)["input_ids"]

    def encode_plus(self, text, text_pair=None, **kwargs):
        """One example (a text, a pair, or a list of words with is_split_into_words=True): `__call__`."""
        if not self._is_text(text, kwargs.get("is_split_into_words", False)):
            raise ValueError("encode_plus takes one example; use batch_encode_plus (or __call__) for a batch")
        return self(text, text_pair=text_pair, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
        """A batch of texts or of (text, text_pair) tuples: `__call__` on the batch."""
        if self._is_text(batch_text_or_text_pairs, kwargs.get("is_split_into_words", False)):
            raise ValueError("batch_encode_plus takes a list of examples; use encode_plus (or __call__) for one")
        return self(list(batch_text_or_text_pairs), **kwargs)

    # ---- compatibility -------------------------------------------------------------------------
    def _assemble(self, a, b, add_special_tokens):
        """(ids, token_type_ids, offsets or None) of one example from (ids, offsets or None) parts."""
        to_pieces = lambda part: Pieces(list(part[0]), part[1], [None] * len(part[0]))  # noqa: E731
        row = self._row(to_pieces(a), None if b is None else to_pieces(b), add_special_tokens)
        return row.ids, row.type_ids, row.offsets


def as_int64_array(key, value):
    """A batch of equal-length rows as int64 numpy (offsets as [B, L, 2]); ragged rows refuse."""
    if key in ("length", "overflow_to_sample_mapping") or not value or not isinstance(value[0], (list, tuple)):
        return np.asarray(value, dtype=np.int64)
    if len({len(v) for v in value}) > 1:
        raise ValueError("Unable to create tensor, you should probably activate truncation and/or padding with "
                         "'padding=True' 'truncation=True' to have batched tensors with the same length.")
    array = np.asarray(value, dtype=np.int64)
    return array.reshape(len(value), -1, 2) if key == "offset_mapping" else array.reshape(len(value), -1)
