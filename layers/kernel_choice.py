"""Which implementation of an op runs, chosen in one place from the backend *and the device*.

Each layer keeps one reference form written in keras.ops, plus the paths that measured faster on
some device. The CPU tunings (eager PyTorch splitting score-sized work under a tensor budget, the
expert chunk loop for XLA and TensorFlow on CPU) are chosen only on CPU: they answer a CPU
allocator's page faults and XLA-CPU's lowering of ragged matmuls, which a GPU does not have. On a
GPU or TPU the standard fused paths run: `ops.dot_product_attention` (flash attention where the
backend has it) for MLA prefill, `jax.lax.ragged_dot` or `torch._grouped_mm` for routed experts.

Every choice is a pure function of its arguments; `backend` and `device` default to the running
ones, so a test can ask what a GPU would get without having one. To add a path: write it beside
the reference form in its layer, add its name here with the condition under which it measured
faster (the benchmark that shows it in benchmarks/), and test it against the reference form.
"""

import functools

import keras

# Implementations of the routed experts' grouped matmul (layers/moe.py, layers/grouped_matmul.py).
EXPERTS_TORCH_GROUPED = "torch_grouped"  # torch._grouped_mm (or a per-expert loop), eager PyTorch
EXPERTS_RAGGED_DOT = "ragged_dot"  # jax.lax.ragged_dot, weights read in place
EXPERTS_CHUNK_LOOP = "chunk_loop"  # keras.ops loop over row chunks of one expert each (CPU)
EXPERTS_BLOCKS = "blocks"  # keras.ops padded per-expert blocks: the reference, and training

# Implementations of MLA's expanded (prefill / training) attention (layers/latent_attention.py).
ATTENTION_REFERENCE = "reference"  # einsum scores, float32 softmax, query blocks for long prompts
ATTENTION_FUSED = "fused"  # ops.dot_product_attention (flash where the backend has it)


@functools.lru_cache(maxsize=None)
def _default_device(backend):
    if backend == "jax":
        import jax

        platform = jax.default_backend()
        return "cpu" if platform == "cpu" else ("tpu" if platform == "tpu" else "gpu")
    if backend == "torch":
        import torch

        if torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            return "gpu"
        return "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("TPU"):
            return "tpu"
        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    return "cpu"


def device_kind():
    """"cpu", "gpu" or "tpu": where the running backend places new tensors by default."""
    return _default_device(keras.backend.backend())


def torch_compiling():
    """True while torch.compile traces (shapes no longer follow runtime values there)."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return torch.compiler.is_compiling()


def split_under_tensor_budget(backend=None, device=None, compiling=None):
    """Whether attention splits score-sized work (batch rows, query rows) so that no intermediate
    passes `layers.eager_torch.EAGER_TENSOR_BYTES`: eager PyTorch on CPU only. The budget comes
    from glibc's mmap threshold; XLA and torch.compile plan their own buffers, and a GPU batch
    split into slices would only run serially."""
    backend = backend or keras.backend.backend()
    device = device or device_kind()
    compiling = torch_compiling() if compiling is None else compiling
    return backend == "torch" and device == "cpu" and not compiling


def latent_attention_kernel(training=False, dropout=0.0, return_scores=False, device=None):
    """MLA's expanded attention: the fused `ops.dot_product_attention` off CPU, unless the
    probabilities are returned or dropout applies to them (the fused op has neither); on CPU the
    reference form, whose query blocks bound memory and which measured faster there."""
    device = device or device_kind()
    if device == "cpu" or return_scores or (training and dropout > 0):
        return ATTENTION_REFERENCE
    return ATTENTION_FUSED


def experts_kernel(training=False, quantized=False, torch_fast_path=True, backend=None, device=None,
                   compiling=None):
    """The routed experts' implementation (one of the EXPERTS_* names above).

    - Eager PyTorch, float weights: `torch._grouped_mm` over the sorted rows, on any device.
    - Training elsewhere: padded blocks (the chunk loop's data-dependent trip count has no
      reverse-mode gradient on JAX).
    - JAX off CPU, float weights: `jax.lax.ragged_dot` (XLA-CPU lowers it to far more work than the
      selected rows, so never on CPU).
    - CPU (XLA, TensorFlow, compiled torch): the chunk loop.
    - Anything else (TensorFlow or compiled torch on a GPU, quantized weights off CPU): padded blocks.
    """
    backend = backend or keras.backend.backend()
    device = device or device_kind()
    compiling = torch_compiling() if compiling is None else compiling
    if backend == "torch" and not quantized and torch_fast_path and not compiling:
        return EXPERTS_TORCH_GROUPED
    if training:
        return EXPERTS_BLOCKS
    if backend == "jax" and not quantized and device != "cpu":
        return EXPERTS_RAGGED_DOT
    if device == "cpu":
        return EXPERTS_CHUNK_LOOP
    return EXPERTS_BLOCKS
