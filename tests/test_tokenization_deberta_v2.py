"""DebertaV2Tokenizer: the SentencePiece model's ids, with transformers' conventions around them.

Truth for the ids is the `sentencepiece` package on the real DeBERTa-v3 model. transformers 5.x
re-implements the model without byte fallback or NFKC; where it emits [UNK] it is wrong, and where
it does not, we must equal it exactly (ids and offsets), except where the two Viterbi searches
break an exact tie differently (same pieces, same text, same score), which is asserted as such.
"""

import json
import os
import shutil

import numpy as np
import pytest

import tokenizer_cases as cases

pytestmark = pytest.mark.skipif(not os.path.isfile(cases.SPM_V3), reason="needs ../shared/data/vocab/deberta-v3/spm.model")

UNK = 3


@pytest.fixture(scope="module")
def v3_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("v3")
    shutil.copy(cases.SPM_V3, d / "spm.model")
    return str(d)


@pytest.fixture(scope="module")
def ours(v3_dir):
    from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer

    return DebertaV2Tokenizer.from_pretrained(v3_dir)


@pytest.fixture(scope="module")
def hf(v3_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.DebertaV2Tokenizer.from_pretrained(v3_dir)


@pytest.fixture(scope="module")
def sp():
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=cases.SPM_V3)


def _plain_hard_cases():
    return [t for t in cases.HARD_CASES if "[" not in t]


def test_special_tokens_and_vocab(ours):
    assert (ours.pad_token_id, ours.cls_token_id, ours.sep_token_id, ours.unk_token_id) == (0, 1, 2, 3)
    assert ours.mask_token_id == 128000
    assert ours.vocab_size == 128000 and len(ours) == 128001
    assert ours.convert_ids_to_tokens([1, 2, 128000]) == ["[CLS]", "[SEP]", "[MASK]"]
    assert ours.convert_tokens_to_ids(["[MASK]", "▁the", "not-a-piece-xyz"]) == [128000, 262, 3]


def test_corpora_equal_sentencepiece(ours, sp):
    texts = cases.all_texts()
    got = ours(texts)["input_ids"]
    truth = sp.encode(texts)
    bad = [t for t, g, s in zip(texts, got, truth) if g != [1] + s + [2]]
    assert not bad, f"{len(bad)} of {len(texts)} differ from SentencePiece, e.g. {bad[:3]}"


def test_hard_cases_equal_sentencepiece(ours, sp):
    texts = _plain_hard_cases()
    for text, got in zip(texts, ours(texts)["input_ids"]):
        assert got == [1] + sp.encode(text) + [2], repr(text)
    # No [UNK]: byte fallback covers emoji, rare CJK, private use, control characters.
    assert all(UNK not in ids for ids in ours(texts)["input_ids"])


def test_special_tokens_in_text(ours, sp):
    enc = ours("a[MASK]b [SEP] c", return_offsets_mapping=True)
    expected = [1] + sp.encode("a") + [128000] + sp.encode("b ") + [2] + sp.encode(" c") + [2]
    assert enc["input_ids"] == expected
    assert enc["offset_mapping"][2] == (1, 7)


def _tie(sp, ids_a, ids_b):
    """Two segmentations of the same text into the same multiset of pieces (equal score)."""
    a, b = [i for i in ids_a if i > 3], [i for i in ids_b if i > 3]
    return sorted(a) == sorted(b) and "".join(sp.id_to_piece(a)) == "".join(sp.id_to_piece(b))


def test_equal_transformers_where_it_has_no_unk(ours, hf, sp):
    texts = cases.all_texts() + cases.HARD_CASES
    ref = hf(texts, return_offsets_mapping=True)
    got = ours(texts, return_offsets_mapping=True)
    n_unk = n_tie = 0
    for i, text in enumerate(texts):
        h, o = ref["input_ids"][i], got["input_ids"][i]
        if h.count(UNK) > text.count("[UNK]"):
            n_unk += 1
            assert o.count(UNK) == text.count("[UNK]"), repr(text)  # only written ones
            continue
        if h != o:
            assert _tie(sp, h, o), f"not a tie: {text!r}"
            n_tie += 1
            continue
        assert [tuple(x) for x in ref["offset_mapping"][i]] == got["offset_mapping"][i], repr(text)
    print(f"transformers: [UNK] in {n_unk}, tie broken differently in {n_tie} of {len(texts)} texts")
    assert n_tie < 10  # ties are rare: a jump here means a real divergence


def _as_lists(enc):
    out = {}
    for k, v in dict(enc).items():
        if k == "offset_mapping":
            v = [[tuple(x) for x in row] for row in v] if v and isinstance(v[0], list) else [tuple(x) for x in v]
        out[k] = v
    return out


@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first", "only_second"])
def test_pairs_truncation_padding_equal_transformers(ours, hf, truncation):
    a = [x for x, _ in cases.PAIR_CASES]
    b = [y for _, y in cases.PAIR_CASES]
    calls = [(a, b), (a, None)] + list(cases.PAIR_CASES) + [(cases.PAIR_CASES[0][0], None)]
    for max_length in (2, 3, 4, 5, 8, 13, 40):
        for padding in (False, True, "max_length"):
            for text, pair in calls:
                kwargs = dict(truncation=truncation, max_length=max_length, padding=padding,
                              return_offsets_mapping=True)
                if max_length < ours.num_special_tokens_to_add(pair is not None):
                    # transformers logs an error and returns the rows untruncated; we refuse
                    # (keras_deberta/tokenization_arguments.py)
                    with pytest.raises(ValueError, match="leaves no room"):
                        ours(text, pair, **kwargs)
                    continue
                try:
                    expected = _as_lists(hf(text, pair, **kwargs))
                except Exception:  # transformers refuses (sequence too short for the strategy)
                    with pytest.raises(ValueError):
                        ours(text, pair, **kwargs)
                    continue
                assert _as_lists(ours(text, pair, **kwargs)) == expected, (text, pair, kwargs)


