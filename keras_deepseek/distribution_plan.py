"""How much memory and communication DeepSeek-V2 needs per device on a mesh, before buying the mesh.

    plan = plan_distribution("deepseek-ai/DeepSeek-V2", (1, 8), dtype="bfloat16", batch=1, seq_len=4096)
    print(plan)                      # per-device bytes and a per-layer table of collectives
    plan.fits(80 * 2**30)            # parameters + cache + activations within one device?

Parameters: the causal LM is built abstractly (Keras variables created inside a
`StatelessScope(initialize_variables=False)` hold a shape and a dtype but no value, so no weight
is allocated, even at 236B), quantized the same way (each layer's own Keras `quantized_build`, so
int8 / int4 values, scales and zero points are what `model.quantize` stores), and every variable
is cut as `TFDeepseekV2ForCausalLM.get_layout_map(mesh, ...)` lays it out: per-device bytes are the
sum of one device's shards, exactly what JAX places.

Latent cache: kv_lora_rank + qk_rope_head_dim values per token per layer in the compute dtype,
split along the batch (data axis), replicated over the model axis (every device holds the latent).

Activations (an estimate, not measured): one decoder layer's live tensors in a forward over
batch x seq_len tokens, layers run one after another: the residual and its norm, plus the larger
of attention (queries, expanded keys / values and float32 scores [B, H, S, S], as XLA's attention
without a flash kernel materialises them) and the MoE (float32 router scores, every token's sorted
rows and expert intermediates: today's replicated dispatch gives every device all of them), or the
logits [B, S, V / model axis].

Communication: the collectives XLA's SPMD partitioner inserts into the compiled forward of the
accelerator program (routed experts through `jax.lax.ragged_dot`) for these layouts, per layer and
kind, as operand bytes per device: the tensor-parallel all-reduces after o_proj and down_proj, the
width-split embedding's all-gather, and in MoE layers the router scores gathered over the data
axis, the sorted assignments and per-expert counts, every token's rows gathered (all-reduce) and
the expert partial products summed over the expert axis (all-reduce). tests/test_distribution_plan.py
checks them against the compiled program on 8 simulated devices. XLA:CPU widens bfloat16
collectives to float32; accelerators move the compute dtype. Quantized routed experts run another
dispatch (padded blocks) whose collectives are not modelled: `communication` is None then.
"""

import dataclasses
import gc
import math
import os

import keras
import numpy as np
# Private Keras: the list of variables a StatelessScope defers (see `abstract_model`), and the
# config `quantize` resolves when none is given (see `_replace_quantizable`).

from keras_deepseek.configuration_deepseek_v2 import DeepseekV2Config
from keras_deepseek.modeling_deepseek_v2 import TFDeepseekV2ForCausalLM
from layers.moe import RoutedExperts
from presets import keras_compat
from presets.keras_compat import child_layers
from presets.layout import check_layout
from presets.registry import known_config

_KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all")
_INT32 = 4
_FLOAT32 = 4


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective of the compiled forward: `kind`, operand bytes per device, the mesh axis it
    runs over and what it moves."""

    kind: str
    bytes: int
    axis: str
    what: str


@dataclasses.dataclass(frozen=True)
class LayerCommunication:
    """The collectives of one part of the forward: "input" (ids and embeddings) or a decoder layer."""

    name: str
    kind: str  # "input", "dense" or "moe"
    collectives: tuple

    def bytes_by_kind(self):
        """{collective kind: operand bytes per device}, kinds with bytes only."""
        out = {}
        for c in self.collectives:
            out[c.kind] = out.get(c.kind, 0) + c.bytes
        return out


@dataclasses.dataclass(frozen=True)
class DistributionPlan:
    """Per-device memory and per-layer communication of DeepSeek-V2 on a device mesh (see the module
    docstring for what each figure counts). Bytes are per device unless named `total`."""

    name: str
    mesh_shape: tuple
    mesh_axis_names: tuple
    model_axis: str
    data_axis: str
    expert_axis: str
    dtype: str
    quantize: str
    batch: int
    seq_len: int
    parameter_count: int
    parameter_bytes_total: int
    parameter_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    communication: tuple  # of LayerCommunication, or None (quantized experts: not modelled)

    @property
    def device_bytes(self):
        return self.parameter_bytes + self.kv_cache_bytes + self.activation_bytes

    def fits(self, device_memory_bytes):
        return self.device_bytes <= device_memory_bytes

    def communication_bytes(self):
        """{collective kind: operand bytes per device} of the whole forward."""
        out = {}
        for layer in self.communication or ():
            for kind, size in layer.bytes_by_kind().items():
                out[kind] = out.get(kind, 0) + size
        return out

    def __str__(self):
        mesh = " x ".join(f"{n} {a!r}" for n, a in zip(self.mesh_shape, self.mesh_axis_names))
        lines = [f"{self.name}: {self.parameter_count / 1e9:.2f}B parameters, {self.dtype}"
                 + (f", {self.quantize}" if self.quantize else "") + f" ({_size(self.parameter_bytes_total)} in all)",
                 f"mesh {mesh} ({_devices(math.prod(self.mesh_shape))}); tensor parallel on {self.model_axis!r}, "
                 f"experts on {self.expert_axis!r}, batch on {self.data_axis!r}; batch {self.batch} x {self.seq_len} tokens",
                 "per device:",
                 f"  parameters   {_size(self.parameter_bytes):>12}",
                 f"  latent cache {_size(self.kv_cache_bytes):>12}  ({self.seq_len} tokens)",
                 f"  activations  {_size(self.activation_bytes):>12}  (estimate: one layer's forward)",
                 f"  total        {_size(self.device_bytes):>12}"]
        if self.communication is None:
            lines.append("communication: not modelled for quantized routed experts (padded-block dispatch)")
            return "\n".join(lines)
        lines.append("communication per forward, operand bytes per device:")
        lines.append(f"  {'layers':<16}" + "".join(f"{k:>16}" for k in _KINDS))
        for label, layers in _grouped(self.communication):
            by_kind = layers[0].bytes_by_kind()
            lines.append(f"  {label:<16}" + "".join(f"{_size(by_kind[k]) if by_kind.get(k) else '-':>16}"
                                                  for k in _KINDS))
        total = self.communication_bytes()
        lines.append(f"  {'forward':<16}" + "".join(f"{_size(total[k]) if total.get(k) else '-':>16}" for k in _KINDS))
        return "\n".join(lines)


def _grouped(layers):
    """Runs of consecutive layers with the same collectives: [(label, [layers])]."""
    groups = []
    for layer in layers:
        key = tuple(sorted(layer.bytes_by_kind().items()))
        if groups and groups[-1][0] == key and layer.kind == groups[-1][2][-1].kind != "input":
            groups[-1][2].append(layer)
        else:
            groups.append((key, layer.kind, [layer]))
    out = []
    for _, kind, run in groups:
        if kind == "input":
            out.append(("input", run))
            continue
        first, last = run[0].name.split("_")[-1], run[-1].name.split("_")[-1]
        span = f"{first}" if first == last else f"{first}-{last}"
        out.append((f"{span} {kind}" + (" (each)" if len(run) > 1 else ""), run))
    return out


def _devices(n):
    return "1 device" if n == 1 else f"{n} devices"


def _size(n):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# --- the model's variables, without their values ------------------------------------------------------
def resolve_config(config):
    """A DeepseekV2Config from a config, a dict, a registry name (presets/registry.py) or a path
    to a config.json (or its directory)."""
    if isinstance(config, DeepseekV2Config):
        return config
    if isinstance(config, dict):
        return DeepseekV2Config.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        known = known_config(str(config))
        if known is not None:
            return DeepseekV2Config.from_dict(known)
        path = os.fspath(config)
        if os.path.isfile(path):
            path = os.path.dirname(path) or "."
        if os.path.isfile(os.path.join(path, "config.json")):
            return DeepseekV2Config.from_pretrained(path)
        raise FileNotFoundError(f"{config!r} is neither a known checkpoint name nor a config.json (or a directory "
                                "holding one)")
    raise TypeError(f"config must be a DeepseekV2Config, a dict, a name or a path, got {type(config).__name__}")


def abstract_model(config, dtype=None, quantize=None):
    """(TFDeepseekV2ForCausalLM whose variables have paths, shapes and dtypes but no values, its
    parameter count before quantization). Nothing is allocated: usable at any size for bookkeeping,
    never for computing."""
    if quantize not in (None, "int8", "int4"):
        raise ValueError(f"quantize must be None, 'int8' or 'int4', got {quantize!r}")
    active = keras.distribution.distribution()
    keras.distribution.set_distribution(None)  # shapes only: nothing is placed on the user's mesh
    try:
        with keras_compat.never_initialised():
            model = TFDeepseekV2ForCausalLM(config, dtype=dtype)
            count = sum(math.prod(v.shape) for v in model.variables)
            if quantize:
                _quantized_variables(model, quantize)
    finally:
        keras.distribution.set_distribution(active)
    return model, count


def _quantized_variables(model, mode):
    """Replaces each quantizable leaf layer's float weight by the variables Keras' quantized layout
    stores (the layer's own `quantized_build`), as `model.quantize(mode)` would, without values.
    Which layers: those `model.quantize` converts (Dense, EinsumDense, Embedding, the routed
    experts); the router and the norms stay float (their `quantize` is a no-op)."""
    # Keras collects garbage after each deleted variable; with the heap frozen, those collections
    # skip the thousands of objects a large model already holds (as presets/adapters.py does).
    gc.freeze()
    try:
        _replace_quantizable(model, mode)
    finally:
        gc.unfreeze()


def _replace_quantizable(model, mode):
    config = keras_compat.default_quantization_config(mode)
    for layer in keras_compat.all_layers(model):
        if child_layers(layer):
            continue
        if type(layer) in (keras.layers.Dense, keras.layers.EinsumDense):
            attribute, shape = "_kernel", tuple(layer._kernel.shape)
        elif type(layer) is keras.layers.Embedding:
            attribute, shape = "_embeddings", (layer.input_dim, layer.output_dim)
        elif isinstance(layer, RoutedExperts):
            attribute, shape = None, None
        else:
            continue
        layer._tracker.unlock()
        try:
            if attribute is None:
                for name in layer.KERNELS:
                    delattr(layer, name)
                layer.quantized_build(mode)
            else:
                delattr(layer, attribute)
                layer.quantized_build(shape, mode, config)
        finally:
            layer._tracker.lock()


# --- the plan -------------------------------------------------------------------------------------------
def plan_distribution(config, mesh_shape, dtype="bfloat16", quantize=None, batch=1, seq_len=4096,
                      mesh_axis_names=("batch", "model"), model_axis="model", data_axis="batch", expert_axis=None):
    """The per-device memory and per-layer communication of a TFDeepseekV2ForCausalLM on a mesh.

    Args:
        config: DeepseekV2Config, its dict, a registry name ("deepseek-ai/DeepSeek-V2") or a path
            to a config.json.
        mesh_shape: devices per mesh axis, e.g. (2, 4) or "2x4".
        dtype: the model's dtype policy ("bfloat16", "float32", "mixed_bfloat16", ...).
        quantize: None, "int8" or "int4" (`model.quantize(...)` after loading).
        batch, seq_len: the forward's sequences and tokens (the latent cache holds seq_len tokens).
        mesh_axis_names: the mesh's axis names; model_axis / data_axis / expert_axis as in
            `get_layout_map(mesh, model_parallel_dim_name, data_parallel_dim_name,
            expert_parallel_dim_name)` (expert_axis None: the model axis).
    Raises:
        ValueError: an axis that does not divide what it splits (experts, heads, widths, the
            batch), names that are not mesh axes, sizes that are not positive.
    """

    name = str(config) if isinstance(config, (str, os.PathLike)) else "DeepSeek-V2 config"
    config = resolve_config(config)
    mesh_shape = _mesh_shape(mesh_shape)
    names = tuple(mesh_axis_names)
    if len(names) != len(mesh_shape) or len(set(names)) != len(names):
        raise ValueError(f"mesh_axis_names {names} must name each of the {len(mesh_shape)} mesh axes once")
    sizes = dict(zip(names, mesh_shape))
    expert_axis = expert_axis or model_axis
    for role, axis in (("model", model_axis), ("expert", expert_axis)):
        if axis not in sizes:
            raise ValueError(f"the {role} axis {axis!r} is not an axis of the mesh {sizes}")
    n_model, n_expert, n_data = sizes[model_axis], sizes[expert_axis], sizes.get(data_axis, 1)
    E = config.n_routed_experts or 0
    if config.num_moe_layers and E % n_expert:
        raise ValueError(f"the expert axis {expert_axis!r} has {n_expert} devices, which does not divide "
                         f"n_routed_experts = {E}")
    if config.num_attention_heads % n_model:
        raise ValueError(f"the model axis {model_axis!r} has {n_model} devices, which does not divide "
                         f"num_attention_heads = {config.num_attention_heads}")
    for what, value in (("batch", batch), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if batch % n_data:
        raise ValueError(f"the data axis {data_axis!r} has {n_data} devices, which does not divide the batch {batch}")

    model, count = abstract_model(config, dtype=dtype, quantize=quantize)
    devices = [f"cpu:{i}" for i in range(math.prod(mesh_shape))]  # layouts are looked up by path only
    mesh = keras.distribution.DeviceMesh(mesh_shape, names, devices=devices)
    layout_map = TFDeepseekV2ForCausalLM.get_layout_map(mesh, model_parallel_dim_name=model_axis,
                                                        data_parallel_dim_name=data_axis,
                                                        expert_parallel_dim_name=expert_axis)
    check_layout(model, layout_map, rules=model.layout_rules, count_values=model.layout_counts(config))
    total = per_device = 0
    for variable in model.variables:
        shape = tuple(variable.shape)
        itemsize = np.dtype(_numpy_dtype(variable.dtype)).itemsize
        axes = tuple(layout_map[variable.path].axes)
        shard = [size // sizes[axis] if axis else size for size, axis in zip(shape, axes)] + list(shape[len(axes):])
        total += math.prod(shape) * itemsize
        per_device += math.prod(shard) * itemsize
    compute = np.dtype(_numpy_dtype(model.compute_dtype)).itemsize
    communication = None if quantize else _communication(config, batch * seq_len, compute, sizes, model_axis,
                                                         data_axis if data_axis in sizes else None, expert_axis)
    return DistributionPlan(
        name=name, mesh_shape=mesh_shape, mesh_axis_names=names, model_axis=model_axis, data_axis=data_axis,
        expert_axis=expert_axis, dtype=str(dtype), quantize=quantize, batch=batch, seq_len=seq_len,
        parameter_count=count, parameter_bytes_total=total, parameter_bytes=per_device,
        kv_cache_bytes=config.num_hidden_layers * (batch // n_data) * seq_len * config.cache_values_per_token * compute,
        activation_bytes=_activation_bytes(config, batch // n_data, seq_len, compute, n_model, n_data),
        communication=communication)


def _mesh_shape(mesh_shape):
    if isinstance(mesh_shape, str):
        try:
            mesh_shape = tuple(int(n) for n in mesh_shape.lower().split("x"))
        except ValueError:
            raise ValueError(f"a mesh shape is devices per axis joined by 'x' (e.g. '2x4'), got {mesh_shape!r}") from None
    mesh_shape = tuple(mesh_shape)
    if not mesh_shape or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0 for n in mesh_shape):
        raise ValueError(f"mesh_shape must be positive device counts per axis, got {mesh_shape!r}")
    return tuple(int(n) for n in mesh_shape)


def _numpy_dtype(dtype):
    return "float16" if str(dtype) == "bfloat16" else str(dtype)  # same itemsize; numpy has no bfloat16


def _communication(config, tokens, c, sizes, model_axis, data_axis, expert_axis):
    """[LayerCommunication] of the forward over `tokens` tokens (see the module docstring)."""
    n_m, n_e, n_d = sizes[model_axis], sizes[expert_axis], sizes[data_axis] if data_axis else 1
    d, local = config.hidden_size, tokens // n_d
    out = []
    first = []
    if n_d > 1:
        first.append(Collective("all-reduce", 2 * _INT32, data_axis, "input id range check: min and max (int32)"))
    if n_m > 1:
        first.append(Collective("all-gather", local * d * c // n_m, model_axis,
                                "embedding lookup: each device's slice of the width"))
    out.append(LayerCommunication("input", "input", tuple(first)))
    activations = local * d * c  # [local tokens, d] partial sums of a row-parallel matmul
    for i in range(config.num_hidden_layers):
        layer = []
        if n_m > 1:
            layer.append(Collective("all-reduce", activations, model_axis, "o_proj partial sums [tokens, d]"))
        if not config.is_moe_layer(i):
            if n_m > 1:
                layer.append(Collective("all-reduce", activations, model_axis, "down_proj partial sums [tokens, d]"))
            out.append(LayerCommunication(f"layers_{i}", "dense", tuple(layer)))
            continue
        E, K, f = config.n_routed_experts, config.num_experts_per_tok, config.moe_intermediate_size
        assignments = tokens * K  # the replicated dispatch sorts every token's assignments on every device
        if n_d > 1:
            layer += [Collective("all-gather", local * E * _FLOAT32, data_axis, "router scores [tokens, E] (float32)"),
                      Collective("all-gather", assignments * _INT32 // n_d, data_axis, "expert ids to sort [N * K]")]
            if expert_axis == data_axis and n_e > 1:
                layer.append(Collective("all-gather", assignments * _INT32 // n_d, data_axis,
                                        "expert ids to count [N * K]"))
            else:
                layer.append(Collective("all-reduce", E // n_e * _INT32, data_axis, "rows per expert [E / n]"))
            layer.append(Collective("all-reduce", assignments * d * c, data_axis, "every token's rows [N * K, d]"))
        if n_e > 1:
            layer.append(Collective("all-gather", 4 * (E // n_e) * _INT32, expert_axis,
                                    "expert offsets, 4 x [E / n] (int32)"))
            layer.append(Collective("all-reduce", 2 * assignments * f * c, expert_axis,
                                    "gate and up partial products [N * K, f] x 2"))
        if config.n_shared_experts and n_m > 1:
            layer.append(Collective("all-reduce", activations, model_axis, "shared experts' down_proj [tokens, d]"))
        if n_e > 1:
            layer.append(Collective("all-reduce", assignments * d * c, expert_axis, "expert outputs [N * K, d]"))
        out.append(LayerCommunication(f"layers_{i}", "moe", tuple(layer)))
    return tuple(out)


def _activation_bytes(config, local_batch, seq_len, c, n_m, n_d):
    """The estimate of the module docstring, in bytes per device."""
    tokens = local_batch * seq_len
    heads = config.num_attention_heads // n_m
    residual = 2 * tokens * config.hidden_size * c
    attention = (tokens * heads * (config.qk_head_dim + config.qk_nope_head_dim + config.v_head_dim) * c
                 + tokens * config.cache_values_per_token * c
                 + local_batch * heads * seq_len * seq_len * _FLOAT32)
    stages = [attention, local_batch * seq_len * (config.vocab_size // n_m) * c]
    if config.num_moe_layers:
        N = tokens * n_d  # every device holds every token's rows under the replicated dispatch
        A = N * config.num_experts_per_tok
        stages.append(N * config.n_routed_experts * _FLOAT32
                      + A * (2 * config.hidden_size + 2 * config.moe_intermediate_size) * c)
    if config.num_moe_layers < config.num_hidden_layers:
        stages.append(2 * tokens * config.intermediate_size // n_m * c)
    return residual + max(stages)
