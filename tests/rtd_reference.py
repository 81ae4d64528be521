"""The RTD reference fixture (../shared/data/rtd-reference/, made by running Microsoft's own
RTD / GDES / EMD code) and a gradient helper for every backend."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import SHARED_DATA

FIXTURE = os.path.join(SHARED_DATA, "rtd-reference")
needs_fixture = pytest.mark.skipif(not os.path.isdir(FIXTURE), reason=f"RTD reference fixture absent ({FIXTURE})")


def load_fixture():
    from safetensors.numpy import load_file

    read = lambda name: load_file(os.path.join(FIXTURE, name))
    with open(os.path.join(FIXTURE, "model_config.json")) as f:
        configs = json.load(f)
    return dict(
        configs=configs,
        generator=read("generator.safetensors"), discriminator=read("discriminator.safetensors"),
        grads_generator=read("grads_generator.safetensors"),
        grads_discriminator=read("grads_discriminator.safetensors"),
        inputs=dict(np.load(os.path.join(FIXTURE, "inputs.npz"))),
        outputs=dict(np.load(os.path.join(FIXTURE, "outputs.npz"))),
    )


def gradients(loss_fn, variables):
    """d loss_fn() / d variables on the current backend -> list of numpy arrays (zeros where the
    loss does not depend on a variable), plus loss_fn's auxiliary output."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
    elif backend == "jax":
        import jax

        def pure(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                loss, aux = loss_fn()
            return loss, aux

        grads, aux = jax.grad(pure, has_aux=True)([v.value for v in variables])
    else:
        for v in variables:
            v.value.grad = None
        loss, aux = loss_fn()
        loss.backward()
        grads = [v.value.grad for v in variables]
    out = []
    for g, v in zip(grads, variables):
        out.append(np.zeros(v.shape, "float32") if g is None else keras.ops.convert_to_numpy(g))
    return out, aux
