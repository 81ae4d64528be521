"""DeepSeek-V2 parity with transformers 5.x on perturbed random checkpoints (every backend)."""

import json
import os

import keras
import numpy as np
import pytest

from deepseek_reference import HUB_ONLY, VARIANTS, batch, build_hf_model, hf_config, hf_forward
from hf_reference import assert_close
from harness import to_numpy
from keras_deepseek import (DeepseekV2Config, TFDeepseekV2ForCausalLM, TFDeepseekV2ForSequenceClassification,
                            TFDeepseekV2Model)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def checkpoint(request, tmp_path_factory):
    config = hf_config(request.param)
    model = build_hf_model(config)
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    ours = TFDeepseekV2ForCausalLM.from_pretrained(str(directory))
    return request.param, model, str(directory), ours


def test_causal_lm_logits_and_loss(checkpoint):
    name, hf_model, directory, model = checkpoint
    ids, mask = batch(np.random.RandomState(0), hf_model.config.vocab_size)
    labels = np.where(mask == 1, ids, -100)
    labels[0, 5] = -100
    ref = hf_forward(hf_model, ids, mask, labels=labels)
    out = model(ids, attention_mask=mask, labels=labels)
    # Every position, padding included (fully masked queries give 0 attention, as torch SDPA).
    assert_close(to_numpy(out.logits), ref.logits.numpy(), what=f"{name} logits")
    assert_close(to_numpy(out.loss), ref.loss.numpy().reshape(1), what=f"{name} loss")  # HF TF: loss shape [1]
    unpadded = model(ids[:1])
    assert_close(to_numpy(unpadded.logits), hf_forward(hf_model, ids[:1]).logits.numpy(), what=f"{name} no mask")


