"""LoRA on both families: `enable_lora(rank)` adapts the attention projections and freezes the rest
(the task head aside), `fit` moves only adapters and head, `merge_lora()` folds them in exactly,
and generation with adapters enabled decodes as the merged model does."""

import keras
import numpy as np
import pytest

from deepseek_reference import VARIANTS
from hf_reference import V1_VARIANTS, V2_VARIANTS, hf_config, hf_v1_config
from keras_deberta import DebertaConfig, DebertaV2Config, TFDebertaForSequenceClassification, \
    TFDebertaV2ForSequenceClassification
from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM
from harness import to_numpy


def _values(model):
    return {v.path: to_numpy(v).copy() for v in model.weights}


_IDS = np.random.RandomState(0).randint(3, 90, size=(8, 12)).astype("int32")
_LABELS = np.random.RandomState(1).randint(0, 3, size=(8,)).astype("int32")


def _fit_checks(model, x, y, head_names):
    """Fits a few steps on the model's own loss; returns the variables' values before and after."""
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = _values(model)
    model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False)
    after = _values(model)
    adapters = [p for p in before if "lora_" in p]
    head = [p for p in before if any(f"/{h}/" in p for h in head_names)]
    frozen = [p for p in before if p not in adapters and p not in head]
    changed = [p for p in frozen if not np.array_equal(before[p], after[p])]
    assert not changed, f"frozen variables moved: {changed}"
    assert all(not np.array_equal(before[p], after[p]) for p in adapters if p.endswith("lora_kernel_b"))
    return adapters, head, before, after


def test_deberta_lora_trains_adapters_and_head_only_then_merges_exactly(tmp_path):
    keras.utils.set_random_seed(0)
    config = DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"], num_labels=3).to_dict())
    model = TFDebertaV2ForSequenceClassification(config)
    n_variables = len(model.weights)
    adapted = model.enable_lora(4)
    assert sorted({p.rsplit("/", 1)[1] for p in adapted}) == ["key_proj", "query_proj", "value_proj"]
    assert len(adapted) == 3 * config.num_hidden_layers
    trainable = {v.path.split("/", 1)[1] for v in model.trainable_variables}
    assert all("lora_" in p or p.startswith(("pooler/", "classifier/")) for p in trainable), trainable

    adapters, head, before, after = _fit_checks(model, {"input_ids": _IDS}, _LABELS, ("pooler", "classifier"))
    assert len(adapters) == 2 * len(adapted)
    assert any(not np.array_equal(before[p], after[p]) for p in head)  # the head learns (modules_to_save)

    want = to_numpy(model(_IDS).logits)
    model.save_pretrained(str(tmp_path))  # adapters written merged into the kernels
    reloaded = TFDebertaV2ForSequenceClassification.from_pretrained(str(tmp_path))
    np.testing.assert_allclose(to_numpy(reloaded(_IDS).logits), want, atol=1e-5, rtol=0)
    model.merge_lora()
    assert not any(getattr(l, "lora_enabled", False) for l in model._flatten_layers())
    assert len(model.weights) == n_variables and not any("lora_" in v.path for v in model.weights)
    assert len(model.trainable_variables) == n_variables  # everything trainable again
    np.testing.assert_allclose(to_numpy(model(_IDS).logits), want, atol=1e-5, rtol=0)


def test_deberta_v1_default_target_is_the_fused_projection():
    config = DebertaConfig(**hf_v1_config(**V1_VARIANTS["relative_whole_length"], num_labels=2).to_dict())
    model = TFDebertaForSequenceClassification(config)
    assert {p.rsplit("/", 1)[1] for p in model.enable_lora(2)} == {"in_proj"}


def test_deepseek_lora_fit_merge_and_generate():
    keras.utils.set_random_seed(0)
    model = TFDeepseekV2ForCausalLM(DeepseekV2Config(**VARIANTS["v2"])).build_with_dummy_inputs()
    adapted = model.enable_lora(2)
    names = {p.rsplit("/", 1)[1] for p in adapted}
    assert names == {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"}
    _fit_checks(model, {"input_ids": _IDS, "labels": _IDS}, None, ())

    # Generation with adapters enabled: the absorbed decode reads kv_b_proj's kernel directly;
    # it must equal the uncached full-forward path and the merged model.
    prompt = _IDS[:2, :5]
    cached = to_numpy(model.generate(prompt, max_new_tokens=4, eos_token_id=None))
    uncached = to_numpy(model.generate(prompt, max_new_tokens=4, eos_token_id=None, use_cache=False))
    want = to_numpy(model(_IDS).logits)
    model.merge_lora()
    np.testing.assert_allclose(to_numpy(model(_IDS).logits), want, atol=1e-5, rtol=0)
    merged = to_numpy(model.generate(prompt, max_new_tokens=4, eos_token_id=None))
    np.testing.assert_array_equal(cached, uncached)
    np.testing.assert_array_equal(cached, merged)


def test_lora_arguments_are_checked():
    model = TFDeepseekV2ForCausalLM(DeepseekV2Config(**VARIANTS["lite"])).build_with_dummy_inputs()
    with pytest.raises(ValueError, match="no LoRA adapters"):
        model.merge_lora()
    with pytest.raises(ValueError, match=r"\['q_b_proj'\] name no layer"):
        model.enable_lora(2, target_modules=["q_proj", "q_b_proj"])  # lite has no q_lora
    with pytest.raises(ValueError, match="positive integer"):
        model.enable_lora(0)
    assert {p.rsplit("/", 1)[1] for p in model.enable_lora(2)} == {"q_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                                                                    "o_proj"}
    with pytest.raises(ValueError, match="already enabled"):
        model.enable_lora(2)
    with pytest.raises(ValueError, match="merge_lora"):
        model.quantize("int8")
