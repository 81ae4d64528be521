"""The encoder as a plain Keras model: .keras round trip, predict, weights files, compiled calls."""

import keras
import numpy as np

from hf_reference import V2_VARIANTS, hf_config
from keras_deberta import DebertaV2Config, TFDebertaV2Model


def _model():
    config = DebertaV2Config(**hf_config(**V2_VARIANTS["v2_xlarge_like_ngie"]).to_dict())
    model = TFDebertaV2Model(config)
    model.build_with_dummy_inputs()
    return model


def _ids():
    ids = np.random.RandomState(0).randint(1, 99, size=(4, 11)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    return ids, mask


def test_keras_file_round_trip_is_exact(tmp_path):
    model = _model()
    ids, mask = _ids()
    want = keras.ops.convert_to_numpy(model(ids, attention_mask=mask).last_hidden_state)
    path = str(tmp_path / "encoder.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)  # safe_mode on
    assert isinstance(reloaded, TFDebertaV2Model)
    assert reloaded.config == model.config
    got = keras.ops.convert_to_numpy(reloaded(ids, attention_mask=mask).last_hidden_state)
    np.testing.assert_array_equal(got, want)


def test_predict_returns_the_outputs_of_call():
    model = _model()
    ids, mask = _ids()
    want = keras.ops.convert_to_numpy(model(ids, attention_mask=mask).last_hidden_state)
    got = model.predict({"input_ids": ids, "attention_mask": mask}, batch_size=2, verbose=0)
    np.testing.assert_allclose(np.asarray(got["last_hidden_state"]), want, atol=1e-5)


def test_weights_file_round_trip(tmp_path):
    model, other = _model(), _model()
    ids, mask = _ids()
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    other.load_weights(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(other(ids, attention_mask=mask).last_hidden_state),
        keras.ops.convert_to_numpy(model(ids, attention_mask=mask).last_hidden_state),
    )


def test_dropout_only_in_training():
    model = _model()
    ids, mask = _ids()
    a = keras.ops.convert_to_numpy(model(ids, attention_mask=mask, training=False).last_hidden_state)
    b = keras.ops.convert_to_numpy(model(ids, attention_mask=mask, training=False).last_hidden_state)
    c = keras.ops.convert_to_numpy(model(ids, attention_mask=mask, training=True).last_hidden_state)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_fit_with_a_keras_loss_on_named_outputs_decreases_it():
    model = _model()
    ids = np.random.RandomState(0).randint(1, 99, size=(16, 10)).astype("int32")
    target = np.random.RandomState(1).randn(16, 10, 32).astype("float32") * 0.1
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"last_hidden_state": "mse"})
    history = model.fit({"input_ids": ids}, {"last_hidden_state": target}, epochs=3, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
