"""Disentangled attention in blocks of query rows: memory linear in the sequence length.

The full form holds [B, H, L, L] scores and [B, H, L, 2L] position products at once. Here the
queries go through in blocks of `block` rows (a `keras.ops.map`, i.e. `lax.map` / `tf.map_fn` /
a Python loop); each block holds only its own rows:

- content:  q_blk . k^T                                   [B, H, blk, L]
- c2p:      q_blk . Kr[row(i - j)], the block's rows against every key, by the same diagonal
            gather + skew as the full form                [B, H, blk, blk + L] -> [B, H, blk, L]
- p2c:      k_j . Qr[row(i - j)]: rows are keys here, so the diagonal trick would need every
            key against every diagonal ([L, L + blk] per block); instead every key meets every
            table row once per layer (k . Qr^T, [B, H, R, L] with R = 2 * span rows, linear in L)
            and each block gathers its cells               [B, H, blk, L]
- a softmax over the whole row (the row fits: blk x L), then probs . v.

Every score is the same sum of the same products as in the full form, so outputs agree to float
rounding (the tests hold 1e-5 relative). Peak memory is O(blk * L) per head instead of O(L^2).
Queries are padded to a multiple of the block (extra rows are dropped); keys are never padded, so
padding never enters a softmax. (A gather beats the skew for p2c here: on 2 CPU cores, one
layer at L = 4096, the tiled-diagonal p2c took 1.4x (JAX) and 1.35x (TensorFlow) the time of this
form; torch about the same.)
"""

import keras
from keras import ops

from layers.relative_position import skew_to_relative

MASKED_SCORE = -3.4028234663852886e38  # float32 lowest, as the full form


def tile_row_indices(rows, max_distance, row_start, num_rows, col_start, num_cols, flip=False):
    """Table rows for the diagonals of a [num_rows, num_cols] tile at (row_start, col_start).

    As `diagonal_row_indices`, for a tile away from the main diagonal: diagonal n holds the cells
    with global distance d = (row_start - col_start) + (num_rows - 1 - n), negated when `flip`.
    row_start / col_start may be tensors (any leading shape): the result is [..., num_rows + num_cols].
    """
    n = ops.arange(num_rows + num_cols, dtype="int32")
    offset = ops.cast(row_start, "int32") - ops.cast(col_start, "int32")
    if len(offset.shape):
        offset = ops.expand_dims(offset, -1)
    distance = offset + (num_rows - 1) - n
    if flip:
        distance = -distance
    index = ops.clip(distance + max_distance, 0, 2 * max_distance)
    return ops.take(ops.convert_to_tensor(rows, dtype="int32"), index, axis=0)