def test_long_prompt_query_blocks_match_transformers(checkpoint, monkeypatch):
    """MLA's query-blocked prefill (used above 2 * query_block tokens) on a 12-token padded batch
    with blocks of 5 (uneven last block): same logits as transformers."""
    from layers.latent_attention import MultiHeadLatentAttention

    name, hf_model, directory, model = checkpoint
    ids, mask = batch(np.random.RandomState(0), hf_model.config.vocab_size)
    monkeypatch.setattr(MultiHeadLatentAttention, "query_block", 5)
    out = model(ids, attention_mask=mask)
    assert_close(to_numpy(out.logits), hf_forward(hf_model, ids, mask).logits.numpy(), what=f"{name} blocked")


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the eager-torch block budget applies on torch only")
def test_eager_torch_query_blocks_follow_the_tensor_budget(checkpoint, monkeypatch):
    """On eager torch the query block shrinks until [B, H, block, T] scores fit the eager budget
    (`layers.eager_torch`); a budget of 3 query rows gives blocks of 3 over 12 tokens, same logits."""
    import layers.eager_torch as eager_torch_module
    from layers.latent_attention import MultiHeadLatentAttention

    name, hf_model, directory, model = checkpoint
    ids, mask = batch(np.random.RandomState(0), hf_model.config.vocab_size)
    B, T = ids.shape
    monkeypatch.setattr(eager_torch_module, "EAGER_TENSOR_BYTES", 3 * B * hf_model.config.num_attention_heads * T * 4)
    softmax_calls = []
    original = MultiHeadLatentAttention._softmax
    monkeypatch.setattr(MultiHeadLatentAttention, "_softmax",
                        lambda self, *a, **k: softmax_calls.append(1) or original(self, *a, **k))
    out = model(ids, attention_mask=mask)
    assert len(softmax_calls) == hf_model.config.num_hidden_layers * -(-T // 3)
    assert_close(to_numpy(out.logits), hf_forward(hf_model, ids, mask).logits.numpy(), what=f"{name} eager blocks")


def test_base_model_last_hidden_state(checkpoint):
    name, hf_model, directory, _ = checkpoint
    ids, mask = batch(np.random.RandomState(1), hf_model.config.vocab_size)
    ref = hf_forward(hf_model.model, ids, mask, output_hidden_states=True)
    base = TFDeepseekV2Model.from_pretrained(directory)  # strips the "model." prefix
    assert base.load_info["ignored"] == ["lm_head.weight"]
    out = base(ids, attention_mask=mask, output_hidden_states=True)
    assert_close(to_numpy(out.last_hidden_state), ref.last_hidden_state.numpy(), what=f"{name} last_hidden_state")
    assert len(out.hidden_states) == len(ref.hidden_states) == hf_model.config.num_hidden_layers + 1
    for i, (got, want) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_close(to_numpy(got), want.numpy(), what=f"{name} hidden_states[{i}]")
    as_dict = base({"input_ids": ids, "attention_mask": mask})["last_hidden_state"]
    as_tuple = base([ids, mask], return_dict=False)[0]
    np.testing.assert_array_equal(to_numpy(as_dict), to_numpy(as_tuple))


def test_sequence_classification(tmp_path):
    config = hf_config("lite", num_labels=3)
    hf_model = build_hf_model(config, "DeepseekV2ForSequenceClassification", seed=2)
    hf_model.save_pretrained(tmp_path)
    ids, mask = batch(np.random.RandomState(2), config.vocab_size)
    labels = np.array([0, 2, 1])
    ref = hf_forward(hf_model, ids, mask, labels=labels)
    model = TFDeepseekV2ForSequenceClassification.from_pretrained(str(tmp_path))
    out = model(ids, attention_mask=mask, labels=labels.astype("int32"))
    assert tuple(out.logits.shape) == (3, 3)
    assert_close(to_numpy(out.logits), ref.logits.numpy(), what="sequence classification logits")
    assert_close(to_numpy(out.loss), ref.loss.numpy().reshape(1), what="sequence classification loss")


def test_hub_style_config_json(tmp_path):
    """The Hub's config.json: rope_theta + rope_scaling, Hub-only fields, auto_map (never run);
    weights in sharded safetensors with an index, as the Hub's DeepSeek repositories."""
    hf_model = build_hf_model(hf_config("lite"), seed=4)
    hf_model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    config.pop("rope_parameters")
    config.pop("dtype", None)
    config.update(rope_theta=10000.0, rope_scaling=dict(VARIANTS["lite"]["rope_scaling"]), torch_dtype="float32")
    config.update(HUB_ONLY)
    path.write_text(json.dumps(config))
    ours = DeepseekV2Config.from_pretrained(str(tmp_path))
    assert ours.rope_parameters["rope_type"] == "yarn" and ours.rope_parameters["factor"] == 4.0
    assert ours.rope_theta == 10000.0
    assert (ours.moe_layer_freq, ours.scoring_func, ours.aux_loss_alpha, ours.seq_aux, ours.ep_size) == \
        (1, "softmax", 0.001, True, 1)
    assert not hasattr(ours, "auto_map") and "auto_map" not in ours.to_dict()
    ids, mask = batch(np.random.RandomState(3), config["vocab_size"])
    ref = hf_forward(hf_model, ids, mask).logits.numpy()
    model = TFDeepseekV2ForCausalLM.from_pretrained(str(tmp_path))
    assert_close(to_numpy(model(ids, attention_mask=mask).logits), ref, what="hub-style config logits")


def test_save_pretrained_loads_in_transformers(checkpoint, tmp_path):
    import transformers

    name, hf_model, directory, model = checkpoint
    model.save_pretrained(str(tmp_path))
    reloaded = transformers.DeepseekV2ForCausalLM.from_pretrained(str(tmp_path)).eval()
    ids, mask = batch(np.random.RandomState(5), hf_model.config.vocab_size)
    want = hf_forward(hf_model, ids, mask).logits.numpy()
    assert_close(hf_forward(reloaded, ids, mask).logits.numpy(), want, what=f"{name} transformers reload")
    ours = TFDeepseekV2ForCausalLM.from_pretrained(str(tmp_path))
    np.testing.assert_array_equal(to_numpy(ours.model.decoder_layers[-1].mlp.experts.down_kernel),
                                  to_numpy(model.model.decoder_layers[-1].mlp.experts.down_kernel))


def test_missing_and_misshaped_expert_tensors_are_named(checkpoint, tmp_path):
    from presets import read_safetensors
    from presets.errors import CheckpointError
    from presets.writers import save_safetensors

    name, hf_model, directory, model = checkpoint
    tensors = dict(read_safetensors(os.path.join(directory, "model.safetensors")))
    last = hf_model.config.num_hidden_layers - 1
    tensors.pop(f"model.layers.{last}.mlp.experts.1.up_proj.weight")
    tensors[f"model.layers.{last}.mlp.experts.0.down_proj.weight"] = np.zeros((3, 3), "float32")
    save_safetensors(tensors, str(tmp_path / "model.safetensors"))
    hf_model.config.save_pretrained(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"experts\.1\.up_proj.*|experts\.0\.down_proj"):
        TFDeepseekV2ForCausalLM.from_pretrained(str(tmp_path))


def test_gpu_kernel_choice_matches_transformers(checkpoint, monkeypatch):
    """With the device reported as a GPU, MLA's prefill runs through `ops.dot_product_attention`
    (values zero-padded to the key width) and the experts skip the CPU chunk loop: the left- and
    right-padded batch still gives transformers' logits."""
    from layers import kernel_choice
    from layers.latent_attention import MultiHeadLatentAttention

    name, hf_model, directory, model = checkpoint
    ids, mask = batch(np.random.RandomState(0), hf_model.config.vocab_size)
    monkeypatch.setattr(kernel_choice, "device_kind", lambda: "gpu")
    fused_calls = []
    original = MultiHeadLatentAttention._fused
    monkeypatch.setattr(MultiHeadLatentAttention, "_fused",
                        lambda self, *a, **k: fused_calls.append(1) or original(self, *a, **k))
    monkeypatch.setattr("layers.moe.chunked_expert_mlp", lambda *a, **k: pytest.fail("CPU chunk loop on a GPU"))
    out = model(ids, attention_mask=mask)
    assert len(fused_calls) == hf_model.config.num_hidden_layers
    assert_close(to_numpy(out.logits), hf_forward(hf_model, ids, mask).logits.numpy(), what=f"{name} gpu kernels")
