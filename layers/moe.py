"""DeepSeekMoE: a float32 softmax router, routed experts run sparsely, always-on shared experts.

Sparse dispatch: the N*K (token, expert) assignments are sorted by expert, so each expert owns one
contiguous run of rows; the grouped matmul over those runs is in layers/grouped_matmul.py (a chunk
loop taking one expert's weights per chunk on CPU, `jax.lax.ragged_dot` on JAX off CPU,
`torch._grouped_mm` on eager PyTorch; layers/kernel_choice.py chooses). Rows computed: at most A + min(E, A) * (chunk - 1),
A = N * K; exactly A on PyTorch; never N * E. Nothing is dropped.

Training (and the reverse-mode gradient JAX needs, which a loop with a data-dependent trip count
does not have) uses the block-sparse layout beside it (MegaBlocks'): assignments laid out in
fixed-size blocks, each block belonging to one expert, its rows gathered, multiplied by that
block's gathered expert weights (one batched einsum) and scattered back with a segment sum; every
shape is static for a given N and the work is bounded by

    rows = blocks * block_size <= A + min(E, A) * (block_size - 1),

with block_size = ceil(A / (2E)). `RoutedExperts.last_dispatch` records the bound on rows of the
latest call (a probe for tests).

keras.ops, with the backend fast paths named above beside their keras.ops references.
"""

import math

import keras
import numpy as np
from keras import ops

from layers import kernel_choice
from layers.activations import get_activation
from layers.grouped_matmul import (chunk_rows, chunked_expert_mlp, combine, ragged_expert_mlp, sort_assignments,
                                   torch_combine, torch_expert_mlp)


def _dense(units, name, use_bias, initializer):
    return keras.layers.Dense(units, use_bias=use_bias, name=name, kernel_initializer=initializer)


