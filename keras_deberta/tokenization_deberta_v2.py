"""DeBERTa-v2/v3 tokenizer: `DebertaV2Tokenizer` (and `DebertaV2TokenizerFast`, the same class, as
in transformers 5).

Two ways to run, chosen by the files at hand:
- spm.model (preferred whenever it exists): the SentencePiece model itself, ids exactly
  SentencePiece's (see tokenization_spm.py for the few places transformers differs: it has [UNK]
  where SentencePiece falls back to bytes);
- tokenizer.json alone (what transformers 5 saves after fine-tuning): the `tokenizers` library,
  built as transformers 5.23's DebertaV2Tokenizer builds it (the file's Unigram vocabulary; normaliser,
  pre-tokenizer and decoder from do_lower_case / split_by_punct / add_prefix_space), so the ids and
  offsets are transformers' on those files.
"""

import os

from keras_deberta.tokenization_backend import (
    TokenizersModel,
    added_tokens_of,
    read_tokenizer_json,
    tokenizer_json_path,
)
from keras_deberta.tokenization_spm import SPIECE_UNDERLINE, SentencePieceModel
from keras_deberta.tokenization_special import added_tokens_by_id
from keras_deberta.tokenization_utils import DEFAULT_MODEL_MAX_LENGTH, DebertaTokenizerBase, load_tokenizer_config
from presets.loading_options import resolve_tokenizer_dir
from presets.tokenizer_types import BatchEncoding, TokenizerFileError, model_max_length_of

# The shared base under its earlier name (it lived in this module).
TokenizerBase = DebertaTokenizerBase


