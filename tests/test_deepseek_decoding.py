"""DeepSeek-V2 decoding: the latent-only MLA cache, absorbed vs expanded attention, generate()."""

import keras
import numpy as np
import pytest

from deepseek_reference import batch, build_hf_model, hf_config
from keras_deepseek import TFDeepseekV2ForCausalLM


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


_LOADED = {}


def _load(name, tmp_path_factory):
    # One model per variant for the whole module: compiled generate loops are cached on it.
    if name not in _LOADED:
        hf_model = build_hf_model(hf_config(name), seed=7)
        directory = tmp_path_factory.mktemp(name)
        hf_model.save_pretrained(directory)
        _LOADED[name] = (name, hf_model, TFDeepseekV2ForCausalLM.from_pretrained(str(directory)))
    return _LOADED[name]


@pytest.fixture(scope="module", params=["lite", "v2"])
def models(request, tmp_path_factory):
    yield _load(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    yield _load("lite", tmp_path_factory)
    _LOADED.clear()


@pytest.fixture(scope="module")
def prompts():
    return np.random.RandomState(11).randint(3, 97, size=(2, 6)).astype("int32")


def _prefill(model, ids, mask, total, absorb):
    config = model.config
    caches = [keras.ops.zeros((ids.shape[0], total, config.cache_values_per_token))
              for _ in range(config.num_hidden_layers)]
    valid = np.concatenate([mask, np.zeros((ids.shape[0], total - ids.shape[1]), "int32")], 1)
    positions = np.where(mask == 0, 1, np.cumsum(mask, -1) - 1).astype("int32")
    out = model.model(ids, position_ids=positions, caches=caches, cache_index=0, key_valid=valid, absorb=absorb)
    return model.logits_from_hidden(out["last_hidden_state"]), out["caches"]


def test_cache_holds_only_latent_and_rope_key(models):
    """layers x tokens x (kv_lora_rank + qk_rope_head_dim) values per sequence, nothing else."""
    name, _, model = models
    config = model.config
    ids, mask = batch(np.random.RandomState(0), config.vocab_size)  # [3, 12], as the parity tests
    _, caches = _prefill(model, ids, mask, total=12, absorb=False)
    per_token = config.kv_lora_rank + config.qk_rope_head_dim
    assert len(caches) == config.num_hidden_layers
    for cache in caches:
        assert tuple(cache.shape) == (3, 12, per_token)
    per_sequence = sum(int(np.prod(c.shape)) for c in caches) // 3
    assert per_sequence == config.num_hidden_layers * 12 * per_token
    assert model.cache_bytes_per_token() == config.num_hidden_layers * per_token * 4
    # What is cached is the normalised latent and the roped k_pe of each token.
    layer = model.model.decoder_layers[0]
    hidden = model.model.embed_tokens(ids)
    from layers.rotary import rope_cos_sin

    positions = np.where(mask == 0, 1, np.cumsum(mask, -1) - 1).astype("int32")
    cos, sin = rope_cos_sin(positions, model.model.inv_freq, model.model.attention_factor)
    entries = layer.self_attn.latent_entries(layer.input_layernorm(hidden), cos, sin)
    np.testing.assert_allclose(_np(caches[0]), _np(entries), atol=1e-6)


def test_absorbed_and_expanded_attention_agree(models):
    name, _, model = models
    ids, mask = batch(np.random.RandomState(1), model.config.vocab_size)
    expanded, cache_e = _prefill(model, ids, mask, total=12, absorb=False)
    absorbed, cache_a = _prefill(model, ids, mask, total=12, absorb=True)
    valid = mask.astype(bool)
    np.testing.assert_allclose(_np(absorbed)[valid], _np(expanded)[valid], atol=2e-5, rtol=1e-5)
    for a, e in zip(cache_a, cache_e):
        np.testing.assert_allclose(_np(a), _np(e), atol=1e-5)  # later layers carry layer 0 float error


def test_greedy_generate_equals_transformers(models, prompts):
    import torch

    name, hf_model, model = models
    ref = hf_model.generate(torch.tensor(prompts, dtype=torch.long), attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                            max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0).numpy()
    got = _np(model.generate(prompts, max_new_tokens=8, eos_token_id=None))
    np.testing.assert_array_equal(got, ref)


def test_decoding_in_a_larger_cache_bucket_equals_transformers(lite):
    """Two prompt / new-token splits whose bucketed prompt (16 slots) plus new tokens land in the
    24-slot cache bucket (the other tests use 16 slots): the second reuses the first's compiled
    decode loop, and both equal transformers' generate token for token."""
    import torch

    from keras_deepseek.generation import GENERATE_FUNCTIONS, cache_bucket

    name, hf_model, model = lite
    model.__dict__.pop("_generate_fns", None)  # count only this test's compiled functions
    max_positions = model.config.max_position_embeddings
    rng = np.random.RandomState(13)
    for prompt_length, new in ((9, 8), (14, 5)):
        padded = cache_bucket(prompt_length, max_positions)
        assert padded == 16 and cache_bucket(padded + new, max_positions) == 24
        ids = rng.randint(3, 97, size=(2, prompt_length)).astype("int32")
        ref = hf_model.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                                max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0).numpy()
        np.testing.assert_array_equal(_np(model.generate(ids, max_new_tokens=new, eos_token_id=None)), ref)
    decode_loops = [key for key in model._generate_fns if key[2] == "decode"]
    assert [key[4] for key in decode_loops] == [24] and len(model._generate_fns) <= GENERATE_FUNCTIONS


