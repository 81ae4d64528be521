"""Tiny configs whose heads, widths and experts divide an 8-device model axis (the reference
configs of the parity tests have 4 heads and 6 experts: they serve the bad-mesh checks)."""

import numpy as np

# One layer each keeps the multi-device compiles short: every layer is alike, nGiE sits beside layer 0,
# and DeepSeek's dense MLP is the shared experts' GatedMLP (the layout tests cover dense first layers).
DEBERTA_V2 = dict(  # v3-like relative attention with log buckets, plus v2-xlarge's nGiE conv
    vocab_size=99, hidden_size=64, num_hidden_layers=1, num_attention_heads=8, attention_head_size=8,
    intermediate_size=128, max_position_embeddings=64, type_vocab_size=0, layer_norm_eps=1e-7,
    relative_attention=True, position_buckets=8, max_relative_positions=-1, norm_rel_ebd="layer_norm",
    share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False, conv_kernel_size=3,
    conv_act="gelu", num_labels=2,
)
DEBERTA_V1 = dict(  # fused in_proj + q_bias / v_bias, talking heads, a relative span and absolute positions
    vocab_size=99, hidden_size=64, num_hidden_layers=1, num_attention_heads=8, intermediate_size=128,
    max_position_embeddings=64, type_vocab_size=0, relative_attention=True, max_relative_positions=8,
    pos_att_type="c2p|p2c", talking_head=True, position_biased_input=True, num_labels=2,
)
DEEPSEEK = dict(  # q LoRA, MoE with 8 routed experts and a shared expert
    vocab_size=128, hidden_size=64, intermediate_size=64, moe_intermediate_size=16, num_attention_heads=8,
    kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, max_position_embeddings=64,
    num_hidden_layers=1, q_lora_rank=24, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
    first_k_dense_replace=0, topk_method="greedy", pad_token_id=0, bos_token_id=1, eos_token_id=2,
    tie_word_embeddings=False,
)


def batches(rows=8, length=12, vocab=99, seed=0):
    """(ids, mask, labels): a full row, a right-padded row and a left-padded row among them."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, vocab, size=(rows, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, length - 4:] = 0
    mask[2, :3] = 0
    ids[mask == 0] = 0
    labels = rng.randint(0, 2, size=(rows,)).astype("int32")
    return ids, mask, labels
