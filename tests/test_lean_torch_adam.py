"""presets.keras_compat.lean_torch_adam: Keras' PyTorch Adam / AdamW step done in place must give
Keras' own results (to float rounding) and be installed by `compile` on our models only."""

import keras
import numpy as np
import pytest

from presets.keras_compat import lean_torch_adam

torch_only = pytest.mark.skipif(keras.backend.backend() != "torch", reason="a PyTorch fast path")


def _train(optimizer, steps=4):
    rng = np.random.RandomState(0)
    variables = [keras.Variable(rng.randn(*shape).astype("float32")) for shape in ((7, 5), (5,), (3,))]
    for _ in range(steps):
        grads = [keras.ops.convert_to_tensor(rng.randn(*v.shape).astype("float32")) for v in variables]
        optimizer.apply(grads, variables)
    moments = [keras.ops.convert_to_numpy(v) for v in optimizer.variables[1:]]
    return [keras.ops.convert_to_numpy(v) for v in variables], moments


@torch_only
@pytest.mark.parametrize("make", [lambda: keras.optimizers.Adam(1e-2),
                                  lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1)])
def test_in_place_step_equals_keras(make):
    reference, reference_moments = _train(make())
    lean = lean_torch_adam(make())
    assert "_parallel_update_step" in vars(lean)
    ours, moments = _train(lean)
    for a, b in zip(ours + moments, reference + reference_moments):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@torch_only
def test_other_optimizers_and_amsgrad_are_left_alone():
    for optimizer in (keras.optimizers.SGD(0.1), keras.optimizers.Adam(amsgrad=True), keras.optimizers.Lion()):
        assert "_parallel_update_step" not in vars(lean_torch_adam(optimizer))


@torch_only
def test_compile_installs_it():
    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    config = DebertaV2Config(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=32, position_buckets=8)
    model = TFDebertaV2ForSequenceClassification(config)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    assert "_parallel_update_step" in vars(model.optimizer)
    ids = np.arange(16, dtype="int32").reshape(2, 8) % 60 + 3
    loss = model.train_on_batch({"input_ids": ids, "attention_mask": np.ones_like(ids)}, np.array([0, 1]))
    assert np.isfinite(loss)
