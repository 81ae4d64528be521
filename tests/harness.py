"""What many test modules share: numpy views, weight perturbation, one tiny config per task class of
both families, inputs that fit each model, and the Keras-native checks every model class must
pass (`run_model_test`, after KerasHub's `run_task_test`)."""

import os

import keras
import numpy as np

import keras_deberta as kd
import keras_deepseek as ks
from deepseek_reference import VARIANTS as DEEPSEEK_VARIANTS
from hf_reference import TINY_V1, TINY_V2, V1_VARIANTS, V2_VARIANTS


def to_numpy(x):
    """Any backend tensor (or nested float value) as a numpy array."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def perturb_variables(model, scale=0.1, seed=0):
    """Adds seeded noise to every float variable, so no weight sits at its trivial initial value."""
    rng = np.random.RandomState(seed)
    for v in model.weights:
        if "float" in str(v.dtype):
            value = to_numpy(v).astype("float32")
            v.assign((value + rng.randn(*v.shape).astype("float32") * scale).astype(value.dtype))
    return model


# --- one tiny config per task class ------------------------------------------------------------
def deberta_v2_config(**overrides):
    return kd.DebertaV2Config(**{**TINY_V2, **V2_VARIANTS["v3_like"], "num_labels": 3, **overrides})


def deberta_v1_config(**overrides):
    return kd.DebertaConfig(**{**TINY_V1, **V1_VARIANTS["relative_whole_length"], "num_labels": 3, **overrides})


def deepseek_config(**overrides):
    return ks.DeepseekV2Config(**{**DEEPSEEK_VARIANTS["lite"], "num_labels": 3, **overrides})


DEBERTA_V2_CLASSES = (kd.TFDebertaV2Model, kd.TFDebertaV2ForMaskedLM, kd.TFDebertaV2ForSequenceClassification,
                      kd.TFDebertaV2ForTokenClassification, kd.TFDebertaV2ForQuestionAnswering,
                      kd.TFDebertaV2ForMultipleChoice, kd.TFDebertaV2ForReplacedTokenDetection)
DEBERTA_V1_CLASSES = (kd.TFDebertaModel, kd.TFDebertaForMaskedLM, kd.TFDebertaForSequenceClassification,
                      kd.TFDebertaForTokenClassification, kd.TFDebertaForQuestionAnswering,
                      kd.TFDebertaForMultipleChoice)
DEEPSEEK_CLASSES = (ks.TFDeepseekV2Model, ks.TFDeepseekV2ForCausalLM, ks.TFDeepseekV2ForSequenceClassification)
ALL_TASK_CLASSES = DEBERTA_V2_CLASSES + DEBERTA_V1_CLASSES + DEEPSEEK_CLASSES


def tiny_config(cls, **overrides):
    if cls in DEBERTA_V2_CLASSES:
        return deberta_v2_config(**overrides)
    if cls in DEBERTA_V1_CLASSES:
        return deberta_v1_config(**overrides)
    return deepseek_config(**overrides)


def class_id(cls):
    return cls.__name__


def example_inputs(model, batch=2, length=7, seed=0, with_labels=False):
    """{name: int32 array} that `model` accepts: ids avoiding special ids, a padded last row, and
    (with_labels) labels of the model's head."""
    rng = np.random.RandomState(seed)
    config = model.config
    shape = (batch, 2, length) if model.input_rank == 3 else (batch, length)
    ids = rng.randint(3, config.vocab_size, size=shape).astype("int32")
    mask = np.ones_like(ids)
    mask[-1, ..., length - 2:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in model.input_names and getattr(config, "type_vocab_size", 0) > 0:
        inputs["token_type_ids"] = np.zeros_like(ids)
    if with_labels:
        inputs.update(example_labels(model, ids, rng))
    return inputs


def example_labels(model, ids, rng):
    config = model.config
    names = model.label_names
    if names == ("start_positions", "end_positions"):
        return {n: rng.randint(0, ids.shape[-1], size=(ids.shape[0],)).astype("int32") for n in names}
    if not names:
        return {}
    primary = model.primary_output_names[0]
    if isinstance(model, (kd.TFDebertaV2ForMaskedLM, kd.TFDebertaForMaskedLM, ks.TFDeepseekV2ForCausalLM)):
        return {"labels": rng.randint(0, config.vocab_size, size=ids.shape).astype("int32")}
    if isinstance(model, kd.TFDebertaV2ForReplacedTokenDetection):  # 1 = replaced token
        return {"labels": rng.randint(0, 2, size=ids.shape).astype("int32")}
    if "TokenClassification" in type(model).__name__:
        return {"labels": rng.randint(0, config.num_labels, size=ids.shape).astype("int32")}
    if model.input_rank == 3:
        return {"labels": rng.randint(0, ids.shape[1], size=(ids.shape[0],)).astype("int32")}
    assert primary == "logits"
    return {"labels": rng.randint(0, config.num_labels, size=(ids.shape[0],)).astype("int32")}


def shared_data_path(*parts):
    """A path under ../shared/data (None when the data directory is absent)."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "data")
    path = os.path.join(root, *parts)
    return path if os.path.exists(path) else None


# --- the Keras-native checks every task class passes -------------------------------------------
def _relative_rms(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12))


def _primary(model, out):
    return to_numpy(out[model.primary_output_names[0]]).astype("float32")


def run_model_test(cls, tmp_path, checks=("keras_file", "shapes", "predict", "tf_data", "mixed_precision",
                                          "int8", "lora", "export")):
    """KerasHub's `run_task_test`, for our classes: a perturbed tiny model of `cls` must
    - keras_file: save to .keras and reload (safe mode) with bit-identical outputs;
    - shapes: run at another batch and length, each row as it runs alone (padding and batch
      composition do not leak across rows);
    - predict / tf_data: give its call's outputs through `predict` on arrays and on a tf.data dataset;
    - mixed_precision: build under "mixed_bfloat16" (float32 variables, bfloat16 compute) and stay
      within bfloat16 rounding of the float32 outputs (relative RMS < 5e-2: a few roundings of
      2^-8 each, and MoE routing may flip a near-tied token);
    - int8: quantize and stay within int8 rounding (relative RMS < 0.1);
    - lora: enable LoRA with unchanged outputs (B starts at zero), train only adapters and head, and
      merge back to the same outputs;
    - export: write a TF SavedModel whose `serving_default` gives the outputs (1e-5 relative).
    """
    model = perturb_variables(cls(tiny_config(cls)))
    inputs = example_inputs(model, batch=2, length=7)
    reference = _primary(model, model(inputs))

    if "keras_file" in checks:
        path = str(tmp_path / "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        np.testing.assert_array_equal(_primary(reloaded, reloaded(inputs)), reference)

    if "shapes" in checks:
        other = example_inputs(model, batch=3, length=5, seed=1)
        batched = _primary(model, model(other))
        for row in range(3):
            alone = _primary(model, model({k: v[row:row + 1] for k, v in other.items()}))
            np.testing.assert_allclose(alone[0], batched[row], rtol=1e-4, atol=1e-5)

    # predict runs a compiled program (XLA on JAX / TF) and the call runs eagerly: the same math with
    # float32 sums in another order, and on TensorFlow oneDNN picks its kernels (and so the order)
    # at run time. Outputs of magnitude ~2 then differ by a few 1e-6; the bound is the `shapes` one.
    if "predict" in checks:
        predicted = model.predict(inputs, batch_size=2, verbose=0)
        np.testing.assert_allclose(to_numpy(predicted[model.primary_output_names[0]]), reference,
                                   rtol=1e-4, atol=1e-5)

    if "tf_data" in checks:
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(2)
        predicted = model.predict(dataset, verbose=0)
        np.testing.assert_allclose(to_numpy(predicted[model.primary_output_names[0]]), reference,
                                   rtol=1e-4, atol=1e-5)

    if "mixed_precision" in checks:
        mixed = cls(model.config, dtype="mixed_bfloat16")
        mixed.set_weights(model.get_weights())
        assert all(v.dtype == "float32" for v in mixed.weights if "float" in str(v.dtype))
        got = _primary(mixed, mixed(inputs))
        assert np.isfinite(got).all() and _relative_rms(got, reference) < 5e-2

    if "int8" in checks:
        quantized = cls(model.config)
        quantized.set_weights(model.get_weights())
        quantized.quantize("int8")
        got = _primary(quantized, quantized(inputs))
        assert np.isfinite(got).all() and _relative_rms(got, reference) < 0.1

    if "lora" in checks:
        adapted = cls(model.config)
        adapted.set_weights(model.get_weights())
        paths = adapted.enable_lora(2)
        assert paths
        np.testing.assert_array_equal(_primary(adapted, adapted(inputs)), reference)
        trainable = {v.path for v in adapted.trainable_variables}
        assert trainable and all("lora" in p or any(h in p for h in adapted.lora_modules_to_save) for p in trainable)
        for v in adapted.trainable_variables:  # move the adapters off zero
            if "lora_kernel_b" in v.path:
                v.assign(np.full(v.shape, 0.01, dtype="float32"))
        adapted_out = _primary(adapted, adapted(inputs))
        assert not np.allclose(adapted_out, reference)
        adapted.merge_lora()
        np.testing.assert_allclose(_primary(adapted, adapted(inputs)), adapted_out, rtol=1e-4, atol=1e-5)

    if "export" in checks:
        import tensorflow as tf

        directory = str(tmp_path / "export")
        model.export(directory)
        serving = tf.saved_model.load(directory).signatures["serving_default"]
        zeros = np.zeros_like(inputs["input_ids"])
        served = serving(**{k: tf.constant(inputs.get(k, zeros)) for k in model.export_input_names})
        np.testing.assert_allclose(served[model.primary_output_names[0]].numpy(), reference, rtol=1e-5, atol=1e-5)
