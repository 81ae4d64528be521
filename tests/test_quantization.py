"""model.quantize("int8" / "int4") on both families, MoE experts included: predictions kept,
most parameters held in int8, exact save / reload, and a clear refusal from save_pretrained.

Each float model has every variable perturbed (as the transformers references are) so that its
logits are not the near-constant outputs of a fresh initialisation; agreement is measured over a
few hundred predictions against the same model in float32."""

import keras
import numpy as np
import pytest

from deepseek_reference import VARIANTS
from hf_reference import V1_VARIANTS, V2_VARIANTS, hf_config, hf_v1_config
from keras_deberta import (DebertaConfig, DebertaV2Config, TFDebertaForSequenceClassification,
                           TFDebertaV2ForMaskedLM, TFDebertaV2ForSequenceClassification)
from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM
from layers.moe import RoutedExperts
from harness import perturb_variables, to_numpy


def _classifier():
    keras.utils.set_random_seed(0)
    config = DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"], num_labels=3).to_dict())
    return perturb_variables(TFDebertaV2ForSequenceClassification(config))


def _causal_lm(**overrides):
    keras.utils.set_random_seed(0)
    model = TFDeepseekV2ForCausalLM(DeepseekV2Config(**{**VARIANTS["v2"], **overrides}))
    return perturb_variables(model.build_with_dummy_inputs())


_CLS_IDS = np.random.RandomState(0).randint(3, 99, size=(256, 16)).astype("int32")  # 256 predictions
_LM_IDS = np.random.RandomState(1).randint(3, 97, size=(8, 40)).astype("int32")  # 320 next tokens


def _int8_fraction(model):
    sizes = {v.path: (int(np.prod(v.shape)), str(v.dtype)) for v in model.weights}
    total = sum(n for n, _ in sizes.values())
    return sum(n for n, dtype in sizes.values() if dtype == "int8") / total


def _quantized_after_float_logits(model, ids, mode="int8"):
    """(the model quantized to `mode`, its float32 logits on `ids` from before)."""
    before = to_numpy(model(ids).logits)
    model.quantize(mode)
    return model, before


@pytest.fixture(scope="module")
def int8_classifier():
    return _quantized_after_float_logits(_classifier(), _CLS_IDS)


@pytest.fixture(scope="module")
def int8_causal_lm():
    return _quantized_after_float_logits(_causal_lm(), _LM_IDS)


def test_int8_deberta_classifier_keeps_its_predictions(int8_classifier):
    model, before = int8_classifier
    attention = model.deberta.encoder_layers[0].attention
    assert attention.query_proj.quantization_mode == "int8"
    assert str(model.deberta.embeddings.word_embeddings._embeddings.dtype) == "int8"
    after = to_numpy(model(_CLS_IDS).logits)
    agreement = (after.argmax(-1) == before.argmax(-1)).mean()
    assert agreement >= 0.95, agreement
    assert np.abs(after - before).max() < 0.1 * np.abs(before).max()


