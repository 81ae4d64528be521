"""Eager torch runs full-form disentangled attention in batch slices; the result is unchanged.

`DisentangledSelfAttention._eager_batch_slices` splits the batch so that no c2p / p2c product
passes `layers.eager_torch.EAGER_TENSOR_BYTES`. These tests shrink that budget so a 3-row batch
splits unevenly (2 + 1 rows) and compare against transformers (outputs and attention maps, with
padding) and against the unsliced layer (outputs and gradients). MLA's query blocks follow the
same budget (tests/test_deepseek_parity.py).
"""

import keras
import numpy as np
import pytest

import keras_deberta as kd
import layers.eager_torch as eager_torch_module
from harness import to_numpy
from hf_reference import V2_VARIANTS, assert_close, build_hf_model, hf_config, hf_forward
from layers import DisentangledSelfAttention

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch",
                                reason="batch slices are an eager-torch path; XLA plans its own buffers")

LENGTH = 40  # past the relative span of v3_like (8 buckets): log buckets and clamping both act


def _budget_for_rows(heads, rows):
    """EAGER_TENSOR_BYTES that lets `rows` sequences of LENGTH into one slice."""
    return rows * heads * LENGTH * 2 * LENGTH * 4


def _count_sliced_calls(monkeypatch):
    calls = []
    original = DisentangledSelfAttention._full_attention_in_slices

    def spy(self, slices, *args, **kwargs):
        calls.append(list(slices))
        return original(self, slices, *args, **kwargs)

    monkeypatch.setattr(DisentangledSelfAttention, "_full_attention_in_slices", spy)
    return calls


def test_sliced_encoder_matches_transformers(monkeypatch, tmp_path):
    hf_model = build_hf_model(hf_config(**V2_VARIANTS["v3_like"]))
    hf_model.save_pretrained(tmp_path)
    rng = np.random.RandomState(5)
    ids = rng.randint(1, hf_model.config.vocab_size, size=(3, LENGTH)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, LENGTH - 9:] = 0  # right padding in the first slice
    mask[2, :4] = 0  # left padding in the second
    ref = hf_forward(hf_model, ids, mask, output_attentions=True)

    monkeypatch.setattr(eager_torch_module, "EAGER_TENSOR_BYTES", _budget_for_rows(hf_model.config.num_attention_heads, 2))
    calls = _count_sliced_calls(monkeypatch)
    model = kd.TFDebertaV2Model.from_pretrained(str(tmp_path))
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True)

    assert calls and all(slices == [(0, 2), (2, 3)] for slices in calls), calls
    valid = mask.astype(bool)
    assert_close(to_numpy(out.last_hidden_state), ref.last_hidden_state.numpy(), valid, what="sliced last_hidden_state")
    pair = np.broadcast_to(valid[:, None, :, None] & valid[:, None, None, :], ref.attentions[0].shape)
    for i, (got, want) in enumerate(zip(out.attentions, ref.attentions)):
        assert_close(to_numpy(got), want.numpy(), pair, what=f"sliced attentions[{i}]")


def test_sliced_layer_equals_one_pass_forward_and_gradients(monkeypatch):
    import torch

    hidden, heads = 16, 2
    rng = np.random.RandomState(0)
    layer = DisentangledSelfAttention(hidden, num_heads=heads, position_buckets=4, max_relative_positions=12,
                                      share_att_key=True, attention_block_size=0)
    layer.build((3, LENGTH, hidden))
    for v in layer.weights:
        v.assign(rng.randn(*v.shape).astype("float32") * 0.3)
    x = rng.randn(3, LENGTH, hidden).astype("float32")
    rel = rng.randn(2 * layer.span, hidden).astype("float32")
    mask = np.ones((3, LENGTH), bool)
    mask[0, :3] = False
    mask[2, LENGTH - 7:] = False
    weights = torch.tensor(rng.randn(3, LENGTH, hidden).astype("float32"))

    def run():
        inputs = [torch.tensor(a, requires_grad=True) for a in (x, rel)]
        for v in layer.trainable_variables:
            v.value.grad = None
        context, _ = layer(inputs[0], torch.tensor(mask), inputs[1])
        (context * weights).sum().backward()
        return context, [v.value.grad.clone() for v in layer.trainable_variables] + [a.grad for a in inputs]

    want_context, want_grads = run()
    monkeypatch.setattr(eager_torch_module, "EAGER_TENSOR_BYTES", _budget_for_rows(heads, 2))
    calls = _count_sliced_calls(monkeypatch)
    got_context, got_grads = run()

    assert calls == [[(0, 2), (2, 3)]]
    assert_close(to_numpy(got_context), to_numpy(want_context), tol=1e-6, what="sliced context")
    assert len(got_grads) == len(want_grads) == len(layer.trainable_variables) + 2
    for i, (got, want) in enumerate(zip(got_grads, want_grads)):
        assert_close(to_numpy(got), to_numpy(want), tol=1e-6, what=f"gradient {i}")


def test_products_over_the_budget_are_sliced_and_short_batches_are_not():
    layer = DisentangledSelfAttention(768, num_heads=12, position_buckets=256, max_relative_positions=512)
    # deberta-v3-base: one sequence of 512 makes a 12 x 512 x 1024 float32 product (24 MiB).
    assert layer._eager_batch_slices(8, 512) == [(i, i + 1) for i in range(8)]
    assert layer._eager_batch_slices(8, 128) is None  # 8 x 128 makes 12 MiB in all: one pass
    assert layer._eager_batch_slices(1, 512) is None
    assert layer._eager_batch_slices(3, 256) == [(0, 2), (2, 3)]  # 6 MiB a sequence: two fit
