"""Building a model whose weights a checkpoint is about to overwrite, without drawing random values.

Random initialisers cost real time at checkpoint sizes (hundreds of millions of normal samples on
the host, per variable, only to be overwritten). Inside `zeros_initialised()` every variable a
layer adds is created with zeros and its own initializer is remembered; after loading,
`initialise_remaining` draws the remembered initial values for the variables the checkpoint did
not provide (a new task head, a re-initialised mis-sized tensor), so the model ends exactly as if
it had been built normally and then loaded.
"""

import contextlib

import keras
from keras import ops

from presets.placement import assign_from_host

_original_add_weight = keras.layers.Layer.add_weight
_record = None  # the list being recorded into, while a `zeros_initialised` block runs


def _add_weight(self, *args, **kwargs):
    record = _record
    if record is None:
        return _original_add_weight(self, *args, **kwargs)
    if len(args) > 1:  # Keras 2 style add_weight(shape, initializer, dtype): move to keywords
        names = ("shape", "initializer", "dtype")
        kwargs.update(dict(zip(names, args)))
        args = ()
    initializer = kwargs.get("initializer")
    kwargs["initializer"] = "zeros"
    variable = _original_add_weight(self, *args, **kwargs)
    if initializer is None:  # Keras' own default, resolved as add_weight resolves it
        initializer = "glorot_uniform" if "float" in str(variable.dtype) else "zeros"
    record.append((variable, initializer))
    return variable


@contextlib.contextmanager
def zeros_initialised():
    """Within the block, new layer variables start at zero; yields the list of
    (variable, original initializer) pairs for `initialise_remaining`. Keras' `add_weight` is
    wrapped only for the duration of the block (models are built on one thread)."""
    global _record
    if _record is not None:  # nested: the outer block records
        yield _record
        return
    _record = []
    keras.layers.Layer.add_weight = _add_weight
    try:
        yield _record
    finally:
        keras.layers.Layer.add_weight = _original_add_weight
        _record = None


def initialise_remaining(record, loaded):
    """Gives every recorded variable whose id is not in `loaded` its original initial value."""
    for variable, initializer in record:
        if id(variable) in loaded:
            continue
        init = keras.initializers.get(initializer)
        value = ops.convert_to_numpy(init(tuple(variable.shape), dtype=variable.dtype))
        assign_from_host(variable, value)
