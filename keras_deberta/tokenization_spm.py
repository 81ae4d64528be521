"""DeBERTa-v2/v3's SentencePiece model (`spm.model`) as the tokenization model of `DebertaV2Tokenizer`.

The ids are those of the SentencePiece model (its own normaliser, byte fallback and Viterbi), which
is what DeBERTa was trained on. transformers 5.x rebuilds the model as a `tokenizers` Unigram without
byte fallback and with NFC instead of the model's NFKC map, so it emits [UNK] for e.g. "Ầ", fullwidth
letters or zero-width spaces, and breaks a few Viterbi ties differently; everywhere else the ids,
offsets and word ids here are exactly its.
"""

import os
import unicodedata

from keras_deberta.tokenization_encoding import Pieces
from presets.io import atomic_path
from presets.tokenizer_types import TokenizerFileError

SPIECE_UNDERLINE = "\u2581"
# sp_model_kwargs SentencePiece takes (transformers passes them to SentencePieceProcessor): subword
# regularisation. Others (out_type, add_bos, ...) would change what encode returns, so they refuse.
SP_MODEL_KWARGS = ("enable_sampling", "nbest_size", "alpha", "num_threads")


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


def _is_punctuation(ch):
    """transformers' Punctuation pre-tokenizer: Unicode P* and ASCII symbols."""
    return unicodedata.category(ch).startswith("P") or (ch.isascii() and not ch.isalnum() and not ch.isspace()
                                                        and ch.isprintable())


