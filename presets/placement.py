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
    if keras.backend.backend() == "torch" and str(getattr(value, "dtype", "")) == "bfloat16":
        variable.assign(_torch_bfloat16(value))
        return
    if keras.backend.backend() != "jax":
        variable.assign(value)
        return
    import jax

    sharding = _sharding(variable)
    if sharding is None:
        variable.assign(value)
        # JAX copies host arrays asynchronously: wait, so a loader that frees `value` next really
        # frees it, instead of many tensors' host copies piling up behind a busy CPU.
        jax.block_until_ready(variable.value)
        return
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"cannot assign shape {tuple(value.shape)} to {variable.path} {tuple(variable.shape)}")
    # index: the tuple of slices this device holds; `value[index]` is a view, copied to that device.
    placed = jax.make_array_from_callback(tuple(variable.shape), sharding, lambda index: value[index])
    variable.assign(placed)
    jax.block_until_ready(variable.value)


def _torch_bfloat16(value):
    """A bf16 host array as a torch tensor without a detour: torch cannot read numpy's (ml_dtypes)
    bfloat16, so Keras' own conversion goes through a float32 copy (3x the bytes for a moment);
    the same bits viewed as int16 convert directly. `variable.assign(value)` is the general path."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(value).view(np.int16)).view(torch.bfloat16)


def _to_backend(value):
    """A host array as a JAX or TensorFlow tensor (PyTorch assigns through `_torch_copy_into`)."""
    from keras import ops

    # JAX: one host-to-device copy (jnp.asarray's path is slower; benchmarks/loading.py).
    if keras.backend.backend() == "jax":
        import jax

        return jax.device_put(value)
    return ops.convert_to_tensor(value)


def assign_permuted(variable, value, perm):
    """`variable.assign(np.transpose(value, perm))` for a host array `value` in any float dtype,
    with the cast and the transpose done by the backend (numpy transposes a large matrix through
    a strided copy, at a few percent of memory speed). `perm` None: no transpose. A JAX variable
    laid out over several devices takes the host path, so each device still gets only its slice."""
    import numpy as np
    from keras import ops

    if keras.backend.backend() == "torch":
        _torch_copy_into(variable.value, value, perm, variable.path)
        return
    if perm is None:
        target = np.dtype(keras.backend.standardize_dtype(variable.dtype))
        assign_from_host(variable, np.ascontiguousarray(value, dtype=target))
        return
    if keras.backend.backend() == "jax" and _sharding(variable) is not None:
        target = np.dtype(keras.backend.standardize_dtype(variable.dtype))
        assign_from_host(variable, np.ascontiguousarray(np.transpose(value, perm), dtype=target))
        return
    tensor = _to_backend(np.ascontiguousarray(value))
    if keras.backend.standardize_dtype(tensor.dtype) != keras.backend.standardize_dtype(variable.dtype):
        tensor = ops.cast(tensor, variable.dtype)
    variable.assign(ops.transpose(tensor, perm))
    del tensor
    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(variable.value)


def assign_entry_permuted(variable, index, value, perm):
    """`variable[index] = np.transpose(value, perm)` in place, for backends whose variables are
    mutable buffers (torch): one pass that reads the (memory-mapped) host array, casts and
    transposes. Returns False where the backend has no such write (JAX, TensorFlow): the caller
    then collects the entries on the host and assigns the whole variable once."""
    if keras.backend.backend() != "torch":
        return False
    _torch_copy_into(variable.value[index], value, perm, f"{variable.path}[{index}]")
    return True


def _torch_copy_into(target, value, perm, name):
    """target.copy_(transpose(value, perm)) without a host copy first: torch's copy casts and
    transposes in one pass (a cast before it, or numpy's transpose, would each be another)."""
    import numpy as np
    import torch

    if str(value.dtype) == "bfloat16":
        source = _torch_bfloat16(value)
    else:
        source = torch.from_numpy(np.ascontiguousarray(value))
    if perm is not None:
        source = source.permute(perm)
    if tuple(source.shape) != tuple(target.shape):  # copy_ would broadcast instead of failing
        raise ValueError(f"cannot assign shape {tuple(source.shape)} to {name} {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(source)


def read_permuted(variable, perm):
    """`np.transpose(variable, perm)` as a C-contiguous host array in the variable's dtype, the
    transpose done by the backend."""
    import numpy as np
    from keras import ops

    value = variable if perm is None else ops.transpose(variable, perm)
    if keras.backend.backend() == "torch" and keras.backend.standardize_dtype(variable.dtype) == "bfloat16":
        # Keras converts a torch bf16 tensor to numpy through float32 (3x the bytes, two more
        # passes); the same bits viewed as int16 leave torch directly.
        import ml_dtypes
        import torch

        tensor = variable.value if perm is None else value
        bits = tensor.detach().cpu().contiguous().view(torch.int16)
        return bits.numpy().view(ml_dtypes.bfloat16)
    return np.ascontiguousarray(ops.convert_to_numpy(value))
