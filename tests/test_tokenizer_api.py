"""The vocabulary and special-token API of the DeBERTa tokenizers against transformers' fast and slow
tokenizers on the real vocabularies: special_tokens_map, all_special_tokens / ids,
additional (extra) special tokens, settable *_token / *_token_id, add_tokens, add_special_tokens,
convert_tokens_to_string, the pair template (build_inputs_with_special_tokens,
create_token_type_ids_from_sequences, get_special_tokens_mask), v1's pair_layout option, is_fast,
init_kwargs, sp_model_kwargs and save_pretrained(legacy_format=...).
"""

import json
import os

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
            "v1": ref.write_deberta_layout_dir(tmp_path_factory.mktemp("v1")),
            "gpt2": ref.write_gpt2_dir(tmp_path_factory.mktemp("gpt2"))}


FAMILIES = ["v2", "v1", "v1-fast"]


def _load(kind, dirs, **kwargs):
    """(ours, transformers fast, transformers slow), fresh (these tests change them)."""
    from keras_deberta import DebertaTokenizer, DebertaTokenizerFast, DebertaV2Tokenizer

    if kind == "v2":
        return (DebertaV2Tokenizer.from_pretrained(dirs["v2"], **kwargs), ref.fast_v2(dirs["v2"], **kwargs),
                ref.slow_v2(dirs["v2"], **kwargs))
    cls = DebertaTokenizerFast if kind == "v1-fast" else DebertaTokenizer
    return cls.from_pretrained(dirs["v1"], **kwargs), ref.fast_v1(dirs["v1"], **kwargs), ref.slow_v1(dirs["v1"], **kwargs)


@pytest.mark.parametrize("kind", FAMILIES)
def test_special_token_views_equal_transformers(kind, dirs):
    ours, fast, slow = _load(kind, dirs)
    for other in (fast, slow):
        assert ours.special_tokens_map == other.special_tokens_map
        assert ours.all_special_tokens == other.all_special_tokens
        assert ours.all_special_ids == other.all_special_ids
        assert ours.vocab_size == other.vocab_size and len(ours) == len(other)
        assert ours.pad_token_type_id == other.pad_token_type_id == 0
        assert ours.num_special_tokens_to_add(False) == other.num_special_tokens_to_add(False)
        assert ours.num_special_tokens_to_add(True) == other.num_special_tokens_to_add(True)
        for name in ref.SPECIALS:
            assert getattr(ours, name) == getattr(other, name)
            assert getattr(ours, name + "_id") == getattr(other, name + "_id")
    assert ours.is_fast and fast.is_fast  # transformers 5's DeBERTa tokenizers are all fast
    assert ours.additional_special_tokens == ours.extra_special_tokens == []
    assert ours.get_vocab() == fast.get_vocab()
    assert {t.content: i for i, t in ours.added_tokens_decoder.items()} == {
        t.content: i for i, t in slow.added_tokens_decoder.items()}
    ids = list(range(0, ours.vocab_size, 997)) + [len(ours) - 1]
    assert ours.convert_ids_to_tokens(ids) == fast.convert_ids_to_tokens(ids) == slow.convert_ids_to_tokens(ids)
    tokens = fast.convert_ids_to_tokens(ids) + ["not-a-token-xyz", "[MASK]"]
    assert ours.convert_tokens_to_ids(tokens) == fast.convert_tokens_to_ids(tokens)
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == fast.convert_ids_to_tokens(
        ids, skip_special_tokens=True)


@pytest.mark.parametrize("kind", FAMILIES)
def test_pair_template_equal_slow(kind, dirs):
    ours, _, slow = _load(kind, dirs)
    a, b = [100, 200, 300], [400, 500]
    for args in ((a,), (a, b), ([],), ([], [])):
        assert ours.build_inputs_with_special_tokens(*args) == slow.build_inputs_with_special_tokens(*args)
        assert ours.create_token_type_ids_from_sequences(*args) == slow.create_token_type_ids_from_sequences(*args)
        assert ours.get_special_tokens_mask(*args) == slow.get_special_tokens_mask(*args)
    with_specials = ours.build_inputs_with_special_tokens(a, b) + [ours.mask_token_id, 7]
    assert ours.get_special_tokens_mask(with_specials, already_has_special_tokens=True) == \
        slow.get_special_tokens_mask(with_specials, already_has_special_tokens=True)
    with pytest.raises(ValueError, match="already formatted"):
        ours.get_special_tokens_mask(a, b, already_has_special_tokens=True)
    # the same template as __call__ builds
    text_a, text_b = "Who wrote it?", "Somebody did."
    ids_a, ids_b = ours.encode(text_a, add_special_tokens=False), ours.encode(text_b, add_special_tokens=False)
    enc = ours(text_a, text_b, return_special_tokens_mask=True)
    assert enc["input_ids"] == ours.build_inputs_with_special_tokens(ids_a, ids_b)
    assert enc["token_type_ids"] == ours.create_token_type_ids_from_sequences(ids_a, ids_b)
    assert enc["special_tokens_mask"] == ours.get_special_tokens_mask(ids_a, ids_b)


