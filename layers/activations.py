"""Activation names as Hugging Face configs spell them, mapped to Keras functions."""

import keras
from keras import ops


def _gelu_exact(x):
    return keras.activations.gelu(x, approximate=False)


def _gelu_tanh(x):
    return keras.activations.gelu(x, approximate=True)


def _quick_gelu(x):
    return x * ops.sigmoid(1.702 * x)


_ACTIVATIONS = {
    "gelu": _gelu_exact,
    "gelu_python": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": keras.activations.relu,
    "silu": keras.activations.silu,
    "swish": keras.activations.silu,
    "tanh": keras.activations.tanh,
    "sigmoid": keras.activations.sigmoid,
    "linear": keras.activations.linear,
}


def get_activation(name):
    """Returns the function for an HF activation name (e.g. "gelu" is the exact, erf-based GELU)."""
    if callable(name):
        return name
    try:
        return _ACTIVATIONS[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known: {', '.join(sorted(_ACTIVATIONS))}"
        ) from None