def test_numpy_tensors_and_options(ours, hf, v3_dir):
    texts = ["a b c", "x"]
    for kwargs in (dict(padding=True), dict(padding="max_length", max_length=7), dict(padding=True, pad_to_multiple_of=4),
                   dict(padding=True, return_token_type_ids=False, return_attention_mask=False),
                   dict(padding=True, padding_side="left"), dict(padding=True, add_special_tokens=False)):
        e, g = hf(texts, return_tensors="np", **kwargs), ours(texts, return_tensors="np", **kwargs)
        assert sorted(e) == sorted(g), kwargs
        for k in e:
            assert g[k].dtype == np.int64 and np.array_equal(e[k], g[k]), (k, kwargs)
    single = ours("a b c", return_tensors="np", return_offsets_mapping=True)
    assert single["input_ids"].shape == (1, 5) and single["offset_mapping"].shape == (1, 5, 2)
    with pytest.raises(ValueError, match="padding"):
        ours(texts, return_tensors="np")
    # Without a max_length, truncation and "max_length" padding use model_max_length: 512 here (the
    # DeBERTa default), where transformers reports 1e30 for a directory whose config names none.
    import transformers

    hf_512 = transformers.DebertaV2Tokenizer.from_pretrained(v3_dir, model_max_length=512)
    assert ours.model_max_length == 512
    for kwargs in (dict(max_length=4), dict(max_length=4, padding=True), dict(max_length=4, truncation=False),
                   dict(truncation=True), dict(padding="max_length")):
        assert ours(["a b c d e f", "x"], **kwargs)["input_ids"] == hf_512(["a b c d e f", "x"], **kwargs)["input_ids"]
    assert ours("a b", "c").input_ids == hf("a b", "c")["input_ids"]
    assert ours("a b", "")["input_ids"] == hf("a b", "")["input_ids"]
    assert ours.encode("Hello world") == hf.encode("Hello world")
    assert ours.tokenize("Hello world") == hf.tokenize("Hello world")


def test_decode_equals_transformers(ours, hf):
    texts = [t for t in cases.HARD_CASES + cases.sst2_dev()[:100] if UNK not in hf(t)["input_ids"]]
    for text in texts:
        ids = hf(text)["input_ids"]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), repr(text)
    # Byte fallback decodes back to the characters (transformers cannot: it has [UNK] there).
    text = "emoji 😀 and Ầ and 𠜎"
    assert ours.decode(ours(text)["input_ids"], skip_special_tokens=True) == text
    assert ours.batch_decode(np.array([[1, 5365, 2]]), skip_special_tokens=True) == ["Hello"]


def test_save_pretrained_loads_in_transformers(ours, hf, tmp_path):
    import transformers

    from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer

    ours.save_pretrained(str(tmp_path))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    texts = cases.sst2_dev()[:200] + ["The capital of France is [MASK]."]
    reloaded_hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert reloaded_hf.mask_token_id == 128000
    assert reloaded_hf(texts)["input_ids"] == hf(texts)["input_ids"]
    again = DebertaV2Tokenizer.from_pretrained(str(tmp_path))
    assert again(texts)["input_ids"] == ours(texts)["input_ids"]
    assert json.load(open(tmp_path / "tokenizer_config.json"))["tokenizer_class"] == "DebertaV2Tokenizer"


def test_options_follow_transformers(v3_dir, tmp_path):
    import transformers

    from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer

    texts = ["Hello, World! It's OK.", "UPPER lower, (brackets) end.", "a , b", " (x) ", ",,"]
    texts += cases.sst2_dev()[:300] + cases.xquad()[1][:300] + _plain_hard_cases()
    for kwargs in (dict(do_lower_case=True), dict(split_by_punct=True), dict(model_max_length=6)):
        h = transformers.DebertaV2Tokenizer.from_pretrained(v3_dir, **kwargs)
        o = DebertaV2Tokenizer.from_pretrained(v3_dir, **kwargs)
        expected = h(texts, truncation=True, return_offsets_mapping=True)
        got = o(texts, truncation=True, return_offsets_mapping=True)
        for i, text in enumerate(texts):
            if UNK in expected["input_ids"][i]:
                continue
            assert got["input_ids"][i] == expected["input_ids"][i], (kwargs, text)
            assert got["offset_mapping"][i] == [tuple(x) for x in expected["offset_mapping"][i]], (kwargs, text)


def test_bad_files_raise_clear_errors(tmp_path):
    from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer, TokenizerFileError

    with pytest.raises(TokenizerFileError, match="not found"):
        DebertaV2Tokenizer.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(TokenizerFileError, match="spm.model"):
        DebertaV2Tokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "spm.model").write_bytes(b"this is not a sentencepiece model")
    with pytest.raises(TokenizerFileError, match="not a valid SentencePiece model"):
        DebertaV2Tokenizer.from_pretrained(str(tmp_path))
    shutil.copy(cases.SPM_V3, tmp_path / "spm.model")
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TokenizerFileError, match="tokenizer_config.json"):
        DebertaV2Tokenizer.from_pretrained(str(tmp_path))
