"""The `tokenizers` library as the tokenization model of the DeBERTa tokenizers: `DebertaTokenizerFast`
(v1) and `DebertaV2Tokenizer` on a directory that holds only tokenizer.json (what transformers 5 saves).

transformers 5.23's DeBERTa classes do not run a tokenizer.json as it is: they take its vocabulary
(and merges) and rebuild normaliser, pre-tokenizer and decoder from tokenizer_config.json's flags.
The builders in tokenization_deberta.py / tokenization_deberta_v2.py do the same, so the ids are
transformers' on the same files. Added tokens are matched by the library itself (kept in step with
the tokenizer's own table through `add_token`).
"""

import json
import os

from keras_deberta.tokenization_encoding import Pieces
from keras_deberta.tokenization_special import as_added_token
from keras_deberta.tokenization_utils import TOKENIZER_FILE
from presets.tokenizer_types import TokenizerFileError


def read_tokenizer_json(path, model_type):
    """tokenizer.json as a dict, checked to hold a `model_type` ("BPE" / "Unigram") model (any
    model when None)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerFileError(f"{path}: not a readable JSON file ({e})") from e
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or (model_type is not None and (
            model.get("type", model_type) != model_type or "vocab" not in model)):
        raise TokenizerFileError(f"{path}: expected a tokenizers file with a {model_type or 'tokenization'} model")
    return data


def added_tokens_of(data, path):
    """{id: AddedToken} of a parsed tokenizer.json's "added_tokens"."""
    out = {}
    for entry in data.get("added_tokens") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise TokenizerFileError(f"{path}: an added token is not {{'id': int, 'content': str, ...}}: {entry!r}")
        out[entry["id"]] = as_added_token(entry)
    return out


def tokenizer_json_path(directory):
    path = os.path.join(directory, TOKENIZER_FILE)
    return path if os.path.isfile(path) else None


class TokenizersModel:
    """A `tokenizers.Tokenizer` (no padding, no truncation: the tokenizer does those) that encodes
    whole texts, added tokens included."""

    owns_added_tokens = True
    space_id = None
    lowercases = False  # the library's own normaliser decides how added tokens match
    backend = "tokenizers"

    def __init__(self, tokenizer, save_legacy=None):
        """save_legacy: `path(name) -> [written paths]` writing the model's own files, or None."""
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=False)
        self._save_legacy = save_legacy
        self.has_legacy_files = save_legacy is not None
        # transformers 5 skips clean_up_tokenization_spaces for BPE models (it deletes real spaces)
        self.cleans_up = type(tokenizer.model).__name__ != "BPE"

    def id_to_token(self, i):
        token = self.tokenizer.id_to_token(int(i))
        if token is None:
            raise IndexError(f"token id {i} not in the vocabulary")
        return token

    def token_to_id(self, token):
        """The id of `token` in the model's vocabulary (not among added tokens), or None."""
        return self.tokenizer.model.token_to_id(token)

    def added_tokens(self):
        return {i: as_added_token(t) for i, t in self.tokenizer.get_added_tokens_decoder().items()}

    def add_token(self, token):
        """Adds `token` (our AddedToken) to the library's added vocabulary; returns its id."""
        from tokenizers import AddedToken

        spec = AddedToken(token.content, single_word=token.single_word, lstrip=token.lstrip, rstrip=token.rstrip,
                          normalized=token.normalized, special=token.special)
        (self.tokenizer.add_special_tokens if token.special else self.tokenizer.add_tokens)([spec])
        return self.tokenizer.token_to_id(token.content)

    def encode_full(self, texts, offsets=False, tokens=False, split_special=False, is_pretokenized=False):
        self.tokenizer.encode_special_tokens = bool(split_special)
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False, is_pretokenized=is_pretokenized)
        return [Pieces(list(e.ids), list(e.offsets) if offsets else None, list(e.word_ids),
                       list(e.tokens) if tokens else None) for e in encodings]

    def decode(self, ids, added_decoder, skip_special_tokens=False):
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def tokens_to_string(self, tokens, added):
        decoder = self.tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def set_template(self, cls_token, sep_token, cls_id, sep_id, pair_separators, pair_type_id):
        """The post-processor written into tokenizer.json (transformers' DeBERTa template), for
        readers of the file; encoding here adds special tokens itself."""
        from tokenizers import processors

        seps = " ".join([f"{sep_token}:{pair_type_id}"] * (pair_separators - 1))
        self.tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 {seps} $B:{pair_type_id} {sep_token}:{pair_type_id}".replace(
                "  ", " "),
            special_tokens=[(cls_token, cls_id), (sep_token, sep_id)])

    def to_json(self):
        return self.tokenizer.to_str()

    def save_legacy(self, path):
        return self._save_legacy(path)
