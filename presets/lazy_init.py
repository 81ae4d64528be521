"""Building a model whose weights a checkpoint is about to overwrite, without drawing random values.

Random initialisers cost real time at checkpoint sizes (hundreds of millions of normal samples on
the host, per variable, only to be overwritten). Inside `keras_compat.deferred_initialisation()` (the
Keras patch lives there, with the other private uses) every variable a layer adds is created
unfilled (`keras.ops.empty`) and its own initializer is remembered; after loading,
`initialise_remaining` draws the remembered initial values for the variables the checkpoint did
not provide (a new task head, a re-initialised mis-sized tensor), so the model ends exactly as if
it had been built normally and then loaded.
"""

import keras
from keras import ops

from presets.placement import assign_from_host


def initialise_remaining(record, loaded):
    """Gives every recorded variable whose id is not in `loaded` its original initial value."""
    for variable, initializer in record:
        if id(variable) in loaded:
            continue
        init = keras.initializers.get(initializer)
        value = ops.convert_to_numpy(init(tuple(variable.shape), dtype=variable.dtype))
        assign_from_host(variable, value)