@pytest.mark.parametrize("fast_class", [False, True])
def test_v1_original_pair_layout(dirs, tmp_path, fast_class):
    """pair_layout="original": `[CLS] A [SEP] B [SEP]` with token types 0 / 1, as the original
    DeBERTa and transformers 4 built v1 pairs (transformers' Python backend with that template is
    the reference)."""
    from keras_deberta import DebertaTokenizer, DebertaTokenizerFast

    cls = DebertaTokenizerFast if fast_class else DebertaTokenizer
    ours = cls.from_pretrained(dirs["v1"], pair_layout="original")
    slow = ref.slow_v1(dirs["v1"], pair_layout="original")
    a, b = cases.sst2_dev()[:20], cases.xquad()[1][:20]
    got, expected = ours(a, b), slow(a, b)
    assert got["input_ids"] == expected["input_ids"] and got["token_type_ids"] == expected["token_type_ids"]
    enc = ours("a", "b")
    a_id, b_id = ours.convert_tokens_to_ids(["a", "b"])
    assert enc["input_ids"] == [1, a_id, 2, b_id, 2] and enc["token_type_ids"] == [0, 0, 0, 1, 1]
    assert ours.num_special_tokens_to_add(pair=True) == 3
    assert ours.build_inputs_with_special_tokens([9], [8]) == slow.build_inputs_with_special_tokens([9], [8])
    assert ours.create_token_type_ids_from_sequences([9], [8]) == slow.create_token_type_ids_from_sequences([9], [8])
    # the default is transformers 5's layout
    assert cls.from_pretrained(dirs["v1"])("a", "b")["input_ids"] == [1, a_id, 2, 2, b_id, 2]
    ours.save_pretrained(str(tmp_path))
    assert json.load(open(tmp_path / "tokenizer_config.json"))["pair_layout"] == "original"
    assert cls.from_pretrained(str(tmp_path))("a", "b")["token_type_ids"] == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="pair_layout"):
        cls.from_pretrained(dirs["v1"], pair_layout="roberta")


@pytest.mark.parametrize("kind", FAMILIES)
def test_settable_special_tokens_equal_transformers(kind, dirs):
    """Setting a token or its id renames it (no vocabulary change) and the template follows; the
    reference is the Python backend (transformers' fast ones keep the template of their __init__
    and, for v2, list [PAD] [CLS] [SEP] again as extra special tokens)."""
    ours, fast, slow = _load(kind, dirs)
    texts = ["a b c", "x"]
    for name, value in (("pad_token", "[UNK]"), ("pad_token", "not-in-vocab-xyz"), ("pad_token_id", 5),
                        ("mask_token", None), ("cls_token", "[SEP]"), ("sep_token_id", ours.cls_token_id)):
        for tok in (ours, fast, slow):
            setattr(tok, name, value)
        for attr in ("pad_token", "pad_token_id", "mask_token", "mask_token_id", "cls_token", "cls_token_id",
                     "sep_token", "sep_token_id"):
            assert getattr(ours, attr) == getattr(fast, attr) == getattr(slow, attr), (name, attr)
        assert ours.special_tokens_map == fast.special_tokens_map == slow.special_tokens_map
        assert ours.all_special_tokens == slow.all_special_tokens and ours.all_special_ids == slow.all_special_ids
        assert ours(texts, padding=True)["input_ids"] == slow(texts, padding=True)["input_ids"], name