def build_unigram_tokenizer(path, unk_token="[UNK]", unk_id=None, do_lower_case=False, split_by_punct=False,
                            add_prefix_space=True):
    """A `tokenizers.Tokenizer` from tokenizer.json's Unigram vocabulary, with the normaliser,
    pre-tokenizer and decoder transformers 5.23's DebertaV2Tokenizer gives it."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram

    vocab = read_tokenizer_json(path, "Unigram")["model"]["vocab"]
    if not isinstance(vocab, list) or not vocab or not all(
            isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], (int, float))
            for v in vocab):
        raise TokenizerFileError(f"{path}: the Unigram vocabulary must be a non-empty list of [piece, score]")
    vocab = [(piece, float(score)) for piece, score in vocab]
    if (unk_token, 0.0) in vocab:  # as transformers: the unknown piece is found by content
        unk_id = vocab.index((unk_token, 0.0))
    unk_id = 1 if unk_id is None else int(unk_id)
    if not 0 <= unk_id < len(vocab):
        raise TokenizerFileError(f"{path}: unk_id {unk_id} is outside the vocabulary of {len(vocab)} pieces")
    tokenizer = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        ([normalizers.Lowercase()] if do_lower_case else [])
        + [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
           normalizers.Strip(left=False, right=True)])
    scheme = "always" if add_prefix_space else "first"
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        ([pre_tokenizers.Punctuation(behavior="isolated")] if split_by_punct else [])
        + [pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme)])
    tokenizer.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme)
    return tokenizer


class DebertaV2Tokenizer(DebertaTokenizerBase):
    """DeBERTa-v2/v3 tokenizer with transformers' API (see the module for the two models it runs).

    Args:
        vocab_file: the SentencePiece model (spm.model).
        tokenizer_file: tokenizer.json, used when there is no vocab_file.
        do_lower_case: lower-case the text first (as transformers).
        split_by_punct: encode runs between punctuation marks separately (as transformers).
        add_prefix_space: tokenizer.json models only: a "\u2581" before every word (transformers'
            default) or only the first (False); SentencePiece always prepends one.
        sp_model_kwargs: SentencePiece sampling options (enable_sampling, nbest_size, alpha) for
            subword regularisation, as transformers passes them to SentencePieceProcessor.
        model_max_length: the longest input; `truncation=True` and `padding="max_length"` use it.
            `from_pretrained` reads tokenizer_config.json, then config.json's max_position_embeddings
            beside it; the default is 512, the position table of every DeBERTa-v2/v3 checkpoint.
        added_tokens: {id: AddedToken} (or the older {content: id}) matched in the text before the
            model sees it. The special tokens ([CLS] [SEP] [UNK] [PAD] [MASK]) always are; those not
            among the model's pieces get the next ids after it (v3's [MASK] -> 128000).
    """

    vocab_files_names = {"vocab_file": "spm.model"}
    _pair_separators = 1
    _pair_type_ids = True

    def __init__(self, vocab_file=None, do_lower_case=False, split_by_punct=False, bos_token="[CLS]",
                 eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                 mask_token="[MASK]", add_prefix_space=True, sp_model_kwargs=None, tokenizer_file=None, unk_id=None,
                 model_max_length=DEFAULT_MODEL_MAX_LENGTH, padding_side="right", truncation_side="right",
                 added_tokens=None, extra_special_tokens=None, additional_special_tokens=None,
                 clean_up_tokenization_spaces=False, split_special_tokens=False, model_input_names=None,
                 init_kwargs=None, **kwargs):
        if vocab_file is not None:
            model = SentencePieceModel.from_file(vocab_file, do_lower_case=do_lower_case,
                                                 split_by_punct=split_by_punct, sp_model_kwargs=sp_model_kwargs)
        elif tokenizer_file is not None:
            model = TokenizersModel(build_unigram_tokenizer(tokenizer_file, unk_token, unk_id, do_lower_case,
                                                            split_by_punct, add_prefix_space))
        else:
            raise TokenizerFileError("DebertaV2Tokenizer needs vocab_file (spm.model) or tokenizer_file "
                                     "(tokenizer.json)")
        self.vocab_file = vocab_file
        self.tokenizer_file = tokenizer_file if vocab_file is None else None
        self.do_lower_case, self.split_by_punct = bool(do_lower_case), bool(split_by_punct)
        self.add_prefix_space = bool(add_prefix_space)
        specials = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token,
                        pad_token=pad_token, cls_token=cls_token, mask_token=mask_token)
        init = {**(init_kwargs or {}), **kwargs, **specials, "do_lower_case": self.do_lower_case,
                "split_by_punct": self.split_by_punct, "add_prefix_space": self.add_prefix_space,
                "vocab_file": vocab_file, "tokenizer_file": self.tokenizer_file}
        if sp_model_kwargs:
            init["sp_model_kwargs"] = dict(sp_model_kwargs)
        self._init_tokens(model, specials, added_tokens_by_id(added_tokens),
                          extra_special_tokens or additional_special_tokens,
                          DEFAULT_MODEL_MAX_LENGTH if model_max_length is None else model_max_length,
                          padding_side, truncation_side, clean_up_tokenization_spaces, split_special_tokens,
                          model_input_names, init)

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        """Loads spm.model (or, without it, tokenizer.json) and tokenizer_config.json from a directory;
        keyword arguments override the config."""
        directory = resolve_tokenizer_dir(directory, kwargs, TokenizerFileError)  # pops the loading keywords
        spm_path, json_path = os.path.join(directory, "spm.model"), tokenizer_json_path(directory)
        has_spm = os.path.isfile(spm_path)
        if not has_spm and json_path is None:
            raise TokenizerFileError(f"{directory}: no spm.model (the DeBERTa-v2/v3 SentencePiece model) and no "
                                     f"tokenizer.json")
        config, init_kwargs, added = load_tokenizer_config(directory)
        for name in ("errors", "pair_layout"):  # DeBERTa v1 settings
            config.pop(name, None)
        if json_path is not None:  # transformers 5 keeps added tokens in tokenizer.json only
            added = {**added_tokens_of(read_tokenizer_json(json_path, None), json_path), **added}
        added.update(added_tokens_by_id(kwargs.pop("added_tokens", None)))
        config["model_max_length"] = model_max_length_of(directory, config.get("model_max_length"),
                                                         DEFAULT_MODEL_MAX_LENGTH)
        config.update(kwargs)
        files = {"vocab_file": spm_path} if has_spm else {"tokenizer_file": json_path}
        return cls(**files, added_tokens=added, init_kwargs={**init_kwargs, **kwargs}, **config)

    # ---- the SentencePiece model, for code that reads it (in-graph preprocessing) --------------
    @property
    def sp(self):
        """The `sentencepiece.SentencePieceProcessor`, or None on a tokenizer.json-only tokenizer."""
        return getattr(self._model, "sp", None)

    @property
    def _model_bytes(self):
        return getattr(self._model, "model_bytes", None)

    @property
    def sp_model_kwargs(self):
        return dict(getattr(self._model, "sp_model_kwargs", {}))

    @property
    def backend_tokenizer(self):
        """The `tokenizers.Tokenizer` on a tokenizer.json-only tokenizer, else None."""
        return getattr(self._model, "tokenizer", None)

    def _tokenizer_config(self):
        config = super()._tokenizer_config()
        config.update(tokenizer_class="DebertaV2Tokenizer", do_lower_case=self.do_lower_case,
                      split_by_punct=self.split_by_punct, add_prefix_space=self.add_prefix_space, vocab_type="spm",
                      unk_id=self.convert_tokens_to_ids(self.unk_token) if self.unk_token is not None else None)
        if self.sp_model_kwargs:
            config["sp_model_kwargs"] = self.sp_model_kwargs
        return config


DebertaV2TokenizerFast = DebertaV2Tokenizer

__all__ = ["BatchEncoding", "DebertaV2Tokenizer", "DebertaV2TokenizerFast", "TokenizerBase", "TokenizerFileError"]
