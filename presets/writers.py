"""Writing checkpoints that transformers loads, atomically."""

import numpy as np

from presets.io import atomic_path


def save_safetensors(tensors, path, metadata=None):
    """Writes {name: numpy array} as safetensors via a temporary file renamed into place."""
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", **(metadata or {})})