@pytest.mark.parametrize("kind", FAMILIES)
def test_add_tokens_and_add_special_tokens_equal_transformers(kind, dirs):
    ours, fast, slow = _load(kind, dirs)
    new = ["newword", "Hello", "Q.Q", "[MASK]", ""]
    assert ours.add_tokens(new) == slow.add_tokens(new)  # how many got a new id (fast counts differently)
    # an already known token is left as it is (transformers' Python backend); its fast backend would
    # turn the special [MASK] into a normalized one, hence not given to it
    fast.add_tokens([t for t in new if t != "[MASK]"])
    assert len(ours) == len(fast) == len(slow)
    assert ours.convert_tokens_to_ids(new[:4]) == fast.convert_tokens_to_ids(new[:4])
    texts = ["a newword b", "a   newword b", " newword", "x\tnewword", "[SEP] newword", "anewwordb Q.Qx",
             "Hello world, Hello", "NEWWORD", "newword  [MASK]  newword"] + cases.sst2_dev()[:20]
    kwargs = dict(return_offsets_mapping=True)
    got, expected = ours(texts, **kwargs), fast(texts, **kwargs)
    assert ref.as_lists(got) == ref.as_lists(expected)
    assert all(got.word_ids(i) == expected.word_ids(i) for i in range(len(texts)))
    for ids in expected["input_ids"]:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == fast.decode(ids, skip_special_tokens=skip)
    # special tokens: added, named, extra; matched in text and skipped by decode
    assert ours.add_tokens(["<spec>"], special_tokens=True) == slow.add_tokens(["<spec>"], special_tokens=True) == 1
    fast.add_tokens(["<spec>"], special_tokens=True)
    tokens = {"additional_special_tokens": ["<x>", "<y>"], "pad_token": "<pad2>"}
    assert ours.add_special_tokens(tokens) == slow.add_special_tokens(tokens) == 3
    fast.add_special_tokens(tokens)
    assert ours.pad_token == fast.pad_token == "<pad2>" and ours.pad_token_id == fast.pad_token_id
    assert ours.additional_special_tokens == fast.extra_special_tokens == ["<x>", "<y>"]
    assert ours.additional_special_tokens_ids == fast.extra_special_tokens_ids
    assert ours.all_special_tokens == fast.all_special_tokens and ours.all_special_ids == fast.all_special_ids
    texts = ["a <x> b <spec> newword<y>", "<pad2> c"]
    got, expected = ours(texts, padding=True, return_special_tokens_mask=True), fast(
        texts, padding=True, return_special_tokens_mask=True)
    assert ref.as_lists(got) == ref.as_lists(expected)
    for ids in expected["input_ids"]:
        assert ours.decode(ids, skip_special_tokens=True) == fast.decode(ids, skip_special_tokens=True)
    ours.add_special_tokens({"additional_special_tokens": ["<z>"]}, replace_extra_special_tokens=False)
    assert ours.additional_special_tokens == ["<x>", "<y>", "<z>"]
    with pytest.raises(ValueError, match="not a valid special token"):
        ours.add_special_tokens({"colour_token": "<c>"})


def test_added_tokens_with_lower_casing_equal_fast(dirs):
    from keras_deberta import DebertaV2Tokenizer

    ours, fast = DebertaV2Tokenizer.from_pretrained(dirs["v2"], do_lower_case=True), ref.fast_v2(
        dirs["v2"], do_lower_case=True)
    ours.add_tokens(["NewWord"])
    fast.add_tokens(["NewWord"])
    texts = ["a NEWWORD b", "a newword", "x NewWord. [MASK] Y"]
    assert ours(texts)["input_ids"] == fast(texts)["input_ids"]


@pytest.mark.parametrize("kind", FAMILIES)
def test_convert_tokens_to_string_equal_transformers(kind, dirs):
    ours, fast, slow = _load(kind, dirs)
    texts = [t for t in cases.sst2_dev()[:100] + cases.HARD_CASES if t.isascii()]
    for text in texts:
        tokens = slow.tokenize(text)
        assert ours.convert_tokens_to_string(tokens) == fast.convert_tokens_to_string(tokens), text
        if kind != "v2":  # SentencePieceBackend strips trailing spaces Metaspace keeps; ours follows fast
            assert ours.convert_tokens_to_string(tokens) == slow.convert_tokens_to_string(tokens), text
    tokens = ["[CLS]"] + fast.tokenize("Hello world") + ["[SEP]"]
    assert ours.convert_tokens_to_string(tokens) == fast.convert_tokens_to_string(tokens)
    # byte pieces and byte-level characters come back as the text (transformers leaves "<0xF0>" for v2)
    text = "emoji 😀 Ầ"
    assert ours.convert_tokens_to_string(ours.tokenize(text)).strip() == text


