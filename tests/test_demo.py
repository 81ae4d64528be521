"""The pieces of `make demo` (keras_deberta/demo.py) that `--model DIR_OR_HUB_ID` relies on, on a
tiny transformers checkpoint without a classification head; the whole demo end to end is slow."""

import os

import numpy as np
import pytest

from conftest import ROOT
from hf_reference import V2_VARIANTS, build_hf_model, hf_config, hf_forward

DEFAULT = os.path.join(ROOT, "keras_deberta", "assets", "sst2-tiny")


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A transformers DebertaV2Model (no head) with the embedded default's tokenizer files."""
    from keras_deberta import DebertaV2Tokenizer

    tokenizer = DebertaV2Tokenizer.from_pretrained(DEFAULT)
    hf_model = build_hf_model(hf_config(**V2_VARIANTS["v3_like"], vocab_size=len(tokenizer)), "DebertaV2Model")
    directory = str(tmp_path_factory.mktemp("demo") / "base")
    hf_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return hf_model, directory


def test_a_checkpoint_without_head_gets_a_fresh_sentiment_head_on_the_transformers_encoder(base_checkpoint, capsys):
    import keras

    from keras_deberta.demo import load_classifier

    hf_model, directory = base_checkpoint
    model, tokenizer, _, fresh_head = load_classifier(directory)
    assert fresh_head and "newly initialised" in capsys.readouterr().out
    assert model.config.num_labels == 2 and model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    ids = np.array([tokenizer("a warm , funny film")["input_ids"]], dtype="int32")
    got = keras.ops.convert_to_numpy(model.deberta(ids)["last_hidden_state"])
    want = hf_forward(hf_model, ids).last_hidden_state.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=0)


def test_the_embedded_default_keeps_its_trained_head(capsys):
    from keras_deberta.demo import load_classifier

    model, _, directory, fresh_head = load_classifier()
    assert not fresh_head and os.path.samefile(directory, DEFAULT)
    assert "warning" not in capsys.readouterr().out
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}


def test_fine_tune_takes_optimizer_steps_on_the_built_in_sentences(base_checkpoint, monkeypatch):
    import keras

    from keras_deberta import demo

    monkeypatch.setattr(demo, "SST2", "/nonexistent")  # the fresh-clone path: no ../shared/data
    (texts, labels), _, source = demo.fine_tuning_data()
    assert "built-in" in source and len(texts) == len(labels) == len(demo.BUILT_IN_EXAMPLES)
    model, tokenizer, _, _ = demo.load_classifier(base_checkpoint[1])
    head_before = keras.ops.convert_to_numpy(model.classifier.kernel).copy()
    history = demo.fine_tune(model, tokenizer, texts, labels, batch_size=4)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2 and np.isfinite(history.history["loss"]).all()
    assert not np.allclose(keras.ops.convert_to_numpy(model.classifier.kernel), head_before)


@pytest.mark.slow
def test_the_whole_demo_runs_on_a_local_checkpoint(base_checkpoint, capsys):
    from keras_deberta import demo

    assert demo.main(["--model", base_checkpoint[1]]) == 0
    out = capsys.readouterr().out
    assert "[5/5]" in out and "summary:" in out