def test_int8_talking_heads_and_tied_mlm_head_read_dequantised_weights():
    # v1's talking heads mix heads with a Dense kernel and the MLM decoder reuses the word
    # embeddings: both must see the dequantised values, not the raw int8 codes.
    keras.utils.set_random_seed(0)
    v1 = perturb_variables(TFDebertaForSequenceClassification(
        DebertaConfig(**hf_v1_config(**V1_VARIANTS["talking_heads"], num_labels=3).to_dict())))
    mlm = perturb_variables(TFDebertaV2ForMaskedLM(DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"]).to_dict())))
    for model, ids, least in ((v1, _CLS_IDS, 0.95), (mlm, _CLS_IDS[:16], 0.9)):
        model, before = _quantized_after_float_logits(model, ids)
        after = to_numpy(model(ids).logits)
        agreement = (after.argmax(-1) == before.argmax(-1)).mean()
        assert agreement >= least, (type(model).__name__, agreement)


def test_int8_deepseek_keeps_next_tokens_and_holds_most_parameters_in_int8(int8_causal_lm):
    model, before = int8_causal_lm
    layer = model.model.decoder_layers[0]
    int8_held = {
        "embedding": model.model.embed_tokens._embeddings, "lm_head": model.lm_head._kernel,
        "q_a_proj": layer.self_attn.q_a_proj._kernel, "q_b_proj": layer.self_attn.q_b_proj._kernel,
        "kv_a_proj_with_mqa": layer.self_attn.kv_a_proj_with_mqa._kernel,
        "kv_b_proj": layer.self_attn.kv_b_proj._kernel, "o_proj": layer.self_attn.o_proj._kernel,
        "experts": layer.mlp.experts.down_kernel, "shared_experts": layer.mlp.shared_experts.up_proj._kernel,
    }
    assert {k: str(v.dtype) for k, v in int8_held.items()} == {k: "int8" for k in int8_held}
    assert str(layer.mlp.gate.kernel.dtype) == "float32"  # routing decisions keep float32 weights
    assert _int8_fraction(model) >= 0.8, _int8_fraction(model)
    after = to_numpy(model(_LM_IDS).logits)
    agreement = (after.argmax(-1) == before.argmax(-1)).mean()
    assert agreement >= 0.9, agreement


def test_quantized_models_save_and_reload_exactly(tmp_path, int8_classifier, int8_causal_lm):
    for (model, _), ids in ((int8_classifier, _CLS_IDS[:8]), (int8_causal_lm, _LM_IDS[:2])):
        want = to_numpy(model(ids).logits)
        path = str(tmp_path / f"{model.name}.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        modes = lambda m: {path: mode for path, (mode, _) in m.get_config()["quantized_layers"].items()}
        assert modes(reloaded) == modes(model)
        np.testing.assert_array_equal(to_numpy(reloaded(ids).logits), want)
        # Weights files load into a model quantized the same way.
        weights = str(tmp_path / f"{model.name}.weights.h5")
        model.save_weights(weights)
        other = type(model)(model.config).build_with_dummy_inputs()  # Keras quantizes built models only
        other.quantize("int8")
        other.load_weights(weights)
        np.testing.assert_array_equal(to_numpy(other(ids).logits), want)


def test_int4_packs_experts_and_round_trips(tmp_path):
    model, before = _quantized_after_float_logits(_causal_lm(), _LM_IDS[:2], "int4")
    experts = model.model.decoder_layers[0].mlp.experts
    E, d, f = experts.num_experts, experts.hidden_size, experts.intermediate_size
    assert experts.quantization_mode == "int4"
    assert tuple(experts.gate_kernel.shape) == (E, (d + 1) // 2, f)  # two values per byte
    assert tuple(experts.down_kernel.shape) == (E, (f + 1) // 2, d)
    after = to_numpy(model(_LM_IDS[:2]).logits)
    assert np.isfinite(after).all()
    assert np.corrcoef(after.ravel(), before.ravel())[0, 1] > 0.8  # 4 bits: coarse, but the same model
    path = str(tmp_path / "int4.keras")
    model.save(path)
    np.testing.assert_array_equal(to_numpy(keras.saving.load_model(path)(_LM_IDS[:2]).logits), after)


def test_routed_experts_config_rebuilds_integer_variables():
    layer = RoutedExperts(4, 8, 6, name="experts")
    layer.build()
    layer.quantize("int8")
    x = keras.ops.convert_to_tensor(np.random.RandomState(0).randn(5, 8).astype("float32"))
    idx = keras.ops.convert_to_tensor(np.array([[0, 1], [2, 3], [1, 2], [3, 0], [0, 2]], "int32"))
    w = keras.ops.convert_to_tensor(np.full((5, 2), 0.5, "float32"))
    config = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(config)  # built from the recorded build config
    assert again.built and again.quantization_mode == "int8" and str(again.up_kernel.dtype) == "int8"
    again.set_weights(layer.get_weights())
    np.testing.assert_array_equal(to_numpy(again(x, idx, w)), to_numpy(layer(x, idx, w)))


def test_save_pretrained_refuses_a_quantized_model(tmp_path, int8_classifier):
    model, _ = int8_classifier
    with pytest.raises(NotImplementedError, match="quantized model"):
        model.save_pretrained(str(tmp_path / "ckpt"))
    assert not (tmp_path / "ckpt" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="'int8' or 'int4'"):
        _classifier().quantize("float8")  # Dense has a float8 form, the MoE experts do not


def test_int4_deberta_classifier_round_trips(tmp_path):
    model, before = _quantized_after_float_logits(_classifier(), _CLS_IDS[:64], "int4")
    assert model.deberta.encoder_layers[0].attention.query_proj.quantization_mode == "int4"
    after = to_numpy(model(_CLS_IDS[:64]).logits)
    assert np.isfinite(after).all()
    assert np.corrcoef(after.ravel(), before.ravel())[0, 1] > 0.8  # 4 bits: coarse, but the same model
    path = str(tmp_path / "int4_classifier.keras")
    model.save(path)
    np.testing.assert_array_equal(to_numpy(keras.saving.load_model(path)(_CLS_IDS[:64]).logits), after)


def test_quantizing_a_trained_model_then_lora_on_top(tmp_path):
    # A compiled, trained model: the optimizer's slots belong to the float weights quantize()
    # replaces, so they are dropped (no stale state in the saved file, no mismatch on reload).
    model = _classifier()
    x, y = {"input_ids": _CLS_IDS[:8]}, np.arange(8) % 3
    model.compile(optimizer="adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.quantize("int8")
    assert model.optimizer is None
    path = str(tmp_path / "trained_int8.keras")
    model.save(path)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.saving.load_model(path)
    assert not [w for w in caught if "optimizer" in str(w.message)], [str(w.message) for w in caught]
    np.testing.assert_array_equal(to_numpy(reloaded(x["input_ids"]).logits), to_numpy(model(x["input_ids"]).logits))

    # LoRA adapters train on top of the int8 weights, which stay as they were.
    model.enable_lora(2)
    frozen = {v.path: to_numpy(v).copy() for v in model.weights if "lora_" not in v.path
              and not any(h in v.path for h in ("/pooler/", "/classifier/"))}
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(to_numpy(v), frozen[v.path]) for v in model.weights if v.path in frozen)
    adapters_b = [v for v in model.weights if v.path.endswith("lora_kernel_b")]
    assert adapters_b and all(np.abs(to_numpy(v)).max() > 0 for v in adapters_b)  # B starts at zero
