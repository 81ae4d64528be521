"""tqdm progress bars (as transformers shows them) for checkpoint loads and saves large enough to
take a while; small ones stay silent. Bars go to stderr and, tqdm's `disable=None`, only when it is
a terminal, so logs and tests see nothing."""

import contextlib

import numpy as np

# Below this many bytes a load or save takes a second or two: no bar.
PROGRESS_MIN_BYTES = 512 * 2**20


def tensor_nbytes(shape, dtype):
    """Bytes of a tensor of `shape` and `dtype` (numpy dtypes, or "bfloat16" by name)."""
    itemsize = 2 if str(dtype) == "bfloat16" else np.dtype(dtype).itemsize
    return int(np.prod(shape, dtype=np.int64)) * itemsize


@contextlib.contextmanager
def byte_progress(total_bytes, desc):
    """A context giving `advance(nbytes)`: a tqdm bar over `total_bytes` when it reaches
    PROGRESS_MIN_BYTES, else a no-op."""
    if total_bytes < PROGRESS_MIN_BYTES:
        yield lambda nbytes: None
        return
    bar = _tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None,
                leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def _tqdm(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(**kwargs)
