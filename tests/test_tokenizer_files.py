"""Which files the DeBERTa tokenizers read, and what they take from them.

- A tokenizer.json-only directory, as transformers 5 writes one after fine-tuning (made here with
  transformers itself from the real vocabularies), gives transformers' ids, offsets and word ids.
- spm.model (v2) and vocab.json + merges.txt (v1) are preferred when present; added tokens that
  transformers 5 keeps only in tokenizer.json are still read.
- model_max_length: tokenizer_config.json's, else config.json's max_position_embeddings, else 512;
  the built-in sst2-tiny model reports 512.
- One TokenizerFileError and one BatchEncoding for both families.
"""

import json
import os
import pickle
import shutil

import pytest

import tokenizer_cases as cases
import tokenizer_reference as ref

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
needs_vocab = pytest.mark.skipif(not (os.path.isfile(cases.SPM_V3) and os.path.isdir(cases.GPT2_DIR)),
                                 reason="needs ../shared/data/vocab (deberta-v3 spm.model and gpt2)")
SST2_TINY = os.path.join(cases.ROOT, "keras_deberta", "assets", "sst2-tiny")
ADDED = ["newword", "Q.Q"]
EXTRA_SPECIAL = ["<ent>", "</ent>"]


def _finetuned_dir(tmp_path, source, cls_name, name, **config):
    """What transformers 5 saves after loading `source` (plus tokenizer_config `config`) and adding
    tokens: tokenizer.json + tokenizer_config.json, no vocabulary files."""
    import transformers

    assembled = tmp_path / f"{name}-source"
    shutil.copytree(source, assembled)
    (assembled / "tokenizer_config.json").write_text(json.dumps(config))
    tok = getattr(transformers, cls_name).from_pretrained(str(assembled))
    tok.add_tokens(ADDED)
    tok.add_special_tokens({"additional_special_tokens": EXTRA_SPECIAL})
    out = tmp_path / name
    tok.save_pretrained(str(out))
    for legacy in ("spm.model", "vocab.json", "merges.txt"):
        if (out / legacy).exists():
            os.remove(out / legacy)
    assert "tokenizer.json" in os.listdir(out)
    return str(out)


def _texts():
    extra = ["a newword b <ent>Paris</ent> Q.Q.", "newword  [MASK]  <ent>", "The capital of France is [MASK]."]
    return cases.all_texts() + cases.HARD_CASES + extra


