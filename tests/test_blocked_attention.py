"""Blocked (memory-linear) disentangled attention equals the full form, on every backend.

The blocked form (`layers/blocked_attention.py`) computes the same scores `block` query rows at a
time; these tests force it with a small block on a length that is not a multiple of the block,
with padding, and compare outputs and gradients against the full form on equal weights, for the
DeBERTa-v2/v3 variants (log buckets, c2p only, p2c only, separate projections) and v1 (fused
q/k/v, talking heads); against transformers with the block forced small; and at L = 8192 under a
memory bound the full form's score tensor alone exceeds.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_deberta as kd
from hf_reference import (V1_VARIANTS, V2_VARIANTS, assert_close, build_hf_model, hf_config, hf_forward,
                          hf_v1_config)
from harness import to_numpy
from layers import DisentangledSelfAttention

LENGTH, BLOCK, HIDDEN = 37, 8, 16  # 37 = 4 blocks of 8 + 5: the last block is padded
TOL = 1e-5  # relative to max(1, |full form|)

LAYER_VARIANTS = {
    "v3_buckets_shared_key": dict(position_buckets=4, max_relative_positions=12, share_att_key=True),
    "v2_c2p_only_separate": dict(max_relative_positions=6, pos_att_type=("c2p",)),
    "v2_p2c_only_separate": dict(max_relative_positions=6, pos_att_type=("p2c",)),
    "v1_fused_talking_heads": dict(max_relative_positions=64, fused_qkv=True, position_key_bias=False,
                                   talking_head=True),
}


def _layer_pair(kwargs):
    """The full form and the blocked form of one attention layer, with equal perturbed weights."""
    rng = np.random.RandomState(0)
    x = rng.randn(2, LENGTH, HIDDEN).astype("float32")
    full = DisentangledSelfAttention(HIDDEN, num_heads=2, attention_block_size=0, **kwargs)
    blocked = DisentangledSelfAttention(HIDDEN, num_heads=2, attention_block_size=BLOCK, **kwargs)
    for layer in (full, blocked):
        layer.build(x.shape)
    for v in full.weights:
        v.assign(rng.randn(*v.shape).astype("float32") * 0.3)
    blocked.set_weights(full.get_weights())
    rel = rng.randn(2 * full.span, HIDDEN).astype("float32")
    mask = np.ones((2, LENGTH), bool)
    mask[0, :3] = False  # left padding
    mask[1, LENGTH - 7:] = False  # right padding
    weights = rng.randn(2, LENGTH, HIDDEN).astype("float32")  # the loss: sum(context * weights)
    return full, blocked, x, rel, mask, weights


def _loss_and_gradients(layer, x, rel, mask, weights):
    """-> (context, [d loss / d trainable weights..., d loss / d x, d loss / d rel]), compiled
    where the backend compiles (jax.jit; tf.function with the length left unknown; torch eager)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(trainable, x, rel):
            (context, _), _ = layer.stateless_call(trainable, non_trainable, x, mask, rel)
            return jnp.sum(context * weights), context

        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))
        (g_weights, g_x, g_rel), context = grad([v.value for v in layer.trainable_variables], x, rel)
        return context, [*g_weights, g_x, g_rel]
    if backend == "tensorflow":
        import tensorflow as tf

        spec = lambda shape, dtype="float32": tf.TensorSpec(shape, dtype)

        @tf.function(input_signature=[spec([None, None, HIDDEN]), spec([None, HIDDEN]), spec([None, None], "bool"),
                                      spec([None, None, HIDDEN])])
        def run(x, rel, mask, weights):
            with tf.GradientTape() as tape:
                tape.watch([x, rel])
                context, _ = layer(x, mask, rel)
                loss = tf.reduce_sum(context * weights)
            return context, tape.gradient(loss, [v.value for v in layer.trainable_variables] + [x, rel])

        return run(x, rel, mask, weights)
    import torch

    x, rel = (torch.tensor(a, requires_grad=True) for a in (x, rel))
    context, _ = layer(x, torch.tensor(mask), rel)
    (context * torch.tensor(weights)).sum().backward()
    return context, [v.value.grad for v in layer.trainable_variables] + [x.grad, rel.grad]


@pytest.mark.parametrize("name", sorted(LAYER_VARIANTS))
def test_blocked_layer_equals_full_form_forward_and_gradients(name):
    full, blocked, x, rel, mask, weights = _layer_pair(LAYER_VARIANTS[name])
    want_context, want_grads = _loss_and_gradients(full, x, rel, mask, weights)
    got_context, got_grads = _loss_and_gradients(blocked, x, rel, mask, weights)
    assert_close(to_numpy(got_context), to_numpy(want_context), tol=TOL, what=f"{name} context")
    names = [v.path for v in full.trainable_variables] + ["hidden_states", "rel_embeddings"]
    assert len(got_grads) == len(want_grads) == len(names)
    for label, got, want in zip(names, got_grads, want_grads):
        assert_close(to_numpy(got), to_numpy(want), tol=TOL, what=f"{name} gradient of {label}")


