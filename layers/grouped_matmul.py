"""Grouped (ragged) expert matmuls for the routed experts of an MoE, exact work, no padding blocks.

The N*K (token, expert) assignments are sorted by expert; each expert then multiplies one
contiguous run of rows by its own weights. How that run is executed depends on what the backend
does well (measured on CPU; see benchmarks/deepseek.py):

* `chunked_expert_mlp` (keras.ops; JAX on CPU, TensorFlow): a loop over fixed-size row chunks of
  the sorted rows, each chunk belonging to one expert, whose weights are taken once per chunk
  (`ops.take` of one expert) instead of gathered per block. XLA on CPU still copies that expert's
  weights out before the chunk's matmuls (a fused multiply-reduce reading them in place was far
  slower). The trip count is
  the number of chunks actually needed, sum_e ceil(count_e / chunk), so rows computed are at most
  A + (non-empty experts) * (chunk - 1). Rows of a chunk past its expert's run spill into the next
  expert's rows and are overwritten when that expert's chunk runs (chunks go in expert order).
  A loop with a data-dependent trip count has no reverse-mode gradient on JAX: training uses the
  block layout in layers/moe.py.
* `ragged_expert_mlp` (JAX off CPU): `jax.lax.ragged_dot` with group sizes = tokens per expert.
  XLA's CPU lowering of ragged_dot computes far more than the selected work, so CPU does not use
  it (layers/kernel_choice.py chooses).
* `torch_expert_mlp` (PyTorch eager): `torch._grouped_mm` over the sorted rows where torch has it,
  else a Python loop over the non-empty experts.

All take the sorted layout from `sort_assignments` and return the per-row expert outputs in
sorted order [A, d]; `combine` weights them and sums each token's K rows.
"""

import keras
from keras import ops


