"""Checks of the tokenizers' call and decode arguments, before any work is done.

transformers' semantics, with clear errors where transformers logs, accepts nonsense or
allocates without bound:
- `max_length` is an integer; with padding to it, at most `MAX_PADDED_LENGTH` tokens (or the
  tokenizer's own `model_max_length` when that is larger): padding to 10**9 would build lists of
  10**9 ids per row. Without an explicit `max_length`, padding and truncation use
  `model_max_length`, as in transformers.
- with truncation, `max_length` smaller than the special tokens of a row is an error
  (transformers logs one and returns the rows untruncated); equal to them, the rows hold the
  special tokens alone, as in transformers.
- `stride` >= 0 and `pad_to_multiple_of` None or > 0 (transformers accepts negative values and
  then returns ragged rows despite `padding=True`).
- every text is valid Unicode: a lone surrogate ("\\ud800") cannot be encoded as UTF-8; the error
  names the text and the character position.
- `decode` takes integer ids only (floats would be truncated to ids silently).
"""

import numbers

from presets.tokenizer_types import LARGE_INTEGER

# The longest row padding may build unless model_max_length is longer (about 8 MB of ids a row).
MAX_PADDED_LENGTH = 2**20


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_length_arguments(tokenizer, padding, truncation, max_length, stride, pad_to_multiple_of,
                           add_special_tokens=True, pair=False):
    """Raises ValueError / TypeError for length arguments no encoding can honour (see the module)."""
    if max_length is not None:
        if not _is_int(max_length):
            raise TypeError(f"max_length must be an integer or None, got {type(max_length).__name__} {max_length!r}")
        if max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        own = tokenizer.model_max_length if tokenizer.model_max_length <= LARGE_INTEGER else 0
        limit = max(MAX_PADDED_LENGTH, own)
        pads_to_max_length = str(getattr(padding, "value", padding)) == "max_length"  # a str or PaddingStrategy
        if pads_to_max_length and max_length > limit:
            raise ValueError(f"max_length={max_length} with padding={padding!r} would pad every row to "
                             f"{max_length} tokens; the limit is {limit} (model_max_length is "
                             f"{tokenizer.model_max_length})")
        truncating = truncation not in (False, "do_not_truncate") and (truncation is not None or padding is False)
        specials = tokenizer.num_special_tokens_to_add(pair) if add_special_tokens else 0
        if truncating and max_length < specials:
            raise ValueError(f"max_length={max_length} leaves no room: each row holds {specials} special tokens; "
                             f"pass max_length >= {specials}")
    if not _is_int(stride) or stride < 0:
        raise ValueError(f"stride must be an integer >= 0, got {stride!r}")
    if pad_to_multiple_of is not None and (not _is_int(pad_to_multiple_of) or pad_to_multiple_of < 1):
        raise ValueError(f"pad_to_multiple_of must be None or an integer >= 1, got {pad_to_multiple_of!r}")


def _strings(value):
    """Every string in a text argument (a text, a list of texts or words, a batch of pairs)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def check_valid_unicode(*texts):
    """Raises ValueError naming the first text holding a lone surrogate, and its position."""
    for index, text in enumerate(s for t in texts for s in _strings(t)):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text {index} is not valid Unicode: character {e.start} is a lone surrogate "
                             f"U+{ord(text[e.start]):04X} (decode bytes with errors='replace' or remove it)") from None


def check_decode_ids(ids):
    """`ids` (a list, or one id) as Python ints; TypeError for anything that is not an integer."""
    items = [ids] if not isinstance(ids, (list, tuple)) else ids
    for position, value in enumerate(items):
        if not _is_int(value):
            raise TypeError(f"decode takes integer token ids; item {position} is {type(value).__name__} {value!r}")
    return [int(i) for i in items]
