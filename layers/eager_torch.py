"""Eager PyTorch: when it applies, and how large one attention intermediate may grow there.

Eager torch allocates every intermediate on its own. glibc serves blocks above 32 MiB (its largest
mmap threshold) with fresh pages, and each page faults on first touch, at every call: one 50 MB
[12, 1024, 1024] product took 38 ms where its two halves took 15 ms in all (AMD EPYC, 2 cores).
So the attention layers split work whose score-sized tensors would pass EAGER_TENSOR_BYTES,
along axes the result does not depend on (batch rows, query rows). The budget is half that
threshold: blocks whose scores came to exactly 32 MiB gained nothing (a 4096-token MLA prefill,
blocks of 128 rows), half of that did (blocks of 64: 412 -> 468 tokens/s, median of three).
XLA (JAX, TensorFlow) plans its own buffers and torch.compile its own; both are left alone.
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