def chunk_rows(num_assignments, num_experts):
    """Rows per chunk: the mean load per expert rounded up to a power of two, at most 64 (a
    decoding step, with fewer assignments than experts, gets 1: one row per chunk)."""
    mean = -(-int(num_assignments) // int(num_experts))
    chunk = 1
    while chunk < mean and chunk < 64:
        chunk *= 2
    return chunk


def sort_assignments(idx, num_experts):
    """idx [N, K] expert ids -> (order [A] assignment ids sorted by expert (stable), token of
    each sorted row [A], counts [E] rows per expert), A = N * K, all int32."""
    K = idx.shape[1]
    A = idx.shape[0] * K
    flat = ops.reshape(ops.cast(idx, "int32"), (A,))
    order = ops.cast(ops.argsort(flat * A + ops.arange(A, dtype="int32")), "int32")  # stable
    counts = ops.sum(ops.one_hot(flat, num_experts, dtype="int32"), axis=0)  # [E]
    return order, order // K, counts


def combine(rows, order, weight):
    """rows [A, d] (sorted order) -> [N, d]: sum over each token's K rows with the routing weights."""
    N, K = weight.shape[0], weight.shape[1]
    back = ops.argsort(order)  # sorted position of each assignment
    y = ops.reshape(ops.take(rows, back, axis=0), (N, K, rows.shape[-1]))  # [N, K, d]
    return ops.einsum("nkd,nk->nd", y, ops.cast(weight, y.dtype))


def torch_combine(rows, order, tok, weight):
    """PyTorch eager `combine`: each sorted row scaled by its routing weight and added into its
    token's output with one `index_add_`, because `combine`'s gather and [N, K, d] x [N, K] einsum
    run in eager PyTorch as N tiny batched matmuls. The sum over a token's K rows runs in expert
    order instead of k order (float rounding only)."""
    import torch

    w = weight.reshape(-1)[order.long()].to(rows.dtype)  # [A] routing weight of each sorted row
    out = torch.zeros((weight.shape[0], rows.shape[-1]), dtype=rows.dtype, device=rows.device)
    return out.index_add_(0, tok.long(), rows * w[:, None])  # [N, d]


def chunked_expert_mlp(xs, counts, expert_weights, act, chunk):
    """xs [A, d] rows sorted by expert, counts [E] -> act(xs @ Wg) * (xs @ Wu) @ Wd per row [A, d].

    expert_weights(name, e) -> that expert's kernel ("gate_kernel", "up_kernel" [d, f],
    "down_kernel" [f, d]) in the compute dtype (dequantised if need be)."""
    A, d = xs.shape[0], xs.shape[1]
    counts = ops.cast(counts, "int32")
    starts = ops.cumsum(counts) - counts  # first sorted row of each expert [E]
    chunks = (counts + chunk - 1) // chunk  # chunks per expert [E]
    chunk_end = ops.cumsum(chunks)  # [E]
    xs = ops.concatenate([xs, ops.zeros((chunk, d), xs.dtype)], axis=0)  # the last chunk may run past A

    def chunk_output(c):
        """(first sorted row of chunk c, its expert's MLP on rows first .. first + chunk - 1)."""
        e = ops.minimum(ops.sum(ops.cast(chunk_end <= c, "int32")), counts.shape[0] - 1)  # expert of chunk c
        first = ops.take(starts, e) + (c - (ops.take(chunk_end, e) - ops.take(chunks, e))) * chunk
        rows = ops.slice(xs, (first, 0), (chunk, d))  # [chunk, d]
        h = act(ops.matmul(rows, expert_weights("gate_kernel", e))) * ops.matmul(rows, expert_weights("up_kernel", e))
        return first, ops.matmul(h, expert_weights("down_kernel", e))

    total = ops.take(chunk_end, counts.shape[0] - 1)
    if keras.backend.backend() == "tensorflow":
        return _tf_chunk_loop(chunk_output, total, A, d, chunk, counts, starts, chunks, chunk_end, xs.dtype)

    def body(c, ys):
        first, out = chunk_output(c)
        return ops.slice_update(ys, (first, 0), out)

    ys = ops.fori_loop(0, total, body, ops.zeros((A + chunk, d), xs.dtype))
    return ys[:A]


def _tf_chunk_loop(chunk_output, total, A, d, chunk, counts, starts, chunks, chunk_end, dtype):
    """TensorFlow: the chunk loop writing each chunk's output to a TensorArray, then every row read
    from its own expert's chunk. TensorFlow runs inference as a graph without XLA, where
    `slice_update` of the [A, d] result copies all of it at every chunk."""
    import tensorflow as tf

    def body(c, outs):
        return c + 1, outs.write(c, chunk_output(c)[1])

    _, outs = tf.while_loop(lambda c, _: c < total, body,
                            (tf.constant(0), tf.TensorArray(dtype, size=total, element_shape=(chunk, d))))
    stacked = tf.reshape(outs.stack(), (-1, d))  # [total * chunk, d], chunk by chunk
    row = tf.range(A, dtype="int32")
    expert = tf.minimum(tf.reduce_sum(tf.cast((starts + counts)[None, :] <= row[:, None], "int32"), axis=1),
                        counts.shape[0] - 1)  # expert of each sorted row [A]
    # Row r of expert e is row (r - starts[e]) of that expert's chunks, which begin at chunk
    # chunk_end[e] - chunks[e].
    source = (tf.gather(chunk_end, expert) - tf.gather(chunks, expert)) * chunk + row - tf.gather(starts, expert)
    return tf.gather(stacked, source)


def ragged_expert_mlp(xs, counts, gate, up, down, act):
    """JAX: the same product with `jax.lax.ragged_dot` (weights [E, d, f] / [E, f, d] in place)."""
    import jax

    sizes = ops.cast(counts, "int32")
    h = act(jax.lax.ragged_dot(xs, gate, sizes)) * jax.lax.ragged_dot(xs, up, sizes)
    return jax.lax.ragged_dot(h, down, sizes)


# `torch._grouped_mm` on CPU (torch 2.13) against the per-expert loop, measured in
# benchmarks/deepseek.py; set by `use_torch_grouped_mm` there and in tests.
TORCH_GROUPED_MM = True


def torch_expert_mlp(xs, counts, gate, up, down, act):
    """PyTorch eager: grouped matmuls over the sorted rows (weights used in place)."""
    import torch

    aligned = all(n * xs.element_size() % 16 == 0 for n in gate.shape[1:])  # the kernel's stride rule
    if (TORCH_GROUPED_MM and hasattr(torch, "_grouped_mm") and aligned and xs.dtype == gate.dtype
            and xs.dtype in (torch.float32, torch.bfloat16)):
        offs = torch.cumsum(counts, 0).to(torch.int32)
        h = act(torch._grouped_mm(xs, gate, offs=offs)) * torch._grouped_mm(xs, up, offs=offs)
        return torch._grouped_mm(h, down, offs=offs)
    outs = []
    for e, rows in enumerate(torch.split(xs, counts.tolist())):
        if rows.shape[0]:
            outs.append((act(rows @ gate[e]) * (rows @ up[e])) @ down[e])
    return torch.cat(outs, 0)
