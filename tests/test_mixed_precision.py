"""Mixed precision on both families: `keras.config.set_dtype_policy("mixed_bfloat16" /
"mixed_float16")` runs at length 512 without NaN or inf and stays close to float32; one
mixed_float16 fit step is loss-scaled, finite and moves the weights.

Tolerances. Each comparison is the same weights run in float32 and in the mixed policy (float32
variables, bfloat16 / float16 compute), measured as the relative RMS error
||got - ref|| / ||ref|| over the whole output. One rounding costs at most eps = 2^-8 (3.9e-3) in
bfloat16 and 2^-11 (4.9e-4) in float16; a few layers of matmuls, LayerNorms and residuals add
errors of that size, so the DeBERTa bounds are 5 eps (2e-2) and 8 eps (4e-3) (measured: about
5e-3 and 6e-4). DeepSeek adds a discrete step: a token whose two best experts are nearly tied
may be routed differently in low precision and then sees another expert, an O(1) change on that
token. Such tokens are rare, so its bound is on the RMS (5e-2; measured 1.7e-2 and 7e-3) and on
next-token agreement (>= 95%), not on the maximum.
"""

import keras
import numpy as np
import pytest

from deepseek_reference import VARIANTS
from hf_reference import V1_VARIANTS, V2_VARIANTS, hf_config, hf_v1_config
from keras_deberta import (DebertaConfig, DebertaV2Config, TFDebertaModel, TFDebertaV2ForSequenceClassification,
                           TFDebertaV2Model)
from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM

POLICIES = ("mixed_bfloat16", "mixed_float16")
_IDS = np.random.RandomState(0).randint(3, 90, size=(1, 512)).astype("int32")  # batch 1, length 512
_MASK = np.ones_like(_IDS)
_MASK[:, :8] = 0  # left padding: fully masked query rows must stay NaN-free in float16 too


@pytest.fixture(autouse=True)
def float32_policy_after():
    yield
    keras.config.set_dtype_policy("float32")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x)).astype("float32")


def _perturbed_weights(model, scale=0.1):
    rng = np.random.RandomState(0)
    return [w + rng.randn(*w.shape).astype(w.dtype) * scale for w in model.get_weights()]


