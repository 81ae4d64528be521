"""Relative positions for disentangled attention, with DeBERTa-v2's logarithmic buckets.

A relative distance d = i - j (query i, key j) selects a row of the relative-embedding table of
`2 * span` rows: row(d) = clip(bucket(d) + span, 0, 2 * span - 1). The row depends on d alone and
saturates once |d| reaches `max_position`, so the whole map fits in one small integer vector over
d in [-max_position, max_position], built once in numpy. At call time a sequence only slices it:
no [L, L] (let alone [B, H, L, L]) index tensor is ever built.
"""

import numpy as np
from keras import ops

# The longest relative distance a row map is built for: the map is a vector over [-D, D], so an
# unbounded max_relative_positions / position_buckets would allocate without bound (2**20: an
# 8 MB map; sequences of a million tokens are far beyond any DeBERTa checkpoint).
MAX_RELATIVE_DISTANCE = 2**20


def log_bucket_position(relative_pos, bucket_size, max_position):
    """Maps relative distances to log buckets exactly as transformers' `make_log_bucket_position`.

    Distances with |d| <= bucket_size // 2 keep their value; larger ones are compressed
    logarithmically so that |d| = max_position - 1 lands on bucket_size - 1. The arithmetic is
    float32, in the reference's order, so the ceil lands on the same integer.

    Args:
        relative_pos: integer numpy array of distances.
    Returns:
        int64 numpy array of the same shape.
    """
    relative_pos = np.asarray(relative_pos, dtype=np.int64)
    sign = np.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = np.where(
        (relative_pos < mid) & (relative_pos > -mid), np.int64(mid - 1), np.abs(relative_pos)
    )
    ratio = abs_pos.astype(np.float32) / np.float32(mid)
    log_scale = np.log(np.float32((max_position - 1) / mid))
    log_pos = np.ceil(np.log(ratio) / log_scale * np.float32(mid - 1)) + np.float32(mid)
    bucket = np.where(abs_pos <= mid, relative_pos.astype(np.float32), log_pos * sign)
    return bucket.astype(np.int64)


def relative_position_rows(span, position_buckets, max_relative_positions):
    """Row of the relative-embedding table for every distance d in [-D, D], D = max distance used.

    Returns:
        (rows, D): int32 numpy vector of length 2 * D + 1 where rows[d + D] is the table row for
        distance d; distances beyond +-D map to the same row as +-D.
    """
    max_distance = max(int(max_relative_positions), int(span), 1)
    if max_distance > MAX_RELATIVE_DISTANCE:
        raise ValueError(f"relative span {max_distance} (max_relative_positions / position_buckets) exceeds "
                         f"the supported maximum {MAX_RELATIVE_DISTANCE}")
    distances = np.arange(-max_distance, max_distance + 1, dtype=np.int64)
    if position_buckets > 0 and max_relative_positions > 0:
        distances = log_bucket_position(distances, position_buckets, max_relative_positions)
    rows = np.clip(distances + span, 0, 2 * span - 1).astype(np.int32)
    return rows, max_distance


def static_diagonal_row_indices(rows, max_distance, num_rows, num_cols, flip=False):
    """`diagonal_row_indices` for lengths known in Python, as a numpy int32 vector [num_rows + num_cols].

    Known lengths let the caller see which table rows a call reads (a contiguous range: the row map
    is monotonic in the distance) and project only those.
    """
    distance = (num_rows - 1) - np.arange(num_rows + num_cols)
    if flip:
        distance = -distance
    return np.asarray(rows)[np.clip(distance + max_distance, 0, 2 * max_distance)].astype(np.int32)


def diagonal_row_indices(rows, max_distance, num_rows, num_cols, flip=False):
    """Table rows for the diagonals of a [num_rows, num_cols] score matrix, plus one pad slot.

    Diagonal n in [0, num_rows + num_cols - 2] holds the cells with col - row = n - (num_rows - 1),
    i.e. distance d = row - col = num_rows - 1 - n (or -d when `flip`). One extra diagonal at the
    end is never read: it is the spare column the reshape in `skew_to_relative` needs.

    Returns:
        int32 tensor of shape [num_rows + num_cols].
    """
    n = ops.arange(num_rows + num_cols, dtype="int32")
    distance = (num_rows - 1) - n
    if flip:
        distance = -distance
    index = ops.clip(distance + max_distance, 0, 2 * max_distance)
    return ops.take(ops.convert_to_tensor(rows), index, axis=0)


def skew_to_relative(diagonal_scores, num_rows, num_cols):
    """Turns scores indexed by diagonal into scores indexed by (row, col).

    Args:
        diagonal_scores: [..., num_rows, num_rows + num_cols] where [..., r, n] is the score of row
            r against the table row of diagonal n (see `diagonal_row_indices`).
    Returns:
        [..., num_rows, num_cols] with out[..., r, c] = diagonal_scores[..., r, c + num_rows - 1 - r].

    The shift differs per row; flattening the last two axes turns it into a constant stride
    (width - 1), so one slice and one reshape do it: no gather, no index tensor.
    """
    width = num_rows + num_cols
    shape = ops.shape(diagonal_scores)
    lead = tuple(shape[:-2])
    flat = ops.reshape(diagonal_scores, lead + (num_rows * width,))
    # Element (r, c) sits at flat position (num_rows - 1) + r * (width - 1) + c.
    flat = flat[..., num_rows - 1 : num_rows - 1 + num_rows * (width - 1)]
    return ops.reshape(flat, lead + (num_rows, width - 1))[..., :num_cols]
