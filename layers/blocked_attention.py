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
padding never enters a softmax. (A gather beats the skew for p2c here: the tiled-diagonal p2c
was slower on JAX and TensorFlow and no faster on torch; benchmarks/long_context.py.)
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

    key_by_row = None
    if pos_query is not None:
        # p2c(i, j) = k_j . Qr[row(i - j)]: every key against every table row once (linear in L),
        # then each block gathers its [blk, L] cells from it.
        key_by_row = ops.einsum("bhjd,hrd->bhrj", scaled_key, pos_query)  # [B, H, R, L]
        keys = ops.arange(length, dtype="int32")
    # The float tensors every block reads (None where the option is off).
    shared = {"key": key, "value": value, "pos_key": pos_key, "key_by_row": key_by_row,
              "mix_logits": mix_logits, "mix_probs": mix_probs}

    def one_block(x, t):
        q, start = x["query"], x["start"]  # [B, H, blk, D], scalar
        scores = ops.einsum("bhid,bhjd->bhij", q, t["key"])  # [B, H, blk, L]
        if t["pos_key"] is not None:
            index = tile_row_indices(rows, max_distance, start, block, 0, length)  # [blk + L]
            diagonals = ops.take(t["pos_key"], index, axis=1)  # [H, blk + L, D]
            c2p = ops.einsum("bhrd,hnd->bhrn", q, diagonals)  # [B, H, blk, blk + L]
            scores = scores + skew_to_relative(c2p, block, length)
        if t["key_by_row"] is not None:
            distance = ops.clip(ops.arange(block, dtype="int32")[:, None] + start - keys[None, :] + max_distance,
                                0, 2 * max_distance)
            index = ops.take(ops.convert_to_tensor(rows, dtype="int32"), distance, axis=0)  # [blk, L]
            scores = scores + _gather_rows(t["key_by_row"], index)  # [B, H, blk, L]
        if t["mix_logits"] is not None:
            scores = ops.einsum("bhij,hg->bgij", scores, ops.cast(t["mix_logits"], scores.dtype))
        scores = ops.cast(scores, "float32")  # softmax in float32, as the full form
        if "mask" in x:
            mask = x["mask"] if key_mask is None else ops.logical_and(x["mask"], key_mask)
            scores = ops.where(mask, scores, ops.cast(MASKED_SCORE, "float32"))
        probs = ops.cast(ops.softmax(scores, axis=-1), value.dtype)
        if t["mix_probs"] is not None:
            probs = ops.einsum("bhij,hg->bgij", probs, ops.cast(t["mix_probs"], probs.dtype))
        return ops.einsum("bhij,bhjd->bhid", probs, t["value"])  # [B, H, blk, D]

    # Without recomputation a gradient pass (or torch's autograd graph, even for a plain call)
    # keeps every block's scores: O(L^2) again. keras.remat (jax.checkpoint / torch checkpoint)
    # keeps each block's inputs instead and recomputes its scores in the backward pass.
    # TensorFlow's recompute_grad gives gradients only to its explicit arguments, and inside the
    # map's loop under the run-time length `cond` its gradient loses the tensors it captured, so
    # TensorFlow gets its own recomputing gradient (`_tf_blocked_map`).
    if keras.backend.backend() == "tensorflow":
        context = _tf_blocked_map(one_block, xs, shared, value.dtype)  # [nq, B, H, blk, D]
    else:
        context = ops.map(keras.remat(lambda x: one_block(x, shared)), xs)
    context = ops.reshape(ops.moveaxis(context, 0, 2), (batch, heads, padded, depth))
    return context[:, :, :length]


def _tf_blocked_map(one_block, xs, shared, dtype):
    """TensorFlow: the map over blocks as one custom-gradient function of the blocks' queries and
    the shared float tensors. Forward: the blocks one at a time, nothing kept but the inputs.
    Backward: the blocks again, each recomputed under its own tape and differentiated at once, the
    query gradient stacked per block and the shared tensors' gradients summed, so at most one
    block's scores exist at a time in either pass (memory linear in L, as remat elsewhere).
    parallel_iterations=1 in both loops: tf.map_fn would otherwise run up to 10 blocks at once
    inside a graph, i.e. 10 blocks of scores alive together."""
    import tensorflow as tf

    names = [name for name, tensor in shared.items() if tensor is not None]
    others = {k: v for k, v in xs.items() if k != "query"}  # start (int), mask (bool): no gradient

    def tensors_of(values):
        t = dict.fromkeys(shared)
        t.update(zip(names, values))
        return t

    @tf.custom_gradient
    def blocked(queries, *values):
        t = tensors_of(values)
        out = tf.map_fn(lambda x: one_block(x, t), dict(others, query=queries), fn_output_signature=dtype,
                        parallel_iterations=1)

        def grad(d_out):
            def step(i, d_queries, d_values):
                x = {k: v[i] for k, v in others.items()}
                x["query"] = queries[i]
                with tf.GradientTape() as tape:
                    tape.watch([x["query"], *values])
                    block_out = one_block(x, tensors_of(values))
                d_q, *d_v = tape.gradient(block_out, [x["query"], *values], output_gradients=d_out[i])
                d_v = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for v, g in zip(values, d_v)]
                return i + 1, d_queries.write(i, d_q), [a + g for a, g in zip(d_values, d_v)]

            count = tf.shape(queries)[0]
            _, d_queries, d_values = tf.while_loop(
                lambda i, *_: i < count, step,
                (tf.constant(0), tf.TensorArray(queries.dtype, size=count), [tf.zeros_like(v) for v in values]),
                parallel_iterations=1)
            return (d_queries.stack(), *d_values)

        return out, grad

    # tf.identity: inside the run-time length `cond`, a custom gradient whose arguments are the
    # branch's captured inputs fails when differentiated ("must feed a value for placeholder" on
    # the zeros TensorFlow builds for the argument pass-throughs); branch-local copies work.
    return blocked(xs["query"], *(tf.identity(shared[name]) for name in names))


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