def _assert_same(ours, theirs, texts, pairs=True):
    kwargs = dict(return_offsets_mapping=True)
    got, expected = ours(texts, **kwargs), theirs(texts, **kwargs)
    assert ref.as_lists(got) == ref.as_lists(expected)
    assert all(got.word_ids(i) == expected.word_ids(i) for i in range(len(texts)))
    if pairs:
        contexts, questions = cases.xquad()
        a, b = questions[:100], [contexts[i // 5] for i in range(100)]
        for kw in (dict(truncation=True, max_length=24, padding=True), dict(truncation="only_second", max_length=64,
                                                                            stride=16, return_overflowing_tokens=True)):
            got, expected = ours(a, b, **kw), theirs(a, b, **kw)
            plain = ref.as_lists(expected)
            ref.v1_overflow_type_ids(ours, got, expected, plain)
            assert ref.as_lists(got) == plain
    for ids in expected["input_ids"][:300] + expected["input_ids"][-3:]:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    for text in cases.HARD_CASES:
        assert ours.tokenize(text) == theirs.tokenize(text), text


@needs_vocab
@pytest.mark.parametrize("flags", [{}, {"do_lower_case": True, "split_by_punct": True}])
def test_v2_tokenizer_json_only_equals_transformers(tmp_path, flags):
    import transformers

    from keras_deberta import DebertaV2Tokenizer

    source = ref.write_v3_dir(tmp_path / "v3")
    directory = _finetuned_dir(tmp_path, source, "DebertaV2TokenizerFast", "finetuned", vocab_type="spm", **flags)
    ours, theirs = DebertaV2Tokenizer.from_pretrained(directory), transformers.AutoTokenizer.from_pretrained(directory)
    assert ours.backend == "tokenizers" and ours.sp is None and ours.vocab_file is None
    assert (ours.do_lower_case, ours.split_by_punct) == (flags.get("do_lower_case", False),
                                                         flags.get("split_by_punct", False))
    assert len(ours) == len(theirs) and ours.convert_tokens_to_ids(ADDED + EXTRA_SPECIAL) == \
        theirs.convert_tokens_to_ids(ADDED + EXTRA_SPECIAL)
    _assert_same(ours, theirs, _texts())
    # a character the Unigram vocabulary lacks: [UNK] for the id, the raw piece for tokenize(), as transformers
    assert ours.tokenize("\U0002070e x") == theirs.tokenize("\U0002070e x") == ["▁", "\U0002070e", "▁x"]
    assert ours("\U0002070e")["input_ids"][2] == ours.unk_token_id
    # saved again (tokenizer.json only: there is no spm.model to write), read back by both
    again = tmp_path / "again"
    with pytest.raises(ValueError, match="legacy format"):
        ours.save_pretrained(str(again), legacy_format=True)
    ours.save_pretrained(str(again))
    assert sorted(os.listdir(again)) == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    texts = _texts()[:500]
    assert DebertaV2Tokenizer.from_pretrained(str(again))(texts)["input_ids"] == theirs(texts)["input_ids"]
    assert transformers.AutoTokenizer.from_pretrained(str(again))(texts)["input_ids"] == theirs(texts)["input_ids"]


@needs_vocab
def test_v2_prefers_spm_model_and_reads_added_tokens_from_tokenizer_json(tmp_path):
    import transformers

    from keras_deberta import DebertaV2Tokenizer

    source = ref.write_v3_dir(tmp_path / "v3")
    directory = _finetuned_dir(tmp_path, source, "DebertaV2TokenizerFast", "both", vocab_type="spm")
    shutil.copy(cases.SPM_V3, os.path.join(directory, "spm.model"))
    ours, theirs = DebertaV2Tokenizer.from_pretrained(directory), transformers.AutoTokenizer.from_pretrained(directory)
    assert ours.backend == "sentencepiece" and ours.sp is not None
    texts = ["a newword b <ent>Paris</ent> Q.Q.", "The capital of France is [MASK]."] + cases.sst2_dev()[:200]
    assert ours(texts)["input_ids"] == theirs(texts)["input_ids"]
    assert "<ent>" in ours.all_special_tokens or ours.convert_tokens_to_ids("<ent>") == theirs.convert_tokens_to_ids(
        "<ent>")


@needs_vocab
@pytest.mark.parametrize("fast_class", [False, True])
def test_v1_tokenizer_json_only_equals_transformers(tmp_path, fast_class):
    import transformers

    from keras_deberta import DebertaTokenizer, DebertaTokenizerFast

    source = ref.write_deberta_layout_dir(tmp_path / "v1")
    directory = _finetuned_dir(tmp_path, source, "DebertaTokenizerFast", "finetuned")
    cls = DebertaTokenizerFast if fast_class else DebertaTokenizer
    ours, theirs = cls.from_pretrained(directory), transformers.AutoTokenizer.from_pretrained(directory)
    assert ours.backend == ("tokenizers" if fast_class else "python")
    _assert_same(ours, theirs, _texts()[::3])
    # the vocabulary and merges come out of tokenizer.json: legacy files can be written again
    again = tmp_path / "again"
    ours.save_pretrained(str(again), legacy_format=True)
    assert {"vocab.json", "merges.txt"} <= set(os.listdir(again))
    texts = _texts()[:300]
    assert cls.from_pretrained(str(again))(texts)["input_ids"] == theirs(texts)["input_ids"]


@needs_vocab
def test_bad_tokenizer_json_raises_clear_errors(tmp_path):
    from keras_deberta import DebertaTokenizer, DebertaV2Tokenizer, TokenizerFileError

    (tmp_path / "tokenizer.json").write_text("{not json")
    for cls in (DebertaV2Tokenizer, DebertaTokenizer):
        with pytest.raises(TokenizerFileError, match="tokenizer.json"):
            cls.from_pretrained(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(TokenizerFileError, match="Unigram"):
        DebertaV2Tokenizer.from_pretrained(str(tmp_path))
    with pytest.raises(TokenizerFileError, match="BPE"):
        DebertaTokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram", "vocab": [["a", "x"]]}}))
    with pytest.raises(TokenizerFileError, match="piece, score"):
        DebertaV2Tokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}}))
    with pytest.raises(TokenizerFileError, match="merge"):
        DebertaTokenizer.from_pretrained(str(tmp_path))
    os.remove(tmp_path / "tokenizer.json")
    with pytest.raises(TokenizerFileError, match="no spm.model"):
        DebertaV2Tokenizer.from_pretrained(str(tmp_path))


