"""Host arrays into Keras variables, one device slice at a time when the variable is split.

Keras' `variable.assign(numpy_array)` on JAX first converts the whole array to a `jax.Array` on
the default device and only then reshards it to the variable's layout: for a moment one device
holds the whole tensor of a split variable (at DeepSeek-V2 sizes, an expert stack of 160 experts).
`assign_from_host` builds the value shard by shard instead: each addressable device receives only
its own slice, read from the host array (a memory-mapped checkpoint reads only those bytes), so no
device ever holds an unsharded copy. Then `assign` finds the value already laid out and keeps it.
"""

import keras


def _sharding(variable):
    """The variable's jax Sharding if it spans several devices, else None."""
    value = getattr(variable, "value", None)
    sharding = getattr(value, "sharding", None)
    if sharding is None or len(sharding.device_set) < 2:
        return None
    return sharding


def assign_from_host(variable, value):
    """`variable.assign(value)` for a host array of the variable's shape and dtype.

    On JAX, when the variable is laid out over several devices (keras.distribution), each device
    gets only its slice of `value`; otherwise this is `variable.assign(value)`.
    """
    if keras.backend.backend() != "jax":
        variable.assign(value)
        return
    sharding = _sharding(variable)
    if sharding is None:
        variable.assign(value)
        return
    import jax

    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"cannot assign shape {tuple(value.shape)} to {variable.path} {tuple(variable.shape)}")
    # index: the tuple of slices this device holds; `value[index]` is a view, copied to that device.
    placed = jax.make_array_from_callback(tuple(variable.shape), sharding, lambda index: value[index])
    variable.assign(placed)
