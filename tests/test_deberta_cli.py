"""`python -m keras_deberta run | convert | export`, checked against transformers on tiny checkpoints
the module builds (transformers models, every parameter perturbed, with the embedded default's
SentencePiece vocabulary), plus the embedded default classifier itself and one-line errors.

Two tests go through a real subprocess (`python -m keras_deberta`: exit status, stdin, stdout);
the rest call `keras_deberta.cli.main(argv, stdin=..., stdout=...)` in-process, which is the same
code minus the interpreter start-up.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from hf_reference import V2_VARIANTS, build_hf_model, hf_config

DEFAULT = os.path.join(ROOT, "keras_deberta", "assets", "sst2-tiny")
NLI = {"contradiction": 0, "neutral": 1, "entailment": 2}
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def cli(*args, stdin=None):
    """`python -m keras_deberta ARGS` with this process's backend, offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "keras_deberta", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def run_in_process(*args, stdin=""):
    from keras_deberta.cli import main

    out = io.StringIO()
    status = main(list(args), stdin=io.StringIO(stdin), stdout=out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def _close(a, b):
    assert abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b))), (a, b)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{name: (transformers model, transformers tokenizer, checkpoint dir)}."""
    import transformers

    from keras_deberta import DebertaV2Tokenizer

    root = tmp_path_factory.mktemp("deberta_cli")
    tokenizer = DebertaV2Tokenizer.from_pretrained(DEFAULT)
    base = dict(V2_VARIANTS["v3_like"], vocab_size=len(tokenizer), max_position_embeddings=128)
    specs = {
        "mlm": ("DebertaV2ForMaskedLM", {}),
        "nli": ("DebertaV2ForSequenceClassification",
                dict(num_labels=3, id2label={v: k for k, v in NLI.items()}, label2id=NLI)),
        "ner": ("DebertaV2ForTokenClassification",
                dict(id2label=dict(enumerate(NER_LABELS)), label2id={k: i for i, k in enumerate(NER_LABELS)})),
        "qa": ("DebertaV2ForQuestionAnswering", {}),
    }
    built = {}
    for seed, (name, (cls, extra)) in enumerate(specs.items()):
        model = build_hf_model(hf_config(**base, **extra), cls, seed=seed)
        directory = str(root / name)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        built[name] = (model, transformers.DebertaV2Tokenizer.from_pretrained(directory), directory)
    return built


def test_run_reads_stdin_lines_and_prints_transformers_fill_mask(checkpoints):
    import transformers

    hf_model, hf_tokenizer, directory = checkpoints["mlm"]
    texts = ["the film was [MASK] .", "a [MASK] and moving story about two friends"]
    # --batch-size 1 makes two pipeline calls whose lines come out in order.
    done = cli("run", "--task", "fill-mask", "--model", directory, "--top-k", "3", "--batch-size", "1",
               stdin="\n".join(texts) + "\n")
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines()]
    reference = transformers.pipeline("fill-mask", model=hf_model, tokenizer=hf_tokenizer)
    assert len(got) == len(texts)
    for answers, text in zip(got, texts):
        want = reference(text, top_k=3)
        assert [(a["token"], a["token_str"], a["sequence"]) for a in answers] == \
            [(w["token"], w["token_str"], w["sequence"]) for w in want]
        for a, w in zip(answers, want):
            _close(a["score"], w["score"])


def test_run_without_model_uses_the_embedded_default_as_transformers_does():
    import transformers

    texts = ["A delight from start to finish.", "Tedious, overlong and joyless.", "an ok film"]
    status, got = run_in_process("run", "--task", "sentiment-analysis", *texts)
    assert status == 0
    reference = transformers.pipeline("text-classification", model=DEFAULT)(texts)
    assert [g["label"] for g in got] == [w["label"] for w in reference]
    for g, w in zip(got, reference):
        _close(g["score"], w["score"])
    assert {g["label"] for g in got} <= {"NEGATIVE", "POSITIVE"}


def test_run_token_classification_and_zero_shot_match_transformers(checkpoints):
    import transformers

    text = "my name is wolfgang and i live in berlin near the river ."
    hf_model, hf_tokenizer, directory = checkpoints["ner"]
    status, got = run_in_process("run", "--task", "ner", "--model", directory, "--aggregation-strategy", "simple",
                                 stdin=text + "\n")
    want = transformers.pipeline("token-classification", model=hf_model, tokenizer=hf_tokenizer,
                                 aggregation_strategy="simple")(text)
    assert status == 0 and len(got) == 1 and len(got[0]) == len(want) > 0
    for g, w in zip(got[0], want):
        # keras_deberta's documented difference: a group starts on its word, not on the piece's space.
        leading_space = len(text[w["start"]:w["end"]]) - len(text[w["start"]:w["end"]].lstrip())
        assert (g["entity_group"], g["word"], g["start"], g["end"]) == (w["entity_group"], w["word"],
                                                                        w["start"] + leading_space, w["end"])
        _close(g["score"], w["score"])

    hf_model, hf_tokenizer, directory = checkpoints["nli"]
    status, got = run_in_process("run", "--task", "zero-shot-classification", "--model", directory,
                                 "--candidate-labels", "cinema, politics,sports", text)
    want = transformers.pipeline("zero-shot-classification", model=hf_model, tokenizer=hf_tokenizer)(
        text, candidate_labels=["cinema", "politics", "sports"])
    assert status == 0 and got[0]["labels"] == want["labels"] and got[0]["sequence"] == text
    for g, w in zip(got[0]["scores"], want["scores"]):
        _close(g, w)


def test_run_question_answering_takes_question_flag_or_json_lines(checkpoints):
    from keras_deberta import pipeline

    directory = checkpoints["qa"][2]
    question, context = "where does wolfgang live ?", "my name is wolfgang and i live in berlin ."
    status, by_flag = run_in_process("run", "--task", "question-answering", "--model", directory,
                                     "--question", question, context)
    assert status == 0
    status, by_json = run_in_process("run", "--task", "question-answering", "--model", directory,
                                     stdin=json.dumps({"question": question, "context": context}) + "\n")
    assert status == 0
    # The span itself is checked against transformers' logits in test_pipelines.py; here: both input
    # routes reach the pipeline with the same question and context.
    direct = pipeline("question-answering", model=directory)(question=question, context=context)
    assert by_flag == by_json == [json.loads(json.dumps(direct))]
    assert context[by_flag[0]["start"]:by_flag[0]["end"]] == by_flag[0]["answer"]


def test_convert_writes_a_keras_file_with_transformers_outputs(checkpoints, tmp_path, capsys):
    import keras

    from hf_reference import hf_forward

    hf_model, _, directory = checkpoints["mlm"]
    out = str(tmp_path / "mlm.keras")
    status, _ = run_in_process("convert", "--model", directory, "--task", "fill-mask", "--output", out)
    assert status == 0
    loaded = keras.saving.load_model(out)
    ids = np.array([[1, 45, 900, 12, 8000, 33, 2]], dtype="int32")
    got = keras.ops.convert_to_numpy(loaded(ids).logits)
    want = hf_forward(hf_model, ids).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=0)
    status, _ = run_in_process("convert", "--model", directory, "--output", out)  # refused before loading
    assert status == 1 and "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (("run", "--task", "summarization", "text"), "unknown task 'summarization'"),
    (("run", "--task", "text-classification", "  "), "empty text"),
    (("run", "--task", "fill-mask", "text"), "no built-in default model"),
    (("run", "--task", "fill-mask", "--model", ROOT, "text"), "not a model checkpoint"),
    (("run", "--task", "question-answering", "--model", DEFAULT, "a context"), "needs --question"),
    (("run", "--task", "text-classification", "--model", DEFAULT), "no input"),
])
def test_user_errors_are_one_line_without_a_traceback(args, message, capsys):
    status, _ = run_in_process(*args)
    err = capsys.readouterr().err
    assert status == 1, err
    assert message in err and err.startswith("keras_deberta: error:") and len(err.strip().splitlines()) == 1, err


def test_a_long_text_is_truncated_or_with_no_truncation_refused_on_its_line():
    text = "a thoroughly enjoyable film with a clever plot , " * 60  # ~600 tokens, past the 512 limit
    status, got = run_in_process("run", "--task", "sentiment-analysis", text, "a fine film")
    assert status == 0 and [g["label"] for g in got] == ["POSITIVE", "POSITIVE"]
    status, got = run_in_process("run", "--task", "sentiment-analysis", "--no-truncation", text, "a fine film")
    assert status == 1 and got[1]["label"] == "POSITIVE"
    assert got[0]["line"] == 1 and "tokens long, more than the 512 this model takes" in got[0]["error"]


def test_errors_exit_non_zero_from_a_real_process():
    done = cli("run", "--task", "summarization", "text")
    assert done.returncode == 1 and "unknown task 'summarization'" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_export_with_tokenizer_serves_strings_as_transformers(checkpoints, tmp_path):
    import tensorflow as tf
    import transformers

    import shutil

    from keras_deberta import DebertaV2Tokenizer

    hf_model, hf_tokenizer, directory = checkpoints["nli"]
    # A tokenizer without lower-casing: the in-graph tokenizer may not support it (the text is lower case).
    directory = shutil.copytree(directory, str(tmp_path / "nli"))
    DebertaV2Tokenizer(os.path.join(directory, "spm.model"), do_lower_case=False).save_pretrained(directory)
    out = str(tmp_path / "saved")
    status, _ = run_in_process("export", "--model", directory, "--task", "text-classification", "--output", out,
                               "--with-tokenizer")
    assert status == 0
    text = "a warm and funny film"
    served = tf.saved_model.load(out).signatures["serve_text"](text=tf.constant([text]))
    want = transformers.pipeline("text-classification", model=hf_model, tokenizer=hf_tokenizer)(
        text, top_k=None, function_to_apply="none")
    by_label = {w["label"]: w["score"] for w in want}
    for i, value in enumerate(served["logits"].numpy()[0]):
        _close(value, by_label[hf_model.config.id2label[i]])
