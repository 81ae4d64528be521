"""Sequence lengths rounded up to a small set of buckets, so that compiled functions (a JAX or
TensorFlow train step, generate's prefill and decode loop) are compiled once per bucket rather than
once per length: 16, 24, 32, 48, 64, 96, 128, ... (powers of two and 1.5x powers of two), at most
1.5x the length needed, two compiled sizes per octave."""

MIN_BUCKET = 16


def length_bucket(length, cap=None):
    """The smallest bucket >= `length`, capped at `cap` (a position table's size) but never below
    `length` itself."""
    bucket = MIN_BUCKET
    while bucket < length:
        bucket = bucket * 3 // 2 if bucket & (bucket - 1) == 0 else bucket * 4 // 3
    return bucket if cap is None else max(length, min(bucket, cap))
