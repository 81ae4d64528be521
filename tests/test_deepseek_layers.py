"""DeepSeek-V2 building blocks against transformers' own functions: RoPE/YaRN, router, sparse MoE,
quantization, registry, training-time balance loss."""

import keras
import numpy as np
import pytest

from deepseek_reference import VARIANTS, hf_config
from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM
from layers import grouped_matmul
from layers.grouped_matmul import chunk_rows
from layers.moe import MoEBlock, RoutedExperts, dispatch_sizes
from layers.rotary import apply_interleaved_rope, normalize_rope_parameters, rope_cos_sin, rope_frequencies, softmax_scale


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_yarn_frequencies_scale_and_interleaved_rope_match_transformers(name):
    import torch
    from transformers.models.deepseek_v2 import modeling_deepseek_v2 as ref

    hf = hf_config(name)
    ours = DeepseekV2Config(**VARIANTS[name])
    rotary = ref.DeepseekV2RotaryEmbedding(hf)
    inv_freq, factor = rope_frequencies(ours.rope_parameters, ours.qk_rope_head_dim, ours.max_position_embeddings)
    np.testing.assert_allclose(inv_freq, rotary.inv_freq.numpy(), rtol=1e-6)
    assert factor == pytest.approx(rotary.attention_scaling)
    attention = ref.DeepseekV2Attention(hf, 0)
    assert softmax_scale(ours.rope_parameters, ours.qk_head_dim) == pytest.approx(attention.scaling, rel=1e-12)
    positions = np.arange(40)[None].repeat(2, 0)
    freqs = rotary(torch.zeros(1), torch.tensor(positions))
    x = np.random.RandomState(0).randn(2, 40, 3, ours.qk_rope_head_dim).astype("float32")
    k = np.random.RandomState(1).randn(2, 3, 40, ours.qk_rope_head_dim).astype("float32")
    want_q, _ = ref.apply_rotary_emb(torch.tensor(x).transpose(1, 2), torch.tensor(k), freqs)
    cos, sin = rope_cos_sin(positions, inv_freq, factor)
    got = _np(apply_interleaved_rope(keras.ops.convert_to_tensor(x), cos, sin))
    np.testing.assert_allclose(got, want_q.transpose(1, 2).numpy(), atol=2e-6)


def test_v2_lite_and_v2_registry_configs():
    from presets.registry import list_known

    assert {"deepseek-ai/DeepSeek-V2-Lite", "deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek-ai/DeepSeek-V2",
            "deepseek-ai/DeepSeek-V2-Chat"} <= set(list_known("deepseek_v2"))
    for hub_id, layers in [("deepseek-ai/DeepSeek-V2-Lite", 27), ("deepseek-ai/DeepSeek-V2", 60)]:
        config = DeepseekV2Config.from_pretrained(hub_id)  # from the registry, no download
        assert config.num_hidden_layers == layers
        assert config.cache_values_per_token == 576  # the paper's d_c + d_rope
        assert softmax_scale(config.rope_parameters, config.qk_head_dim) == pytest.approx(0.1147214, abs=1e-7)
    v2 = DeepseekV2Config.from_pretrained("deepseek-ai/DeepSeek-V2")
    per_head = v2.num_attention_heads * (v2.qk_head_dim + v2.v_head_dim)  # per-head K/V: 40,960 values
    assert per_head == 40960 and per_head / v2.cache_values_per_token > 71


def _moe(topk_method="greedy", **kwargs):
    layer = MoEBlock(hidden_size=16, moe_intermediate_size=8, n_routed_experts=8, num_experts_per_tok=2,
                     n_shared_experts=1, topk_method=topk_method, n_group=4 if topk_method != "greedy" else None,
                     topk_group=2 if topk_method != "greedy" else None, **kwargs)
    layer.build()
    return layer


