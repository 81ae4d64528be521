"""TensorFlow SavedModel export from the active backend: the artifact, loaded in a fresh process that
imports only TensorFlow, gives the Keras model's outputs at several shapes, lists its signatures in
saved_model_cli, rejects out-of-range inputs, and (with a tokenizer) tokenises strings in-graph
exactly as the Python tokenizer + Keras model do.

Every export of the module is checked by one subprocess, to pay TensorFlow's start-up once."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_deberta as kd
import keras_deepseek as ks
from conftest import SHARED_DATA
from deepseek_reference import LITE
from harness import perturb_variables
from hf_reference import TINY_V1, TINY_V2, V1_VARIANTS, V2_VARIANTS, assert_close
from presets.export import export_saved_model

pytest.importorskip("tensorflow")

BACKEND = keras.backend.backend()
SPM = os.path.join(SHARED_DATA, "vocab", "deberta-v3", "spm.model")
# The string-in signatures need the real vocabulary and the in-graph tokenizers (tf-text, keras-hub).
TEXT_READY = os.path.isfile(SPM) and all(importlib.util.find_spec(m) for m in ("tensorflow_text", "keras_hub"))
SHAPES = ((2, 5), (3, 9))  # (batch, length): two calls of one signature at different shapes
CHOICES = 2
# The last text is longer than the default max_length (64: TINY_V2's max_position_embeddings, the
# tokenizer naming no limit): the string-in signatures truncate it in-graph.
TEXTS = ["The movie was great!", "I did not like it at all, sadly.", "ok",
         "A long review that goes on and on about the plot, " * 8]
TEXT_PAIRS = ["Fine.", "What a waste of time", "Good acting and a clever plot", "Fine, " * 40]
V3_VOCAB = 128100  # the real deberta-v3 vocabulary: [MASK] = 128000 after the 128,000 pieces


def _v2(cls, num_labels=3, vocab_size=None, **extra):
    config = dict(TINY_V2, **V2_VARIANTS["v3_like"], num_labels=num_labels, **extra)
    if vocab_size:
        config["vocab_size"] = vocab_size
    return getattr(kd, cls)(kd.DebertaV2Config(**config))


# name -> (builder, family). The v1 case uses absolute positions and token types, so the length
# limit and the token-type range are asserted; the classifier carries the real vocabulary when it
# is present, to test the string-in signatures.
CASES = {
    "v2_sequence_classification": (lambda: _v2("TFDebertaV2ForSequenceClassification",
                                               vocab_size=V3_VOCAB if TEXT_READY else None), "deberta"),
    "v2_token_classification": (lambda: _v2("TFDebertaV2ForTokenClassification", num_labels=5,
                                            vocab_size=V3_VOCAB if TEXT_READY else None), "deberta"),
    "v1_base_absolute_positions": (lambda: kd.TFDebertaModel(kd.DebertaConfig(
        **dict(TINY_V1, **V1_VARIANTS["absolute_token_types"]))), "deberta"),
    "v2_question_answering": (lambda: _v2("TFDebertaV2ForQuestionAnswering", num_labels=2), "deberta"),
    "v2_multiple_choice": (lambda: _v2("TFDebertaV2ForMultipleChoice"), "deberta"),
    "deepseek_causal_lm": (lambda: ks.TFDeepseekV2ForCausalLM(ks.DeepseekV2Config(**LITE)), "deepseek"),
}
# The torch path exports through a TensorFlow subprocess (~5 s each): two in the fast suite.
TORCH_FAST = ("v2_sequence_classification", "deepseek_causal_lm")
SLOW = ("v2_token_classification",)
# Cases exported with the v3 tokenizer, and whether they have the text-pair signature.
TEXT_CASES = {"v2_sequence_classification": True, "v2_token_classification": False}
# Cases exported with an explicit max_length (the others get the default: the config's 64 positions).
EXPORT_MAX_LENGTH = {"v2_question_answering": 12}


def _active(name):
    if os.environ.get("RUN_SLOW") == "1":
        return True
    return name not in SLOW and (BACKEND != "torch" or name in TORCH_FAST)


def _case_param(name):
    marks = []
    if not _active(name):
        marks.append(pytest.mark.slow)
    return pytest.param(name, marks=marks)


def _feeds(model, family, rng):
    """Inputs at each shape of SHAPES, padded rows included."""
    config = model.config
    feeds = []
    for batch, length in SHAPES:
        shape = (batch, CHOICES, length) if getattr(model, "input_rank", 2) == 3 else (batch, length)
        ids = rng.randint(3, config.vocab_size, size=shape).astype("int32")
        mask = np.ones(shape, dtype="int32")
        mask[0, ..., length - 2:] = 0  # right padding
        if family == "deepseek":
            mask[1, :2] = 0  # left padding
        ids[mask == 0] = 0
        feed = {"input_ids": ids, "attention_mask": mask}
        if family == "deberta":
            types = max(config.type_vocab_size, 1)
            feed["token_type_ids"] = rng.randint(0, types, size=shape).astype("int32")
        feeds.append(feed)
    return feeds


def _keras_outputs(model, feed):
    out = model({k: keras.ops.convert_to_tensor(v) for k, v in feed.items()}, training=False)
    return {name: np.asarray(keras.ops.convert_to_numpy(out[name])) for name in model.primary_output_names}


def _v3_tokenizer(directory):
    # transformers' "no limit" sentinel: the tokenizer names no length, so the export's default
    # max_length is the config's (without it the tokenizer would fall back to DeBERTa's 512).
    shutil.copy(SPM, os.path.join(directory, "spm.model"))
    return kd.DebertaV2Tokenizer.from_pretrained(directory, model_max_length=int(1e30))


# The verification process: TensorFlow only. It writes what it saw to a JSON file.
VERIFY = r"""
import json, sys
import numpy as np
import tensorflow as tf

