"""The DeBERTa tokenizers' shared base: vocabulary, the pair template, text to pieces, decoding,
loading and saving, over a tokenization model object ("the model": SentencePiece, GPT-2 byte-level
BPE in Python, or the `tokenizers` library). Special and added tokens are in tokenization_special,
`__call__` in tokenization_encoding, `prepare_for_model` / `pad` in tokenization_ids.

What a model object provides (tokenization_spm, tokenization_bpe, tokenization_backend):
- `vocab_size`, `id_to_token(i)` (IndexError when absent), `token_to_id(t)` (None when absent);
- `encode(texts, offsets, tokens)` -> [Pieces] of text holding no added token (the two Python
  models), or, with `owns_added_tokens` (the `tokenizers` model, which matches added tokens
  itself), `encode_full(texts, offsets, tokens, split_special, is_pretokenized)`, `added_tokens()`,
  `add_token(token)`, `set_template(...)` and `to_json()`;
- `decode(ids, added_decoder, skip_special_tokens)`, `tokens_to_string(tokens, added)`;
- `save_legacy(path)` when `has_legacy_files` (spm.model, or vocab.json + merges.txt);
- `space_id` (SentencePiece's bare "\u2581", else None), `lowercases` (added tokens match
  case-insensitively), `cleans_up` (clean_up_tokenization_spaces applies), `backend` (a name).
"""

import copy
import json
import os

from keras_deberta.tokenization_arguments import check_decode_ids
from keras_deberta.tokenization_encoding import EncodingMixin, Pieces
from keras_deberta.tokenization_ids import IdsMixin
from keras_deberta.tokenization_special import (
    SPECIAL_TOKEN_NAMES,
    AddedToken,
    SpecialTokensMixin,
    as_added_token,
)
from presets.io import atomic_write_text
from presets.tokenizer_types import TokenizerFileError

CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
TOKENIZER_FILE = "tokenizer.json"
# tokenizer_config.json keys the constructors take (the rest is kept in `init_kwargs` and saved back).
CONFIG_KEYS = SPECIAL_TOKEN_NAMES + (
    "do_lower_case", "split_by_punct", "add_prefix_space", "errors", "model_max_length", "padding_side",
    "truncation_side", "clean_up_tokenization_spaces", "split_special_tokens", "sp_model_kwargs", "pair_layout",
    "model_input_names", "extra_special_tokens", "unk_id")
