"""DeBERTa-v2/v3 tokenizer: the SentencePiece model itself, with Hugging Face's calling conventions.

The ids are those of the SentencePiece model (its own normaliser, byte fallback and Viterbi), which
is what DeBERTa was trained on. transformers 5.x rebuilds the model as a `tokenizers` Unigram without
byte fallback and with NFC instead of the model's NFKC map, so it emits [UNK] for e.g. "Ầ", fullwidth
letters or zero-width spaces, and breaks a few Viterbi ties differently; everywhere else we produce
exactly its ids, offsets, pairs, truncation and padding.

This module also holds `TokenizerBase`, the Hugging Face call contract shared with the v1 tokenizer:
special tokens written in the text, pairs, truncation, padding, numpy tensors and offsets.
"""

import json
import os
import re
import unicodedata

import numpy as np

from presets.io import atomic_path, atomic_write_text

VERY_LARGE_INTEGER = int(1e30)  # transformers' "no limit" model_max_length
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class TokenizerFileError(ValueError):
    """A tokenizer file is missing, unreadable or corrupt; the message names the file and the problem."""


class BatchEncoding(dict):
    """The result of calling a tokenizer: a dict with attribute access (`enc.input_ids`)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getstate__(self):
        return dict(self)

    def __setstate__(self, state):
        self.update(state)


def read_json_if_exists(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerFileError(f"{path}: not a readable JSON file ({e})") from e


def token_content(value):
    """A special token from a config: a string, or HF's serialised AddedToken dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return value["content"]
    return str(value)


def load_tokenizer_config(directory):
    """tokenizer_config.json, special_tokens_map.json and added_tokens.json merged into one dict.

    Returns (init_kwargs, added_tokens) where added_tokens maps content -> (id, lstrip, rstrip).
    """
    config = dict(read_json_if_exists(directory, "tokenizer_config.json") or {})
    special_map = read_json_if_exists(directory, "special_tokens_map.json") or {}
    for name in SPECIAL_TOKEN_NAMES:
        if name in special_map and name not in config:
            config[name] = special_map[name]
    added = {}
    for idx, tok in (config.pop("added_tokens_decoder", None) or {}).items():
        content = token_content(tok)
        flags = tok if isinstance(tok, dict) else {}
        added[content] = (int(idx), bool(flags.get("lstrip", False)), bool(flags.get("rstrip", False)))
    for content, idx in (read_json_if_exists(directory, "added_tokens.json") or {}).items():
        added.setdefault(content, (int(idx), False, False))
    kwargs = {}
    for name in SPECIAL_TOKEN_NAMES:
        if name in config:
            kwargs[name] = token_content(config[name])
    for name in ("do_lower_case", "split_by_punct", "add_prefix_space", "model_max_length",
                 "padding_side", "truncation_side", "errors"):
        if name in config and config[name] is not None:
            kwargs[name] = config[name]
    return kwargs, added


