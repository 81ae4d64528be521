"""keras_deberta.pipeline against transformers' pipelines on the same weights, and on real text.

Every checkpoint here is a tiny transformers model (random init, every parameter perturbed,
save_pretrained) with the real DeBERTa-v3 SentencePiece vocabulary or, for v1, GPT-2's BPE in
DeBERTa's layout. transformers 5.x has no question-answering pipeline any more, so QA is checked
against transformers' tokenizer (its overflowing windows) and model logits, decoded by a brute
force search written here.

Offsets: grouped entities and QA answers start on the word, not on the space a SentencePiece
piece carries (transformers starts on the space); the comparisons below advance transformers'
start over that whitespace and say so.
"""

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import SHARED_DATA
from hf_reference import TINY_V2, build_hf_model, hf_config, hf_v1_config

SPM = os.path.join(SHARED_DATA, "vocab", "deberta-v3", "spm.model")
GPT2 = os.path.join(SHARED_DATA, "vocab", "gpt2")
WNUT = os.path.join(SHARED_DATA, "ner", "wnut17", "wnut17train.conll")
XQUAD = os.path.join(SHARED_DATA, "qa", "xquad", "xquad.en.json")
SST2_DEV = os.path.join(SHARED_DATA, "sentiment", "SST-2", "dev.tsv")
pytestmark = pytest.mark.skipif(not os.path.isfile(SPM) or not os.path.isdir(GPT2),
                                reason="needs ../shared/data/vocab/deberta-v3/spm.model and ../shared/data/vocab/gpt2")

V3 = dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=True,
          pos_att_type="p2c|c2p", position_biased_input=False, vocab_size=128100, max_position_embeddings=512,
          embedding_size=16)  # a narrow table keeps the 128,100-row vocabulary cheap
V1 = dict(relative_attention=True, max_relative_positions=-1, pos_att_type="c2p|p2c", position_biased_input=False,
          vocab_size=50265, max_position_embeddings=512)
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]  # MISC: a label without a B-/I- prefix
NER = dict(id2label=dict(enumerate(NER_LABELS)), label2id={k: i for i, k in enumerate(NER_LABELS)})
NLI = {"contradiction": 0, "neutral": 1, "entailment": 2}
SENTENCES = ["I loved this film, every minute of it.", "A tedious and joyless exercise.",
             "My name is Wolfgang and I live in Berlin near the river Spree.",
             "Naïve café owners in São Paulo serve 12,000 cups 😀 a day!"]
# name: (transformers class, config builder, extra config, vocabulary)
SPECS = {
    "cls": ("DebertaV2ForSequenceClassification", hf_config, dict(num_labels=3), "spm"),
    "nli": ("DebertaV2ForSequenceClassification", hf_config,
            dict(num_labels=3, id2label={v: k for k, v in NLI.items()}, label2id=NLI), "spm"),
    "ner": ("DebertaV2ForTokenClassification", hf_config, NER, "spm"),
    "mlm": ("DebertaV2ForMaskedLM", hf_config, {}, "spm"),
    "qa": ("DebertaV2ForQuestionAnswering", hf_config, {}, "spm"),
    "v1_ner": ("DebertaForTokenClassification", hf_v1_config, NER, "bpe"),
    "v1_mlm": ("DebertaForMaskedLM", hf_v1_config, {}, "bpe"),
}