DEFAULT_MODEL_MAX_LENGTH = 512  # every DeBERTa checkpoint's position table (transformers 4's size for them)
# Keys tokenizer_config.json may hold that describe the files, not the tokenizer.
NOT_INIT_KEYS = ("added_tokens_decoder", "tokenizer_class", "auto_map", "name_or_path", "tokenizer_file",
                 "vocab_file", "merges_file", "special_tokens_map_file", "backend", "is_local", "local_files_only",
                 "files_loaded", "_commit_hash")


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
    """A special token from a config: a string, or transformers' serialised AddedToken dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise TokenizerFileError(f"cannot read a special token from {value!r}")


def load_tokenizer_config(directory):
    """(constructor kwargs, init_kwargs, {id: AddedToken}) from tokenizer_config.json,
    special_tokens_map.json and added_tokens.json (each optional)."""
    config = read_json_if_exists(directory, CONFIG_FILE) or {}
    special_map = read_json_if_exists(directory, SPECIAL_TOKENS_MAP_FILE) or {}
    if not isinstance(config, dict) or not isinstance(special_map, dict):
        raise TokenizerFileError(f"{directory}: {CONFIG_FILE} / {SPECIAL_TOKENS_MAP_FILE} must hold JSON objects")
    config = dict(config)
    for name in SPECIAL_TOKEN_NAMES + ("additional_special_tokens",):
        if name in special_map and name not in config:
            config[name] = special_map[name]
    if "additional_special_tokens" in config and not config.get("extra_special_tokens"):
        config["extra_special_tokens"] = config.pop("additional_special_tokens")
    added = {}
    for idx, tok in (config.get("added_tokens_decoder") or {}).items():
        added[int(idx)] = as_added_token(tok)
    for content, idx in (read_json_if_exists(directory, ADDED_TOKENS_FILE) or {}).items():
        added.setdefault(int(idx), AddedToken(content))
    init_kwargs = {k: v for k, v in config.items() if k not in NOT_INIT_KEYS}
    kwargs = {k: v for k, v in init_kwargs.items() if k in CONFIG_KEYS and v is not None}
    for name in SPECIAL_TOKEN_NAMES:
        if name in kwargs:
            kwargs[name] = token_content(kwargs[name])
    if "extra_special_tokens" in kwargs:
        extra = kwargs["extra_special_tokens"]
        kwargs["extra_special_tokens"] = [token_content(t) for t in (extra if isinstance(extra, list) else [])]
    return kwargs, init_kwargs, added


class DebertaTokenizerBase(SpecialTokensMixin, EncodingMixin, IdsMixin):
    """transformers' tokenizer API over `self._model`; subclasses build the model and call `_init_tokens`."""

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    vocab_files_names = {}
    _pair_separators = 1  # [SEP]s between the two texts of a pair
    _pair_type_ids = True  # second text (and its [SEP]s) gets token type 1

    def _init_tokens(self, model, special_tokens, added_tokens=None, extra_special_tokens=None, model_max_length=None,
                     padding_side="right", truncation_side="right", clean_up_tokenization_spaces=False,
                     split_special_tokens=False, model_input_names=None, init_kwargs=None):
        if padding_side not in ("right", "left") or truncation_side not in ("right", "left"):
            raise ValueError("padding_side and truncation_side must be 'right' or 'left'")
        self._model = model
        self.model_max_length = int(model_max_length)
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.split_special_tokens = bool(split_special_tokens)
        if model_input_names is not None:
            self.model_input_names = list(model_input_names)
        conflicting = sorted(k for k in (init_kwargs or {}) if callable(getattr(type(self), k, None)))
        if conflicting:  # as transformers: a saved config key would shadow the method when reloaded
            raise AttributeError(f"{', '.join(conflicting)} conflicts with the method of the same name in "
                                 f"{type(self).__name__}; it cannot be a tokenizer argument")
        self.init_kwargs = copy.deepcopy(dict(init_kwargs or {}))
        # transformers' positional constructor arguments; every argument here is kept by name in
        # init_kwargs (the vocabulary files included), so none is left positional.
        self.init_inputs = ()
        self._added_decoder, self._added, self._added_flags, self._patterns = {}, {}, {}, {}
        self._special = {name: special_tokens.get(name) for name in SPECIAL_TOKEN_NAMES}
        self._extra_special = [as_added_token(t).content for t in (extra_special_tokens or [])]
        known = dict(model.added_tokens()) if model.owns_added_tokens else {}
        for idx, token in sorted({**known, **{int(i): as_added_token(t) for i, t in
                                              (added_tokens or {}).items()}}.items()):
            self._add_token(token, idx)
        for content in [self._special[n] for n in SPECIAL_TOKEN_NAMES] + self._extra_special:
            if content is not None and content not in self._added:
                self._add_token(AddedToken(content, normalized=False, special=True))

    @property
    def pad_token_type_id(self):
        return 0

    @property
    def is_fast(self):
        """True: every DeBERTa tokenizer here gives what transformers' fast tokenizers give (offsets,
        word_ids, overflow rows), whichever model runs underneath (see `backend`)."""
        return True

    @property
    def backend(self):
        return self._model.backend

    @property
    def max_len_single_sentence(self):
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self):
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    # ---- vocabulary ------------------------------------------------------------------------
    @property
    def vocab_size(self):
        """The model's vocabulary, without the added tokens."""
        return self._model.vocab_size

    def __len__(self):
        return max([self._model.vocab_size - 1] + list(self._added_decoder)) + 1

    def get_vocab(self):
        vocab = {self._model.id_to_token(i): i for i in range(self._model.vocab_size)}
        vocab.update(self._added)
        return vocab

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        single = isinstance(ids, int) or hasattr(ids, "__index__") and not hasattr(ids, "__len__")
        skip = set(self.all_special_ids) if skip_special_tokens and not single else ()
        out = []
        for i in [ids] if single else ids:
            i = int(i)
            if i in skip:
                continue
            token = self._added_decoder.get(i)
            out.append(token.content if token is not None else self._model.id_to_token(i))
        return out[0] if single else out

    def convert_tokens_to_ids(self, tokens):
        single = isinstance(tokens, str)
        out = []
        for token in [tokens] if single else tokens:
            idx = self._added.get(token)
            if idx is None:
                idx = self._model.token_to_id(token)
            if idx is None:
                unk = self._special.get("unk_token")
                idx = None if unk is None or unk == token else self.convert_tokens_to_ids(unk)
            out.append(idx)
        return out[0] if single else out

    def convert_tokens_to_string(self, tokens):
        """Token strings back to text (byte pieces joined into UTF-8)."""
        return self._model.tokens_to_string(list(tokens), self._added)

    # ---- the pair template ------------------------------------------------------------------
    def num_special_tokens_to_add(self, pair=False):
        return 2 + (self._pair_separators if pair else 0)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if token_ids_1 is None:
            return cls + list(token_ids_0) + sep
        return cls + list(token_ids_0) + sep * self._pair_separators + list(token_ids_1) + sep

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None):
        first = [0] * (len(token_ids_0) + 2)
        if token_ids_1 is None:
            return first
        return first + [1 if self._pair_type_ids else 0] * (len(token_ids_1) + self._pair_separators)

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("You should not supply a second sequence if the provided sequence of ids is "
                                 "already formatted with special tokens for the model.")
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        mask = [1] + [0] * len(token_ids_0) + [1]
        if token_ids_1 is None:
            return mask
        return mask + [1] * (self._pair_separators - 1) + [0] * len(token_ids_1) + [1]

    # ---- text -> pieces ---------------------------------------------------------------------
    def _encode_texts(self, texts, offsets=False, split_special=False, tokens=False):
        """[Pieces] of whole texts, added tokens matched; word ids count the model's words, each added
        token being one."""
        if self._model.owns_added_tokens:
            return self._model.encode_full(texts, offsets=offsets, tokens=tokens, split_special=split_special)
        split = [self._split_added(t, split_special) for t in texts]
        plain = iter(self._model.encode(
            [seg for text, parts in zip(texts, split)
             for seg in ([text] if parts is None else [s for s, _, _, tok in parts if tok is None])],
            offsets=offsets, tokens=tokens))
        return [next(plain) if parts is None else self._join_parts(parts, plain, offsets, tokens) for parts in split]

    def _join_parts(self, parts, plain, offsets, tokens):
        """One text's Pieces from its parts: added tokens and the model's pieces of the text between."""
        space = self._model.space_id
        ids, offs, words, toks, word = [], [] if offsets else None, [], [] if tokens else None, 0
        for n, (seg, start, end, token) in enumerate(parts):
            if token is not None:
                ids.append(self._added[token.content])
                words.append(word)
                word += 1
                if offsets:
                    offs.append((start, end))
                if tokens:
                    toks.append(token.content)
                continue
            pieces = next(plain)
            ids.extend(pieces.ids)
            words.extend(word + w for w in pieces.words)
            word += max(pieces.words, default=-1) + 1
            if offsets:
                offs.extend((start + a, start + b) for a, b in pieces.offsets)
            if tokens:
                toks.extend(pieces.tokens)
            following = parts[n + 1][3] if n + 1 < len(parts) else None
            if space is not None and following is not None and following.normalized and seg[-1:].isspace():
                # transformers matches normalized added tokens after normalising the whole text, so
                # the whitespace before one is a bare "\u2581" of its own
                ids.append(space)
                words.append(word)
                word += 1
                if offsets:
                    offs.append((end - 1, end))
                if tokens:
                    toks.append(self._model.id_to_token(space))
        return Pieces(ids, offs, words, toks)

    def _encode_sequences(self, texts, is_split_into_words, offsets, split_special, tokens=False):
        """[Pieces] of each text, or of each list of words (word ids = word positions, offsets within words)."""
        if not is_split_into_words:
            return self._encode_texts(texts, offsets, split_special, tokens)
        if self._model.owns_added_tokens:
            return self._model.encode_full(texts, offsets=offsets, tokens=tokens, split_special=split_special,
                                           is_pretokenized=True)
        flat = iter(self._encode_texts([w for words in texts for w in words], offsets, split_special, tokens))
        out = []
        for words in texts:
            parts = [next(flat) for _ in words]
            out.append(Pieces([i for p in parts for i in p.ids],
                              [o for p in parts for o in p.offsets] if offsets else None,
                              [w for w, p in enumerate(parts) for _ in p.ids],
                              [t for p in parts for t in p.tokens] if tokens else None))
        return out

    def tokenize(self, text, pair=None, add_special_tokens=False, **kwargs):
        """The model's token strings for the text (the raw piece where the id is unknown, as
        transformers), special tokens around them with add_special_tokens=True."""
        split_special = kwargs.pop("split_special_tokens", self.split_special_tokens)
        is_split_into_words = kwargs.pop("is_split_into_words", False)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")
        texts = [text] if pair is None else [text, pair]
        parts = [p.tokens for p in
                 self._encode_sequences(texts, is_split_into_words, False, split_special, tokens=True)]
        if not add_special_tokens:
            return [t for p in parts for t in p]
        cls, sep = [self.cls_token], [self.sep_token]
        if pair is None:
            return cls + parts[0] + sep
        return cls + parts[0] + sep * self._pair_separators + parts[1] + sep

    # ---- decoding ----------------------------------------------------------------------------
    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        ids = check_decode_ids(token_ids)
        if skip_special_tokens and not self._model.owns_added_tokens:
            skip = set(self.all_special_ids) | {i for i, t in self._added_decoder.items() if t.special}
            ids = [i for i in ids if i not in skip]
        text = self._model.decode(ids, self._added_decoder, skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean and self._model.cleans_up else text

    def batch_decode(self, sequences, **kwargs):
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s, **kwargs) for s in sequences]

    @staticmethod
    def clean_up_tokenization(text):
        for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(a, b)
        return text

    # ---- saving ------------------------------------------------------------------------------
    def _tokenizer_config(self):
        """tokenizer_config.json as transformers writes it (and reads it back)."""
        config = {k: v for k, v in self.init_kwargs.items() if k not in NOT_INIT_KEYS + ("additional_special_tokens",)}
        config["added_tokens_decoder"] = {
            str(idx): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                       "single_word": t.single_word, "special": t.special}
            for idx, t in sorted(self._added_decoder.items())}
        config.update(self.special_tokens_map)
        config["extra_special_tokens"] = list(self._extra_special)
        config.update(model_max_length=self.model_max_length, padding_side=self.padding_side,
                      truncation_side=self.truncation_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                      split_special_tokens=self.split_special_tokens)
        return config

    def save_pretrained(self, save_directory, legacy_format=None, filename_prefix=None, push_to_hub=False, **kwargs):
        """Writes the tokenizer so that this class and transformers load it back; each file atomically.

        legacy_format: None (default) writes the model's own files (spm.model, or vocab.json +
        merges.txt) where this tokenizer has them, and tokenizer.json where it runs on the
        `tokenizers` library; True only the former (ValueError without them), False only
        tokenizer.json (ValueError for a tokenizer not built on `tokenizers`, as transformers' slow
        ones). Returns the written paths.
        """
        if push_to_hub:
            raise ValueError("push_to_hub is not supported: save locally and upload with huggingface_hub")
        if os.path.isfile(save_directory):
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
        can_legacy, can_json = self._model.has_legacy_files, self._model.owns_added_tokens
        if legacy_format is True and not can_legacy:
            raise ValueError(f"this tokenizer was loaded from {TOKENIZER_FILE} alone and has no "
                             f"{'/'.join(self.vocab_files_names.values())} to save in legacy format")
        if legacy_format is False and not can_json:
            raise ValueError("Only tokenizers built on the `tokenizers` library can be saved in non legacy format "
                             "(tokenizer.json)")
        os.makedirs(save_directory, exist_ok=True)
        path = lambda name: os.path.join(save_directory, f"{filename_prefix}-{name}" if filename_prefix else name)  # noqa: E731
        written = []
        if can_legacy and legacy_format is not False:
            written += self._model.save_legacy(path)
        if can_json and legacy_format is not True:
            if self.cls_token_id is not None and self.sep_token_id is not None:
                self._model.set_template(self.cls_token, self.sep_token, self.cls_token_id, self.sep_token_id,
                                         self._pair_separators, 1 if self._pair_type_ids else 0)
            atomic_write_text(path(TOKENIZER_FILE), self._model.to_json())
            written.append(path(TOKENIZER_FILE))
        config = self._tokenizer_config()
        atomic_write_text(path(CONFIG_FILE), json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(path(SPECIAL_TOKENS_MAP_FILE),
                          json.dumps(self.special_tokens_map, indent=2, ensure_ascii=False) + "\n")
        return tuple(written + [path(CONFIG_FILE), path(SPECIAL_TOKENS_MAP_FILE)])

    def __repr__(self):
        return (f"{type(self).__name__}(backend={self.backend!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map})")