@pytest.mark.parametrize("tokens", [1, 40])
def test_moe_computes_only_selected_experts(tokens):
    """Probe: rows pushed through expert weights are bounded by the selected work, never N * E,
    and the result equals the all-experts einsum."""
    layer = _moe("group_limited_greedy", routed_scaling_factor=16.0)
    x = np.random.RandomState(tokens).randn(tokens, 16).astype("float32")
    scores, idx, weight = layer.gate(keras.ops.convert_to_tensor(x))
    sparse = layer.experts(keras.ops.convert_to_tensor(x), idx, weight)
    info = layer.experts.last_dispatch
    A = tokens * 2
    block, blocks = dispatch_sizes(A, 8)
    chunk = chunk_rows(A, 8)
    # torch: exactly A; sorted chunks: at most A + (experts hit) * (chunk - 1); blocks: padded
    assert info["rows"] in (A, block * blocks, A + min(8, A) * (chunk - 1))
    assert block * blocks <= A + min(8, A) * (block - 1)
    assert info["rows"] < tokens * 8 or tokens == 1 and info["rows"] == 2
    if tokens == 1:
        assert info["rows"] == 2  # decoding: exactly top_k rows
    dense = layer.experts.dense_reference(keras.ops.convert_to_tensor(x), idx, weight)
    np.testing.assert_allclose(_np(sparse), _np(dense), rtol=1e-5, atol=1e-5)
    # group-limited routing picked experts from at most topk_group of the n_group groups
    groups = _np(idx) // 2
    assert all(len(set(row)) <= 2 for row in groups)