@keras.saving.register_keras_serializable(package="layers")
class GatedMLP(keras.layers.Layer):
    """down(act(gate(x)) * up(x)): DeepSeek's dense FFN and its shared experts."""

    def __init__(self, hidden_size, intermediate_size, hidden_act="silu", use_bias=False,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.hidden_act, self.use_bias = hidden_act, use_bias
        self.kernel_initializer = init = keras.initializers.get(kernel_initializer)
        self.gate_proj = _dense(intermediate_size, "gate_proj", use_bias, init)
        self.up_proj = _dense(intermediate_size, "up_proj", use_bias, init)
        self.down_proj = _dense(hidden_size, "down_proj", use_bias, init)
        self.act = get_activation(hidden_act)

    def build(self, input_shape=None):
        self.gate_proj.build((None, self.hidden_size))
        self.up_proj.build((None, self.hidden_size))
        self.down_proj.build((None, self.intermediate_size))
        self.built = True

    def call(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
                "use_bias": self.use_bias, "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def _top_k(x, k):
    """ops.top_k over the last axis, except on JAX with a symbolic token count (jax2tf export):
    jax lowers lax.top_k to a StableHLO composite that TensorFlow 2.21 cannot deserialise, so a
    stable argsort takes its place there (same values, same tie order: lowest index first)."""
    if keras.backend.backend() == "jax" and not isinstance(x.shape[0], int):
        idx = ops.argsort(-x, axis=-1)[..., :k]
        return ops.take_along_axis(x, idx, axis=-1), idx
    return ops.top_k(x, k)


@keras.saving.register_keras_serializable(package="layers")
class TopKRouter(keras.layers.Layer):
    """Float32 softmax router with DeepSeek-V2's greedy / group_limited_greedy top-k.

    Weight `kernel` [d, E] (transformers' `mlp.gate.weight` transposed). It stays float32 under
    `model.quantize` (routing decisions must not move).

    Call: x [N, d] -> (scores [N, E] float32, topk_idx [N, K] int32, topk_weight [N, K] float32).
    """

    def __init__(self, num_experts, top_k, topk_method="greedy", n_group=None, topk_group=None,
                 routed_scaling_factor=1.0, norm_topk_prob=False, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if topk_method not in ("greedy", "group_limited_greedy"):
            raise ValueError(f"topk_method must be 'greedy' or 'group_limited_greedy', got {topk_method!r}")
        if topk_method == "group_limited_greedy":
            if not n_group or not topk_group or num_experts % n_group:
                raise ValueError(
                    f"group_limited_greedy needs n_group dividing n_routed_experts and topk_group; got "
                    f"n_group={n_group}, topk_group={topk_group}, n_routed_experts={num_experts}")
            if topk_group * (num_experts // n_group) < top_k:
                raise ValueError("topk_group groups hold fewer experts than num_experts_per_tok")
        self.num_experts, self.top_k = num_experts, top_k
        self.topk_method, self.n_group, self.topk_group = topk_method, n_group, topk_group
        self.routed_scaling_factor, self.norm_topk_prob = routed_scaling_factor, norm_topk_prob
        self.initializer_range = initializer_range

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.num_experts), dtype="float32",
            initializer=keras.initializers.RandomNormal(stddev=self.initializer_range))
        self.built = True

    def quantize(self, mode=None, type_check=True, config=None):
        """The router stays float32 (documented no-op)."""

    def call(self, x):
        logits = ops.matmul(ops.cast(x, "float32"), ops.cast(self.kernel, "float32"))  # [N, E]
        scores = ops.softmax(logits, axis=-1)
        select = scores
        if self.topk_method == "group_limited_greedy":
            n, g = self.n_group, self.num_experts // self.n_group
            grouped = ops.reshape(scores, (-1, n, g))
            group_scores = ops.max(grouped, axis=-1)  # [N, n_group]
            _, group_idx = _top_k(group_scores, self.topk_group)
            group_mask = ops.sum(ops.one_hot(group_idx, n, dtype="float32"), axis=1)  # [N, n_group]
            keep = ops.reshape(ops.repeat(group_mask[:, :, None], g, axis=2), (-1, self.num_experts))
            select = ops.where(keep > 0, scores, 0.0)
        weight, idx = _top_k(select, self.top_k)
        if self.top_k > 1 and self.norm_topk_prob:
            # The original code's semantics (transformers ignores norm_topk_prob; checkpoints have it false).
            weight = weight / (ops.sum(weight, axis=-1, keepdims=True) + 1e-20)
        else:
            weight = weight * self.routed_scaling_factor
        return scores, ops.cast(idx, "int32"), weight

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "top_k": self.top_k,
                "topk_method": self.topk_method, "n_group": self.n_group, "topk_group": self.topk_group,
                "routed_scaling_factor": self.routed_scaling_factor, "norm_topk_prob": self.norm_topk_prob,
                "initializer_range": self.initializer_range}


def dispatch_sizes(num_assignments, num_experts):
    """(block_size, num_blocks) for A assignments over E experts (Python ints)."""
    a, e = int(num_assignments), int(num_experts)
    block = max(1, math.ceil(a / (2 * e)))
    blocks = (a + min(e, a) * (block - 1)) // block
    return block, max(blocks, 1)


@keras.saving.register_keras_serializable(package="layers")
class RoutedExperts(keras.layers.Layer):
    """E SwiGLU experts held as stacked weights, run only on the tokens routed to them.

    Weights: gate_kernel, up_kernel [E, d, f], down_kernel [E, f, d].

    Quantization follows Keras' own protocol: `quantize("int8" | "int4")` replaces the three
    kernels by integer tensors with a float32 scale per (expert, output channel) and records the
    mode in the layer's dtype policy ("int8_from_float32", ...), so `get_config` carries it and a
    layer rebuilt from its config creates the integer variables in `build` before weights are
    restored. int8 holds one value per byte; int4 packs two values per byte along the input axis
    ([E, ceil(in / 2), out], Keras' `pack_int4` layout). Blocks are dequantised after the gather,
    so only the selected experts' weights are ever expanded. Activations stay in the compute dtype
    (weight-only quantization: the expert matmuls run on dequantised weights).

    Call: x [N, d], idx [N, K] int, weight [N, K] -> [N, d].
    """

    KERNELS = ("gate_kernel", "up_kernel", "down_kernel")
    # Largest integer magnitude per mode (symmetric, zero point 0): int8 [-127, 127], int4 [-8, 7].
    _QMAX = {"int8": 127.0, "int4": 7.0}

    def __init__(self, num_experts, hidden_size, intermediate_size, hidden_act="silu",
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_experts, self.hidden_size, self.intermediate_size = num_experts, hidden_size, intermediate_size
        self.hidden_act, self.initializer_range = hidden_act, initializer_range
        self.act = get_activation(hidden_act)
        self.last_dispatch = None

    @property
    def quantized(self):
        return self.quantization_mode is not None

    def _kernel_shapes(self):
        E, d, f = self.num_experts, self.hidden_size, self.intermediate_size
        return {"gate_kernel": (E, d, f), "up_kernel": (E, d, f), "down_kernel": (E, f, d)}

    def build(self, input_shape=None):
        if self.quantization_mode is not None:  # rebuilt from a quantized config: integer variables
            self.quantized_build(self.quantization_mode)
        else:
            init = keras.initializers.RandomNormal(stddev=self.initializer_range)
            for name, shape in self._kernel_shapes().items():
                setattr(self, name, self.add_weight(name=name, shape=shape, initializer=init))
        self.built = True

    # --- quantization ----------------------------------------------------------------------------
    def quantized_build(self, mode):
        """Creates the integer kernels and their scales (zeros / ones until assigned or loaded)."""
        if mode not in self._QMAX:
            raise NotImplementedError(f"RoutedExperts supports quantize('int8') and quantize('int4'), not {mode!r}")
        for name, (E, rows, cols) in self._kernel_shapes().items():
            stored_rows = rows if mode == "int8" else (rows + 1) // 2  # int4: two values per byte
            setattr(self, name, self.add_weight(name=name, shape=(E, stored_rows, cols), dtype="int8",
                                                initializer="zeros", trainable=False))
            setattr(self, name + "_scale", self.add_weight(name=name + "_scale", shape=(E, 1, cols),
                                                           dtype="float32", initializer="ones", trainable=False))
        self._is_quantized = True

    def quantize(self, mode=None, type_check=True, config=None, float_kernels=True):
        """Keras' quantize protocol for the three expert stacks. `float_kernels=False` creates the
        integer variables without reading float kernels (a loader that never allocated them then
        fills each expert with `quantized_expert_values` and assigns the stacks)."""
        if mode not in self._QMAX:
            raise NotImplementedError(f"RoutedExperts supports quantize('int8') and quantize('int4'), not {mode!r}")
        # (Keras' quantize wrapper has already refused a second quantization and unlocked the tracker.)
        values = {}
        for name in self.KERNELS:
            if float_kernels:
                w = np.asarray(ops.convert_to_numpy(getattr(self, name)), dtype=np.float32)  # [E, in, out]
                values[name] = self.quantized_expert_values(w, mode)
            delattr(self, name)
        self.quantized_build(mode)
        for name, (q, scale) in values.items():
            getattr(self, name).assign(q)
            getattr(self, name + "_scale").assign(scale)
        # Recorded as Keras records it for Dense: `<mode>_from_<previous policy>`.
        self.dtype_policy = keras.dtype_policies.get(f"{mode}_from_{self.dtype_policy.name}")

    @classmethod
    def quantized_expert_values(cls, w, mode):
        """(integer values, float32 scale) of float32 kernels [..., in, out]: one scale per output
        channel over the input axis, so a stack [E, in, out] and each expert [in, out] on its own
        give the same bytes (a loader quantizes one expert at a time)."""
        qmax = cls._QMAX[mode]
        axis = w.ndim - 2
        scale = np.maximum(np.abs(w).max(axis=axis, keepdims=True), 1e-12) / qmax  # [..., 1, out]
        q = np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8)
        if mode == "int4":
            q = np.asarray(ops.convert_to_numpy(keras.quantizers.pack_int4(q, axis=axis)[0]))
        return q, scale

    # Keras dispatches calls of a quantized layer to `_<mode>_call`; ours is the same code path.
    def _int8_call(self, *args, **kwargs):
        return self.call(*args, **kwargs)

    _int4_call = _int8_call

    def _block_weights(self, name, block_expert):
        w = ops.take(getattr(self, name), block_expert, axis=0)  # [NB, in, out] (int4: [NB, in/2, out])
        mode = self.quantization_mode
        if mode is None:
            return ops.cast(w, self.compute_dtype)
        if mode == "int4":
            w = keras.quantizers.unpack_int4(w, self._kernel_shapes()[name][1], axis=1)
        scale = ops.take(getattr(self, name + "_scale"), block_expert, axis=0)  # [NB, 1, out]
        return ops.cast(ops.cast(w, "float32") * scale, self.compute_dtype)

    def _expert_weight(self, name, e):
        """One expert's kernel (e a scalar) in the compute dtype, dequantised if need be."""
        return self._block_weights(name, ops.reshape(e, (1,)))[0]

    # --- dispatch --------------------------------------------------------------------------------
    def call(self, x, idx, weight, training=False):
        if not isinstance(x.shape[0], int):
            # dynamic: None under TF tracing, a symbolic dimension under jax2tf export
            return self._call_dynamic(x, idx, weight)
        kernel = kernel_choice.experts_kernel(training, self.quantized, self.use_torch_fast_path)
        if kernel == kernel_choice.EXPERTS_TORCH_GROUPED:
            return self._call_torch(x, idx, weight)
        if kernel == kernel_choice.EXPERTS_BLOCKS:
            return self._call_blocks(x, idx, weight)
        return self._call_grouped(x, idx, weight, ragged=kernel == kernel_choice.EXPERTS_RAGGED_DOT)

    # PyTorch eager fast path: grouped matmuls on contiguous row groups (weights used in place,
    # no gather). The keras.ops `_call_blocks` beside it is the reference (tests check they agree).
    use_torch_fast_path = True

    def _call_grouped(self, x, idx, weight, ragged=False):
        N, K, E = x.shape[0], idx.shape[1], self.num_experts
        A = N * K
        chunk = 1 if ragged else chunk_rows(A, E)
        self.last_dispatch = {"tokens": N, "assignments": A, "block_size": chunk, "blocks": None,
                              "rows": A + min(E, A) * (chunk - 1), "dense_rows": N * E}
        order, tok, counts = sort_assignments(idx, E)
        xs = ops.take(x, tok, axis=0)  # [A, d] rows sorted by expert
        if ragged:
            rows = ragged_expert_mlp(xs, counts, *(ops.cast(getattr(self, n), self.compute_dtype)
                                                   for n in self.KERNELS), self.act)
        else:
            rows = chunked_expert_mlp(xs, counts, self._expert_weight, self.act, chunk)
        return combine(rows, order, weight)

    def _call_torch(self, x, idx, weight):
        N, K = x.shape[0], idx.shape[1]
        order, tok, counts = sort_assignments(idx, self.num_experts)
        self.last_dispatch = {"tokens": N, "assignments": N * K, "block_size": None, "blocks": None,
                              "rows": N * K, "dense_rows": N * self.num_experts}
        rows = torch_expert_mlp(x[tok.long()], counts, self.gate_kernel.value, self.up_kernel.value,
                                self.down_kernel.value, self.act)
        return torch_combine(rows, order, tok, weight)

    def _call_blocks(self, x, idx, weight):
        N, d = x.shape[0], self.hidden_size
        K = idx.shape[1]
        E = self.num_experts
        A = N * K
        block, num_blocks = dispatch_sizes(A, E)
        self.last_dispatch = {"tokens": N, "assignments": A, "block_size": block, "blocks": num_blocks,
                              "rows": block * num_blocks, "dense_rows": N * E}
        flat_e = ops.reshape(ops.cast(idx, "int32"), (A,))
        flat_tok = ops.arange(A, dtype="int32") // K
        order = ops.argsort(flat_e * A + ops.arange(A, dtype="int32"))  # by expert, then position
        sorted_e = ops.take(flat_e, order)
        counts = ops.sum(ops.one_hot(flat_e, E, dtype="int32"), axis=0)  # [E]
        starts = ops.cumsum(counts) - counts
        blocks_e = (counts + block - 1) // block
        block_end = ops.cumsum(blocks_e)
        block_start = block_end - blocks_e
        rank = ops.arange(A, dtype="int32") - ops.take(starts, sorted_e)
        slot = ops.take(block_start, sorted_e) * block + rank  # [A] unique slots
        rows = num_blocks * block
        slot_tok = ops.scatter(slot[:, None], ops.take(flat_tok, order) + 1, (rows,)) - 1
        slot_tok = ops.where(slot_tok < 0, N, slot_tok)  # empty slots read / write row N (zeros)
        flat_w = ops.reshape(ops.cast(weight, "float32"), (A,))
        slot_w = ops.scatter(slot[:, None], ops.take(flat_w, order), (rows,))
        block_ids = ops.arange(num_blocks, dtype="int32")
        block_expert = ops.sum(ops.cast(block_ids[:, None] >= block_end[None, :], "int32"), axis=1)
        block_expert = ops.minimum(block_expert, E - 1)  # unused trailing blocks: any expert, zero rows
        x_pad = ops.concatenate([x, ops.zeros((1, d), dtype=x.dtype)], axis=0)
        xb = ops.reshape(ops.take(x_pad, slot_tok, axis=0), (num_blocks, block, d))
        gate = ops.einsum("nbd,ndf->nbf", xb, self._block_weights("gate_kernel", block_expert))
        up = ops.einsum("nbd,ndf->nbf", xb, self._block_weights("up_kernel", block_expert))
        y = ops.einsum("nbf,nfd->nbd", self.act(gate) * up, self._block_weights("down_kernel", block_expert))
        y = ops.reshape(y, (rows, d)) * ops.cast(slot_w, y.dtype)[:, None]
        return ops.segment_sum(y, slot_tok, num_segments=N + 1)[:N]

    def _call_dynamic(self, x, idx, weight):
        # Unknown N under TF tracing: per-assignment gather of expert weights (A rows, exact work,
        # more memory); only reached by keras' retracing with a None batch dimension.
        K = idx.shape[1]
        flat_e = ops.reshape(ops.cast(idx, "int32"), (-1,))
        xa = ops.repeat(x, K, axis=0)[:, None, :]  # [A, 1, d]
        gate = ops.einsum("nbd,ndf->nbf", xa, self._block_weights("gate_kernel", flat_e))
        up = ops.einsum("nbd,ndf->nbf", xa, self._block_weights("up_kernel", flat_e))
        y = ops.einsum("nbf,nfd->nbd", self.act(gate) * up, self._block_weights("down_kernel", flat_e))
        y = ops.reshape(y, (-1, K, self.hidden_size)) * ops.cast(weight, y.dtype)[:, :, None]
        return ops.sum(y, axis=1)

    def get_config(self):
        # The dtype policy (from the base config) carries the quantization mode, so `from_config`
        # followed by `build` creates integer variables for a quantized layer.
        return {**super().get_config(), "num_experts": self.num_experts, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
                "initializer_range": self.initializer_range}

    def dense_reference(self, x, idx, weight):
        """Every expert on every token, combined with the routing weights: the [N, E] einsum this
        layer avoids (for tests and the benchmark only)."""
        gate = ops.einsum("nd,edf->nef", x, self._block_weights("gate_kernel", ops.arange(self.num_experts)))
        up = ops.einsum("nd,edf->nef", x, self._block_weights("up_kernel", ops.arange(self.num_experts)))
        y = ops.einsum("nef,efd->ned", self.act(gate) * up,
                       self._block_weights("down_kernel", ops.arange(self.num_experts)))
        combine = ops.sum(ops.one_hot(idx, self.num_experts, dtype="float32") * ops.cast(weight, "float32")[..., None], axis=1)
        return ops.einsum("ned,ne->nd", y, ops.cast(combine, y.dtype))


@keras.saving.register_keras_serializable(package="layers")
class MoEBlock(keras.layers.Layer):
    """DeepSeekMoE layer: routed experts (sparse) + shared experts (one always-on MLP).

    Names follow transformers: `gate` (router), `experts`, `shared_experts`. In training, when
    aux_loss_alpha > 0, the expert-level balance loss of the original code is added with
    `add_loss`: alpha * sum_i f_i * P_i (per sequence, then averaged, when seq_aux).

    Call: hidden [B, S, d] -> [B, S, d].
    """

    def __init__(self, hidden_size, moe_intermediate_size, n_routed_experts, num_experts_per_tok,
                 n_shared_experts=None, topk_method="greedy", n_group=None, topk_group=None,
                 routed_scaling_factor=1.0, norm_topk_prob=False, hidden_act="silu", use_bias=False,
                 aux_loss_alpha=0.0, seq_aux=True, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.n_routed_experts, self.top_k = n_routed_experts, num_experts_per_tok
        self.aux_loss_alpha, self.seq_aux = aux_loss_alpha, seq_aux
        self._config = {
            "hidden_size": hidden_size, "moe_intermediate_size": moe_intermediate_size,
            "n_routed_experts": n_routed_experts, "num_experts_per_tok": num_experts_per_tok,
            "n_shared_experts": n_shared_experts, "topk_method": topk_method, "n_group": n_group,
            "topk_group": topk_group, "routed_scaling_factor": routed_scaling_factor,
            "norm_topk_prob": norm_topk_prob, "hidden_act": hidden_act, "use_bias": use_bias,
            "aux_loss_alpha": aux_loss_alpha, "seq_aux": seq_aux, "initializer_range": initializer_range}
        self.gate = TopKRouter(n_routed_experts, num_experts_per_tok, topk_method, n_group, topk_group,
                               routed_scaling_factor, norm_topk_prob, initializer_range, name="gate")
        self.experts = RoutedExperts(n_routed_experts, hidden_size, moe_intermediate_size, hidden_act,
                                     initializer_range, name="experts")
        self.shared_experts = None
        if n_shared_experts:
            self.shared_experts = GatedMLP(
                hidden_size, moe_intermediate_size * n_shared_experts, hidden_act, use_bias,
                keras.initializers.RandomNormal(stddev=initializer_range), name="shared_experts")

    def build(self, input_shape=None):
        self.gate.build((None, self.hidden_size))
        self.experts.build()
        if self.shared_experts is not None:
            self.shared_experts.build()
        self.built = True

    def call(self, hidden, training=False):
        shape = ops.shape(hidden)
        x = ops.reshape(hidden, (-1, self.hidden_size))  # [N, d]
        if hidden.shape[0] is not None and hidden.shape[1] is not None:
            x = ops.reshape(hidden, (hidden.shape[0] * hidden.shape[1], self.hidden_size))
        scores, idx, weight = self.gate(x)
        out = ops.reshape(self.experts(x, idx, weight, training=training), shape)
        if self.shared_experts is not None:
            out = out + self.shared_experts(hidden)
        if training and self.aux_loss_alpha > 0:
            self.add_loss(self.balance_loss(scores, idx, shape[0]))
        return out

    def get_config(self):
        return {**super().get_config(), **self._config}

    def balance_loss(self, scores, idx, batch):
        """The original expert-level balance loss (float32 scalar)."""
        E, K = self.n_routed_experts, self.top_k
        if self.seq_aux:
            scores = ops.reshape(scores, (batch, -1, E))  # [B, S, E]
            seq_len = ops.shape(scores)[1]
            hits = ops.sum(ops.one_hot(ops.reshape(idx, (batch, -1)), E, dtype="float32"), axis=1)  # [B, E]
            ce = hits / (ops.cast(seq_len * K, "float32") / E)
            return ops.mean(ops.sum(ce * ops.mean(scores, axis=1), axis=1)) * self.aux_loss_alpha
        mask = ops.one_hot(ops.reshape(idx, (-1,)), E, dtype="float32")
        fi = ops.mean(mask, axis=0) * E
        pi = ops.mean(scores, axis=0)
        return ops.sum(pi * fi) * self.aux_loss_alpha
