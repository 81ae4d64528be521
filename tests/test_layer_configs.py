"""Every layer in layers/ is registered serializable and its `get_config` holds every constructor
argument, so `from_config` rebuilds the same layer (same config, same outputs with the same weights)."""

import inspect

import keras
import numpy as np
import pytest

import layers

# One instance of each public layer class, with non-default arguments where they exist, and an input.
CASES = {
    "DisentangledSelfAttention": (lambda: layers.DisentangledSelfAttention(
        16, num_heads=2, position_buckets=8, max_relative_positions=16, pos_att_type=["c2p"], share_att_key=False,
        position_key_bias=True, kernel_initializer="he_normal", attention_block_size=0), None),
    "DebertaEmbeddings": (lambda: layers.DebertaEmbeddings(
        50, 16, embedding_size=8, max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-5), None),
    "RelativeEmbedding": (lambda: layers.RelativeEmbedding(12, 16, layer_norm=True, layer_norm_eps=1e-5), None),
    "NGIEConv": (lambda: layers.NGIEConv(16, kernel_size=3, groups=2, activation="gelu",
                                         kernel_initializer="he_normal"), None),
    "GatedMLP": (lambda: layers.GatedMLP(16, 24, "gelu", True, "he_normal"), (5, 16)),
    "TopKRouter": (lambda: layers.TopKRouter(8, 3, "group_limited_greedy", n_group=4, topk_group=2,
                                             routed_scaling_factor=2.5, norm_topk_prob=True,
                                             initializer_range=0.5), (5, 16)),
    "RoutedExperts": (lambda: layers.RoutedExperts(4, 16, 8, "gelu", 0.3), None),
    "MoEBlock": (lambda: layers.MoEBlock(16, 8, 8, 2, n_shared_experts=2, topk_method="group_limited_greedy",
                                         n_group=4, topk_group=2, routed_scaling_factor=1.5, hidden_act="gelu",
                                         aux_loss_alpha=0.01, seq_aux=False, initializer_range=0.3), (2, 3, 16)),
    "MultiHeadLatentAttention": (lambda: layers.MultiHeadLatentAttention(
        16, 2, 8, 4, 2, 6, q_lora_rank=6, scale=0.3, use_bias=True, attention_dropout=0.1,
        kernel_initializer="he_normal"), None),
    "RMSNorm": (lambda: layers.RMSNorm(1e-3), (2, 3, 16)),
}


def test_every_layer_class_has_a_case():
    classes = {name for name in layers.__all__ if inspect.isclass(getattr(layers, name))}
    assert classes == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_holds_every_argument_and_rebuilds_the_layer(name):
    make, input_shape = CASES[name]
    layer = make()
    cls = type(layer)
    assert keras.saving.get_registered_object(keras.saving.get_registered_name(cls)) is cls, f"{name} is not registered"
    config = layer.get_config()
    arguments = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    missing = [a for a in arguments if a not in config]
    assert not missing, f"{name}.get_config() lacks {missing}"
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(rebuilt) is cls
    assert rebuilt.get_config() == config
    if input_shape is None:
        return
    x = np.random.RandomState(0).randn(*input_shape).astype("float32")
    want = layer(x)
    rebuilt(x)  # builds
    rebuilt.set_weights(layer.get_weights())
    got = rebuilt(x)
    for a, b in zip(keras.tree.flatten(want), keras.tree.flatten(got)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