def longest_first_lengths(n1, n2, budget):
    """How many tokens of each sequence `truncation="longest_first"` keeps (tokenizers' rule).

    The shorter sequence keeps min(its length, budget // 2); the longer one takes the rest. On a
    tie the second sequence counts as the longer one.
    """
    if n1 + n2 <= budget:
        return n1, n2
    if n1 > n2:
        keep2 = min(n2, budget // 2)
        return budget - keep2, keep2
    keep1 = min(n1, budget // 2)
    return keep1, budget - keep1


class TokenizerBase:
    """Hugging Face's tokenizer call contract over a subclass's `_encode_texts` / id <-> token maps.

    Subclasses provide:
      `_encode_texts(texts, with_offsets)` -> list of (ids, offsets or None) for plain text segments
      (no special tokens inside, no [CLS]/[SEP] around), offsets as character spans of each segment;
      `_base_id_to_token(i)`, `_base_token_to_id(t)` (None if absent), `_base_vocab_size`,
      `_decode_ids(ids)`; and the pair template via `_pair_separators`.
    """

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    # (separators between the sequences of a pair): v2 has [SEP] once, v1 (RoBERTa-style) twice.
    _pair_separators = 1

    def _init_special_tokens(self, special_tokens, added_tokens, lstrip_tokens=(), model_max_length=None,
                             padding_side="right", truncation_side="right"):
        """special_tokens: {name: content}; added_tokens: {content: id or (id, lstrip, rstrip)} from
        files, or None."""
        added_tokens = {
            content: tuple(value) if isinstance(value, (tuple, list)) else (int(value), False, False)
            for content, value in (added_tokens or {}).items()
        }
        self.model_max_length = int(model_max_length) if model_max_length is not None else VERY_LARGE_INTEGER
        if padding_side not in ("right", "left") or truncation_side not in ("right", "left"):
            raise ValueError("padding_side and truncation_side must be 'right' or 'left'")
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self._special = {name: special_tokens.get(name) for name in SPECIAL_TOKEN_NAMES}
        # content -> id for every token that is matched in the text before the model sees it.
        self._added = {}
        self._added_flags = {}
        for content, (idx, lstrip, rstrip) in sorted(added_tokens.items(), key=lambda kv: kv[1][0]):
            self._added[content] = idx
            self._added_flags[content] = (lstrip, rstrip)
        next_id = max([self._base_vocab_size - 1] + list(self._added.values())) + 1
        for name in SPECIAL_TOKEN_NAMES:
            content = self._special[name]
            if content is None or content in self._added:
                continue
            base = self._base_token_to_id(content)
            if base is None:
                self._added[content] = next_id
                next_id += 1
            else:
                self._added[content] = base
            self._added_flags[content] = (content in lstrip_tokens, False)
        self._added_by_id = {i: t for t, i in self._added.items()}
        if self._added:
            alternatives = sorted(self._added, key=len, reverse=True)
            self._special_re = re.compile("|".join(re.escape(t) for t in alternatives))
        else:
            self._special_re = None
        self._special_ids = {self._added[v] for v in self._special.values() if v is not None}
        self.all_special_ids = sorted(self._special_ids)

    # ---- special tokens ---------------------------------------------------------------------
    def __getattr__(self, name):
        # cls_token / cls_token_id and friends, as transformers exposes them.
        special = self.__dict__.get("_special")
        if special is not None:
            if name in special:
                return special[name]
            if name.endswith("_id") and name[:-3] in special:
                content = special[name[:-3]]
                return None if content is None else self._added.get(content)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def vocab_size(self):
        return self._base_vocab_size

    def __len__(self):
        return max([self._base_vocab_size - 1] + list(self._added_by_id)) + 1

    def get_vocab(self):
        vocab = {self._base_id_to_token(i): i for i in range(self._base_vocab_size)}
        vocab.update(self._added)
        return vocab

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        single = isinstance(ids, (int, np.integer))
        out = []
        for i in [ids] if single else ids:
            i = int(i)
            if skip_special_tokens and i in self._added_by_id:
                continue
            out.append(self._added_by_id[i] if i in self._added_by_id else self._base_id_to_token(i))
        return out[0] if single else out

    def convert_tokens_to_ids(self, tokens):
        single = isinstance(tokens, str)
        out = []
        for t in [tokens] if single else tokens:
            if t in self._added:
                out.append(self._added[t])
            else:
                i = self._base_token_to_id(t)
                out.append(self.unk_token_id if i is None else i)
        return out[0] if single else out

    # ---- splitting the text on special tokens ----------------------------------------------
    def _split_special(self, text):
        """[(text, start, end, id or None)]: special tokens matched as HF does (leftmost-longest, on
        the raw text; a token with lstrip / rstrip also takes the whitespace beside it)."""
        if self._special_re is None:
            return [(text, 0, len(text), None)]
        parts, pos = [], 0
        for m in self._special_re.finditer(text):
            start, end = m.span()
            lstrip, rstrip = self._added_flags[m.group()]
            if lstrip:
                while start > pos and text[start - 1].isspace():
                    start -= 1
            if rstrip:
                while end < len(text) and text[end].isspace():
                    end += 1
            if start > pos:
                parts.append((text[pos:start], pos, start, None))
            parts.append((m.group(), start, end, self._added[m.group()]))
            pos = end
        if pos < len(text):
            parts.append((text[pos:], pos, len(text), None))
        return parts

    def _encode_many(self, texts, with_offsets):
        """Token ids (and character offsets) of each text, special tokens in the text included."""
        split = [self._split_special(t) for t in texts]
        plain = [seg for parts in split for seg, _, _, special in parts if special is None]
        encoded = iter(self._encode_texts(plain, with_offsets))
        out = []
        for parts in split:
            ids, offsets = [], [] if with_offsets else None
            for seg, start, end, special in parts:
                if special is not None:
                    ids.append(special)
                    if with_offsets:
                        offsets.append((start, end))
                    continue
                seg_ids, seg_offsets = next(encoded)
                ids.extend(seg_ids)
                if with_offsets:
                    offsets.extend((start + a, start + b) for a, b in seg_offsets)
            out.append((ids, offsets))
        return out

    def tokenize(self, text):
        ids, _ = self._encode_many([text], False)[0]
        return self.convert_ids_to_tokens(ids)

    def encode(self, text, text_pair=None, add_special_tokens=True, **kwargs):
        return self(text, text_pair=text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # ---- the pair template ---------------------------------------------------------------------
    def num_special_tokens_to_add(self, pair=False):
        return 2 + self._pair_separators if pair else 2

    def build_inputs_with_special_tokens(self, ids_a, ids_b=None):
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if ids_b is None:
            return cls + list(ids_a) + sep
        return cls + list(ids_a) + sep * self._pair_separators + list(ids_b) + sep

    def _assemble(self, a, b, add_special_tokens):
        """(ids, type_ids, offsets) of one example from its (ids, offsets) parts."""
        ids_a, off_a = a
        if b is None:
            if not add_special_tokens:
                return list(ids_a), [0] * len(ids_a), off_a
            ids = self.build_inputs_with_special_tokens(ids_a)
            types = [0] * len(ids)
            offs = None if off_a is None else [(0, 0)] + list(off_a) + [(0, 0)]
            return ids, types, offs
        ids_b, off_b = b
        if not add_special_tokens:
            ids = list(ids_a) + list(ids_b)
            types = [0] * len(ids_a) + [1] * len(ids_b)
            offs = None if off_a is None else list(off_a) + list(off_b)
            return ids, types, offs
        ids = self.build_inputs_with_special_tokens(ids_a, ids_b)
        n_first = 1 + len(ids_a) + 1
        types = [0] * n_first + [1] * (len(ids) - n_first)
        offs = None
        if off_a is not None:
            offs = [(0, 0)] + list(off_a) + [(0, 0)] * self._pair_separators + list(off_b) + [(0, 0)]
        return ids, types, offs

    def _truncate(self, a, b, strategy, max_length, add_special_tokens):
        n_special = self.num_special_tokens_to_add(b is not None) if add_special_tokens else 0
        budget = max_length - n_special
        if budget < 0:
            # transformers logs an error and leaves the sequences as they are.
            return a, b
        cut = (lambda x, n: (x[0][:n], None if x[1] is None else x[1][:n])) if self.truncation_side == "right" \
            else (lambda x, n: (x[0][len(x[0]) - n:], None if x[1] is None else x[1][len(x[0]) - n:]))
        if budget == 0:  # tokenizers empties both sequences, whatever the strategy
            return cut(a, 0), None if b is None else cut(b, 0)
        n1 = len(a[0])
        n2 = 0 if b is None else len(b[0])
        if n1 + n2 <= budget:
            return a, b
        if b is None and strategy == "only_second":
            raise ValueError("Truncation error: truncation='only_second' needs a pair of sequences")
        if b is None or strategy == "only_first":
            if b is not None and n1 <= n1 + n2 - budget:
                raise ValueError("Truncation error: Sequence to truncate too short to respect the provided max_length")
            return cut(a, budget - n2), b
        if strategy == "only_second":
            if n2 <= n1 + n2 - budget:
                raise ValueError("Truncation error: Sequence to truncate too short to respect the provided max_length")
            return a, cut(b, budget - n1)
        k1, k2 = longest_first_lengths(n1, n2, budget)
        return cut(a, k1), cut(b, k2)

    # ---- __call__ --------------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, pad_to_multiple_of=None, padding_side=None, return_tensors=None,
                 return_token_type_ids=None, return_attention_mask=None, return_offsets_mapping=False,
                 return_length=False, return_special_tokens_mask=False, **kwargs):
        for key in ("stride", "return_overflowing_tokens", "is_split_into_words"):
            if kwargs.get(key):
                raise NotImplementedError(f"{key} is not supported")
        unknown = set(kwargs) - {"stride", "return_overflowing_tokens", "is_split_into_words", "verbose"}
        if unknown:
            raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
        if isinstance(text, str):
            batched = False
            texts = [text]
            if text_pair is not None and not isinstance(text_pair, str):
                raise TypeError("text_pair must be a string when text is a string")
            pairs = [text_pair] if text_pair else None  # transformers: an empty pair means no pair
        elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            batched = True
            texts = list(text)
            if isinstance(text_pair, str):
                raise TypeError("when tokenizing batches of text, `text_pair` must be a list or tuple "
                                "with the same length as `text`.")
            if text_pair is not None:
                if len(text_pair) != len(texts) or not all(isinstance(t, str) for t in text_pair):
                    raise ValueError(f"batch length of `text`: {len(texts)} does not match batch length "
                                     f"of `text_pair`: {len(text_pair)}.")
                pairs = list(text_pair)
            else:
                pairs = None
        else:
            raise ValueError("text input must be of type `str` (single example) or `list[str]` (batch)")

        # Truncation and padding strategies, resolved as transformers does: a max_length without a
        # truncation argument (and without padding) truncates "longest_first".
        if truncation is None and max_length is not None and padding in (False, None, "do_not_pad"):
            truncation = "longest_first"
        if truncation is True:
            truncation = "longest_first"
        elif truncation in (False, None, "do_not_truncate"):
            truncation = None
        elif truncation not in ("longest_first", "only_first", "only_second"):
            raise ValueError(f"unknown truncation strategy {truncation!r}")
        if padding is True:
            padding = "longest"
        elif padding in (False, None, "do_not_pad"):
            padding = None
        elif padding not in ("longest", "max_length"):
            raise ValueError(f"unknown padding strategy {padding!r}")
        if max_length is None:
            if truncation is not None or padding == "max_length":
                if self.model_max_length < VERY_LARGE_INTEGER:
                    max_length = self.model_max_length
                else:
                    truncation = None
                    if padding == "max_length":
                        padding = None
        elif truncation is None and padding is None:
            pass
        if return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors={return_tensors!r}: only 'np' (or None for lists) is supported")
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        encoded = self._encode_many(texts + (pairs or []), return_offsets_mapping)
        first = encoded[: len(texts)]
        second = encoded[len(texts):] if pairs is not None else [None] * len(texts)
        rows = []
        for a, b in zip(first, second):
            if truncation is not None and max_length is not None:
                a, b = self._truncate(a, b, truncation, max_length, add_special_tokens)
            rows.append(self._assemble(a, b, add_special_tokens))

        # Padding.
        target = None
        if padding == "longest":
            target = max((len(r[0]) for r in rows), default=0)
        elif padding == "max_length":
            target = max_length
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        side = padding_side or self.padding_side
        out = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "offset_mapping": [],
               "special_tokens_mask": [], "length": []}
        for ids, types, offs in rows:
            mask = [1] * len(ids)
            special = [1 if i in self._special_ids else 0 for i in ids]
            length = len(ids)
            n_pad = max(0, (target or 0) - len(ids))
            if n_pad:
                pad_id = self.pad_token_id
                if pad_id is None:
                    raise ValueError("padding needs a pad token")

                def pad(seq, value):
                    return seq + [value] * n_pad if side == "right" else [value] * n_pad + seq

                ids, types, mask, special = pad(ids, pad_id), pad(types, 0), pad(mask, 0), pad(special, 1)
                offs = None if offs is None else pad(offs, (0, 0))
            out["input_ids"].append(ids)
            out["token_type_ids"].append(types)
            out["attention_mask"].append(mask)
            out["offset_mapping"].append(offs)
            out["special_tokens_mask"].append(special)
            out["length"].append(length)
        keys = ["input_ids"]
        if return_token_type_ids:
            keys.append("token_type_ids")
        if return_attention_mask:
            keys.append("attention_mask")
        if return_offsets_mapping:
            keys.append("offset_mapping")
        if return_special_tokens_mask:
            keys.append("special_tokens_mask")
        if return_length:
            keys.append("length")
        result = BatchEncoding()
        for key in keys:
            value = out[key]
            if return_tensors == "np":
                if key == "length":
                    value = np.asarray(value, dtype=np.int64)
                else:
                    lengths = {len(v) for v in value}
                    if len(lengths) > 1:
                        raise ValueError(
                            "Unable to create tensor, you should probably activate truncation and/or padding "
                            "with 'padding=True' 'truncation=True' to have batched tensors with the same length.")
                    value = np.asarray(value, dtype=np.int64)
                    if key == "offset_mapping":
                        value = value.reshape(len(out[key]), -1, 2)
                    else:
                        value = value.reshape(len(out[key]), -1)
            elif not batched and key != "length":
                value = value[0]
            result[key] = value
        return result

    # ---- decoding ----------------------------------------------------------------------------
    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False):
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        ids = [int(i) for i in token_ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._added_by_id or self._added_by_id[i] not in self._special_values()]
        text = self._decode_ids(ids)
        if clean_up_tokenization_spaces:
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(a, b)
        return text

    def batch_decode(self, sequences, **kwargs):
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s, **kwargs) for s in sequences]

    def _special_values(self):
        return {v for v in self._special.values() if v is not None}

    # ---- saving ----------------------------------------------------------------------------
    def _tokenizer_config(self):
        added = {}
        for content, idx in sorted(self._added.items(), key=lambda kv: kv[1]):
            lstrip, rstrip = self._added_flags.get(content, (False, False))
            added[str(idx)] = {"content": content, "lstrip": lstrip, "normalized": False, "rstrip": rstrip,
                               "single_word": False, "special": content in self._special_values()}
        config = {"added_tokens_decoder": added}
        config.update({k: v for k, v in self._special.items() if v is not None})
        config["model_max_length"] = self.model_max_length
        config["padding_side"] = self.padding_side
        config["truncation_side"] = self.truncation_side
        config["clean_up_tokenization_spaces"] = False
        return config

    def _write_configs(self, directory, config):
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(os.path.join(directory, "tokenizer_config.json"),
                          json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        special_map = {k: v for k, v in self._special.items() if v is not None}
        atomic_write_text(os.path.join(directory, "special_tokens_map.json"),
                          json.dumps(special_map, indent=2, ensure_ascii=False) + "\n")


def _char_index_of_bytes(text):
    """A list mapping every UTF-8 byte offset of `text` (and its end) to a character offset."""
    table = []
    for i, ch in enumerate(text):
        table.extend([i] * len(ch.encode("utf-8")))
    table.append(len(text))
    return table


def _word_start_offsets(text, a, b, bare):
    """transformers' span of a piece that starts with "\u2581" (SentencePiece's surface is (a, b)).

    SentencePiece drops leading whitespace and folds a run of whitespace into the next piece;
    transformers maps the "\u2581" to the last whitespace character before the word, or, where the
    model prepended it (start of a segment), to the first character of the word. A bare "\u2581"
    piece spans just that one character.
    """
    s = a
    while s < b and text[s].isspace():
        s += 1
    start = s - 1 if s > 0 and text[s - 1].isspace() else s
    if bare:
        return start, min(start + 1, len(text))
    return start, b


def _composed_end(text, a, b):
    """transformers aligns a character composed by NFC ("e" + U+0301 -> "é") with its first original
    character only, so a span ending in such a combining mark stops before it."""
    while b - 1 > a and unicodedata.combining(text[b - 1]) and (
            len(unicodedata.normalize("NFC", text[a:b])) == len(unicodedata.normalize("NFC", text[a:b - 1]))):
        b -= 1
    return b


class DebertaV2Tokenizer(TokenizerBase):
    """DeBERTa-v2/v3 tokenizer over a SentencePiece model (`spm.model`).

    Args:
        vocab_file: path to the SentencePiece model.
        do_lower_case: lower-case the text first (as transformers).
        split_by_punct: encode runs between punctuation marks separately (as transformers).
        model_max_length: default `max_length` for truncation / `padding="max_length"`.
        added_tokens: {content: id} or {content: (id, lstrip, rstrip)} matched in the text before the
            model sees it. The special tokens ([CLS] [SEP] [UNK] [PAD] [MASK]) always are; those not
            among the model's pieces get the next ids after it (v3's [MASK] -> 128000).
    """

    vocab_files_names = {"vocab_file": "spm.model"}
    _pair_separators = 1

    def __init__(self, vocab_file, do_lower_case=False, split_by_punct=False, bos_token="[CLS]",
                 eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                 cls_token="[CLS]", mask_token="[MASK]", model_max_length=None, padding_side="right",
                 truncation_side="right", added_tokens=None, **kwargs):
        import sentencepiece as spm

        if vocab_file is None or not os.path.isfile(vocab_file):
            raise TokenizerFileError(f"SentencePiece model not found: {vocab_file!r} (expected spm.model)")
        with open(vocab_file, "rb") as f:
            self._model_bytes = f.read()
        self.vocab_file = vocab_file
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self._model_bytes)
        except Exception as e:  # sentencepiece raises RuntimeError / OSError depending on version
            raise TokenizerFileError(f"{vocab_file}: not a valid SentencePiece model ({e})") from e
        if self.sp.get_piece_size() == 0:
            raise TokenizerFileError(f"{vocab_file}: SentencePiece model has no pieces")
        self.do_lower_case = bool(do_lower_case)
        self.split_by_punct = bool(split_by_punct)
        self._base_vocab_size = self.sp.get_piece_size()
        self._init_kwargs = dict(kwargs)
        self._init_special_tokens(
            dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token,
                 pad_token=pad_token, cls_token=cls_token, mask_token=mask_token),
            added_tokens, model_max_length=model_max_length, padding_side=padding_side,
            truncation_side=truncation_side)

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        if not os.path.isdir(directory):
            raise TokenizerFileError(f"tokenizer directory not found: {directory!r}")
        vocab_file = os.path.join(directory, "spm.model")
        if not os.path.isfile(vocab_file):
            raise TokenizerFileError(f"{directory}: no spm.model (the DeBERTa-v2/v3 SentencePiece model)")
        config, added = load_tokenizer_config(directory)
        config.pop("add_prefix_space", None)
        config.pop("errors", None)
        config.update(kwargs)
        return cls(vocab_file, added_tokens={**added, **config.pop("added_tokens", {})}, **config)

    # ---- the model ----------------------------------------------------------------------------
    def _base_id_to_token(self, i):
        if not 0 <= i < self._base_vocab_size:
            raise IndexError(f"token id {i} out of range")
        return self.sp.id_to_piece(i)

    def _base_token_to_id(self, token):
        i = self.sp.piece_to_id(token)
        if i == self.sp.unk_id() and token != self.sp.id_to_piece(i):
            return None
        return i

    def _prepare(self, text):
        return text.lower() if self.do_lower_case else text

    def _punct_runs(self, text):
        """(run, start) pieces with every punctuation character on its own (HF Punctuation isolated)."""
        runs, start = [], 0
        for i, ch in enumerate(text):
            if unicodedata.category(ch).startswith("P") or (ch.isascii() and not ch.isalnum()
                                                             and not ch.isspace() and ch.isprintable()):
                if i > start:
                    runs.append((text[start:i], start))
                runs.append((ch, i))
                start = i + 1
        if start < len(text):
            runs.append((text[start:], start))
        return runs

    def _encode_texts(self, texts, with_offsets):
        texts = [self._prepare(t) for t in texts]
        if self.split_by_punct:
            # As transformers: trailing whitespace goes, punctuation marks stand alone, and whitespace
            # ending a run (or making it up) becomes a bare "\u2581" of its own.
            runs = [self._punct_runs(t.rstrip()) for t in texts]
            words = [r.rstrip() for rs in runs for r, _ in rs if not r.isspace()]
            flat = iter(self._encode_texts_plain(words, with_offsets))
            space_id = self.sp.piece_to_id("\u2581")
            out = []
            for rs in runs:
                ids, offs = [], [] if with_offsets else None
                for run, start in rs:
                    r_ids, r_offs = ([], []) if run.isspace() else next(flat)
                    r_offs = r_offs or []
                    if run[-1].isspace():
                        r_ids = list(r_ids) + [space_id]
                        r_offs = list(r_offs) + [(len(run) - 1, len(run))]
                    ids.extend(r_ids)
                    if with_offsets:
                        offs.extend((start + a, start + b) for a, b in r_offs)
                out.append((ids, offs))
            return out
        return self._encode_texts_plain(texts, with_offsets)

    def _encode_texts_plain(self, texts, with_offsets):
        if not texts:
            return []
        if not with_offsets:
            return [(ids, None) for ids in self.sp.encode(texts)]
        out = []
        for text, proto in zip(texts, self.sp.encode(texts, return_type="proto")):
            table = None if text.isascii() else _char_index_of_bytes(text)
            ids, offs = [], []
            for p in proto.pieces:
                ids.append(p.id)
                a, b = (p.begin, p.end) if table is None else (table[p.begin], table[p.end])
                if p.piece.startswith("\u2581") and not self.sp.is_byte(p.id):
                    a, b = _word_start_offsets(text, a, b, p.piece == "\u2581")
                if table is not None:
                    b = _composed_end(text, a, b)
                offs.append((a, b))
            out.append((ids, offs))
        return out

    def _decode_ids(self, ids):
        """Pieces to text: "▁" is a space, byte pieces are joined into UTF-8, special tokens are
        their text; the leading space the model adds to the first word is removed (as transformers)."""
        buf = bytearray()
        for n, i in enumerate(ids):
            if i in self._added_by_id:
                buf += self._added_by_id[i].encode("utf-8")
            elif 0 <= i < self._base_vocab_size and self.sp.is_byte(i):
                buf.append(int(self.sp.id_to_piece(i)[1:-1], 16))
            else:
                piece = self._base_id_to_token(i)
                if n == 0 and piece.startswith("▁"):
                    piece = piece[1:]
                buf += piece.replace("▁", " ").encode("utf-8")
        return buf.decode("utf-8", errors="replace")

    # ---- saving ------------------------------------------------------------------------------
    def save_pretrained(self, directory):
        os.makedirs(directory, exist_ok=True)
        with atomic_path(os.path.join(directory, "spm.model")) as tmp:
            with open(tmp, "wb") as f:
                f.write(self._model_bytes)
        config = self._tokenizer_config()
        config.update(tokenizer_class="DebertaV2Tokenizer", do_lower_case=self.do_lower_case,
                      split_by_punct=self.split_by_punct, vocab_type="spm")
        self._write_configs(directory, config)
        return directory


DebertaV2TokenizerFast = DebertaV2Tokenizer

__all__ = ["DebertaV2Tokenizer", "DebertaV2TokenizerFast", "TokenizerFileError", "BatchEncoding"]
