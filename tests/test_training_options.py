"""Training options for long inputs and small devices, on every backend: `remat=True` recomputes
each block's activations in the backward pass (same forward, same update), and Keras' optimizer
option `gradient_accumulation_steps` trains on a large batch in pieces (same update as the whole
batch)."""

import keras
import numpy as np
import pytest

import keras_deberta as kd
import keras_deepseek as ks
from harness import class_id, example_inputs, perturb_variables, tiny_config, to_numpy

CLASSES = (kd.TFDebertaV2ForSequenceClassification, kd.TFDebertaForMaskedLM, ks.TFDeepseekV2ForCausalLM)
# No dropout, so two runs see the same function; no MoE balance loss, so every DeepSeek block is
# recomputed (a block that adds that loss in training is not: it would escape the recomputation).
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "attention_dropout": 0.0,
              "aux_loss_alpha": 0.0}


def _pair(cls, **kwargs):
    """Two models with equal weights; the second built with `kwargs`."""
    config = tiny_config(cls, **NO_DROPOUT)
    first = perturb_variables(cls(config))
    second = cls(config, **kwargs)
    second.set_weights(first.get_weights())
    return first, second


def _one_sgd_step(model, x, y, batch_size, optimizer):
    model.compile(optimizer=optimizer)
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return [to_numpy(w) for w in model.trainable_weights]


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_remat_gives_the_same_forward_and_update(cls, tmp_path):
    plain, remat = _pair(cls, remat=True)
    data = example_inputs(plain, batch=4, length=6, with_labels=True)
    y = data.pop("labels")
    np.testing.assert_allclose(to_numpy(remat(data)[0]), to_numpy(plain(data)[0]), rtol=1e-6, atol=1e-6)
    want = _one_sgd_step(plain, data, y, 4, keras.optimizers.SGD(0.1))
    got = _one_sgd_step(remat, data, y, 4, keras.optimizers.SGD(0.1))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "remat.keras")  # the option survives a .keras round trip
    remat.save(path)
    assert keras.saving.load_model(path).remat is True


@pytest.mark.parametrize("cls", CLASSES[:1] + CLASSES[2:], ids=class_id)
def test_gradient_accumulation_equals_the_whole_batch(cls):
    whole, pieces = _pair(cls)
    data = example_inputs(whole, batch=8, length=6, with_labels=True)
    y = data.pop("labels")
    want = _one_sgd_step(whole, data, y, 8, keras.optimizers.SGD(0.1))
    got = _one_sgd_step(pieces, data, y, 4, keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_remat_trains_with_dropout_and_the_balance_loss(cls):
    model = perturb_variables(cls(tiny_config(cls), remat=True))
    data = example_inputs(model, batch=4, length=6, with_labels=True)
    y = data.pop("labels")
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    history = model.fit(data, y, batch_size=4, epochs=3, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]
