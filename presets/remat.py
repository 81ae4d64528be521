"""Recomputing a block in the backward pass (`keras.remat`) when the block draws random numbers.

A Keras layer's dropout advances its seed generators' state (uint32 variables) as it runs. Inside
a function JAX recomputes (jax.checkpoint), that update is a value created inside the function
escaping it through the variable: JAX refuses it ("UnexpectedTracerError"). So the new states
leave the recomputed function as outputs and are assigned outside it. The recomputation itself
replays the same seeds, so its dropout masks equal the forward pass's.
"""

import keras


def remat_call(layer, fn, *tensors):
    """fn(*tensors) -> one tensor, with `layer`'s activations recomputed in the backward pass.

    Args:
        layer: the layer `fn` runs (its seed-generator states are threaded through).
        fn: a function of tensors only; Python options belong in its closure.
        tensors: float tensors (TensorFlow's recompute_grad takes no bool or int inputs).
    """
    if keras.backend.backend() != "jax":
        return keras.remat(fn)(*tensors)
    seeds = [v for v in layer.non_trainable_variables if v.dtype == "uint32"]

    def recomputed(*args):
        return fn(*args), [v.value for v in seeds]

    output, states = keras.remat(recomputed)(*tensors)
    for variable, state in zip(seeds, states):
        variable.assign(state)
    return output