plan = json.load(open(sys.argv[1]))
if any("texts" in item for item in plan.values()):
    import tensorflow_text  # registers the tokenizer ops (TF Serving links them in)
report = {}
for name, item in plan.items():
    loaded = tf.saved_model.load(item["path"])
    seen = {"signatures": sorted(loaded.signatures), "outputs": [], "errors": {}}
    serve = loaded.signatures["serving_default"]
    seen["input_names"] = sorted(serve.structured_input_signature[1])
    for feed in item["feeds"]:
        got = serve(**{k: tf.constant(np.array(v, dtype=np.int32)) for k, v in feed.items()})
        seen["outputs"].append({k: v.numpy().tolist() for k, v in got.items()})
    for label, feed in item["bad_feeds"].items():
        try:
            serve(**{k: tf.constant(np.array(v, dtype=np.int32)) for k, v in feed.items()})
            seen["errors"][label] = None
        except tf.errors.InvalidArgumentError as error:
            seen["errors"][label] = error.message
    if "texts" in item:
        got = loaded.signatures["serve_text"](text=tf.constant(item["texts"]))
        seen["text"] = {k: v.numpy().tolist() for k, v in got.items()}
    if item.get("text_pairs"):
        got = loaded.signatures["serve_text_pair"](text=tf.constant(item["texts"]),
                                                   text_pair=tf.constant(item["text_pairs"]))
        seen["text_pair"] = {k: v.numpy().tolist() for k, v in got.items()}
    report[name] = seen