# ---- model_max_length ------------------------------------------------------------------------------
def test_builtin_model_reports_512():
    import transformers

    from keras_deberta import DebertaV2Tokenizer

    ours, theirs = DebertaV2Tokenizer.from_pretrained(SST2_TINY), transformers.AutoTokenizer.from_pretrained(SST2_TINY)
    assert ours.model_max_length == theirs.model_max_length == 512
    # this lower-casing SentencePiece model has no byte fallback: unknown characters are [UNK] ids but their
    # own text as tokens, in both
    text = "Ầ 中 x"
    assert ours.tokenize(text) == theirs.tokenize(text) == ["▁", "ầ", "▁", "中", "▁x"]
    assert ours(text)["input_ids"] == theirs(text)["input_ids"] and ours(text)["input_ids"].count(3) == 2
    long = " ".join(["a good movie"] * 400)
    assert len(ours(long, truncation=True)["input_ids"]) == 512
    assert len(ours([long, "fine"], truncation=True, padding=True)["input_ids"][1]) == 512


@needs_vocab
@pytest.mark.parametrize("family", ["v2", "v1"])
def test_model_max_length_from_the_directory(tmp_path, family):
    from keras_deberta import DebertaTokenizer, DebertaV2Tokenizer

    cls = DebertaV2Tokenizer if family == "v2" else DebertaTokenizer
    write = ref.write_v3_dir if family == "v2" else ref.write_deberta_layout_dir

    def limit(name, tokenizer_config=None, positions=None, **kwargs):
        directory = write(tmp_path / name)
        if tokenizer_config is not None:
            with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
                json.dump(tokenizer_config, f)
        if positions is not None:
            with open(os.path.join(directory, "config.json"), "w") as f:
                json.dump({"max_position_embeddings": positions}, f)
        return cls.from_pretrained(directory, **kwargs).model_max_length

    assert limit("bare") == 512  # nothing says: DeBERTa's 512 positions
    assert limit("positions", positions=256) == 256
    assert limit("unbounded-config", {"model_max_length": int(1e30)}, positions=256) == 256  # 1e30 = "none"
    assert limit("configured", {"model_max_length": 128}, positions=256) == 128
    assert limit("override", {"model_max_length": 128}, model_max_length=64) == 64
    assert cls.from_pretrained(write(tmp_path / "x"), model_max_length=int(1e30))("a " * 600, truncation=True)


# ---- shared types ------------------------------------------------------------------------------
def test_one_error_and_one_encoding_type_for_both_families(tmp_path):
    import keras_deberta
    import keras_deepseek.tokenization_deepseek_v2 as deepseek_tokenization
    from keras_deberta import tokenization_deberta_v2
    from presets.tokenizer_types import BatchEncoding, TokenizerFileError

    assert keras_deberta.TokenizerFileError is deepseek_tokenization.TokenizerFileError is TokenizerFileError
    assert keras_deberta.BatchEncoding is tokenization_deberta_v2.BatchEncoding is BatchEncoding
    assert deepseek_tokenization.Encoding is BatchEncoding
    for name in ("DebertaV2Tokenizer", "DebertaV2TokenizerFast", "DebertaTokenizer", "DebertaTokenizerFast"):
        assert hasattr(keras_deberta, name)
    with pytest.raises(TokenizerFileError):
        deepseek_tokenization.DeepseekV2Tokenizer.from_pretrained(str(tmp_path))
    with pytest.raises(TokenizerFileError):
        keras_deberta.DebertaV2Tokenizer.from_pretrained(str(tmp_path))


def test_batch_encoding_alignments_survive_pickling():
    from keras_deberta import DebertaV2Tokenizer

    tok = DebertaV2Tokenizer.from_pretrained(SST2_TINY)
    enc = tok(["a fine film", "dull"], ["yes", "no"], padding=True)
    back = pickle.loads(pickle.dumps(enc))
    assert dict(back) == dict(enc) and back.input_ids == enc.input_ids
    assert back.word_ids(1) == enc.word_ids(1) and back.sequence_ids(0) == enc.sequence_ids(0)
    assert enc.tokens(0)[0] == "[CLS]" and enc[0].ids == enc["input_ids"][0] and enc.n_sequences == 2
    padded = tok.pad([{"input_ids": [1, 5, 2]}, {"input_ids": [1, 2]}])
    assert padded.input_ids == [[1, 5, 2], [1, 2, 0]]
    with pytest.raises(ValueError, match="alignments"):
        padded.word_ids()