def test_backend_fast_path_agrees_with_keras_ops_blocks():
    layer = _moe()
    x = keras.ops.convert_to_tensor(np.random.RandomState(3).randn(12, 16).astype("float32"))
    _, idx, weight = layer.gate(x)
    fast = _np(layer.experts(x, idx, weight))  # the torch fast path on torch, the blocks elsewhere
    blocks = _np(layer.experts._call_blocks(x, idx, weight))
    np.testing.assert_allclose(fast, blocks, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_grouped_dispatch_equals_dense_reference_with_uneven_loads_and_an_idle_expert(chunk, monkeypatch):
    """Every sorted-rows path (chunk loop at several chunk sizes, ragged_dot on JAX, grouped_mm and
    the per-expert loop on torch, the training-time blocks) against every expert on every token:
    expert 0 takes all 20 tokens, expert 5 none, the others uneven."""
    layer = RoutedExperts(6, 16, 8)
    layer.build()
    rng = np.random.RandomState(chunk)
    x = keras.ops.convert_to_tensor(rng.randn(20, 16).astype("float32"))
    second = rng.choice([1, 2, 3, 4], p=[0.6, 0.2, 0.15, 0.05], size=20)
    idx = keras.ops.convert_to_tensor(np.stack([np.zeros(20, int), second], 1).astype("int32"))
    weight = keras.ops.convert_to_tensor(rng.rand(20, 2).astype("float32"))
    want = _np(layer.dense_reference(x, idx, weight))
    monkeypatch.setattr("layers.moe.chunk_rows", lambda a, e: chunk)
    got = {"chunks": layer._call_grouped(x, idx, weight), "blocks": layer._call_blocks(x, idx, weight),
           "training": layer(x, idx, weight, training=True)}
    if keras.backend.backend() == "jax":
        got["ragged_dot"] = layer._call_grouped(x, idx, weight, ragged=True)
    if keras.backend.backend() == "torch":
        got["grouped_mm"] = layer._call_torch(x, idx, weight)
        monkeypatch.setattr(grouped_matmul, "TORCH_GROUPED_MM", False)
        got["expert_loop"] = layer._call_torch(x, idx, weight)
    for name, value in got.items():
        np.testing.assert_allclose(_np(value), want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_moe_large_batch_work_stays_bounded():
    A, E = 6 * 4096, 32
    block, blocks = dispatch_sizes(A, E)
    assert block * blocks <= 1.5 * A + E and block * blocks < 4096 * E / 3  # dense: N * E rows


def test_norm_topk_prob_renormalises_like_the_original_code():
    layer = _moe(norm_topk_prob=True, routed_scaling_factor=16.0)
    x = keras.ops.convert_to_tensor(np.random.RandomState(0).randn(5, 16).astype("float32"))
    _, _, weight = layer.gate(x)
    np.testing.assert_allclose(_np(weight).sum(-1), 1.0, rtol=1e-6)


# Shapes shared with the parity tests ([3, 12] ids, the same configs): JAX's eager op cache is reused.
_IDS = np.random.RandomState(0).randint(3, 90, size=(3, 12)).astype("int32")


def test_balance_loss_added_in_training_only():
    config = DeepseekV2Config(**VARIANTS["lite"])
    model = TFDeepseekV2ForCausalLM(config)
    ids = _IDS
    model(ids, training=False)
    assert not model.losses
    model(ids, training=True)
    losses = [float(_np(l)) for l in model.losses]
    assert len(losses) == config.num_moe_layers and all(l > 0 for l in losses)


def test_quantize_int8_reaches_experts(monkeypatch):
    import gc

    monkeypatch.setattr(gc, "collect", lambda *args: 0)  # Keras collects after every deleted kernel
    keras.utils.set_random_seed(0)
    config = DeepseekV2Config(**VARIANTS["v2"])
    model = TFDeepseekV2ForCausalLM(config)
    ids = _IDS
    before = _np(model(ids).logits)
    model._generate_functions()["stale"] = None  # loops compiled before quantize must be dropped
    model.quantize("int8")
    assert "stale" not in model._generate_functions()
    experts = model.model.decoder_layers[0].mlp.experts
    assert experts.quantized and str(experts.gate_kernel.dtype) == "int8"
    assert model.model.decoder_layers[0].self_attn.kv_b_proj.quantization_mode == "int8"
    assert str(model.model.decoder_layers[0].mlp.gate.kernel.dtype) == "float32"  # router stays float
    after = _np(model(ids).logits)
    # int8 weights (and a routing decision flipped now and then, x16 scaling): close, not exact.
    assert np.corrcoef(after.ravel(), before.ravel())[0, 1] > 0.95
    # Decoding after quantization: the absorbed path reads the int8 kv_b_proj, experts dequantise.
    tokens = _np(model.generate(ids[:1, :4], max_new_tokens=2, eos_token_id=None))
    assert tokens.shape == (1, 6)


def test_routed_experts_quantize_matches_dequantised_weights(monkeypatch):
    import gc

    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    layer = RoutedExperts(4, 8, 6)
    layer.build()
    x = keras.ops.convert_to_tensor(np.random.RandomState(0).randn(5, 8).astype("float32"))
    idx = keras.ops.convert_to_tensor(np.array([[0, 1], [2, 3], [1, 2], [3, 0], [0, 2]], "int32"))
    w = keras.ops.convert_to_tensor(np.full((5, 2), 0.5, "float32"))
    before = _np(layer(x, idx, w))
    layer.quantize("int8")
    after = _np(layer(x, idx, w))
    np.testing.assert_allclose(after, before, atol=0.02 * np.abs(before).max())


def test_config_round_trip_keeps_unknown_keys_and_rope(tmp_path):
    config = DeepseekV2Config(**VARIANTS["lite"], custom_field="kept")
    config.save_pretrained(str(tmp_path))
    again = DeepseekV2Config.from_pretrained(str(tmp_path))
    assert again == config and again.custom_field == "kept"
    assert again.rope_parameters == normalize_rope_parameters(None, 10000.0, VARIANTS["lite"]["rope_scaling"], 64)
    with pytest.raises(ValueError, match="rope_type"):
        DeepseekV2Config(**{**VARIANTS["lite"], "rope_scaling": {"type": "dynamic", "factor": 2.0}})


def test_keras_file_round_trip(tmp_path):
    config = DeepseekV2Config(**VARIANTS["v2"])
    model = TFDeepseekV2ForCausalLM(config)
    ids = _IDS
    want = _np(model(ids).logits)
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_allclose(_np(loaded(ids).logits), want, atol=1e-6)


def test_fit_without_a_loss_trains_on_the_lm_loss():
    config = DeepseekV2Config(**VARIANTS["lite"])
    model = TFDeepseekV2ForCausalLM(config)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    ids = _IDS
    before = float(_np(model(ids, labels=ids).loss)[0])  # HF TF: loss shape [1]
    history = model.fit({"input_ids": ids, "labels": ids}, epochs=3, batch_size=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert float(_np(model(ids, labels=ids).loss)[0]) < before
