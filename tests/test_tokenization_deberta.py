"""DebertaTokenizer (v1): GPT-2 byte-level BPE, equal to transformers' DebertaTokenizer.

Two vocabularies: GPT-2's own (../shared/data/vocab/gpt2; DeBERTa's special tokens are added after
its 50,257 tokens, as transformers does) and the same tokens in DeBERTa's layout ([PAD]=0 [CLS]=1
[SEP]=2 [UNK]=3, GPT-2's tokens after them, [MASK] last), as microsoft/deberta-* ship it.
"""

import json
import os
import shutil

import numpy as np
import pytest

import tokenizer_cases as cases

pytestmark = pytest.mark.skipif(not os.path.isdir(cases.GPT2_DIR), reason="needs ../shared/data/vocab/gpt2")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    shutil.copy(os.path.join(cases.GPT2_DIR, "encoder.json"), d / "vocab.json")
    shutil.copy(os.path.join(cases.GPT2_DIR, "vocab.bpe"), d / "merges.txt")
    return str(d)


@pytest.fixture(scope="module")
def deberta_layout_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("deberta_layout")
    with open(os.path.join(cases.GPT2_DIR, "encoder.json"), encoding="utf-8") as f:
        gpt2 = json.load(f)
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({tok: i + 4 for tok, i in gpt2.items()})
    vocab["[MASK]"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.copy(os.path.join(cases.GPT2_DIR, "vocab.bpe"), d / "merges.txt")
    return str(d)


def _pair(directory, **kwargs):
    transformers = pytest.importorskip("transformers")
    from keras_deberta.tokenization_deberta import DebertaTokenizer

    return (DebertaTokenizer.from_pretrained(directory, **kwargs),
            transformers.DebertaTokenizer.from_pretrained(directory, **kwargs))


def test_special_token_ids(gpt2_dir, deberta_layout_dir):
    ours, hf = _pair(deberta_layout_dir)
    assert (ours.pad_token_id, ours.cls_token_id, ours.sep_token_id, ours.unk_token_id) == (0, 1, 2, 3)
    assert ours.mask_token_id == hf.mask_token_id == 50261 and len(ours) == len(hf)
    ours, hf = _pair(gpt2_dir)
    ids = [ours.cls_token_id, ours.sep_token_id, ours.unk_token_id, ours.pad_token_id, ours.mask_token_id]
    assert ids == [hf.cls_token_id, hf.sep_token_id, hf.unk_token_id, hf.pad_token_id, hf.mask_token_id]
    assert len(ours) == len(hf) == 50262


@pytest.mark.parametrize("layout", ["gpt2", "deberta"])
@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_corpora_equal_transformers(gpt2_dir, deberta_layout_dir, layout, add_prefix_space):
    ours, hf = _pair(gpt2_dir if layout == "gpt2" else deberta_layout_dir, add_prefix_space=add_prefix_space)
    texts = cases.all_texts() + cases.HARD_CASES
    if layout == "deberta" or add_prefix_space:  # the full corpus once; a slice for the other variants
        texts = cases.sst2_dev() + cases.xquad()[1][:300] + cases.wnut17()[:500] + cases.HARD_CASES
    expected = hf(texts, return_offsets_mapping=True)
    got = ours(texts, return_offsets_mapping=True)
    for i, text in enumerate(texts):
        assert got["input_ids"][i] == expected["input_ids"][i], repr(text)
        assert got["offset_mapping"][i] == [tuple(x) for x in expected["offset_mapping"][i]], repr(text)


def _as_lists(enc):
    out = {}
    for k, v in dict(enc).items():
        if k == "offset_mapping":
            v = [[tuple(x) for x in row] for row in v] if v and isinstance(v[0], list) else [tuple(x) for x in v]
        out[k] = v
    return out


@pytest.mark.parametrize("truncation", [True, "only_first", "only_second"])
def test_pairs_truncation_padding_equal_transformers(deberta_layout_dir, truncation):
    ours, hf = _pair(deberta_layout_dir)
    a = [x for x, _ in cases.PAIR_CASES]
    b = [y for _, y in cases.PAIR_CASES]
    calls = [(a, b), (a, None)] + list(cases.PAIR_CASES)
    for max_length in (3, 4, 5, 9, 40):
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
                except Exception:
                    with pytest.raises(ValueError):
                        ours(text, pair, **kwargs)
                    continue
                assert _as_lists(ours(text, pair, **kwargs)) == expected, (text, pair, kwargs)


def test_numpy_decode_and_special_tokens_in_text(deberta_layout_dir):
    ours, hf = _pair(deberta_layout_dir)
    texts = ["Hello [MASK] world", "a[SEP] b", "caf\u00e9 \U0001F600 [CLS]"]
    e, g = hf(texts, padding=True, return_tensors="np"), ours(texts, padding=True, return_tensors="np")
    assert sorted(e) == sorted(g) and all(np.array_equal(e[k], g[k]) for k in e)
    for text in texts + cases.HARD_CASES:
        ids = hf(text)["input_ids"]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), repr(text)
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert ours.tokenize("Hello world") == hf.tokenize("Hello world")


def test_save_pretrained_loads_in_transformers(deberta_layout_dir, tmp_path):
    import transformers

    from keras_deberta.tokenization_deberta import DebertaTokenizer

    ours, hf = _pair(deberta_layout_dir)
    ours.save_pretrained(str(tmp_path))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    texts = cases.sst2_dev()[:200] + ["The capital of France is [MASK]."]
    reloaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(reloaded).__name__ == "DebertaTokenizer"
    assert reloaded(texts)["input_ids"] == hf(texts)["input_ids"]
    assert DebertaTokenizer.from_pretrained(str(tmp_path))(texts)["input_ids"] == ours(texts)["input_ids"]


def test_bad_files_raise_clear_errors(tmp_path, gpt2_dir):
    from keras_deberta.tokenization_deberta import DebertaTokenizer
    from keras_deberta.tokenization_deberta_v2 import TokenizerFileError

    with pytest.raises(TokenizerFileError, match="not found"):
        DebertaTokenizer.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(TokenizerFileError, match="vocab.json"):
        DebertaTokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "vocab.json").write_text("[1, 2")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(TokenizerFileError, match="vocab.json"):
        DebertaTokenizer.from_pretrained(str(tmp_path))
    shutil.copy(os.path.join(gpt2_dir, "vocab.json"), tmp_path / "vocab.json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(TokenizerFileError, match="merges.txt: line 2"):
        DebertaTokenizer.from_pretrained(str(tmp_path))
    os.remove(tmp_path / "merges.txt")
    with pytest.raises(TokenizerFileError, match="merges.txt"):
        DebertaTokenizer.from_pretrained(str(tmp_path))
