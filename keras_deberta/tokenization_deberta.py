"""DeBERTa (v1) tokenizers: GPT-2's byte-level BPE with DeBERTa's special tokens.

`DebertaTokenizer` runs the BPE in Python, `DebertaTokenizerFast` on the `tokenizers` library; both
equal transformers' DebertaTokenizer (5.x) and each other. Each reads vocab.json + merges.txt, or,
without them, tokenizer.json (what transformers 5 saves after fine-tuning).

Pairs: transformers 5.x builds `[CLS] A [SEP] [SEP] B [SEP]` with token_type_ids all 0, and so do
these tokenizers by default (`pair_layout="transformers"`). The original DeBERTa code and
transformers 4.x, with which the v1 MNLI checkpoints were trained, build `[CLS] A [SEP] B [SEP]` with
token types 0 for `[CLS] A [SEP]` and 1 for `B [SEP]`: `pair_layout="original"` gives that layout.
"""

import functools
import os

from keras_deberta.tokenization_backend import (
    TokenizersModel,
    added_tokens_of,
    read_tokenizer_json,
    tokenizer_json_path,
)
from keras_deberta.tokenization_bpe import (  # noqa: F401  (GPT2_PATTERN, bytes_to_unicode kept importable here)
    GPT2_PATTERN,
    ByteLevelBPEModel,
    bpe_from_tokenizer_json,
    build_bpe_tokenizer,
    bytes_to_unicode,
    read_merges,
    read_vocab,
    write_vocab_and_merges,
)
from keras_deberta.tokenization_special import added_tokens_by_id
from keras_deberta.tokenization_utils import DEFAULT_MODEL_MAX_LENGTH, DebertaTokenizerBase, load_tokenizer_config
from presets.loading_options import resolve_tokenizer_dir
from presets.tokenizer_types import TokenizerFileError, model_max_length_of

# pair_layout -> ([SEP]s between the texts, whether the second text gets token type 1)
PAIR_LAYOUTS = {"transformers": (2, False), "original": (1, True)}