def test_streaming_decode_over_cache_chunks_equals_transformers(lite, monkeypatch):
    """The decode that reads the cache in chunks with a streaming softmax and skips unwritten
    slots (used for caches of >= 1024 slots), forced here with 4-slot chunks over the 16-slot
    cache; row 0 is left-padded by 5, so its first chunk holds no visible key."""
    import torch

    from layers.latent_attention import MultiHeadLatentAttention

    name, hf_model, model = lite
    ids = np.random.RandomState(14).randint(3, 97, size=(2, 9)).astype("int32")
    mask = np.ones_like(ids)
    ids[0, :5], mask[0, :5] = 0, 0
    ref = hf_model.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                            max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0).numpy()
    monkeypatch.setattr(MultiHeadLatentAttention, "decode_chunk", 4)
    model.__dict__.pop("_generate_fns", None)  # compiled loops read decode_chunk when they are traced
    try:
        got = _np(model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None))
    finally:
        model.__dict__.pop("_generate_fns", None)
    np.testing.assert_array_equal(got, ref)


def test_decode_loop_computes_absorbed_kernels_once(lite, prompts, monkeypatch):
    """The absorbed decode's per-layer kernels are computed before the decode loop and handed to
    every step (not rebuilt inside the loop, where XLA leaves their transposes). Every absorbed
    attention call of the loop gets them; on eager PyTorch, whose loop runs step by step, they are
    computed once per layer for the whole generate call. Tokens still equal transformers'."""
    import torch

    from layers.latent_attention import MultiHeadLatentAttention

    name, hf_model, model = lite
    built, received = [], []
    original_kernels = MultiHeadLatentAttention.absorbed_kernels
    original_absorbed = MultiHeadLatentAttention._absorbed

    def counting_kernels(self):
        built.append(self.name)
        return original_kernels(self)

    def recording_absorbed(self, q_nope, q_pe, keys, bias, training, absorbed=None):
        received.append(absorbed is not None)
        return original_absorbed(self, q_nope, q_pe, keys, bias, training, absorbed)

    monkeypatch.setattr(MultiHeadLatentAttention, "absorbed_kernels", counting_kernels)
    monkeypatch.setattr(MultiHeadLatentAttention, "_absorbed", recording_absorbed)
    model.__dict__.pop("_generate_fns", None)  # trace the decode loop again, with the spies in place
    try:
        got = _np(model.generate(prompts, max_new_tokens=6, eos_token_id=None))
    finally:
        model.__dict__.pop("_generate_fns", None)
    ref = hf_model.generate(torch.tensor(prompts, dtype=torch.long), attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                            max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0).numpy()
    np.testing.assert_array_equal(got, ref)
    layers = model.config.num_hidden_layers
    assert received and all(received)  # the prefill attends in the expanded form: only decode steps
    assert len(built) == layers
    if keras.backend.backend() == "torch":
        assert len(received) == layers * 6  # one eager model step per new token, one call per layer each


