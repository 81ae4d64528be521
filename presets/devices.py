"""transformers' `device=` argument (pipelines) as a Keras device scope.

transformers takes -1 / "cpu", an int GPU index, "cuda" / "cuda:N", "mps" or a torch.device; Keras
places work with `keras.device("cpu:0" | "gpu:N")` on every backend, which is what runs here.
"""

import contextlib
import functools
import numbers

import keras


def keras_device_name(device):
    """"cpu:0" / "gpu:N" for a transformers-style `device`, None when it is None."""
    if device is None:
        return None
    text = str(device)  # a torch.device prints as "cuda:0" / "cpu"
    if isinstance(device, numbers.Integral) and not isinstance(device, bool):
        return "cpu:0" if device < 0 else f"gpu:{int(device)}"
    kind, _, index = text.partition(":")
    if kind == "cpu":
        return "cpu:0"
    if kind in ("cuda", "gpu") and (index == "" or index.isdigit()):
        return f"gpu:{index or 0}"
    raise ValueError(f"device={device!r}: use -1 or 'cpu', a GPU index, 'cuda' / 'cuda:N' or 'gpu:N'")


def device_scope(device):
    """`keras.device(...)` for a transformers-style device; a no-op context for None."""
    name = keras_device_name(device)
    return contextlib.nullcontext() if name is None else keras.device(name)


def loading_scope(device):
    """The scope to create a pipeline's model under: `device_scope(device)`, except on torch, where
    Keras 3.15 turns the integer state of a SeedGenerator (every Dropout has one) created inside
    keras.device into a torch Parameter that requires grad, which torch refuses; Keras-on-torch
    puts the variables on its default device (the GPU when there is one) anyway."""
    if keras.backend.backend() == "torch":
        return contextlib.nullcontext()
    return device_scope(device)


def on_own_device(call):
    """Decorates a pipeline's `__call__` to run under the scope of its `device` attribute."""
    @functools.wraps(call)
    def placed(self, *args, **kwargs):
        with device_scope(getattr(self, "device", None)):
            return call(self, *args, **kwargs)

    return placed