def test_sp_model_kwargs_and_init_kwargs(dirs, tmp_path):
    from keras_deberta import DebertaV2Tokenizer

    ours, fast, slow = _load("v2", dirs)
    assert ours.sp_model_kwargs == slow.sp_model_kwargs == {}
    for key in ("do_lower_case", "split_by_punct", "add_prefix_space") + tuple(ref.SPECIALS):
        assert ours.init_kwargs[key] == fast.init_kwargs[key], key
    assert ours.init_kwargs["vocab_file"] == slow.init_kwargs["vocab_file"]
    # subword regularisation, as transformers passes sp_model_kwargs to SentencePiece
    kwargs = {"enable_sampling": True, "alpha": 0.1, "nbest_size": -1}
    sampled = DebertaV2Tokenizer.from_pretrained(dirs["v2"], sp_model_kwargs=kwargs)
    slow_sampled = ref.slow_v2(dirs["v2"], sp_model_kwargs=kwargs)
    assert sampled.sp_model_kwargs == slow_sampled.sp_model_kwargs == kwargs
    text = "tokenization with subword regularisation"
    segmentations = {tuple(sampled.encode(text)) for _ in range(30)}
    assert len(segmentations) > 3 and len({tuple(slow_sampled.encode(text)) for _ in range(30)}) > 3
    assert all(sampled.decode(ids, skip_special_tokens=True) == text for ids in segmentations)
    sampled.save_pretrained(str(tmp_path))
    assert DebertaV2Tokenizer.from_pretrained(str(tmp_path)).sp_model_kwargs == kwargs
    with pytest.raises(ValueError, match="sp_model_kwargs"):
        DebertaV2Tokenizer.from_pretrained(dirs["v2"], sp_model_kwargs={"out_type": str})


@pytest.mark.parametrize("kind", ["v1", "v1-fast"])
def test_v1_init_kwargs(kind, dirs):
    ours, fast, _ = _load(kind, dirs, add_prefix_space=True)
    for key in ("errors", "add_prefix_space") + tuple(ref.SPECIALS):
        assert ours.init_kwargs[key] == fast.init_kwargs[key], key
    assert ours.init_kwargs["vocab_file"] == fast.init_kwargs["vocab_file"]
    assert ours.add_prefix_space and ours("Hello")["input_ids"] == fast("Hello")["input_ids"]


@pytest.mark.parametrize("kind", FAMILIES)
def test_save_pretrained_legacy_format(kind, dirs, tmp_path):
    ours, _, _ = _load(kind, dirs)
    ours.add_tokens(["newword"])
    texts = cases.sst2_dev()[:50] + ["a newword [MASK] b"]
    expected = ours(texts)["input_ids"]
    legacy = {"spm.model"} if kind == "v2" else {"vocab.json", "merges.txt"}
    configs = {"tokenizer_config.json", "special_tokens_map.json"}
    fast_model = kind == "v1-fast"
    for legacy_format in (None, True, False):
        out = tmp_path / f"saved-{legacy_format}"
        if legacy_format is False and not fast_model:  # as transformers' slow tokenizers
            with pytest.raises(ValueError, match="non legacy format"):
                ours.save_pretrained(str(out), legacy_format=False)
            continue
        written = ours.save_pretrained(str(out), legacy_format=legacy_format)
        files = set(os.listdir(out))
        want = configs | (legacy if legacy_format is not False else set()) | (
            {"tokenizer.json"} if fast_model and legacy_format is not True else set())
        assert files == want and {os.path.basename(p) for p in written} == want, legacy_format
        assert type(ours).from_pretrained(str(out))(texts)["input_ids"] == expected
        assert transformers.AutoTokenizer.from_pretrained(str(out))(texts)["input_ids"] == expected
    prefixed = ours.save_pretrained(str(tmp_path / "prefixed"), filename_prefix="mine")
    assert all(os.path.basename(p).startswith("mine-") for p in prefixed)
    with pytest.raises(ValueError, match="push_to_hub"):
        ours.save_pretrained(str(tmp_path / "hub"), push_to_hub=True)