def test_cached_decoding_equals_full_recomputation(lite, prompts):
    name, _, model = lite
    cached = _np(model.generate(prompts, max_new_tokens=8, eos_token_id=None))
    full = _np(model.generate(prompts, max_new_tokens=8, eos_token_id=None, use_cache=False))
    np.testing.assert_array_equal(cached, full)


def test_left_padded_row_generates_what_it_generates_alone(lite, prompts):
    name, _, model = lite
    longer = np.random.RandomState(12).randint(3, 97, size=(1, 9)).astype("int32")
    padded = np.concatenate([np.zeros((1, 3), "int32"), prompts[:1]], axis=1)
    ids = np.concatenate([padded, longer], axis=0)
    mask = np.concatenate([np.r_[np.zeros(3), np.ones(6)][None], np.ones((1, 9))], axis=0).astype("int32")
    together = _np(model.generate(ids, attention_mask=mask, max_new_tokens=8, eos_token_id=None))
    alone = _np(model.generate(prompts, max_new_tokens=8, eos_token_id=None))  # compiled already
    np.testing.assert_array_equal(together[0, 3:], alone[0])


def test_eos_stops_and_pads(lite, prompts):
    name, _, model = lite
    free = _np(model.generate(prompts, max_new_tokens=8, eos_token_id=None))
    eos = int(free[0, 6 + 2])  # row 0's third new token
    got = _np(model.generate(prompts, max_new_tokens=8, eos_token_id=eos, pad_token_id=0))
    first = [int(np.argmax(free[r, 6:] == eos)) if (free[r, 6:] == eos).any() else 8 for r in range(2)]
    assert got.shape[1] == 6 + min(max(first) + 1, 8)
    for r in range(2):
        n = first[r]
        np.testing.assert_array_equal(got[r, : 6 + min(n + 1, got.shape[1] - 6)], free[r, : 6 + min(n + 1, got.shape[1] - 6)])
        assert (got[r, 6 + n + 1:] == 0).all()


def test_sampling_is_seeded_and_respects_top_k(lite, prompts):
    name, _, model = lite
    kwargs = dict(max_new_tokens=8, do_sample=True, temperature=0.7, top_k=5, top_p=0.9, eos_token_id=None)
    a = _np(model.generate(prompts, seed=1, **kwargs))
    b = _np(model.generate(prompts, seed=1, **kwargs))
    np.testing.assert_array_equal(a, b)
    c = _np(model.generate(prompts, seed=2, **kwargs))
    assert not np.array_equal(a, c)
    greedy = _np(model.generate(prompts, max_new_tokens=8, eos_token_id=None))
    top1 = _np(model.generate(prompts, max_new_tokens=8, do_sample=True, top_k=1, seed=0, eos_token_id=None))
    np.testing.assert_array_equal(top1, greedy)


def test_bad_generation_inputs_raise_clearly(lite, prompts):
    name, _, model = lite
    limit = model.config.max_position_embeddings
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.generate(prompts, max_new_tokens=limit)
    for kwargs, pattern in [(dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"), (dict(top_p=0.0), "top_p"),
                            (dict(top_p=1.5), "top_p"), (dict(temperature=0.0), "temperature"),
                            (dict(temperature=-1.0), "temperature")]:
        with pytest.raises(ValueError, match=pattern):
            model.generate(prompts, max_new_tokens=2, do_sample=True, **kwargs)
    bad = prompts.copy()
    bad[0, 0] = model.config.vocab_size
    with pytest.raises(ValueError, match="input_ids"):
        model.generate(bad, max_new_tokens=2)
    with pytest.raises(ValueError, match="input_ids"):
        model(bad)
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(prompts, attention_mask=np.ones((2, 3), "int32"), max_new_tokens=2)