class DebertaTokenizer(DebertaTokenizerBase):
    """DeBERTa v1 tokenizer (GPT-2 byte-level BPE) with transformers' API.

    Args:
        vocab_file: `vocab.json` (token -> id). DeBERTa's own has [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3;
            special tokens missing from it get the next ids after it, as transformers does.
        merges_file: `merges.txt` (one merge per line, optional "#version" header).
        tokenizer_file: tokenizer.json, read for its BPE vocabulary and merges when the two files
            above are not given.
        add_prefix_space: put a space before each text (segment) that does not start with one
            (transformers recommends it with is_split_into_words=True).
        errors: how invalid UTF-8 is decoded (`bytes.decode` errors argument).
        pair_layout: "transformers" (default, transformers 5.x: `[CLS] A [SEP] [SEP] B [SEP]`, token
            types all 0) or "original" (DeBERTa's own code and transformers 4.x, as the v1 MNLI
            checkpoints were trained: `[CLS] A [SEP] B [SEP]`, token types 0 then 1).
        model_max_length: the longest input (default 512, every DeBERTa checkpoint's position table;
            `from_pretrained` reads tokenizer_config.json, then config.json's max_position_embeddings).
    """

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}

    def __init__(self, vocab_file=None, merges_file=None, errors="replace", bos_token="[CLS]", eos_token="[SEP]",
                 sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]",
                 add_prefix_space=False, pair_layout="transformers", tokenizer_file=None,
                 model_max_length=DEFAULT_MODEL_MAX_LENGTH, padding_side="right", truncation_side="right",
                 added_tokens=None, extra_special_tokens=None, additional_special_tokens=None,
                 clean_up_tokenization_spaces=False, split_special_tokens=False, model_input_names=None,
                 init_kwargs=None, **kwargs):
        if pair_layout not in PAIR_LAYOUTS:
            raise ValueError(f"pair_layout must be one of {list(PAIR_LAYOUTS)}, got {pair_layout!r}")
        if vocab_file is not None or merges_file is not None:
            encoder, bpe_ranks = read_vocab(vocab_file), read_merges(merges_file)
        elif tokenizer_file is not None:
            encoder, bpe_ranks = bpe_from_tokenizer_json(read_tokenizer_json(tokenizer_file, "BPE"), tokenizer_file)
        else:
            raise TokenizerFileError("DebertaTokenizer needs vocab_file and merges_file (vocab.json, merges.txt) "
                                     "or tokenizer_file (tokenizer.json)")
        self.vocab_file, self.merges_file = vocab_file, merges_file
        self.tokenizer_file = tokenizer_file if vocab_file is None else None
        self.encoder, self.bpe_ranks = encoder, bpe_ranks
        self.add_prefix_space, self.errors = bool(add_prefix_space), errors
        self.pair_layout = pair_layout
        self._pair_separators, self._pair_type_ids = PAIR_LAYOUTS[pair_layout]
        specials = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token,
                        pad_token=pad_token, cls_token=cls_token, mask_token=mask_token)
        init = {**(init_kwargs or {}), **kwargs, **specials, "errors": errors, "add_prefix_space": self.add_prefix_space,
                "vocab_file": vocab_file, "merges_file": merges_file, "tokenizer_file": self.tokenizer_file}
        if pair_layout != "transformers":
            init["pair_layout"] = pair_layout
        self._init_tokens(self._make_model(), specials, added_tokens_by_id(added_tokens),
                          extra_special_tokens or additional_special_tokens,
                          DEFAULT_MODEL_MAX_LENGTH if model_max_length is None else model_max_length,
                          padding_side, truncation_side, clean_up_tokenization_spaces, split_special_tokens,
                          model_input_names, init)
        if isinstance(self._model, ByteLevelBPEModel):
            self._model.unk_id = self.unk_token_id

    def _make_model(self):
        return ByteLevelBPEModel(self.encoder, self.bpe_ranks, self.add_prefix_space, self.errors)

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        """Loads vocab.json + merges.txt (or, without them, tokenizer.json) and tokenizer_config.json
        from a directory (or a Hub id); keyword arguments override the config, except transformers'
        loading keywords (token, cache_dir, subfolder, ...: presets/loading_options.py), which
        are never stored."""
        directory = resolve_tokenizer_dir(directory, kwargs, TokenizerFileError)  # pops the loading keywords
        legacy = {key: os.path.join(directory, name) for key, name in cls.vocab_files_names.items()}
        missing = [os.path.basename(p) for p in legacy.values() if not os.path.isfile(p)]
        json_path = tokenizer_json_path(directory)
        if missing and json_path is None:
            raise TokenizerFileError(f"{directory}: no {' and no '.join(missing)} (DeBERTa v1 needs vocab.json and "
                                     f"merges.txt, or tokenizer.json)")
        config, init_kwargs, added = load_tokenizer_config(directory)
        for name in ("do_lower_case", "split_by_punct", "sp_model_kwargs", "unk_id"):  # DeBERTa-v2 settings
            config.pop(name, None)
        if json_path is not None:  # transformers 5 keeps added tokens in tokenizer.json only
            added = {**added_tokens_of(read_tokenizer_json(json_path, None), json_path), **added}
        added.update(added_tokens_by_id(kwargs.pop("added_tokens", None)))
        config["model_max_length"] = model_max_length_of(directory, config.get("model_max_length"),
                                                         DEFAULT_MODEL_MAX_LENGTH)
        config.update(kwargs)
        files = legacy if not missing else {"tokenizer_file": json_path}
        return cls(**files, added_tokens=added, init_kwargs={**init_kwargs, **kwargs}, **config)

    def _tokenizer_config(self):
        config = super()._tokenizer_config()
        config.update(tokenizer_class="DebertaTokenizer", add_prefix_space=self.add_prefix_space, errors=self.errors)
        if self.pair_layout != "transformers":
            config["pair_layout"] = self.pair_layout
        return config


def _write_legacy_files(path, encoder, bpe_ranks):
    return write_vocab_and_merges(path, encoder, bpe_ranks)


class DebertaTokenizerFast(DebertaTokenizer):
    """`DebertaTokenizer` on the `tokenizers` library (same files, arguments and ids)."""

    def _make_model(self):
        encoder, bpe_ranks = self.encoder, self.bpe_ranks
        # A partial, not a closure: tokenizers pickle (transformers' tokenizers do; multiprocessing
        # data loaders and `datasets.map(num_proc=...)` rely on it).
        return TokenizersModel(build_bpe_tokenizer(encoder, bpe_ranks, self.add_prefix_space),
                               save_legacy=functools.partial(_write_legacy_files, encoder=encoder, bpe_ranks=bpe_ranks))

    @property
    def backend_tokenizer(self):
        """The `tokenizers.Tokenizer` underneath."""
        return self._model.tokenizer


__all__ = ["DebertaTokenizer", "DebertaTokenizerFast"]
