"""`from_pretrained(..., dtype=...)`: variables created in the requested dtype, bf16 checkpoints kept
bf16 end to end ("auto"), float32 loading exact; and the from_pretrained options of issue 14
(config overrides on a given config, remat, warnings for re-initialised tensors)."""

import json
import warnings

import keras
import numpy as np
import pytest

import deepseek_reference as ds
from harness import to_numpy
from hf_reference import V2_VARIANTS, assert_close, build_hf_model, hf_config
from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification, TFDebertaV2Model
from keras_deepseek import TFDeepseekV2ForCausalLM


def _relative_rms(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _float_dtypes(model):
    """The dtypes of the float variables, but for the MoE router's kernel, which stays float32 under
    every policy by design (layers/moe.py; transformers computes the router in float32 too)."""
    return {str(v.dtype) for v in model.weights if "float" in str(v.dtype) and "/mlp/gate/" not in v.path}


@pytest.fixture(scope="module")
def deepseek_bf16_dir(tmp_path_factory):
    """A transformers DeepSeek-V2 (Lite-like: dense + MoE layers) saved in bfloat16, in shards."""
    import torch

    hf_model = ds.build_hf_model(ds.hf_config("lite"), seed=11).to(torch.bfloat16)
    directory = tmp_path_factory.mktemp("deepseek_bf16")
    hf_model.save_pretrained(directory, max_shard_size="40KB")
    return str(directory), hf_model


def test_auto_keeps_a_bf16_checkpoint_bf16(deepseek_bf16_dir, rng):
    directory, hf_model = deepseek_bf16_dir
    assert json.load(open(f"{directory}/config.json"))["dtype"] == "bfloat16"
    model = TFDeepseekV2ForCausalLM.from_pretrained(directory, dtype="auto")
    assert _float_dtypes(model) == {"bfloat16"}
    assert model.config.dtype == "bfloat16"
    # A bf16 weight arrives bit for bit (no detour that rounds), read with the safetensors library.
    from safetensors import safe_open

    name = "model.layers.1.mlp.experts.4.up_proj.weight"
    shard = json.load(open(f"{directory}/model.safetensors.index.json"))["weight_map"][name]
    with safe_open(f"{directory}/{shard}", framework="pt") as f:
        want = f.get_tensor(name).float().numpy().T
    experts = model.model.decoder_layers[1].mlp.experts
    np.testing.assert_array_equal(to_numpy(experts.up_kernel)[4].astype("float32"), want)
    ids, mask = ds.batch(rng, model.config.vocab_size)
    ref = ds.hf_forward(hf_model, ids, mask).logits.float().numpy()
    got = to_numpy(model(input_ids=ids, attention_mask=mask).logits).astype("float32")
    keep = mask.astype(bool)
    # Both sides compute in bf16 (8-bit mantissa, 2^-8 per rounding) in different orders: a few
    # roundings per layer, and MoE routing may flip a near-tied token, as in the harness' check.
    assert _relative_rms(got[keep], ref[keep]) < 5e-2


def test_float32_loading_of_a_bf16_checkpoint_is_exact(deepseek_bf16_dir, rng):
    directory, hf_model = deepseek_bf16_dir
    model = TFDeepseekV2ForCausalLM.from_pretrained(directory, dtype="float32")
    assert _float_dtypes(model) == {"float32"}
    assert model.config.dtype == "float32"
    hf32 = ds.build_hf_model(hf_model.config, seed=0)
    hf32.load_state_dict({k: v.float() for k, v in hf_model.state_dict().items()})
    ids, mask = ds.batch(rng, model.config.vocab_size)
    ref = ds.hf_forward(hf32, ids, mask).logits.numpy()
    got = to_numpy(model(input_ids=ids, attention_mask=mask).logits)
    keep = mask.astype(bool)
    assert_close(got[keep], ref[keep], what="float32 from bf16 checkpoint")


@pytest.fixture(scope="module")
def deberta_dir(tmp_path_factory):
    hf_model = build_hf_model(hf_config(**V2_VARIANTS["v3_like"], num_labels=2),
                              cls_name="DebertaV2ForSequenceClassification", seed=4)
    directory = tmp_path_factory.mktemp("deberta")
    hf_model.save_pretrained(directory)
    return str(directory)


@pytest.mark.parametrize("dtype, variables", [("bfloat16", "bfloat16"), ("mixed_bfloat16", "float32"),
                                              ("float16", "float16"), (keras.DTypePolicy("mixed_float16"), "float32")])
def test_every_policy_creates_its_variables(deberta_dir, dtype, variables):
    model = TFDebertaV2Model.from_pretrained(deberta_dir, dtype=dtype)
    assert _float_dtypes(model) == {variables}
    policy = dtype if isinstance(dtype, keras.DTypePolicy) else keras.DTypePolicy(dtype)
    assert model.dtype_policy.name == policy.name


def test_auto_of_a_float32_checkpoint_and_the_default(deberta_dir):
    assert _float_dtypes(TFDebertaV2Model.from_pretrained(deberta_dir, dtype="auto")) == {"float32"}
    assert _float_dtypes(TFDebertaV2Model.from_pretrained(deberta_dir)) == {"float32"}


@pytest.mark.parametrize("dtype", ["int8", "float64", "bf16"])
def test_a_dtype_the_model_cannot_hold_is_refused(deberta_dir, dtype):
    with pytest.raises(ValueError, match="dtype must be 'auto', one of float32"):
        TFDebertaV2Model.from_pretrained(deberta_dir, dtype=dtype)


def test_bf16_save_round_trips_dtype_and_bits(deepseek_bf16_dir, tmp_path):
    import safetensors
    import transformers

    directory, hf_model = deepseek_bf16_dir
    model = TFDeepseekV2ForCausalLM.from_pretrained(directory, dtype="auto")
    model.save_pretrained(str(tmp_path))
    assert json.load(open(tmp_path / "config.json"))["dtype"] == "bfloat16"
    with safetensors.safe_open(str(tmp_path / "model.safetensors"), framework="numpy") as f:
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"
    reloaded = transformers.DeepseekV2ForCausalLM.from_pretrained(str(tmp_path), dtype="auto")
    assert reloaded.dtype == hf_model.dtype
    for name, value in hf_model.state_dict().items():
        assert (reloaded.state_dict()[name] == value).all(), name


# --- issue 14: options of from_pretrained --------------------------------------------------------


def test_overrides_apply_to_a_given_config_without_mutating_it(deberta_dir):
    config = DebertaV2Config.from_pretrained(deberta_dir)
    with pytest.warns(UserWarning, match="classifier"):
        model = TFDebertaV2ForSequenceClassification.from_pretrained(
            deberta_dir, config=config, num_labels=3, ignore_mismatched_sizes=True)
    assert model.config.num_labels == 3 and model.config is not config
    assert config.num_labels == 2
    assert model.classifier.kernel.shape[-1] == 3


def test_mismatched_sizes_warn_with_both_shapes(deberta_dir):
    with pytest.warns(UserWarning) as record:
        model = TFDebertaV2ForSequenceClassification.from_pretrained(deberta_dir, num_labels=5,
                                                                     ignore_mismatched_sizes=True)
    text = " ".join(str(w.message) for w in record)
    assert "classifier.weight: checkpoint (2, 32), model (5, 32)" in text
    assert "classifier.bias: checkpoint (2,), model (5,)" in text
    assert sorted(model.load_info["mismatched"]) == ["classifier.bias", "classifier.weight"]
    # Re-initialised, not left at the zeros the loader builds with.
    assert np.abs(to_numpy(model.classifier.kernel)).max() > 0


def test_remat_passes_through(deberta_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TFDebertaV2Model.from_pretrained(deberta_dir, remat=True)
    assert model.remat is True