def _write_vocabulary(kind, directory):
    if kind == "spm":
        shutil.copy(SPM, os.path.join(directory, "spm.model"))
        return
    # GPT-2's tokens in DeBERTa v1's layout ([PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 ... [MASK] last), as
    # microsoft/deberta-base ships it.
    with open(os.path.join(GPT2, "encoder.json"), encoding="utf-8") as f:
        gpt2 = json.load(f)
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({tok: i + 4 for tok, i in gpt2.items()})
    vocab["[MASK]"] = len(vocab)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    shutil.copy(os.path.join(GPT2, "vocab.bpe"), os.path.join(directory, "merges.txt"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{name: (transformers model, transformers tokenizer, checkpoint directory)}, built once."""
    import transformers

    root = tmp_path_factory.mktemp("pipelines")
    built = {}
    for seed, (name, (cls, make_config, extra, vocab)) in enumerate(SPECS.items()):
        model = build_hf_model(make_config(**(V3 if vocab == "spm" else V1), **extra), cls, seed=seed)
        directory = str(root / name)
        model.save_pretrained(directory)
        _write_vocabulary(vocab, directory)
        tokenizer_class = transformers.DebertaV2Tokenizer if vocab == "spm" else transformers.DebertaTokenizer
        built[name] = (model, tokenizer_class.from_pretrained(directory), directory)
    return built


@pytest.fixture(scope="module")
def ours(checkpoints):
    """Our pipelines, loaded from the checkpoint directories once: ours(task, name)."""
    from keras_deberta import pipeline

    cache = {}

    def get(task, name):
        if (task, name) not in cache:
            cache[task, name] = pipeline(task, model=checkpoints[name][2])
        return cache[task, name]

    return get


def _hf(task, checkpoints, name, **kwargs):
    import transformers

    model, tokenizer, _ = checkpoints[name]
    return transformers.pipeline(task, model=model, tokenizer=tokenizer, **kwargs)


def _close(got, want):
    assert abs(float(got) - float(want)) <= 1e-4 * max(1.0, abs(float(want))), (got, want)


def _sst2_sentences(limit):
    with open(SST2_DEV, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:limit + 1]
    return rows


# ---- (a) equal to transformers on the same weights ------------------------------------------------

def test_text_classification_equals_transformers(checkpoints, ours):
    texts = list(SENTENCES)
    if os.path.isfile(SST2_DEV):
        texts += [r[0] for r in _sst2_sentences(12)]
    pipe, ref = ours("sentiment-analysis", "cls"), _hf("text-classification", checkpoints, "cls")
    got_all, want_all = pipe(texts, batch_size=8), ref(texts)  # batches padded to their longest row
    assert len(got_all) == len(want_all) == len(texts)
    for got, want in zip(got_all, want_all):
        assert got["label"] == want["label"]
        _close(got["score"], want["score"])
    single, want_single = pipe(SENTENCES[0]), ref(SENTENCES[0])
    assert isinstance(single, list) and len(single) == len(want_single) == 1
    for top_k in (None, 2):
        got, want = pipe(SENTENCES[1], top_k=top_k), ref(SENTENCES[1], top_k=top_k)
        assert [g["label"] for g in got] == [w["label"] for w in want] and len(got) == (top_k or 3)
        for g, w in zip(got, want):
            _close(g["score"], w["score"])
    got, want = pipe(SENTENCES[:2], top_k=None), ref(SENTENCES[:2], top_k=None)
    assert [[g["label"] for g in row] for row in got] == [[w["label"] for w in row] for row in want]


def test_zero_shot_equals_transformers(checkpoints, ours):
    labels = ["cinema", "politics", "sports"]
    pipe, ref = ours("zero-shot-classification", "nli"), _hf("zero-shot-classification", checkpoints, "nli")
    for multi in (False, True):
        got, want = (pipe(SENTENCES[:2], candidate_labels=labels, multi_label=multi, batch_size=6),
                     ref(SENTENCES[:2], candidate_labels=labels, multi_label=multi))
        for g, w in zip(got, want):
            assert g["sequence"] == w["sequence"] and g["labels"] == w["labels"]
            for a, b in zip(g["scores"], w["scores"]):
                _close(a, b)
    template = "The topic is {}."
    got = pipe(SENTENCES[2], candidate_labels="travel, music", hypothesis_template=template)
    want = ref(SENTENCES[2], candidate_labels="travel, music", hypothesis_template=template)
    assert got["labels"] == want["labels"]
    for a, b in zip(got["scores"], want["scores"]):
        _close(a, b)


@pytest.mark.parametrize("name", ["mlm", "v1_mlm"])
def test_fill_mask_equals_transformers(checkpoints, ours, name):
    pipe, ref = ours("fill-mask", name), _hf("fill-mask", checkpoints, name)
    texts = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK]."]
    for text in texts:
        got, want = pipe(text, top_k=4), ref(text, top_k=4)
        rows = (got, want) if isinstance(want[0], list) else ([got], [want])
        assert len(rows[0]) == len(rows[1])
        for got_row, want_row in zip(*rows):
            assert [g["token"] for g in got_row] == [w["token"] for w in want_row]
            assert [g["token_str"] for g in got_row] == [w["token_str"] for w in want_row]
            assert [g["sequence"] for g in got_row] == [w["sequence"] for w in want_row]
            for g, w in zip(got_row, want_row):
                _close(g["score"], w["score"])


def _word_start(text, start, end):
    """transformers' start advanced over the space a SentencePiece piece carries."""
    return start + len(text[start:end]) - len(text[start:end].lstrip())


@pytest.mark.parametrize("name", ["ner", "v1_ner"])
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_equals_transformers(checkpoints, ours, name, strategy):
    pipe = ours("ner", name)
    ref = _hf("token-classification", checkpoints, name, aggregation_strategy=strategy)
    got_all = pipe(SENTENCES, aggregation_strategy=strategy, batch_size=2)
    with _quiet():
        want_all = [ref(text) for text in SENTENCES]
    for text, got, want in zip(SENTENCES, got_all, want_all):
        assert len(got) == len(want) > 0
        for g, w in zip(got, want):
            _close(g["score"], w["score"])
            if strategy == "none":  # per token: transformers' own offsets and token strings
                assert g == {**{k: w[k] for k in ("entity", "word")}, "score": g["score"],
                             **{k: int(w[k]) for k in ("index", "start", "end")}}
                continue
            assert g["entity_group"] == w["entity_group"]
            assert (g["start"], g["end"]) == (_word_start(text, int(w["start"]), int(w["end"])), int(w["end"]))
            assert g["word"] == text[g["start"]:g["end"]]
            if strategy == "simple" and "\ufffd" not in w["word"]:  # transformers decodes a lone emoji byte to U+FFFD
                assert g["word"] == w["word"].strip()


class _quiet:
    """transformers warns that these tokenizers have no word boundaries (it uses its heuristic)."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def _reference_qa(checkpoints, question, context, max_seq_len=384, doc_stride=128, max_answer_len=15, top_k=1,
                  handle_impossible_answer=False):
    """transformers' windows (overflowing tokens) and logits, decoded by brute force over spans."""
    import torch

    model, tokenizer, _ = checkpoints["qa"]
    enc = tokenizer(question, context, truncation="only_second", max_length=max_seq_len, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    candidates, null = [], None
    for k, ids in enumerate(enc["input_ids"]):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([enc["token_type_ids"][k]]))
        in_context = np.array([s == 1 for s in enc.sequence_ids(k)])
        allowed = in_context.copy()
        allowed[0] = True  # [CLS] takes part in the softmax, as in transformers' pipeline
        logits = [out.start_logits[0].numpy().astype(np.float64), out.end_logits[0].numpy().astype(np.float64)]
        start_p, end_p = (np.exp(x - x[allowed].max()) * allowed for x in logits)
        start_p, end_p = start_p / start_p.sum(), end_p / end_p.sum()
        if handle_impossible_answer:
            null = start_p[0] * end_p[0] if null is None else min(null, start_p[0] * end_p[0])
        positions = np.where(in_context)[0]
        for i in positions:
            for j in positions:
                if i <= j < i + max_answer_len:
                    a, b = enc["offset_mapping"][k][i][0], enc["offset_mapping"][k][j][1]
                    a = _word_start(context, a, b)
                    candidates.append((start_p[i] * end_p[j], a, b))
    if null is not None:
        candidates.append((null, 0, 0))
    best = {}
    for score, a, b in candidates:
        best[a, b] = max(score, best.get((a, b), 0.0))
    ranked = sorted(best.items(), key=lambda item: -item[1])[:top_k]
    return [{"score": s, "start": a, "end": b, "answer": context[a:b]} for (a, b), s in ranked], len(enc["input_ids"])


def _assert_answers_equal(got, want):
    got = got if isinstance(got, list) else [got]
    assert [(g["start"], g["end"], g["answer"]) for g in got] == [(w["start"], w["end"], w["answer"]) for w in want]
    for g, w in zip(got, want):
        _close(g["score"], w["score"])


def test_question_answering_equals_the_transformers_reference(checkpoints, ours):
    qa = ours("question-answering", "qa")
    question, context = "Where does the river flow?", "The river Spree flows through Berlin and then into the Havel."
    want, _ = _reference_qa(checkpoints, question, context, max_answer_len=5)
    _assert_answers_equal(qa(question=question, context=context, max_answer_len=5), want)
    want, _ = _reference_qa(checkpoints, question, context, top_k=3, handle_impossible_answer=True)
    _assert_answers_equal(qa(question, context, top_k=3, handle_impossible_answer=True), want)
    both = qa([{"question": question, "context": context}, {"question": "Which river?", "context": context}])
    assert isinstance(both, list) and len(both) == 2
    want, _ = _reference_qa(checkpoints, "Which river?", context)
    _assert_answers_equal(both[1], want)


def _xquad_paragraphs():
    if not os.path.isfile(XQUAD):
        pytest.skip("needs ../shared/data/qa/xquad/xquad.en.json")
    with open(XQUAD, encoding="utf-8") as f:
        return [p for article in json.load(f)["data"][:2] for p in article["paragraphs"]]


def test_question_answering_long_xquad_contexts_over_windows(checkpoints, ours):
    qa = ours("question-answering", "qa")
    paragraph = max(_xquad_paragraphs(), key=lambda p: len(p["context"]))
    context = paragraph["context"]
    for item in paragraph["qas"][:2]:
        want, windows = _reference_qa(checkpoints, item["question"], context, max_seq_len=96, doc_stride=24, top_k=3,
                                      handle_impossible_answer=True)
        assert windows >= 3  # the context really is split
        got = qa(question=item["question"], context=context, max_seq_len=96, doc_stride=24, top_k=3,
                 handle_impossible_answer=True)
        _assert_answers_equal(got, want)
        for answer in got:
            assert answer["answer"] == context[answer["start"]:answer["end"]]


# ---- (b) real data -----------------------------------------------------------------------------

def _wnut_sentences(limit):
    if not os.path.isfile(WNUT):
        pytest.skip("needs ../shared/data/ner/wnut17/wnut17train.conll")
    sentences, words = [], []
    with open(WNUT, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                words.append(line.split("\t")[0])
            elif words:
                sentences.append(" ".join(words))
                words = []
                if len(sentences) == limit:
                    break
    return sentences


@pytest.mark.parametrize("name", ["ner", "v1_ner"])
def test_token_classification_offsets_on_wnut17(ours, name):
    pipe = ours("ner", name)
    texts = _wnut_sentences(24)
    simple = pipe(texts, aggregation_strategy="simple", batch_size=8)
    tokens = pipe(texts, batch_size=8)
    assert len(simple) == len(tokens) == len(texts) and sum(map(len, simple)) > 0
    for text, entities, per_token in zip(texts, simple, tokens):
        for e in entities:
            assert 0 <= e["start"] < e["end"] <= len(text)
            assert text[e["start"]:e["end"]] == e["word"], (text, e)
        for t in per_token:
            assert 0 <= t["start"] < t["end"] <= len(text) and text[t["start"]:t["end"]].strip()


def test_question_answering_on_xquad(ours):
    qa = ours("question-answering", "qa")
    paragraphs = _xquad_paragraphs()[:3]
    questions = [item["question"] for p in paragraphs for item in p["qas"][:2]]
    contexts = [p["context"] for p in paragraphs for _ in p["qas"][:2]]
    answers = qa(question=questions, context=contexts, max_seq_len=128, doc_stride=32, batch_size=8)
    assert len(answers) == len(questions)
    for context, answer in zip(contexts, answers):
        assert answer["answer"] and answer["answer"] == context[answer["start"]:answer["end"]]
        assert not answer["answer"][0].isspace() and 0 < answer["score"] <= 1


def test_default_text_classifier_on_sst2_dev():
    from keras_deberta import pipeline
    from keras_deberta.pipelines import DEFAULT_MODELS

    if not os.path.isfile(SST2_DEV):
        pytest.skip("needs ../shared/data/sentiment/SST-2/dev.tsv")
    if not os.path.isfile(os.path.join(DEFAULT_MODELS["text-classification"], "config.json")):
        pytest.skip("the embedded default classifier keras_deberta/assets/sst2-tiny is not built yet")
    rows = _sst2_sentences(200)
    predictions = pipeline("text-classification")([r[0] for r in rows], batch_size=64)
    accuracy = np.mean([p["label"] == ("POSITIVE" if r[1] == "1" else "NEGATIVE") for p, r in zip(predictions, rows)])
    assert accuracy >= 0.75, f"default classifier: {accuracy:.3f} on the first 200 SST-2 dev sentences"


# ---- (c) bad input -------------------------------------------------------------------------------

def test_bad_input_is_named(checkpoints, ours, tmp_path):
    from keras_deberta import (CheckpointError, CheckpointNotFoundError, DebertaTokenizer, DebertaV2Config,
                               DebertaV2Tokenizer, TFDebertaV2ForTokenClassification, pipeline)

    with pytest.raises(ValueError, match="unknown task 'summarization'.*fill-mask.*question-answering"):
        pipeline("summarization", model=checkpoints["cls"][2])
    with pytest.raises(CheckpointNotFoundError, match="not a model checkpoint"):
        pipeline("text-classification", model=str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint directory"):
        pipeline("text-classification", model=str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "deberta-v2", "vocab_size": 128100}', encoding="utf-8")
    with pytest.raises(CheckpointError):  # a config without weights
        pipeline("text-classification", model=str(broken))
    with pytest.raises(ValueError, match="'fill-mask' has no built-in default model"):
        pipeline("fill-mask")
    with pytest.raises(ValueError, match="tokenizer="):
        pipeline("text-classification", model=ours("text-classification", "cls").model)
    with pytest.raises(TypeError, match="unknown options.*'topk'"):
        pipeline("text-classification", model=checkpoints["cls"][2], topk=2)

    clf = ours("text-classification", "cls")
    with pytest.raises(ValueError, match="empty text"):
        clf("   ")
    with pytest.raises(ValueError, match="empty text"):
        clf(["fine", ""])

    qa = ours("question-answering", "qa")
    with pytest.raises(ValueError, match="empty context"):
        qa(question="Who?", context="")
    with pytest.raises(ValueError, match="empty question"):
        qa(question=" ", context="Berlin is a city.")
    with pytest.raises(ValueError, match="doc_stride"):
        qa(question="Who?", context="word " * 200, max_seq_len=32, doc_stride=40)
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        qa(question="Who?", context="Berlin is a city.", top_k=0)

    zero_shot = ours("zero-shot-classification", "nli")
    with pytest.raises(ValueError, match="candidate_labels"):
        zero_shot("some text")
    with pytest.raises(ValueError, match="hypothesis_template"):
        zero_shot("some text", candidate_labels=["a"], hypothesis_template="no slot")
    classifier = ours("text-classification", "cls")
    with pytest.raises(ValueError, match="entailment"):
        pipeline("zero-shot-classification", model=classifier.model, tokenizer=classifier.tokenizer)

    with pytest.raises(ValueError, match=r"needs a \[MASK\]"):
        ours("fill-mask", "mlm")("no mask here")
    with pytest.raises(ValueError, match="aggregation_strategy"):
        ours("ner", "ner")("Berlin", aggregation_strategy="longest")

    # A tokenizer that does not belong to the model.
    v1_tokenizer = DebertaTokenizer.from_pretrained(checkpoints["v1_ner"][2])
    with pytest.raises(ValueError, match="DebertaTokenizer does not belong to a 'deberta-v2' model"):
        pipeline("ner", model=checkpoints["ner"][2], tokenizer=v1_tokenizer)
    small = TFDebertaV2ForTokenClassification(DebertaV2Config(**{**TINY_V2, **V3, "vocab_size": 8000}, **NER))
    with pytest.raises(ValueError, match="128001 ids but the model's vocab_size is 8000"):
        pipeline("ner", model=small, tokenizer=DebertaV2Tokenizer.from_pretrained(checkpoints["ner"][2]))


# ---- (d) hardening: inputs real traffic sends ----------------------------------------------------

def test_question_longer_than_its_context_is_answered_as_the_reference(checkpoints, ours):
    qa = ours("question-answering", "qa")
    question = "What is the name of the river that flows through the old city in the north of the country?"
    context = "The Spree."
    assert len(qa.tokenizer.tokenize(question)) > len(qa.tokenizer.tokenize(context))
    want, _ = _reference_qa(checkpoints, question, context, top_k=2)
    _assert_answers_equal(qa(question=question, context=context, top_k=2), want)


@pytest.mark.parametrize("name", ["mlm", "v1_mlm"])
def test_fill_mask_top_k_out_of_range_is_a_clear_error(checkpoints, ours, name):
    fill = ours("fill-mask", name)
    vocab = fill.model.config.vocab_size
    for bad in (-1, 0, vocab + 1, 2.5, True):
        with pytest.raises(ValueError, match=rf"top_k must be an integer from 1 to {vocab}, got {bad!r}"):
            fill("Paris is the [MASK] of France.", top_k=bad)
    with pytest.raises(ValueError, match="top_k must be an integer from 1"):
        type(fill)(fill.model, fill.tokenizer, top_k=-1)  # a bad default fails when the pipeline is made


def test_text_classification_top_k_must_be_positive_and_may_exceed_the_labels(checkpoints, ours):
    clf, ref = ours("text-classification", "cls"), _hf("text-classification", checkpoints, "cls")
    for bad in (-1, 0):
        with pytest.raises(ValueError, match=f"top_k must be a positive integer, got {bad}"):
            clf(SENTENCES[0], top_k=bad)
    got, want = clf(SENTENCES[0], top_k=10), ref(SENTENCES[0], top_k=10)  # 3 labels: all of them
    assert [g["label"] for g in got] == [w["label"] for w in want] and len(got) == 3


@pytest.mark.parametrize("template, found", [("{} or {}?", "2 fields"), ("no slot", "none"),
                                             ("{label} it is", "the field {label}"),
                                             ("This is {0} and {1}.", "2 fields")])
def test_zero_shot_template_needs_exactly_one_slot(ours, template, found):
    zero_shot = ours("zero-shot-classification", "nli")
    with pytest.raises(ValueError, match=re.escape(f"exactly one {{}} where the label goes, found {found}")):
        zero_shot("some text", candidate_labels=["a", "b"], hypothesis_template=template)
    with pytest.raises(ValueError, match="not a format string"):
        zero_shot("some text", candidate_labels=["a"], hypothesis_template="It is {")


def test_zero_shot_accepts_a_numbered_slot_as_transformers(checkpoints, ours):
    got = ours("zero-shot-classification", "nli")(SENTENCES[0], candidate_labels=["film", "food"],
                                                  hypothesis_template="It is about {0}.")
    want = _hf("zero-shot-classification", checkpoints, "nli")(SENTENCES[0], candidate_labels=["film", "food"],
                                                               hypothesis_template="It is about {0}.")
    assert got["labels"] == want["labels"]
    for a, b in zip(got["scores"], want["scores"]):
        _close(a, b)


def test_zero_length_inputs_empty_list_gives_empty_result_empty_string_is_an_error(ours):
    """One rule for every pipeline: no inputs, no answers (transformers 5.23 raises IndexError on an
    empty list); an empty or blank string has nothing to classify, fill or search, so it is a
    ValueError naming the input."""
    calls = {
        "text-classification": (ours("text-classification", "cls"), {}, "text"),
        "fill-mask": (ours("fill-mask", "mlm"), {}, "text"),
        "ner": (ours("ner", "ner"), {}, "text"),
        "zero-shot-classification": (ours("zero-shot-classification", "nli"), {"candidate_labels": ["a"]},
                                     "sequence"),
    }
    for task, (pipe, options, what) in calls.items():
        assert pipe([], **options) == [], task
        for empty in ("", "  \n"):
            with pytest.raises(ValueError, match=f"empty {what}"):
                pipe(empty, **options)
            with pytest.raises(ValueError, match=f"empty {what}"):
                pipe(["fine [MASK] text", empty], **options)
    qa = ours("question-answering", "qa")
    assert qa(question=[], context=[]) == [] and qa([]) == []
    with pytest.raises(ValueError, match="empty question"):
        qa(question="", context="Berlin is a city.")
