"""GPT-2's byte-level BPE (vocab.json + merges.txt), DeBERTa v1's tokenization model: in Python
(`ByteLevelBPEModel`) and as a `tokenizers` library model (`build_bpe_tokenizer`), both equal to
transformers' DebertaTokenizer: the GPT-2 pre-tokenisation regex, byte-to-unicode map and merge ranks.
"""

import functools
import json
import os

from keras_deberta.tokenization_encoding import Pieces
from presets.io import atomic_write_text
from presets.tokenizer_types import TokenizerFileError

# GPT-2's pre-tokenisation (as tokenizers' ByteLevel pre-tokenizer); each match is one word.
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


def read_vocab(path):
    if path is None or not os.path.isfile(path):
        raise TokenizerFileError(f"vocabulary not found: {path!r} (expected vocab.json)")
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerFileError(f"{path}: not a readable JSON vocabulary ({e})") from e
    return check_vocab(vocab, path)


def check_vocab(vocab, source):
    if not isinstance(vocab, dict) or not vocab or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in vocab.items()):
        raise TokenizerFileError(f"{source}: expected a non-empty JSON object mapping tokens to ids")
    return vocab


def read_merges(path):
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


def bpe_from_tokenizer_json(data, path):
    """(vocab, merge ranks) of a parsed tokenizer.json's BPE model."""
    model = data["model"]
    vocab = check_vocab(model.get("vocab"), path)
    ranks = {}
    for merge in model.get("merges") or []:
        pair = tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) if isinstance(
            merge, (list, tuple)) else ()
        if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise TokenizerFileError(f"{path}: a merge is not 'a b' or ['a', 'b']: {merge!r}")
        ranks.setdefault(pair, len(ranks))
    return vocab, ranks


def write_vocab_and_merges(path, encoder, bpe_ranks):
    """Writes vocab.json and merges.txt (`path(name)` gives each file's path); returns the paths."""
    vocab_path, merges_path = path("vocab.json"), path("merges.txt")
    atomic_write_text(vocab_path, json.dumps(encoder, ensure_ascii=False) + "\n")
    merges = sorted(bpe_ranks.items(), key=lambda kv: kv[1])
    atomic_write_text(merges_path, "#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges))
    return [vocab_path, merges_path]


def build_bpe_tokenizer(encoder, bpe_ranks, add_prefix_space=False):
    """A `tokenizers.Tokenizer` built as transformers 5.23's DebertaTokenizer builds it."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    merges = [pair for pair, _ in sorted(bpe_ranks.items(), key=lambda kv: kv[1])]
    tokenizer = Tokenizer(BPE(vocab=dict(encoder), merges=merges, dropout=None, unk_token=None,
                              continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


class ByteLevelBPEModel:
    """GPT-2 byte-level BPE in Python: pre-tokens by GPT2_PATTERN, bytes mapped to characters,
    merges applied by rank."""

    owns_added_tokens = False
    has_legacy_files = True
    cleans_up = False  # transformers 5 skips clean_up_tokenization_spaces for BPE models
    space_id = None
    lowercases = False
    backend = "python"

    def __init__(self, encoder, bpe_ranks, add_prefix_space=False, errors="replace"):
        import regex

        self.encoder, self.bpe_ranks = encoder, bpe_ranks
        self.decoder = {i: t for t, i in encoder.items()}
        self.vocab_size = max(self.decoder) + 1
        self.add_prefix_space, self.errors = bool(add_prefix_space), errors
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.pattern = regex.compile(GPT2_PATTERN)
        self.unk_id = None  # set by the tokenizer: the id of a merged token missing from the vocabulary
        self._cache = {}  # byte-characters of a pre-token -> its merged tokens
        self._piece_cache = {}  # pre-token as written -> (tokens, ids), tuples (the GC skips them)

    def id_to_token(self, i):
        if i not in self.decoder:
            raise IndexError(f"token id {i} not in the vocabulary")
        return self.decoder[i]

    def token_to_id(self, token):
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

    def encode(self, texts, offsets=False, tokens=False):
        out = []
        enc, byte_encoder = self.encoder, self.byte_encoder
        for text in texts:
            prefixed = self.add_prefix_space and text != "" and not text.startswith(" ")
            if prefixed:
                text = " " + text
            ids, offs, words, toks = [], [] if offsets else None, [], [] if tokens else None
            for word, m in enumerate(self.pattern.finditer(text)):
                piece = m.group()
                cached = self._piece_cache.get(piece)
                if cached is None:
                    merged = tuple(self.bpe("".join(byte_encoder[b] for b in piece.encode("utf-8"))))
                    cached = (merged, tuple(enc.get(t, self.unk_id) for t in merged))
                    if len(self._piece_cache) < 100_000:
                        self._piece_cache[piece] = cached
                merged, piece_ids = cached
                ids += piece_ids
                words += [word] * len(piece_ids)
                if tokens:
                    toks.extend(merged)
                if offsets:
                    # character of every byte of the pre-token, in the text as given
                    chars = []
                    for k, ch in enumerate(piece):
                        chars.extend([m.start() + k] * len(ch.encode("utf-8")))
                    pos = 0
                    for t in merged:
                        a, b = chars[pos], chars[pos + len(t) - 1] + 1
                        pos += len(t)
                        if prefixed:  # the added space shares the first character's span
                            a, b = max(a - 1, 0), max(b - 1, 1)
                        offs.append((a, b))
            out.append(Pieces(ids, offs, words, toks))
        return out

    def tokens_to_string(self, tokens, added):
        buf = bytearray()
        for token in tokens:
            if token in added or any(c not in self.byte_decoder for c in token):
                buf += token.encode("utf-8")
            else:
                buf += bytes(self.byte_decoder[c] for c in token)
        return buf.decode("utf-8", errors=self.errors)

    def decode(self, ids, added_decoder, skip_special_tokens=False):
        buf = bytearray()
        for i in ids:
            token = added_decoder.get(i)
            if token is not None:
                buf += token.content.encode("utf-8")
            else:
                buf += bytes(self.byte_decoder[c] for c in self.id_to_token(i))
        return buf.decode("utf-8", errors=self.errors)

    def save_legacy(self, path):
        return write_vocab_and_merges(path, self.encoder, self.bpe_ranks)
