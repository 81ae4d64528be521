"""A failed call never damages the model, on every backend: a bad request (ids out of range, labels
out of range, int64 ids beyond int32) raises a clear error, and the next valid request gets the
same answer as before it. (On JAX, compiled steps donate the model's variables: a check failing
inside one used to delete them, and every later call failed with "Array has been deleted".)"""

import os

import keras
import numpy as np
import pytest

import keras_deberta as kd
import keras_deepseek as ks
from harness import class_id, example_inputs, perturb_variables, tiny_config, to_numpy

CLASSES = (kd.TFDebertaV2ForSequenceClassification, ks.TFDeepseekV2ForCausalLM)


def _errors():
    """What a refused batch raises: ValueError from our checks; on TensorFlow, a compiled step's
    in-graph assert raises InvalidArgumentError instead."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return (ValueError, tf.errors.InvalidArgumentError)
    return (ValueError,)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_bad_batches_leave_the_model_intact(cls):
    model = perturb_variables(cls(tiny_config(cls)))
    good = example_inputs(model, batch=4, length=6, with_labels=True)
    x = {k: v for k, v in good.items() if k not in model.label_names}
    y = good["labels"]
    bad_x = {**x, "input_ids": x["input_ids"].copy()}
    bad_x["input_ids"][1, 2] = model.config.vocab_size  # one id past the table
    bad_y = y.copy()
    bad_y.flat[0] = model.config.vocab_size if y.ndim == 2 else model.config.num_labels
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
    before = to_numpy(model.predict_on_batch(x)["logits"])
    weights = [to_numpy(w) for w in model.weights]

    def unchanged():
        for w, b in zip(model.weights, weights):
            np.testing.assert_array_equal(to_numpy(w), b)
        np.testing.assert_array_equal(to_numpy(model.predict_on_batch(x)["logits"]), before)

    for attempt in (lambda: model.predict_on_batch(bad_x), lambda: model.predict(bad_x, batch_size=2, verbose=0),
                    lambda: model.evaluate(bad_x, y, batch_size=2, verbose=0),
                    lambda: model.fit(bad_x, y, batch_size=4, epochs=1, verbose=0),
                    lambda: model.train_on_batch(bad_x, y), lambda: model.test_on_batch(bad_x, y),
                    lambda: model.fit(x, bad_y, batch_size=4, epochs=1, verbose=0),
                    lambda: model.fit({**x, "labels": bad_y}, batch_size=4, epochs=1, verbose=0)):
        with pytest.raises(_errors()):
            attempt()
        unchanged()
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # and training still works
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_64_bit_ids_beyond_int32_are_refused_not_wrapped(cls):
    model = cls(tiny_config(cls))
    ids = np.full((1, 4), 3, dtype="int64")
    ids[0, 1] = 2**32 + 5  # wraps to 5 in int32: a valid id, silently
    with pytest.raises(ValueError, match="int32"):
        model(ids)
    with pytest.raises(ValueError, match="int32"):
        model({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    with pytest.raises(_errors()):
        model.predict(ids, verbose=0)


def _hidden_leftovers(directory):
    return [n for n in os.listdir(directory) if n.startswith(".")]


@pytest.mark.parametrize("filename", ["model.keras", "model.weights.h5"])
def test_a_save_that_fails_midway_keeps_the_previous_file(filename, tmp_path):
    model = perturb_variables(kd.TFDebertaV2ForSequenceClassification(tiny_config(kd.TFDebertaV2ForSequenceClassification)))
    inputs = example_inputs(model)
    path = str(tmp_path / filename)
    save = model.save if filename.endswith(".keras") else model.save_weights
    save(path)
    want = to_numpy(model(inputs).logits)
    for w in model.weights:  # what a second, failing save would have written
        w.assign(w + 1.0)

    # A layer deep inside fails while its variables are being written, after the archive is opened.
    def fail(store):
        raise OSError("disk full")

    model.classifier.save_own_variables = fail
    with pytest.raises(OSError, match="disk full"):
        save(path)
    assert _hidden_leftovers(tmp_path) == []
    del model.classifier.save_own_variables

    if filename.endswith(".keras"):
        reloaded = keras.saving.load_model(path)
    else:
        reloaded = kd.TFDebertaV2ForSequenceClassification(model.config)
        reloaded.load_weights(path)
    np.testing.assert_array_equal(to_numpy(reloaded(inputs).logits), want)


def test_save_removes_temporaries_of_a_crashed_save_and_refuses_to_overwrite_unasked(tmp_path):
    model = kd.TFDebertaV2ForSequenceClassification(tiny_config(kd.TFDebertaV2ForSequenceClassification))
    stale = tmp_path / ".model.keras.k3j2_x.tmp.keras"  # what a process killed mid-save leaves
    stale.write_bytes(b"PK\x03\x04 half an archive")
    model.save(str(tmp_path / "model.keras"))
    assert _hidden_leftovers(tmp_path) == []
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(str(tmp_path / "model.keras"), overwrite=False)