def test_blocked_layer_takes_a_pairwise_mask():
    full, blocked, x, rel, _, _ = _layer_pair(LAYER_VARIANTS["v3_buckets_shared_key"])
    mask = np.random.RandomState(1).rand(2, LENGTH, LENGTH) > 0.3  # [B, Lq, Lk]
    mask[0, 5] = False  # one query row with no key at all
    want = to_numpy(full(x, mask, rel)[0])
    assert_close(to_numpy(blocked(x, mask, rel)[0]), want, tol=TOL, what="pairwise mask")


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_blocked_encoder_matches_transformers(version, tmp_path):
    """Block of 4 forced through the config on a length-40 padded batch (40 > the relative span):
    outputs equal transformers' full attention."""
    if version == "v2":
        hf_model = build_hf_model(hf_config(**V2_VARIANTS["v3_like"]))
        cls = kd.TFDebertaV2Model
    else:
        hf_model = build_hf_model(hf_v1_config(**V1_VARIANTS["span_shorter_than_sequence"]), cls_name="DebertaModel")
        cls = kd.TFDebertaModel
    hf_model.save_pretrained(tmp_path)
    rng = np.random.RandomState(3)
    ids = rng.randint(1, hf_model.config.vocab_size, size=(2, 40)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 31:] = 0
    ref = hf_forward(hf_model, ids, mask).last_hidden_state.numpy()
    model = cls.from_pretrained(str(tmp_path), attention_block_size=4)
    assert model.config.to_dict()["attention_block_size"] == 4
    got = to_numpy(model(input_ids=ids, attention_mask=mask).last_hidden_state)
    assert_close(got, ref, mask.astype(bool), what=f"{version} blocked vs transformers")


_LONG_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import keras
    import numpy as np
    sys.path.insert(0, {root!r})
    import keras_deberta as kd
    config = kd.DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads={heads},
                                intermediate_size=16, relative_attention=True, position_buckets=256,
                                max_relative_positions=512, share_att_key=True, pos_att_type="p2c|c2p",
                                position_biased_input=False, norm_rel_ebd="layer_norm")
    if {train}:  # one training step: forward, backward (attention dropout 0 keeps the blocked form), SGD
        config.num_labels, config.attention_probs_dropout_prob, config.hidden_dropout_prob = 2, 0.0, 0.0
        model = kd.TFDebertaV2ForSequenceClassification(config)
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        run = lambda length: np.asarray(model.train_on_batch(np.ones((1, length), "int32"), np.zeros((1,), "int32")))
    else:
        model = kd.TFDebertaV2Model(config)  # attention_block_size None: automatic
        run = lambda length: keras.ops.convert_to_numpy(model(np.ones((1, length), "int32")).last_hidden_state)
    run(16)  # imports, build and first-call costs land before the baseline
    before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()  # resident now
    out = run({length})
    # VmHWM, not ru_maxrss: ru_maxrss starts from the forking parent's peak (a long pytest run).
    after = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    print(json.dumps({{"growth": after - before, "before": before, "finite": bool(np.isfinite(out).all()), "shape": list(out.shape)}}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident size from /proc")
@pytest.mark.parametrize("train", [False, True], ids=["forward", "training_step"])
def test_length_8192_runs_under_a_bound_the_full_form_exceeds(train):
    """One [1, H, L, L] float32 score tensor is the least the full form holds (it also holds two
    [1, H, L, 2L] position products; its backward keeps several such tensors); with the automatic
    blocked form the peak resident size may not grow by that much over the resident size before
    the call, in a forward call or in a training step (the backward pass recomputes each block's
    scores: measured growth at L = 8192, AMD EPYC: TensorFlow 816-893 MiB, JAX 536-555, PyTorch
    618-647; a TensorFlow step that kept every block's scores grew 4687 MiB). Four heads keep every per-block
    tensor above glibc's largest mmap threshold (32 MiB), so freed blocks go back to the system
    rather than staying in the heap and adding up in the peak."""
    heads, length = 4, 8192
    full_scores_bytes = 1 * heads * length * length * 4  # 1 GiB
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = _LONG_SCRIPT.format(root=root, heads=heads, length=length, train=train)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": keras.backend.backend()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["finite"] and result["shape"] == ([] if train else [1, length, 16])
    print(f"peak RSS growth at L={length}: {result['growth'] / 2**20:.0f} MiB "
          f"(bound {full_scores_bytes / 2**20:.0f} MiB)")
    assert result["growth"] < full_scores_bytes, (
        f"peak RSS grew {result['growth'] / 2**30:.2f} GiB at L={length}; the full form's scores alone "
        f"are {full_scores_bytes / 2**30:.2f} GiB")


def test_row_gather_fast_path_equals_take_along_axis():
    """`_gather_rows` (torch.gather on torch) against keras.ops.take_along_axis, every backend."""
    from layers.blocked_attention import _gather_rows

    rng = np.random.RandomState(4)
    table = keras.ops.convert_to_tensor(rng.randn(2, 3, 5, 7).astype("float32"))  # [B, H, R, L]
    index = keras.ops.convert_to_tensor(rng.randint(0, 5, size=(4, 7)).astype("int32"))  # [blk, L]
    want = keras.ops.take_along_axis(table, index[None, None], axis=2)
    np.testing.assert_array_equal(to_numpy(_gather_rows(table, index)), to_numpy(want))
