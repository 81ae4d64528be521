"""`keras.saving.load_model` of a compiled model restores what `fit` needs (the compile arguments,
the optimizer and its state): training continues with the losses the saved model would have had.
Dropout is off so that both runs see the same computation."""

import keras
import numpy as np
import pytest

import keras_deberta as kd
from harness import example_inputs, tiny_config

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pooler_dropout=0.0)


@pytest.mark.parametrize("own_loss", [True, False], ids=["own_loss", "keras_loss_and_metric"])
def test_fit_after_load_model_continues_as_the_saved_model(own_loss, tmp_path):
    cls = kd.TFDebertaV2ForSequenceClassification
    model = cls(tiny_config(cls, **NO_DROPOUT))
    data = example_inputs(model, batch=4, length=7, with_labels=True)
    if own_loss:
        x, y = data, None
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    else:
        x, y = {k: v for k, v in data.items() if k != "labels"}, data["labels"]
        model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=2, shuffle=False, verbose=0)  # optimizer state is not fresh
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert int(restored.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 2
    want = model.fit(x, y, epochs=2, batch_size=2, shuffle=False, verbose=0).history
    got = restored.fit(x, y, epochs=2, batch_size=2, shuffle=False, verbose=0).history
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
