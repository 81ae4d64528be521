"""Inputs are bounded: every keras_deberta pipeline truncates a long text to the tokenizer's
model_max_length (else the config's max_position_embeddings) exactly as transformers' pipelines
truncate it, or refuses it with truncation=False.

Tiny transformers checkpoints (every parameter perturbed) with the built-in classifier's 8,000-piece
SentencePiece vocabulary, so nothing here needs ../shared/data. Relative attention with log buckets
(v3-like): no position table would stop a long input, which is the point.
"""

import os

import numpy as np
import pytest

from conftest import ROOT
from hf_reference import V2_VARIANTS, build_hf_model, hf_config

DEFAULT = os.path.join(ROOT, "keras_deberta", "assets", "sst2-tiny")
LIMIT = 40
NLI = {"contradiction": 0, "neutral": 1, "entailment": 2}
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# ~90 tokens: past LIMIT, and a [MASK] near the start (fill-mask) and one near the end.
LONG = ("my name is wolfgang and i live in berlin near the river spree . " * 6).strip()


def _close(got, want):
    assert abs(float(got) - float(want)) <= 1e-4 * max(1.0, abs(float(want))), (got, want)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{name: (transformers model, transformers tokenizer, directory)}. The tokenizers of "cls",
    "nli", "ner", "mlm" carry model_max_length=LIMIT; "cls_config" has no tokenizer limit and
    max_position_embeddings=LIMIT in its config instead."""
    import transformers

    from keras_deberta import DebertaV2Tokenizer

    root = tmp_path_factory.mktemp("limits")
    specs = {
        "cls": ("DebertaV2ForSequenceClassification", dict(num_labels=3), LIMIT, 512),
        "nli": ("DebertaV2ForSequenceClassification",
                dict(num_labels=3, id2label={v: k for k, v in NLI.items()}, label2id=NLI), LIMIT, 512),
        "ner": ("DebertaV2ForTokenClassification",
                dict(id2label=dict(enumerate(NER_LABELS)), label2id={k: i for i, k in enumerate(NER_LABELS)}),
                LIMIT, 512),
        "mlm": ("DebertaV2ForMaskedLM", {}, LIMIT, 512),
        "cls_config": ("DebertaV2ForSequenceClassification", dict(num_labels=3), None, LIMIT),
    }
    built = {}
    for seed, (name, (cls, extra, tokenizer_limit, positions)) in enumerate(specs.items()):
        # No tokenizer limit: transformers' "no limit" sentinel (the built-in assets name 512).
        tokenizer = DebertaV2Tokenizer.from_pretrained(DEFAULT, model_max_length=tokenizer_limit or int(1e30))
        config = hf_config(**V2_VARIANTS["v3_like"], vocab_size=len(tokenizer), max_position_embeddings=positions,
                           **extra)
        model = build_hf_model(config, cls, seed=seed)
        directory = str(root / name)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        built[name] = (model, transformers.DebertaV2Tokenizer.from_pretrained(directory), directory)
    return built


def _ours(checkpoints, task, name, **kwargs):
    from keras_deberta import pipeline

    return pipeline(task, model=checkpoints[name][2], **kwargs)


def _hf(checkpoints, task, name, **kwargs):
    import transformers

    model, tokenizer, _ = checkpoints[name]
    return transformers.pipeline(task, model=model, tokenizer=tokenizer, **kwargs)


def _longest_row(pipe):
    """Records the longest token row each model call of `pipe` receives (mask sums: the padding to
    a multiple of 16 is not the text)."""
    seen = []
    forward = pipe._forward

    def spy(inputs):
        seen.append(int(np.asarray(inputs["attention_mask"]).sum(axis=-1).max()))
        return forward(inputs)

    pipe._forward = spy
    return seen


def test_text_classification_truncates_to_the_tokenizer_limit_as_transformers(checkpoints):
    ours = _ours(checkpoints, "text-classification", "cls")
    assert ours.max_length == LIMIT and len(ours.tokenizer(LONG)["input_ids"]) > 2 * LIMIT
    rows = _longest_row(ours)
    got = ours([LONG, "a short one"], top_k=None)
    want = _hf(checkpoints, "text-classification", "cls")([LONG, "a short one"], top_k=None, truncation=True)
    assert max(rows) == LIMIT
    for got_row, want_row in zip(got, want):
        assert [g["label"] for g in got_row] == [w["label"] for w in want_row]
        for g, w in zip(got_row, want_row):
            _close(g["score"], w["score"])
    pair = {"text": LONG, "text_pair": "the river spree flows through berlin ."}
    got = ours(pair, top_k=None)
    want = _hf(checkpoints, "text-classification", "cls")(pair, top_k=None, truncation=True)
    for g, w in zip(got, want):
        _close(g["score"], w["score"])


def test_without_a_tokenizer_limit_the_config_length_bounds_the_input(checkpoints):
    ours = _ours(checkpoints, "text-classification", "cls_config")
    # Its tokenizer_config holds transformers' "no limit" sentinel, so the tokenizer falls back to
    # config.json's max_position_embeddings.
    assert ours.tokenizer.model_max_length == LIMIT
    assert ours.max_length == LIMIT
    got = ours(LONG, top_k=None)
    want = _hf(checkpoints, "text-classification", "cls_config")(LONG, top_k=None, truncation=True,
                                                                 max_length=LIMIT)
    for g, w in zip(got, want):
        _close(g["score"], w["score"])


def test_token_classification_truncates_as_transformers(checkpoints):
    # transformers' token-classification pipeline truncates to model_max_length by default.
    got = _ours(checkpoints, "ner", "ner")(LONG)
    want = _hf(checkpoints, "token-classification", "ner")(LONG)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert (g["entity"], g["index"], g["start"], g["end"]) == (w["entity"], w["index"], w["start"], w["end"])
        _close(g["score"], w["score"])
    assert max(g["end"] for g in got) < len(LONG) // 2  # the text really was cut


def test_zero_shot_truncates_the_sequence_only_as_transformers(checkpoints):
    labels = ["rivers", "cities", "names"]
    got = _ours(checkpoints, "zero-shot-classification", "nli")(LONG, candidate_labels=labels)
    want = _hf(checkpoints, "zero-shot-classification", "nli")(LONG, candidate_labels=labels)
    assert got["labels"] == want["labels"]
    for a, b in zip(got["scores"], want["scores"]):
        _close(a, b)


def test_fill_mask_truncates_as_transformers_and_names_a_mask_past_the_limit(checkpoints):
    text = "the [MASK] is " + LONG
    got = _ours(checkpoints, "fill-mask", "mlm")(text, top_k=3)
    want = _hf(checkpoints, "fill-mask", "mlm")(text, top_k=3, tokenizer_kwargs={"truncation": True})
    assert [(g["token"], g["sequence"]) for g in got] == [(w["token"], w["sequence"]) for w in want]
    for g, w in zip(got, want):
        _close(g["score"], w["score"])
    with pytest.raises(ValueError, match=f"has none within its first {LIMIT} tokens"):
        _ours(checkpoints, "fill-mask", "mlm")(LONG + " the [MASK] .")


def test_truncation_false_refuses_a_long_text_and_accepts_a_short_one(checkpoints):
    from keras_deberta import InputTooLongError

    clf = _ours(checkpoints, "text-classification", "cls", truncation=False)  # a pipeline default
    assert clf("a short one")[0]["label"]
    with pytest.raises(InputTooLongError, match=rf"the text is \d+ tokens long, more than the {LIMIT}"):
        clf(LONG)
    ner = _ours(checkpoints, "ner", "ner")
    with pytest.raises(InputTooLongError, match=f"more than the {LIMIT}"):
        ner(LONG, truncation=False)  # a call option
    zero_shot = _ours(checkpoints, "zero-shot-classification", "nli")
    with pytest.raises(InputTooLongError, match="the text pair is"):
        zero_shot(LONG, candidate_labels=["a"], truncation=False)
    with pytest.raises(ValueError, match="truncation must be True"):
        ner(LONG, truncation="yes")


def test_raising_the_tokenizer_limit_raises_the_bound(checkpoints):
    clf = _ours(checkpoints, "text-classification", "cls")
    rows = _longest_row(clf)
    clf.tokenizer.model_max_length = 64  # the documented way to allow longer inputs
    clf(LONG)
    assert clf.max_length == 64 and rows == [64]


def test_the_built_in_classifier_reads_at_most_512_tokens():
    """sst2-tiny: relative attention, no tokenizer limit; its config's 512 positions bound it."""
    from keras_deberta import pipeline

    clf = pipeline("text-classification")
    rows = _longest_row(clf)
    text = "a thoroughly enjoyable film with a clever plot , " * 150  # ~1,500 tokens
    answer = clf(text)[0]
    assert rows == [512] and answer["label"] in ("POSITIVE", "NEGATIVE")