def _relative_rms(got, ref):
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _deberta():
    return TFDebertaV2Model(DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"]).to_dict()))


def _deberta_v1():
    # Talking heads (a Dense mixing the heads, before and after the softmax) over relative positions.
    config = hf_v1_config(**V1_VARIANTS["talking_heads"], max_position_embeddings=512)
    return TFDebertaModel(DebertaConfig(**config.to_dict()))


def _deepseek():
    # max_position_embeddings raised so that length 512 is allowed (YaRN settings unchanged).
    config = DeepseekV2Config(**{**VARIANTS["lite"], "max_position_embeddings": 1024})
    return TFDeepseekV2ForCausalLM(config).build_with_dummy_inputs()


@pytest.fixture(scope="module")
def float32_runs():
    """{family: (weights, float32 output at length 512)}, computed once."""
    keras.config.set_dtype_policy("float32")
    runs = {}
    for family, make, output in (("deberta", _deberta, "last_hidden_state"), ("deberta_v1", _deberta_v1, "last_hidden_state"),
                                 ("deepseek", _deepseek, "logits")):
        keras.utils.set_random_seed(0)
        model = make()
        weights = _perturbed_weights(model)
        model.set_weights(weights)
        runs[family] = (weights, _np(model(_IDS, attention_mask=_MASK)[output]))
    return runs


@pytest.mark.parametrize("family", ["deberta", "deberta_v1"])
@pytest.mark.parametrize("policy", POLICIES)
def test_deberta_length_512_is_finite_and_close_to_float32(policy, family, float32_runs):
    weights, ref = float32_runs[family]
    keras.config.set_dtype_policy(policy)
    model = {"deberta": _deberta, "deberta_v1": _deberta_v1}[family]()
    model.set_weights(weights)
    out = model(_IDS, attention_mask=_MASK).last_hidden_state
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    got = _np(out)
    assert np.isfinite(got).all()
    bound = {"mixed_bfloat16": 2e-2, "mixed_float16": 4e-3}[policy]
    assert _relative_rms(got, ref) <= bound, _relative_rms(got, ref)


@pytest.mark.parametrize("policy", POLICIES)
def test_deepseek_length_512_is_finite_and_close_to_float32(policy, float32_runs):
    weights, ref = float32_runs["deepseek"]
    keras.config.set_dtype_policy(policy)
    model = _deepseek()
    model.set_weights(weights)
    got = _np(model(_IDS, attention_mask=_MASK).logits)
    assert np.isfinite(got).all()
    assert _relative_rms(got, ref) <= 5e-2, _relative_rms(got, ref)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.95


def test_mixed_float16_fit_step_is_loss_scaled_finite_and_updates_weights():
    keras.config.set_dtype_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = TFDebertaV2ForSequenceClassification(
        DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"], num_labels=3).to_dict()))
    # Keras' compile wraps the optimizer in a LossScaleOptimizer when the model's policy is
    # mixed_float16 (Trainer.compile, auto_scale_loss=True): on every backend.
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    ids = np.random.RandomState(0).randint(3, 90, size=(4, 32)).astype("int32")
    labels = np.array([0, 1, 2, 1], "int32")
    before = [_np(v) for v in model.trainable_variables]
    history = model.fit({"input_ids": ids}, labels, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [_np(v) for v in model.trainable_variables]
    assert all(np.isfinite(a).all() for a in after)
    moved = sum(not np.array_equal(a, b) for a, b in zip(after, before))
    assert moved >= len(before) // 2, f"only {moved} of {len(before)} variables moved"


def test_latent_attention_scores_beyond_float16_range_stay_finite():
    """Weights large enough that the unscaled q.k exceeds float16's 65504 while the scaled scores
    do not: MLA scales the query before its products, so float16 gives the float32 result."""
    from layers.latent_attention import MultiHeadLatentAttention, attention_bias

    sizes = dict(hidden_size=32, num_heads=4, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6)
    x = keras.ops.ones((1, 6, 32), "float32")
    cos, sin = keras.ops.ones((1, 6, 2), "float32"), keras.ops.zeros((1, 6, 2), "float32")
    bias = attention_bias(np.ones((1, 6), "int32"), 6)
    outputs = {}
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        layer = MultiHeadLatentAttention(**sizes)
        layer.build()
        for v in layer.weights:  # constants: q entries 32 * 5.5, k_nope 16 * 5.5 (latent normed to 1), k_pe 32
            large = v.path.endswith(("q_proj/kernel", "kv_b_proj/kernel"))
            v.assign(np.full(v.shape, 5.5 if large else 1.0, "float32"))
        if policy == "float32":
            q_nope, _ = layer._queries(x, cos, sin)
            latent = layer.latent_entries(x, cos, sin)[..., :16]
            k_nope = keras.ops.reshape(layer.kv_b_proj(latent), (1, 6, 4, 14))[..., :8]
            unscaled = keras.ops.einsum("bshd,bthd->bhst", q_nope, k_nope)
            assert _np(unscaled).max() > 65504 > _np(unscaled).max() * layer.scale  # the regime tested
        outputs[policy] = _np(layer(x, cos, sin, bias)[0])
    assert np.isfinite(outputs["mixed_float16"]).all()
    assert _relative_rms(outputs["mixed_float16"], outputs["float32"]) <= 4e-3


def test_dtype_argument_applies_the_policy_to_every_layer():
    config = DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"]).to_dict())
    model = TFDebertaV2Model(config, dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    assert model.deberta.encoder_layers[0].attention.query_proj.compute_dtype == "bfloat16"
    assert keras.backend.standardize_dtype(model(_IDS[:, :8]).last_hidden_state.dtype) == "bfloat16"
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in model.weights)


@pytest.mark.parametrize("policy", POLICIES)
def test_deepseek_mixed_fit_and_cached_generation(policy):
    """fit on the model's own loss (LM + expert balance) is finite under each policy, float16 loss
    scaled; the latent cache (absorbed decode) gives the tokens the uncached forward gives."""
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = TFDeepseekV2ForCausalLM(DeepseekV2Config(**VARIANTS["v2"]))
    ids = np.random.RandomState(0).randint(3, 90, size=(4, 16)).astype("int32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    history = model.fit({"input_ids": ids, "labels": ids}, epochs=2, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    cached = _np(model.generate(ids[:2, :5], max_new_tokens=4, eos_token_id=None))
    uncached = _np(model.generate(ids[:2, :5], max_new_tokens=4, eos_token_id=None, use_cache=False))
    np.testing.assert_array_equal(cached, uncached)
