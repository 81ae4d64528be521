"""Where each op's implementation is chosen (layers/kernel_choice.py): from the backend and the
device. No GPU runs here, so the GPU side is tested for selection and, through the layers with the
device reported as "gpu", for numerics against the reference forms."""

import keras
import numpy as np
import pytest

from layers import kernel_choice
from layers.disentangled_attention import DisentangledSelfAttention
from layers.moe import RoutedExperts

BACKENDS = ("jax", "tensorflow", "torch")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.mark.parametrize("device", ["gpu", "tpu"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_tunings_are_never_chosen_off_cpu(backend, device):
    assert not kernel_choice.split_under_tensor_budget(backend=backend, device=device, compiling=False)
    for training in (False, True):
        for quantized in (False, True):
            kernel = kernel_choice.experts_kernel(training, quantized, backend=backend, device=device,
                                                  compiling=False)
            assert kernel != kernel_choice.EXPERTS_CHUNK_LOOP, (training, quantized)
    # float inference gets the grouped kernel of the backend where it has one
    inference = kernel_choice.experts_kernel(False, False, backend=backend, device=device, compiling=False)
    assert inference == {"jax": kernel_choice.EXPERTS_RAGGED_DOT, "torch": kernel_choice.EXPERTS_TORCH_GROUPED,
                         "tensorflow": kernel_choice.EXPERTS_BLOCKS}[backend]
    assert kernel_choice.latent_attention_kernel(device=device) == kernel_choice.ATTENTION_FUSED
    # the fused op returns no probabilities and applies no dropout: those keep the reference form
    assert kernel_choice.latent_attention_kernel(return_scores=True, device=device) == kernel_choice.ATTENTION_REFERENCE
    assert (kernel_choice.latent_attention_kernel(training=True, dropout=0.1, device=device)
            == kernel_choice.ATTENTION_REFERENCE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_keeps_its_measured_paths(backend):
    assert kernel_choice.split_under_tensor_budget(backend=backend, device="cpu", compiling=False) == (backend == "torch")
    assert not kernel_choice.split_under_tensor_budget(backend="torch", device="cpu", compiling=True)
    inference = kernel_choice.experts_kernel(False, False, backend=backend, device="cpu", compiling=False)
    assert inference == (kernel_choice.EXPERTS_TORCH_GROUPED if backend == "torch" else kernel_choice.EXPERTS_CHUNK_LOOP)
    assert kernel_choice.experts_kernel(False, False, backend="torch", device="cpu",
                                        compiling=True) == kernel_choice.EXPERTS_CHUNK_LOOP
    assert kernel_choice.experts_kernel(True, False, backend="jax", device="cpu") == kernel_choice.EXPERTS_BLOCKS
    assert kernel_choice.latent_attention_kernel(device="cpu") == kernel_choice.ATTENTION_REFERENCE


def test_the_running_device_is_cpu_here():
    assert kernel_choice.device_kind() == "cpu"


def test_deberta_batch_is_not_sliced_when_the_device_is_a_gpu(monkeypatch):
    """deberta-v3-base at 8 x 512: sliced per sequence on eager CPU torch (tests/test_eager_batch_slices.py),
    one pass on every backend once the device is a GPU."""
    layer = DisentangledSelfAttention(768, num_heads=12, position_buckets=256, max_relative_positions=512)
    monkeypatch.setattr(kernel_choice, "device_kind", lambda: "gpu")
    assert layer._eager_batch_slices(8, 512) is None


def test_experts_off_cpu_skip_the_chunk_loop_and_equal_the_dense_reference(monkeypatch):
    layer = RoutedExperts(6, 16, 8)
    layer.build()
    rng = np.random.RandomState(0)
    x = keras.ops.convert_to_tensor(rng.randn(20, 16).astype("float32"))
    idx = keras.ops.convert_to_tensor(np.stack([rng.randint(0, 6, 20), rng.randint(0, 6, 20)], 1).astype("int32"))
    weight = keras.ops.convert_to_tensor(rng.rand(20, 2).astype("float32"))
    want = _np(layer.dense_reference(x, idx, weight))

    def no_chunk_loop(*args, **kwargs):
        raise AssertionError("the CPU chunk loop ran with the device reported as a GPU")

    monkeypatch.setattr(kernel_choice, "device_kind", lambda: "gpu")
    monkeypatch.setattr("layers.moe.chunked_expert_mlp", no_chunk_loop)
    np.testing.assert_allclose(_np(layer(x, idx, weight)), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(layer(x, idx, weight, training=True)), want, rtol=1e-5, atol=1e-6)
