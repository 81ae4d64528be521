"""Reference checkpoints built with transformers itself: random init, every parameter perturbed."""

import numpy as np

TINY_V2 = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    type_vocab_size=0, layer_norm_eps=1e-7,
)

# Architectures the DeBERTa-v2 family ships, shrunk. Lengths in the tests (up to 24) pass the
# bucket midpoint (4) and the small relative span (6), so log buckets and clamping both act.
V2_VARIANTS = {
    "v3_like": dict(relative_attention=True, position_buckets=8, max_relative_positions=-1,
                    norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
                    position_biased_input=False),
    "v2_xlarge_like_ngie": dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
                                share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False,
                                conv_kernel_size=3, conv_act="gelu", attention_head_size=8),
    "ngie_groups_tanh": dict(relative_attention=True, position_buckets=8, share_att_key=True,
                             pos_att_type=["c2p", "p2c"], position_biased_input=False,
                             conv_kernel_size=5, conv_groups=2),
    "absolute_token_types": dict(relative_attention=False, position_biased_input=True, type_vocab_size=3),
    "c2p_only_separate": dict(relative_attention=True, max_relative_positions=6, pos_att_type=["c2p"],
                              share_att_key=False, position_biased_input=True),
    "p2c_only_separate": dict(relative_attention=True, max_relative_positions=6, pos_att_type="p2c",
                              share_att_key=False, position_biased_input=False),
    "separate_both_buckets": dict(relative_attention=True, position_buckets=8, max_relative_positions=32,
                                  pos_att_type="c2p|p2c", share_att_key=False, position_biased_input=True,
                                  type_vocab_size=2),
    "embedding_size": dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
                           share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=True,
                           embedding_size=24),
}


def hf_config(**overrides):
    import transformers

    return transformers.DebertaV2Config(**{**TINY_V2, **overrides})


def build_hf_model(config, cls_name="DebertaV2Model", seed=0, scale=0.1):
    """A transformers model in eval mode with every parameter perturbed (LayerNorm gains and
    biases included, so nothing is at its trivial initial value)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def hf_forward(model, ids, mask=None, token_type_ids=None, **kwargs):
    import torch

    args = {"input_ids": torch.tensor(np.asarray(ids), dtype=torch.long)}
    if mask is not None:
        args["attention_mask"] = torch.tensor(np.asarray(mask), dtype=torch.long)
    if token_type_ids is not None:
        args["token_type_ids"] = torch.tensor(np.asarray(token_type_ids), dtype=torch.long)
    with torch.no_grad():
        return model(**args, **kwargs)


def assert_close(got, ref, where=None, tol=1e-4, what="output"):
    """max |got - ref| <= tol * max(1, |ref|), on the selected positions."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    if where is not None:
        got, ref = got[where], ref[where]
    diff = np.abs(got - ref).max()
    bound = tol * max(1.0, np.abs(ref).max())
    assert diff <= bound, f"{what}: max abs diff {diff:.3g} > {bound:.3g}"
    return diff


TINY_V1 = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=64, type_vocab_size=0, layer_norm_eps=1e-7,
)

V1_VARIANTS = {
    "relative_whole_length": dict(relative_attention=True, max_relative_positions=-1, pos_att_type="c2p|p2c",
                                  position_biased_input=False),
    "span_shorter_than_sequence": dict(relative_attention=True, max_relative_positions=6,
                                       pos_att_type=["c2p", "p2c"], position_biased_input=True),
    "absolute_token_types": dict(relative_attention=False, position_biased_input=True, type_vocab_size=2),
    "talking_heads": dict(relative_attention=True, max_relative_positions=8, pos_att_type="c2p|p2c",
                          talking_head=True, position_biased_input=False),
    "c2p_only": dict(relative_attention=True, max_relative_positions=10, pos_att_type=["c2p"],
                     position_biased_input=False, type_vocab_size=2),
}


def hf_v1_config(**overrides):
    import transformers

    return transformers.DebertaConfig(**{**TINY_V1, **overrides})