def blocked_disentangled_attention(scaled_query, key, value, *, block, scaled_key=None,
                                   pos_key=None, pos_query=None, rows=None, max_distance=None,
                                   attention_mask=None, mix_logits=None, mix_probs=None):
    """Context of disentangled attention, computed `block` query rows at a time.

    Args:
        scaled_query: [B, H, L, D] queries already divided by the score scale.
        key, value: [B, H, L, D].
        block: query rows per step (static int).
        scaled_key: [B, H, L, D] keys divided by the scale (needed with pos_query).
        pos_key: [H, R, D] relative table through the key projection (c2p), or None.
        pos_query: [H, R, D] relative table through the query projection (p2c), or None.
        rows, max_distance: the distance -> table row map of `relative_position_rows`.
        attention_mask: bool [B, L] (query and key padding) or [B, L, L] pairwise, or None.
        mix_logits, mix_probs: [H, H] talking-head mixing matrices (v1), or None.
    Returns:
        context [B, H, L, D] (value dtype), and no probabilities (they are never whole).
    """
    block = int(block)
    batch, heads, length, depth = (ops.shape(scaled_query)[i] for i in range(4))
    num_blocks = (length + block - 1) // block
    padded = num_blocks * block

    # [B, H, L, D] -> [nq, B, H, blk, D] so `map` walks the blocks.
    def blocks_of(x, axis_len):
        pad = [[0, 0]] * len(x.shape)
        pad[axis_len] = [0, padded - length]
        x = ops.pad(x, pad)
        shape = list(ops.shape(x))
        x = ops.reshape(x, shape[:axis_len] + [num_blocks, block] + shape[axis_len + 1:])
        return ops.moveaxis(x, axis_len, 0)

    starts = ops.arange(num_blocks, dtype="int32") * block
    xs = {"query": blocks_of(scaled_query, 2), "start": starts}

    key_mask = None
    if attention_mask is not None:
        mask = ops.cast(attention_mask, "int32")  # padded as integers: not every backend pads bools
        if len(mask.shape) == 2:  # [B, L]: key padding for every row, query padding per block
            key_mask = ops.cast(mask, "bool")[:, None, None, :]  # [B, 1, 1, L]
            xs["mask"] = ops.cast(blocks_of(mask, 1), "bool")[:, :, None, :, None]  # [nq, B, 1, blk, 1]
        else:  # [B, L, L] pairwise
            xs["mask"] = ops.cast(blocks_of(mask, 1), "bool")[:, :, None, :, :]  # [nq, B, 1, blk, L]

    if pos_query is not None:
        # p2c(i, j) = k_j . Qr[row(i - j)]: every key against every table row once (linear in L),
        # then each block gathers its [blk, L] cells from it.
        key_by_row = ops.einsum("bhjd,hrd->bhrj", scaled_key, pos_query)  # [B, H, R, L]
        keys = ops.arange(length, dtype="int32")

    def one_block(x):
        q, start = x["query"], x["start"]  # [B, H, blk, D], scalar
        scores = ops.einsum("bhid,bhjd->bhij", q, key)  # [B, H, blk, L]
        if pos_key is not None:
            index = tile_row_indices(rows, max_distance, start, block, 0, length)  # [blk + L]
            diagonals = ops.take(pos_key, index, axis=1)  # [H, blk + L, D]
            c2p = ops.einsum("bhrd,hnd->bhrn", q, diagonals)  # [B, H, blk, blk + L]
            scores = scores + skew_to_relative(c2p, block, length)
        if pos_query is not None:
            distance = ops.clip(ops.arange(block, dtype="int32")[:, None] + start - keys[None, :] + max_distance,
                                0, 2 * max_distance)
            index = ops.take(ops.convert_to_tensor(rows, dtype="int32"), distance, axis=0)  # [blk, L]
            scores = scores + _gather_rows(key_by_row, index)  # [B, H, blk, L]
        if mix_logits is not None:
            scores = ops.einsum("bhij,hg->bgij", scores, ops.cast(mix_logits, scores.dtype))
        scores = ops.cast(scores, "float32")  # softmax in float32, as the full form
        if "mask" in x:
            mask = x["mask"] if key_mask is None else ops.logical_and(x["mask"], key_mask)
            scores = ops.where(mask, scores, ops.cast(MASKED_SCORE, "float32"))
        probs = ops.cast(ops.softmax(scores, axis=-1), value.dtype)
        if mix_probs is not None:
            probs = ops.einsum("bhij,hg->bgij", probs, ops.cast(mix_probs, probs.dtype))
        return ops.einsum("bhij,bhjd->bhid", probs, value)  # [B, H, blk, D]

    # Without recomputation a gradient pass (or torch's autograd graph, even for a plain call)
    # keeps every block's scores: O(L^2) again. keras.remat keeps each block's inputs instead and
    # recomputes its scores in the backward pass (jax.checkpoint / torch checkpoint). TensorFlow's
    # recompute_grad gives no gradient to tensors a function closes over (key, value, the tables
    # here), so TensorFlow keeps the residuals: its training memory stays quadratic.
    body = one_block if keras.backend.backend() == "tensorflow" else keras.remat(one_block)
    context = _map_blocks(body, xs, value.dtype)  # [nq, B, H, blk, D]
    context = ops.reshape(ops.moveaxis(context, 0, 2), (batch, heads, padded, depth))
    return context[:, :, :length]


def _map_blocks(fn, xs, dtype):
    """ops.map(fn, xs), one block at a time on every backend.

    TensorFlow fast path: inside a graph, tf.map_fn (what ops.map calls) runs up to 10 iterations
    at once, i.e. 10 blocks of scores alive together; parallel_iterations=1 keeps one. The result
    is the same as ops.map's (the blocked-equals-full tests run on TensorFlow through this path).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.map_fn(fn, xs, fn_output_signature=tf.as_dtype(dtype), parallel_iterations=1)
    return ops.map(fn, xs)


def _gather_rows(table, index):
    """out[b, h, i, j] = table[b, h, index[i, j], j]: ops.take_along_axis along axis 2.

    torch fast path: Keras' take_along_axis first rewrites negative indices over the broadcast
    index (a full pass over [B, H, blk, L] int64); torch.gather on an expanded view skips that
    (our indices are never negative). The tests compare both forms on torch.
    """
    if keras.backend.backend() == "torch":
        import torch

        batch, heads = table.shape[0], table.shape[1]
        return torch.gather(table, 2, index.long()[None, None].expand(batch, heads, *index.shape))
    return ops.take_along_axis(table, index[None, None], axis=2)
