"""The encoding API of the DeBERTa tokenizers against transformers' fast and slow tokenizers on the
real vocabularies: encode_plus / batch_encode_plus, stride + overflow rows (QA), is_split_into_words +
word_ids (NER), pad (pad_to_multiple_of and its errors), prepare_for_model, truncate_sequences,
tokenize, and truncation at model_max_length.

transformers' `__call__` on DeBERTa is the fast one (5.23 has no other); `prepare_for_model` and
`truncate_sequences` exist only on the Python backend, the reference for those. Texts where
transformers' v2 tokenizer is not faithful to the SentencePiece model ([UNK] for byte-fallback
characters, see test_tokenization_deberta_v2.py) are left out of the v2 comparisons.
"""

import os

import numpy as np
import pytest

import tokenizer_cases as cases
import tokenizer_reference as ref

pytestmark = [
    pytest.mark.skipif(not (os.path.isfile(cases.SPM_V3) and os.path.isdir(cases.GPT2_DIR)),
                       reason="needs ../shared/data/vocab (deberta-v3 spm.model and gpt2)"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return {"v2": ref.write_v3_dir(tmp_path_factory.mktemp("v3")),
            "v1": ref.write_deberta_layout_dir(tmp_path_factory.mktemp("v1"))}


@pytest.fixture(scope="module", params=["v2", "v1", "v1-fast"])
def family(request, dirs):
    """(ours, transformers fast, transformers slow, texts where the two agree on plain ids)."""
    from keras_deberta import DebertaTokenizer, DebertaTokenizerFast, DebertaV2Tokenizer

    kind = request.param
    directory = dirs["v2" if kind == "v2" else "v1"]
    # ours reads 512 (DeBERTa's positions) where the directory names no limit; transformers 1e30
    limit = dict(model_max_length=512)
    if kind == "v2":
        ours, fast, slow = (DebertaV2Tokenizer.from_pretrained(directory), ref.fast_v2(directory, **limit),
                            ref.slow_v2(directory, **limit))
    else:
        cls = DebertaTokenizerFast if kind == "v1-fast" else DebertaTokenizer
        ours, fast, slow = cls.from_pretrained(directory), ref.fast_v1(directory, **limit), ref.slow_v1(directory, **limit)
    assert ours.model_max_length == 512
    pool = cases.sst2_dev()[:150] + cases.xquad()[1][:100] + cases.wnut17()[:100] + cases.HARD_CASES
    agree = [t for t, a, b in zip(pool, ours(pool)["input_ids"], fast(pool)["input_ids"]) if a == b]
    assert len(agree) > 0.9 * len(pool)
    return ours, fast, slow, agree


def _call_or_error(tok, *args, **kwargs):
    """tok(...) as plain lists, or the exception type (tokenizers panics on some strides)."""
    try:
        return ref.as_lists(tok(*args, **kwargs))
    except BaseException as e:  # pyo3's PanicException derives from BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return type(e)


def test_encode_plus_and_batch_encode_plus(family):
    ours, fast, slow, texts = family
    a, b = texts[:20], texts[20:40]
    for kwargs in (dict(), dict(truncation=True, max_length=12), dict(padding=True, return_special_tokens_mask=True),
                   dict(return_offsets_mapping=True, return_length=True)):
        for x, y in zip(a[:5], b[:5]):
            assert ref.as_lists(ours.encode_plus(x, y, **kwargs)) == ref.as_lists(fast(x, y, **kwargs))
            assert ref.as_lists(ours.encode_plus(x, **kwargs)) == ref.as_lists(fast(x, **kwargs))
        assert ref.as_lists(ours.batch_encode_plus(a, **kwargs)) == ref.as_lists(fast(a, **kwargs))
        assert ref.as_lists(ours.batch_encode_plus(list(zip(a, b)), **kwargs)) == ref.as_lists(fast(a, b, **kwargs))
    # The slow backend's ids and type ids, where its pair truncation agrees (no truncation here).
    expected = slow(a, b, padding=True)
    got = ours.batch_encode_plus(list(zip(a, b)), padding=True)
    assert got["input_ids"] == expected["input_ids"] and got["token_type_ids"] == expected["token_type_ids"]
    assert ours.encode(a[0], b[0]) == slow.encode(a[0], b[0]) == fast.encode(a[0], b[0])
    assert np.array_equal(ours.encode(a[0], return_tensors="np"), fast.encode(a[0], return_tensors="np"))
    with pytest.raises(ValueError, match="one example"):
        ours.encode_plus(a)
    with pytest.raises(ValueError, match="list of examples"):
        ours.batch_encode_plus(a[0])


def test_stride_and_overflow_rows_equal_fast(family, monkeypatch):
    """Windows over long inputs as transformers' fast tokenizers return them: one row per window,
    `stride` tokens repeated, overflow_to_sample_mapping, offsets and sequence ids per row; where
    transformers refuses (a stride as long as the window, a sequence too short to cut), so do we."""
    monkeypatch.setenv("RUST_BACKTRACE", "0")  # tokenizers panics on some strides: keep the log short
    ours, fast, _, texts = family
    long = [t for t in texts if 20 < len(fast.tokenize(t)) < 60][:3]
    short = [t for t in texts if 2 < len(fast.tokenize(t)) < 6][:2]
    calls = [(long[0], None, "longest_first"), (long, None, "only_first"), (short[0], long[1], "only_second"),
             ([short[0], short[1]], [long[0], long[2]], "only_second"), (long[1], short[1], "only_first"),
             (long[0], long[1], "longest_first"), (short[0], long[2], "longest_first")]
    checked = refused = 0
    for side in ("right", "left"):
        ours.truncation_side = fast.truncation_side = side
        for max_length, stride in ((12, 0), (12, 2), (16, 5), (20, 9), (11, 6), (9, 7)):
            for text, pair, strategy in calls:
                kwargs = dict(truncation=strategy, max_length=max_length, stride=stride,
                              return_overflowing_tokens=True, return_offsets_mapping=True,
                              return_special_tokens_mask=True, return_length=True)
                expected = _call_or_error(fast, text, pair, **kwargs)
                if isinstance(expected, type):
                    with pytest.raises(ValueError):
                        ours(text, pair, **kwargs)
                    refused += 1
                    continue
                got = ours(text, pair, **kwargs)
                reference = fast(text, pair, **kwargs)
                ref.v1_overflow_type_ids(ours, got, reference, expected)
                assert ref.as_lists(got) == expected, (side, strategy, max_length, stride, pair is None)
                for row in range(len(expected["input_ids"])):
                    assert got.sequence_ids(row) == reference.sequence_ids(row)
                    assert got.word_ids(row) == reference.word_ids(row)
                checked += 1
    ours.truncation_side = fast.truncation_side = "right"
    print(f"{checked} calls equal, {refused} refused by both")
    assert checked > 50 and refused > 5
    # A single text with return_overflowing_tokens is a batch, as in transformers; padded to np.
    kwargs = dict(truncation=True, max_length=8, stride=2, return_overflowing_tokens=True, padding=True,
                  return_tensors="np")
    got, expected = ours(long[0], **kwargs), fast(long[0], **kwargs)
    assert sorted(got) == sorted(expected) and all(np.array_equal(got[k], expected[k]) for k in expected)


def test_question_answering_features_equal_fast(family):
    """transformers' run_qa preprocessing: question + context, only_second, stride, offsets, and the
    answer's character start mapped to its token in every window."""
    ours, fast, _, _ = family
    data_contexts, data_questions = cases.xquad()
    contexts = [c for c in data_contexts[:12] if fast(c)["input_ids"] == ours(c)["input_ids"]][:6]
    questions = data_questions[:len(contexts)]
    kwargs = dict(truncation="only_second", max_length=96, stride=32, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding="max_length")
    got, expected = ours(questions, contexts, **kwargs), fast(questions, contexts, **kwargs)
    reference = ref.as_lists(expected)
    ref.v1_overflow_type_ids(ours, got, expected, reference)
    assert ref.as_lists(got) == reference
    assert len(got["input_ids"]) > len(contexts)  # long contexts gave several windows
    for row, sample in enumerate(got["overflow_to_sample_mapping"]):
        assert got.sequence_ids(row) == expected.sequence_ids(row)
        char = len(contexts[sample]) // 2
        assert got.char_to_token(row, char, sequence_index=1) == expected.char_to_token(row, char, sequence_index=1)
        token = got.char_to_token(row, char, sequence_index=1)
        if token is not None:
            assert got.token_to_chars(row, token) == tuple(expected.token_to_chars(row, token))
            word = got.token_to_word(row, token)
            assert word == expected.token_to_word(row, token)
            assert got.word_to_tokens(row, word, sequence_index=1) == tuple(
                expected.word_to_tokens(row, word, sequence_index=1))


@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_split_into_words_and_word_ids_equal_transformers(dirs, add_prefix_space):
    """NER preprocessing: lists of words in, word_ids() to align labels; every family."""
    from keras_deberta import DebertaTokenizer, DebertaTokenizerFast, DebertaV2Tokenizer

    sentences = [s.split(" ") for s in cases.wnut17()[:150]]
    sentences += [["Hello", "[MASK]", "wor-ld", ""], ["x"], ["emoji", "😀"]]
    pairs = [(["Who", "wrote", "it", "?"], ["a", "long", "second", "text", "of", "words"])]
    v1_kwargs = dict(add_prefix_space=add_prefix_space)
    tokenizers = [(DebertaTokenizer.from_pretrained(dirs["v1"], **v1_kwargs), ref.fast_v1(dirs["v1"], **v1_kwargs)),
                  (DebertaTokenizerFast.from_pretrained(dirs["v1"], **v1_kwargs), ref.fast_v1(dirs["v1"], **v1_kwargs))]
    if not add_prefix_space:
        tokenizers.append((DebertaV2Tokenizer.from_pretrained(dirs["v2"]), ref.fast_v2(dirs["v2"])))
    for ours, fast in tokenizers:
        texts = [s for s in sentences if fast(s, is_split_into_words=True)["input_ids"]
                 == ours(s, is_split_into_words=True)["input_ids"]]
        assert len(texts) > 0.95 * len(sentences)
        kwargs = dict(is_split_into_words=True, return_offsets_mapping=True, truncation=True, max_length=24)
        got, expected = ours(texts, **kwargs), fast(texts, **kwargs)
        assert ref.as_lists(got) == ref.as_lists(expected)
        for i in range(len(texts)):
            assert got.word_ids(i) == expected.word_ids(i)
        for first, second in pairs:
            got, expected = ours(first, second, **kwargs), fast(first, second, **kwargs)
            assert ref.as_lists(got) == ref.as_lists(expected)
            assert got.word_ids() == expected.word_ids() and got.sequence_ids() == expected.sequence_ids()
    # the slow backend agrees on the ids (it has no alignments)
    slow = ref.slow_v2(dirs["v2"])
    ours = DebertaV2Tokenizer.from_pretrained(dirs["v2"])
    for words in sentences[:50]:
        assert ours(words, is_split_into_words=True)["input_ids"] == slow(words, is_split_into_words=True)["input_ids"]


def test_word_ids_of_raw_text_equal_fast(family, dirs):
    ours, fast, _, texts = family
    texts = texts + ["a [MASK] b[SEP]c", "The capital of France is [MASK]."]
    got, expected = ours(texts), fast(texts)
    for i, text in enumerate(texts):
        if got["input_ids"][i] == expected["input_ids"][i]:
            assert got.word_ids(i) == expected.word_ids(i), text
    if fast.is_fast and "v2" in type(fast).__name__.lower():
        from keras_deberta import DebertaV2Tokenizer

        ours, fast = (DebertaV2Tokenizer.from_pretrained(dirs["v2"], split_by_punct=True),
                      ref.fast_v2(dirs["v2"], split_by_punct=True))
        texts = ["Hello, World! It's OK.", "a , b", " (x) ", ",,", "wor-ld, x."] + cases.sst2_dev()[:100]
        got, expected = ours(texts, return_offsets_mapping=True), fast(texts, return_offsets_mapping=True)
        assert ref.as_lists(got) == ref.as_lists(expected)
        assert all(got.word_ids(i) == expected.word_ids(i) for i in range(len(texts)))


def test_pad_equal_transformers(family):
    ours, fast, slow, texts = family
    examples = [ours(t, t[::-1] or None) for t in texts[:6]]
    as_dicts = [dict(e) for e in examples]
    for kwargs in (dict(), dict(padding="longest"), dict(padding=True, pad_to_multiple_of=8),
                   dict(padding="max_length", max_length=70), dict(padding="max_length", max_length=70,
                                                                    pad_to_multiple_of=16),
                   dict(padding=False), dict(padding=False, pad_to_multiple_of=8), dict(padding_side="left"),
                   dict(return_attention_mask=False), dict(return_tensors="np")):
        expected = ref.as_lists(fast.pad(as_dicts, **kwargs))
        assert ref.as_lists(ours.pad(as_dicts, **kwargs)) == expected == ref.as_lists(slow.pad(as_dicts, **kwargs))
        batch = {k: [d[k] for d in as_dicts] for k in as_dicts[0]}
        assert ref.as_lists(ours.pad(batch, **kwargs)) == ref.as_lists(fast.pad(batch, **kwargs))
        single = dict(as_dicts[0])
        assert ref.as_lists(ours.pad(single, **kwargs)) == ref.as_lists(fast.pad(single, **kwargs))
    ragged = ours(texts[:3], return_special_tokens_mask=True)
    assert ref.as_lists(ours.pad(ragged)) == ref.as_lists(fast.pad(ref.as_lists(ragged)))
    arrays = {k: np.asarray(v) for k, v in ours(texts[:3], padding=True).items()}
    padded = ours.pad(arrays, padding="max_length", max_length=64)
    assert isinstance(padded["input_ids"], np.ndarray)
    assert ref.as_lists(padded) == ref.as_lists(fast.pad(arrays, padding="max_length", max_length=64))
    # "max_length" without a max_length pads to model_max_length
    assert ref.as_lists(ours.pad(as_dicts, padding="max_length")) == ref.as_lists(
        fast.pad(as_dicts, padding="max_length"))
    assert len(ours.pad(as_dicts, padding="max_length")["input_ids"][0]) == 512


def test_pad_to_multiple_of_and_padding_errors_as_transformers(family):
    ours, fast, _, texts = family
    text = texts[0]
    for kwargs in (dict(padding=True, pad_to_multiple_of=8), dict(pad_to_multiple_of=8),
                   dict(padding=False, pad_to_multiple_of=8), dict(truncation=True, max_length=10, pad_to_multiple_of=8),
                   dict(padding="max_length", max_length=10, pad_to_multiple_of=8),
                   dict(padding=True, truncation=True, max_length=16, pad_to_multiple_of=8)):
        assert ref.as_lists(ours(text, **kwargs)) == ref.as_lists(fast(text, **kwargs)), kwargs
    # transformers refuses truncation + padding to a length that is not a multiple
    for tok in (fast, ours):
        with pytest.raises(ValueError, match="multiple of pad_to_multiple_of"):
            tok(text, padding=True, truncation=True, max_length=10, pad_to_multiple_of=8)
        with pytest.raises(ValueError, match="not a valid PaddingStrategy"):
            tok(text, padding="sideways")
    # without a pad token, padding refuses (transformers' message), plain calls still work
    ours.pad_token, fast.pad_token = None, None
    try:
        for tok in (fast, ours):
            with pytest.raises(ValueError, match="padding token"):
                tok(texts[:2], padding=True)
            with pytest.raises(ValueError, match="padding token"):
                tok.pad([{"input_ids": [1, 2]}, {"input_ids": [1]}])
        assert ours(texts[:2])["input_ids"] == fast(texts[:2])["input_ids"]
    finally:
        ours.pad_token, fast.pad_token = "[PAD]", "[PAD]"


def test_prepare_for_model_and_truncate_sequences_equal_slow(family):
    ours, _, slow, texts = family
    a = ours.encode(texts[1], add_special_tokens=False)[:11]
    b = ours.encode(texts[2], add_special_tokens=False)[:7]
    assert a == slow.encode(texts[1], add_special_tokens=False)[:11]
    checked = 0
    for pair in (None, b):
        for truncation in (False, True, "longest_first", "only_first", "only_second"):
            for max_length in (None, 4, 9, 13, 40):
                for extra in (dict(), dict(stride=2, return_overflowing_tokens=True), dict(padding="max_length"),
                              dict(padding=True, pad_to_multiple_of=4, return_length=True),
                              dict(return_special_tokens_mask=True, add_special_tokens=False),
                              dict(return_tensors="np", prepend_batch_axis=True)):
                    kwargs = dict(pair_ids=pair, truncation=truncation, max_length=max_length, **extra)
                    try:
                        expected = ref.as_lists(slow.prepare_for_model(a, **kwargs))
                    except ValueError:
                        with pytest.raises(ValueError):
                            ours.prepare_for_model(a, **kwargs)
                        continue
                    assert ref.as_lists(ours.prepare_for_model(a, **kwargs)) == expected, kwargs
                    checked += 1
    assert checked > 250
    for strategy in ("longest_first", "only_first", "only_second"):
        for remove in (0, 1, 3, 8, 20):
            for stride in (0, 2):
                for side in ("right", "left"):
                    ours.truncation_side = slow.truncation_side = side
                    args = (list(a), list(b), remove, strategy, stride)
                    assert ours.truncate_sequences(*args) == slow.truncate_sequences(*args)
                    assert ours.truncate_sequences(list(a), None, remove, strategy, stride) == \
                        slow.truncate_sequences(list(a), None, remove, strategy, stride)
    ours.truncation_side = slow.truncation_side = "right"


def test_truncation_caps_at_model_max_length(family):
    ours, fast, _, _ = family
    contexts = [c for c in cases.xquad()[0][:40] if ours(c)["input_ids"] == fast(c)["input_ids"]]
    long = " ".join(contexts[:10])
    for text, pair in ((long, None), (long, long[:300]), ([long, "short"], None)):
        got = ours(text, pair, truncation=True)
        assert ref.as_lists(got) == ref.as_lists(fast(text, pair, truncation=True))
        lengths = [len(r) for r in (got["input_ids"] if isinstance(text, list) else [got["input_ids"]])]
        assert max(lengths) == 512
    assert len(ours(long, padding="max_length", truncation=True)["input_ids"]) == 512
    assert len(ours(long)["input_ids"]) > 512  # no truncation unless asked, as transformers
    assert ours.max_len_single_sentence == fast.max_len_single_sentence == 510
    assert ours.max_len_sentences_pair == fast.max_len_sentences_pair


def test_tokenize_returns_the_model_pieces(family):
    ours, fast, slow, texts = family
    hard = [t for t in cases.HARD_CASES if t not in ("",)]
    for text in hard + texts[:50]:
        pieces = ours.tokenize(text)
        # the ids are those of the pieces (unknown pieces aside) ...
        assert ours.convert_tokens_to_ids(pieces) == ours.encode(text, add_special_tokens=False), text
        # ... and the pieces are transformers' Python backend's (SentencePiece's own for v2)
        assert pieces == slow.tokenize(text), text
    for text in texts[:30]:
        assert ours.tokenize(text) == fast.tokenize(text)
        assert ours.tokenize(text, texts[0], add_special_tokens=True) == fast.tokenize(text, texts[0],
                                                                                         add_special_tokens=True)
