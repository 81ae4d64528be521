"""transformers' own tokenizers on the real vocabularies, "fast" and "slow", as test references.

transformers 5.23 ships DeBERTa's tokenizers on the `tokenizers` library only ("fast":
DebertaTokenizer, DebertaV2Tokenizer; the *Fast names are aliases). Its Python ("slow") backend is
still there, generic: `SentencePieceBackend` runs spm.model, and the Python GPT-2 byte-level BPE
(GPT-2's regex, byte map and merges) lives on in `ClvpTokenizer`, whose CLVP text normaliser is
switched off here. Both are given DeBERTa's special tokens and pair template through transformers'
own `special_tokens_pattern` / `token_type_ids_pattern`, so transformers' code does all the work:
added tokens, `prepare_for_model`, `truncate_sequences`, `pad`, templates, masks.
"""

import json
import os
import shutil

import tokenizer_cases as cases

MODEL_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]
SPECIALS = dict(bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                cls_token="[CLS]", mask_token="[MASK]")


def write_v3_dir(directory):
    os.makedirs(directory, exist_ok=True)
    shutil.copy(cases.SPM_V3, os.path.join(directory, "spm.model"))
    return str(directory)


def write_gpt2_dir(directory):
    """GPT-2's vocabulary as it is (DeBERTa's special tokens come after its 50,257 tokens)."""
    os.makedirs(directory, exist_ok=True)
    shutil.copy(os.path.join(cases.GPT2_DIR, "encoder.json"), os.path.join(directory, "vocab.json"))
    shutil.copy(os.path.join(cases.GPT2_DIR, "vocab.bpe"), os.path.join(directory, "merges.txt"))
    return str(directory)


def write_deberta_layout_dir(directory):
    """The same tokens in microsoft/deberta-*'s layout: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3, GPT-2's
    tokens after them, [MASK] last."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(cases.GPT2_DIR, "encoder.json"), encoding="utf-8") as f:
        gpt2 = json.load(f)
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({tok: i + 4 for tok, i in gpt2.items()})
    vocab["[MASK]"] = len(vocab)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    shutil.copy(os.path.join(cases.GPT2_DIR, "vocab.bpe"), os.path.join(directory, "merges.txt"))
    return str(directory)


def fast_v2(directory, **kwargs):
    import transformers

    return transformers.DebertaV2Tokenizer.from_pretrained(directory, **kwargs)


def slow_v2(directory, **kwargs):
    """transformers' Python SentencePiece backend on spm.model with DeBERTa-v2's template."""
    import transformers

    return transformers.SentencePieceBackend(
        vocab_file=os.path.join(directory, "spm.model"), special_tokens_pattern="cls_sep",
        token_type_ids_pattern="bert_style", model_input_names=MODEL_INPUTS, **{**SPECIALS, **kwargs})


def fast_v1(directory, **kwargs):
    import transformers

    return transformers.DebertaTokenizer.from_pretrained(directory, **kwargs)


def slow_v1(directory, pair_layout="transformers", **kwargs):
    """transformers' Python byte-level BPE with DeBERTa v1's template: transformers 5's
    `[CLS] A [SEP] [SEP] B [SEP]` with all-zero types, or ("original") `[CLS] A [SEP] B [SEP]` with
    types 0 / 1 as transformers 4 and the original DeBERTa built v1 pairs."""
    import transformers

    class PythonByteLevelBPE(transformers.ClvpTokenizer):
        @property
        def normalizer(self):  # CLVP's English normaliser rewrites text; GPT-2 / DeBERTa have none
            return lambda text: text

    tok = PythonByteLevelBPE(vocab_file=os.path.join(directory, "vocab.json"),
                             merges_file=os.path.join(directory, "merges.txt"), model_input_names=MODEL_INPUTS,
                             **{**SPECIALS, **kwargs})
    tok.special_tokens_pattern = "cls_double_sep" if pair_layout == "transformers" else "cls_sep"
    tok.token_type_ids_pattern = "all_zeros" if pair_layout == "transformers" else "bert_style"
    return tok


def as_lists(encoding):
    """A BatchEncoding (ours or transformers') as plain lists, offsets as tuples."""
    out = {}
    for key, value in dict(encoding).items():
        value = value.tolist() if hasattr(value, "tolist") else value
        if key == "offset_mapping":
            value = [[tuple(x) for x in row] for row in value] if value and isinstance(value[0], list) \
                else [tuple(x) for x in value]
        out[key] = value
    return out


def v1_overflow_type_ids(ours, got, reference, expected):
    """transformers' v1 template gives every token type 0, but in overflow rows made from a window
    of the second text, tokenizers leaves that text's tokens at type 1 (its template does not reach
    the overflow encodings). We give type 0 throughout (the v1 model has no token type embeddings
    anyway): check exactly that difference, then compare the rest (`expected` is edited)."""
    if ours._pair_type_ids or "token_type_ids" not in expected:
        return
    rows = expected["token_type_ids"] if isinstance(expected["input_ids"][0], list) else [expected["token_type_ids"]]
    for row, types in enumerate(rows):
        quirk = [1 if s == 1 and row > 0 else 0 for s in reference.sequence_ids(row)]
        assert types in ([0] * len(types), quirk[:len(types)] + [0] * (len(types) - len(quirk)))
        assert got.sequence_ids(row) == reference.sequence_ids(row)
        rows[row] = [0] * len(types)