class SentencePieceModel:
    """The `sentencepiece` package over spm.model, with transformers' DeBERTa-v2 text handling
    (do_lower_case, split_by_punct) around it."""

    owns_added_tokens = False
    has_legacy_files = True
    cleans_up = True  # transformers applies clean_up_tokenization_spaces to Unigram models
    backend = "sentencepiece"

    def __init__(self, model_bytes, source, do_lower_case=False, split_by_punct=False, sp_model_kwargs=None):
        import sentencepiece as spm

        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        unknown = set(self.sp_model_kwargs) - set(SP_MODEL_KWARGS)
        if unknown:
            raise ValueError(f"sp_model_kwargs {sorted(unknown)} are not supported (only {list(SP_MODEL_KWARGS)})")
        self.model_bytes, self.source = model_bytes, source
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=model_bytes, **self.sp_model_kwargs)
        except Exception as e:  # sentencepiece raises RuntimeError / OSError depending on version
            raise TokenizerFileError(f"{source}: not a valid SentencePiece model ({e})") from e
        if self.sp.get_piece_size() == 0:
            raise TokenizerFileError(f"{source}: SentencePiece model has no pieces")
        self.vocab_size = self.sp.get_piece_size()
        self.do_lower_case, self.split_by_punct = bool(do_lower_case), bool(split_by_punct)
        self.lowercases = self.do_lower_case
        self.space_id = self.sp.piece_to_id(SPIECE_UNDERLINE)
        pieces = self.sp.id_to_piece(list(range(self.vocab_size)))
        # 1 where a piece begins a word ("\u2581..."): transformers' Metaspace splits words there
        self._word_start = bytearray(p.startswith(SPIECE_UNDERLINE) for p in pieces)

    @classmethod
    def from_file(cls, path, **kwargs):
        if path is None or not os.path.isfile(path):
            raise TokenizerFileError(f"SentencePiece model not found: {path!r} (expected spm.model)")
        with open(path, "rb") as f:
            return cls(f.read(), path, **kwargs)

    # ---- vocabulary ------------------------------------------------------------------------
    def id_to_token(self, i):
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"token id {i} out of range")
        return self.sp.id_to_piece(i)

    def token_to_id(self, token):
        i = self.sp.piece_to_id(token)
        if i == self.sp.unk_id() and token != self.sp.id_to_piece(i):
            return None
        return i

    # ---- encoding ----------------------------------------------------------------------------
    def _words(self, ids):
        starts, word, out = self._word_start, -1, []
        for i in ids:
            if starts[i] or word < 0:
                word += 1
            out.append(word)
        return out

    def encode(self, texts, offsets=False, tokens=False):
        texts = [t.lower() if self.do_lower_case else t for t in texts]
        if self.split_by_punct:
            return self._encode_punct_split(texts, offsets, tokens)
        return [Pieces(ids, offs, self._words(ids), toks) for ids, offs, toks in self._encode(texts, offsets, tokens)]

    def _encode_punct_split(self, texts, offsets, tokens):
        """As transformers: trailing whitespace goes, punctuation marks stand alone, and whitespace
        ending a run (or making it up) becomes a bare "\u2581" of its own."""
        runs = [self._punct_runs(t.rstrip()) for t in texts]
        flat = iter(self._encode([r.rstrip() for rs in runs for r, _ in rs if not r.isspace()], offsets, tokens))
        out = []
        for rs in runs:
            ids, offs, toks = [], [] if offsets else None, [] if tokens else None
            for run, start in rs:
                r_ids, r_offs, r_toks = ([], [], []) if run.isspace() else next(flat)
                if run[-1].isspace():
                    r_ids = list(r_ids) + [self.space_id]
                    r_offs = list(r_offs or []) + [(len(run) - 1, len(run))]
                    r_toks = list(r_toks or []) + [SPIECE_UNDERLINE]
                ids.extend(r_ids)
                if offsets:
                    offs.extend((start + a, start + b) for a, b in r_offs)
                if tokens:
                    toks.extend(r_toks)
            out.append(Pieces(ids, offs, self._words(ids), toks))
        return out

    @staticmethod
    def _punct_runs(text):
        """(run, start) pieces with every punctuation character on its own (HF Punctuation isolated)."""
        runs, start = [], 0
        for i, ch in enumerate(text):
            if _is_punctuation(ch):
                if i > start:
                    runs.append((text[start:i], start))
                runs.append((ch, i))
                start = i + 1
        if start < len(text):
            runs.append((text[start:], start))
        return runs

    def _encode(self, texts, offsets, tokens):
        """[(ids, offsets or None, pieces or None)] of plain texts."""
        if not texts:
            return []
        if not offsets and not tokens:
            return [(ids, None, None) for ids in self.sp.encode(texts)]
        out = []
        for text, proto in zip(texts, self.sp.encode(texts, return_type="proto")):
            table = None if text.isascii() else _char_index_of_bytes(text)
            ids, offs, toks = [], [] if offsets else None, [] if tokens else None
            for p in proto.pieces:
                ids.append(p.id)
                if tokens:
                    toks.append(p.piece)  # the raw text for an unknown piece, as transformers
                if offsets:
                    a, b = (p.begin, p.end) if table is None else (table[p.begin], table[p.end])
                    if p.piece.startswith(SPIECE_UNDERLINE) and not self.sp.is_byte(p.id):
                        a, b = _word_start_offsets(text, a, b, p.piece == SPIECE_UNDERLINE)
                    if table is not None:
                        b = _composed_end(text, a, b)
                    offs.append((a, b))
            out.append((ids, offs, toks))
        return out

    # ---- decoding ----------------------------------------------------------------------------
    def _byte(self, piece):
        """The byte of a byte-fallback piece ("<0xE1>"), or None."""
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            i = self.sp.piece_to_id(piece)
            if self.sp.is_byte(i):
                return int(piece[3:5], 16)
        return None

    def tokens_to_string(self, tokens, added):
        """Pieces to text: "\u2581" is a space (the first one dropped, as transformers' Metaspace
        decoder), byte pieces are joined into UTF-8, added tokens are their text."""
        buf = bytearray()
        for n, token in enumerate(tokens):
            byte = None if token in added else self._byte(token)
            if byte is not None:
                buf.append(byte)
                continue
            if n == 0 and token not in added and token.startswith(SPIECE_UNDERLINE):
                token = token[1:]
            buf += (token if token in added else token.replace(SPIECE_UNDERLINE, " ")).encode("utf-8")
        return buf.decode("utf-8", errors="replace")

    def decode(self, ids, added_decoder, skip_special_tokens=False):
        tokens, added = [], set()
        for i in ids:
            token = added_decoder.get(i)
            if token is not None:
                added.add(token.content)
            tokens.append(token.content if token is not None else self.id_to_token(i))
        return self.tokens_to_string(tokens, added)

    def save_legacy(self, path):
        target = path("spm.model")
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(self.model_bytes)
        return [target]
