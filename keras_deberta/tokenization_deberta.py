"""DeBERTa (v1) tokenizer: GPT-2's byte-level BPE (`vocab.json` + `merges.txt`) with DeBERTa's special tokens.

Equal to transformers' `DebertaTokenizer` (5.x): the GPT-2 pre-tokenisation regex, byte-to-unicode
map and merge ranks; special tokens written in the text are matched first; the pair template is
transformers' `[CLS] A [SEP] [SEP] B [SEP]` with token_type_ids all 0 (transformers 5.x; the original
DeBERTa and transformers 4.x used `[CLS] A [SEP] B [SEP]` with type ids 0/1).
"""

import functools
import json
import os

from keras_deberta.tokenization_deberta_v2 import (
    TokenizerBase,
    TokenizerFileError,
    load_tokenizer_config,
)
from presets.io import atomic_write_text

# GPT-2's pre-tokenisation (as tokenizers' ByteLevel pre-tokenizer).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.lru_cache(maxsize=None)
def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class DebertaTokenizer(TokenizerBase):
    """DeBERTa v1 tokenizer (GPT-2 byte-level BPE).

    Args:
        vocab_file: `vocab.json` (token -> id). DeBERTa's own has [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3;
            special tokens missing from it get the next ids after it, as transformers does.
        merges_file: `merges.txt` (one merge per line, optional "#version" header).
        add_prefix_space: put a space before each text (segment) that does not start with one.
        errors: how invalid UTF-8 is decoded (`bytes.decode` errors argument).
    """

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    _pair_separators = 2
    _pair_type_ids = False  # transformers 5.x: all zeros

    def __init__(self, vocab_file, merges_file, errors="replace", bos_token="[CLS]", eos_token="[SEP]",
                 sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]", pad_token="[PAD]",
                 mask_token="[MASK]", add_prefix_space=False, model_max_length=None, padding_side="right",
                 truncation_side="right", added_tokens=None, **kwargs):
        import regex

        self.encoder = _read_vocab(vocab_file)
        self.bpe_ranks = _read_merges(merges_file)
        self.vocab_file, self.merges_file = vocab_file, merges_file
        self.decoder = {i: t for t, i in self.encoder.items()}
        self._base_vocab_size = max(self.decoder) + 1 if self.decoder else 0
        self.errors = errors
        self.add_prefix_space = bool(add_prefix_space)
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.pattern = regex.compile(GPT2_PATTERN)
        self._cache = {}
        self._init_special_tokens(
            dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token,
                 pad_token=pad_token, cls_token=cls_token, mask_token=mask_token),
            added_tokens, model_max_length=model_max_length, padding_side=padding_side,
            truncation_side=truncation_side)

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        if not os.path.isdir(directory):
            raise TokenizerFileError(f"tokenizer directory not found: {directory!r}")
        files = {}
        for key, name in cls.vocab_files_names.items():
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                raise TokenizerFileError(f"{directory}: no {name} (DeBERTa v1 needs vocab.json and merges.txt)")
            files[key] = path
        config, added = load_tokenizer_config(directory)
        for name in ("do_lower_case", "split_by_punct"):
            config.pop(name, None)
        config.update(kwargs)
        return cls(files["vocab_file"], files["merges_file"],
                   added_tokens={**added, **config.pop("added_tokens", {})}, **config)

    # ---- the model ----------------------------------------------------------------------------
    def _base_id_to_token(self, i):
        if i not in self.decoder:
            raise IndexError(f"token id {i} not in the vocabulary")
        return self.decoder[i]

    def _base_token_to_id(self, token):
        return self.encoder.get(token)

    def bpe(self, word):
        """Merge the byte-characters of one pre-token by rank; returns the list of tokens."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        ranks = self.bpe_ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            pair = (parts[best], parts[best + 1])
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._cache) < 100_000:
            self._cache[word] = parts
        return parts

    def _encode_texts(self, texts, with_offsets):
        out = []
        enc, byte_encoder = self.encoder, self.byte_encoder
        for text in texts:
            prefixed = self.add_prefix_space and not text.startswith(" ")
            if prefixed:
                text = " " + text
            ids, offs = [], [] if with_offsets else None
            for m in self.pattern.finditer(text):
                piece = m.group()
                raw = piece.encode("utf-8")
                tokens = self.bpe("".join(byte_encoder[b] for b in raw))
                for tok in tokens:
                    tid = enc.get(tok)
                    if tid is None:
                        tid = self.unk_token_id
                    ids.append(tid)
                if with_offsets:
                    # Character of every byte of the pre-token, in the text as given.
                    chars = []
                    for k, ch in enumerate(piece):
                        chars.extend([m.start() + k] * len(ch.encode("utf-8")))
                    pos = 0
                    for tok in tokens:
                        a, b = chars[pos], chars[pos + len(tok) - 1] + 1
                        pos += len(tok)
                        if prefixed:  # the added space shares the first character's span
                            a, b = max(a - 1, 0), max(b - 1, 1)
                        offs.append((a, b))
            out.append((ids, offs))
        return out

    def _assemble(self, a, b, add_special_tokens):
        ids, types, offs = super()._assemble(a, b, add_special_tokens)
        if not self._pair_type_ids:
            types = [0] * len(ids)
        return ids, types, offs

    def _decode_ids(self, ids):
        buf = bytearray()
        for i in ids:
            if i in self._added_by_id:
                buf += self._added_by_id[i].encode("utf-8")
            else:
                buf += bytes(self.byte_decoder[c] for c in self._base_id_to_token(i))
        return buf.decode("utf-8", errors=self.errors)

    # ---- saving ------------------------------------------------------------------------------
    def save_pretrained(self, directory):
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(os.path.join(directory, "vocab.json"),
                          json.dumps(self.encoder, ensure_ascii=False) + "\n")
        merges = sorted(self.bpe_ranks.items(), key=lambda kv: kv[1])
        atomic_write_text(os.path.join(directory, "merges.txt"),
                          "#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges))
        config = self._tokenizer_config()
        config.update(tokenizer_class="DebertaTokenizer", add_prefix_space=self.add_prefix_space,
                      errors=self.errors)
        self._write_configs(directory, config)
        return directory


def _read_vocab(path):
    if path is None or not os.path.isfile(path):
        raise TokenizerFileError(f"vocabulary not found: {path!r} (expected vocab.json)")
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerFileError(f"{path}: not a readable JSON vocabulary ({e})") from e
    if not isinstance(vocab, dict) or not vocab or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in vocab.items()):
        raise TokenizerFileError(f"{path}: expected a non-empty JSON object mapping tokens to ids")
    return vocab


def _read_merges(path):
    if path is None or not os.path.isfile(path):
        raise TokenizerFileError(f"merges not found: {path!r} (expected merges.txt)")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"{path}: not a readable merges file ({e})") from e
    ranks = {}
    for n, line in enumerate(lines):
        if not line or (n == 0 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerFileError(f"{path}: line {n + 1} is not a merge 'a b': {line[:60]!r}")
        ranks.setdefault((parts[0], parts[1]), len(ranks))
    return ranks


__all__ = ["DebertaTokenizer"]