ours = [m for m in ("keras_deberta", "keras_deepseek", "layers", "presets") if m in sys.modules]
json.dump({"cases": report, "imported": ours}, open(sys.argv[2], "w"))
"""


def _saved_model_cli():
    script = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.isfile(script):
        return [script]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _bad_feeds(model, feed, max_length):
    """Inputs each signature must reject (name -> feed), derived from a good feed."""
    config = model.config
    bad = {}
    ids = feed["input_ids"].copy()
    ids[0, ..., 0] = config.vocab_size
    bad["input_ids_too_large"] = dict(feed, input_ids=ids)
    ids = feed["input_ids"].copy()
    ids[-1, ..., -1] = -1
    bad["input_ids_negative"] = dict(feed, input_ids=ids)
    bad["mask_shape"] = dict(feed, attention_mask=feed["attention_mask"][..., :-1])
    if getattr(config, "type_vocab_size", 0) > 0:
        types = feed["token_type_ids"].copy()
        types[0, ..., 1] = config.type_vocab_size
        bad["token_type_ids_too_large"] = dict(feed, token_type_ids=types)
    # Every export is bounded, relative-position models included: one token past its max_length.
    n = max_length + 1
    bad["too_long"] = {k: np.zeros(v.shape[:-1] + (n,), dtype="int32") for k, v in feed.items()}
    return bad


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports every active case, then verifies all of them in one TensorFlow-only subprocess."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.RandomState(0)
    results, plan = {}, {}
    for index, (name, (build, family)) in enumerate(CASES.items()):
        if not _active(name):
            continue
        model = build()
        perturb_variables(model, seed=index)
        feeds = _feeds(model, family, rng)
        path = str(root / name)
        kwargs = {}
        if name in TEXT_CASES and TEXT_READY:
            kwargs["preprocessor"] = _v3_tokenizer(str(tmp_path_factory.mktemp("v3_tokenizer")))
        max_length = EXPORT_MAX_LENGTH.get(name, model.config.max_position_embeddings)
        try:
            if name in EXPORT_MAX_LENGTH:
                export_saved_model(model, path, max_length=max_length, **kwargs)
            else:
                model.export(path, **kwargs)
        except Exception as error:  # reported by the case's test
            results[name] = {"error": error}
            continue
        results[name] = {"model": model, "feeds": feeds, "path": path,
                         "want": [_keras_outputs(model, f) for f in feeds], **kwargs}
        plan[name] = {"path": path, "feeds": [{k: v.tolist() for k, v in f.items()} for f in feeds],
                      "bad_feeds": {k: {n: v.tolist() for n, v in f.items()}
                                    for k, f in _bad_feeds(model, feeds[0], max_length).items()}}
        if "preprocessor" in kwargs:
            plan[name].update(texts=TEXTS, text_pairs=TEXT_PAIRS if TEXT_CASES[name] else None)
    plan_file, report_file = str(root / "plan.json"), str(root / "report.json")
    with open(plan_file, "w") as f:
        json.dump(plan, f)
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    cli_case = "v2_sequence_classification"
    cli = subprocess.Popen(_saved_model_cli() + ["show", "--dir", results[cli_case]["path"], "--all"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) \
        if "path" in results.get(cli_case, {}) else None
    verify = subprocess.run([sys.executable, "-c", VERIFY, plan_file, report_file], cwd=str(root), env=env,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr[-4000:]
    with open(report_file) as f:
        report = json.load(f)
    cli_output = None
    if cli is not None:
        stdout, stderr = cli.communicate()
        assert cli.returncode == 0, stderr[-4000:]
        cli_output = stdout
    return {"results": results, "report": report, "cli": cli_output}


def _case(exported, name):
    result = exported["results"][name]
    if "error" in result:
        raise result["error"]
    return result, exported["report"]["cases"][name]


@pytest.mark.parametrize("name", [_case_param(n) for n in CASES])
def test_serving_default_matches_keras(exported, name):
    result, seen = _case(exported, name)
    model = result["model"]
    assert "serving_default" in seen["signatures"]
    assert seen["input_names"] == sorted(model.export_input_names)
    for want, got in zip(result["want"], seen["outputs"]):
        assert sorted(got) == sorted(want)  # exactly the named outputs
        for key in want:
            assert_close(np.asarray(got[key]), want[key], what=f"{name} {key}")
    assert exported["report"]["imported"] == []  # the artifact needs none of our code


@pytest.mark.parametrize("name", [_case_param(n) for n in CASES])
def test_out_of_range_inputs_fail_with_a_named_error(exported, name):
    result, seen = _case(exported, name)
    errors = seen["errors"]
    expected = {"input_ids_too_large": "input_ids must be <", "input_ids_negative": "input_ids must be >= 0",
                "mask_shape": "attention_mask must have the shape of input_ids",
                "token_type_ids_too_large": "token_type_ids must be <",
                "too_long": "input_ids: sequence length must be <= "}
    assert errors, "no bad inputs were tried"
    for label, message in errors.items():
        assert message is not None, f"{name}: {label} was accepted"
        assert expected[label] in message, (label, message[:500])


def test_saved_model_cli_lists_the_signatures(exported):
    result, _ = _case(exported, "v2_sequence_classification")
    cli = exported["cli"]
    assert "signature_def['serving_default']" in cli
    for name in ("input_ids", "attention_mask", "token_type_ids", "logits"):
        assert f"['{name}']" in cli, name
    if TEXT_READY:
        assert "signature_def['serve_text']" in cli and "signature_def['serve_text_pair']" in cli
        assert "['text_pair']" in cli


@pytest.mark.skipif(not TEXT_READY, reason=f"needs the deberta-v3 SentencePiece model at {SPM}, tensorflow-text and keras-hub")
@pytest.mark.parametrize("name", [_case_param(n) for n in TEXT_CASES])
def test_string_signatures_equal_python_tokenizer_and_keras(exported, name):
    result, seen = _case(exported, name)
    tokenizer, model = result["preprocessor"], result["model"]
    limit = model.config.max_position_embeddings  # the default max_length: the tokenizer names none
    signatures = {"text": tokenizer(TEXTS, padding=True, truncation=True, max_length=limit, return_tensors="np")}
    assert signatures["text"]["input_ids"].shape[1] == limit  # the long text was cut
    if TEXT_CASES[name]:
        signatures["text_pair"] = tokenizer(TEXTS, TEXT_PAIRS, padding=True, truncation=True, max_length=limit,
                                            return_tensors="np")
    else:
        assert "serve_text_pair" not in seen["signatures"]
    for key, encoding in signatures.items():
        got = seen[key]
        np.testing.assert_array_equal(np.asarray(got["input_ids"]), encoding["input_ids"])
        np.testing.assert_array_equal(np.asarray(got["attention_mask"]), encoding["attention_mask"])
        feed = {k: np.asarray(encoding[k], dtype="int32") for k in model.export_input_names}
        assert_close(np.asarray(got["logits"]), _keras_outputs(model, feed)["logits"], what=key)


def test_model_index_checks_are_back_on_after_export(exported):
    from presets import model_io

    _case(exported, "v2_sequence_classification")
    assert model_io.RUNTIME_INDEX_CHECKS is True  # switched off only while tracing for export


# --- bad input and atomic writes (no export runs) --------------------------------------------------
@pytest.fixture(scope="module")
def small_model():
    return kd.TFDebertaV2ForQuestionAnswering(kd.DebertaV2Config(**TINY_V2))


def test_refuses_a_non_empty_target_unless_overwrite(small_model, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        small_model.export(str(target))
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        small_model.export(str(tmp_path / "file"))
    assert (target / "keep.txt").read_text() == "x"


def test_bad_arguments_are_named(small_model, tmp_path):
    with pytest.raises(ValueError, match="unsupported export format 'coreml'"):
        small_model.export(str(tmp_path / "a"), format="coreml")
    with pytest.raises(ValueError, match="no string-in signature"):
        small_model.export(str(tmp_path / "a"), preprocessor=object())
    with pytest.raises(ValueError, match="not both"):
        small_model.export(str(tmp_path / "a"), preprocessor=object(), tokenizer=object())
    with pytest.raises(ValueError, match="input_signature"):
        small_model.export(str(tmp_path / "a"), input_signature=[])
    classifier = kd.TFDebertaV2ForSequenceClassification(kd.DebertaV2Config(**TINY_V2))
    with pytest.raises(TypeError, match="DebertaV2Tokenizer"):
        classifier.export(str(tmp_path / "a"), tokenizer=object())
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_length must be a positive integer"):
            export_saved_model(small_model, str(tmp_path / "a"), max_length=bad)
    absolute = kd.TFDebertaModel(kd.DebertaConfig(**dict(TINY_V1, **V1_VARIANTS["absolute_token_types"])))
    with pytest.raises(ValueError, match="longer than the 64 positions"):
        export_saved_model(absolute, str(tmp_path / "a"), max_length=65)
    assert not os.listdir(tmp_path)  # nothing was written


def test_a_failed_export_leaves_nothing_behind(small_model, tmp_path, monkeypatch):
    from presets import export

    def crash(model, directory, *args, **kwargs):
        os.makedirs(directory)
        open(os.path.join(directory, "saved_model.pb"), "w").close()  # half written
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(export, "_export_in_process", crash)
    monkeypatch.setattr(export, "_export_through_tensorflow", crash)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "saved_model.pb").write_text("previous export")
    for target, overwrite in (("new", False), ("old", True)):
        with pytest.raises(RuntimeError, match="simulated crash"):
            small_model.export(str(tmp_path / target), overwrite=overwrite)
    assert sorted(os.listdir(tmp_path)) == ["old"]  # no temp directory, no half-written "new"
    assert (tmp_path / "old" / "saved_model.pb").read_text() == "previous export"


@(pytest.mark.slow if BACKEND == "torch" else lambda test: test)  # torch: a TF subprocess
def test_overwrite_replaces_an_existing_export(small_model, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    small_model.export(str(target), overwrite=True)
    assert sorted(os.listdir(target)) == sorted(["assets", "fingerprint.pb", "saved_model.pb", "variables"])
    assert os.listdir(tmp_path) == ["model"]


class NotImportable(kd.TFDebertaV2ForQuestionAnswering):
    """Lives in this test module, which the export subprocess cannot import."""


@pytest.mark.skipif(BACKEND != "torch", reason="the TensorFlow subprocess is the torch path")
def test_torch_subprocess_errors_carry_its_stderr(tmp_path):
    from presets.export import ExportError

    model = NotImportable(kd.DebertaV2Config(**TINY_V2))
    with pytest.raises(ExportError, match="(?s)TensorFlow subprocess.*test_export"):
        model.export(str(tmp_path / "x"))
    assert os.listdir(tmp_path) == []
