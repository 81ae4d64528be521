"""Eager PyTorch: when it applies, and how large one attention intermediate may grow there.

Eager torch allocates every intermediate on its own. glibc serves blocks above 32 MiB (its largest
mmap threshold) with fresh pages, and each page faults on first touch, at every call, so one
large product costs more than its halves. The attention layers on CPU therefore split work whose
score-sized tensors would pass EAGER_TENSOR_BYTES, along axes the result does not depend on
(batch rows, query rows); layers/kernel_choice.py decides when. The budget is half the threshold
because blocks of exactly 32 MiB gained nothing (figures: README, "Measurements behind the fast
paths"). XLA (JAX, TensorFlow) and torch.compile plan their own buffers; both are left alone.
"""

import keras

EAGER_TENSOR_BYTES = 16 * 2**20


def eager_torch():
    """True on PyTorch outside torch.compile: shapes may then follow runtime values."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return not torch.compiler.is_compiling()


def rows_within_budget(bytes_per_row):
    """How many rows of `bytes_per_row` bytes fit in EAGER_TENSOR_BYTES (at least one)."""
    return max(1, EAGER_TENSOR_BYTES // bytes_per_row)
