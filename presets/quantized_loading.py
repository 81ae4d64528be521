"""`from_pretrained(path, quantize="int8" | "int4")`: a model quantized while its checkpoint streams
in, so its float copy never exists.

The model is built with no storage behind any variable (`keras_compat.unallocated_variables`), its
checkpoint table (`hf_weight_specs`) is taken from that float skeleton, and the checked tensors go,
shard by shard, through `QuantizingSink` instead of straight into variables:

- a tensor of a Keras layer gets its variable's storage and value as in a plain load; once every
  checkpoint tensor of that (leaf) layer has arrived, the layer runs Keras' own `quantize(mode)`,
  as `model.quantize(mode)` would call it, and its float kernel is freed. At most a layer's float
  kernel exists at a time, and the integer values, scales, dtype policies and quantization configs
  are those `model.quantize` makes, by the same code;
- a routed expert's tensor is quantized on its own (`RoutedExperts.quantized_expert_values`, the
  arithmetic `RoutedExperts.quantize` runs on the whole stack) into a host buffer of the integer
  stack, assigned when the stack's last expert arrives: the float stack is never allocated;
- router, norms, biases and every layer Keras does not quantize stay float exactly as
  `model.quantize` keeps them.

Variables the checkpoint does not provide (a new task head) get their initial values, and their
layers are quantized, at the end, as `from_pretrained` then `model.quantize` would do.
"""

import warnings

import keras
import numpy as np

from layers.moe import RoutedExperts
from presets import keras_compat
from presets.adapters import deferred_garbage_collection
from presets.keras_compat import deferred_initialisation
from presets.mapping import PERMUTATIONS, StackSlice, numpy_dtype, variable_of
from presets.placement import assign_from_host, assign_permuted

QUANTIZE_MODES = ("int8", "int4")


def check_quantize_request(quantize):
    """The quantization mode asked of `from_pretrained` (None: none), refused with a ValueError
    before anything is read when it is not one this package can load into."""
    if quantize is None:
        return None
    if not isinstance(quantize, str) or quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES} (or None), got {quantize!r}; float8, "
                         "GPTQ and AWQ have no form for the MoE experts: load the float model and call "
                         "model.quantize(...) for those")
    return quantize


def check_quantize_policy(mode, policy):
    """Keras refuses int8 with a float16 compute dtype (it overflows); refused here, before any
    tensor is read, rather than half-way through the load."""
    compute = (policy or keras.config.dtype_policy()).compute_dtype
    if mode == "int8" and compute == "float16":
        raise ValueError("quantize='int8' does not work with a float16 compute dtype (Keras refuses it): "
                         "load with dtype='bfloat16', 'mixed_bfloat16' or 'mixed_float16'")


def load_quantized(cls, config, model_kwargs, tensors, source, mode, ignore_mismatched_sizes):
    """The `cls` model of `config`, loaded from the checked `tensors` and quantized to `mode` as
    they arrive; `model.load_info` as in a plain load."""
    with keras_compat.unallocated_variables(), deferred_initialisation() as created:
        model = cls(config, **model_kwargs)
    sink = QuantizingSink(model, mode, created)
    # Each quantized layer deletes its float kernel, and Keras collects garbage after each deletion.
    with deferred_garbage_collection():
        _load(model, sink, tensors, source, ignore_mismatched_sizes, created)
    keras_compat.retrack_torch_variables(model)
    model._reset_compiled_functions()
    return model


def _load(model, sink, tensors, source, ignore_mismatched_sizes, created):
    try:
        model.load_info = model.load_hf_tensors(tensors, source=source,
                                                ignore_mismatched_sizes=ignore_mismatched_sizes, sink=sink)
        sink.finish()
    finally:
        keras_compat.forget_unallocated([v for v, _ in created] + list(model.variables))


def _leaf_layers(model):
    """Every leaf layer once, in `model.quantize`'s visiting order."""
    return [layer for layer in keras_compat.all_layers(model) if not keras_compat.child_layers(layer)]


class QuantizingSink:
    """The tensors of a quantizing load (see the module docstring), for `load_tensors_into`."""

    def __init__(self, model, mode, created):
        self.model, self.mode = model, mode
        self.initializers = {id(v): init for v, init in created}
        self.leaves = _leaf_layers(model)
        self.owner = {id(v): layer for layer in self.leaves for v in layer.weights}
        self.pending = {}  # id(leaf layer) -> ids of its variables still to arrive
        self.quantized = set()  # ids of leaf layers that ran quantize (or have no quantized form)
        self.stacks = {}  # (id(experts), kernel name) -> (int buffer, scale buffer, experts seen)

    def begin(self, specs, names):
        for name in names:
            slot, _ = specs[name]
            if isinstance(slot, StackSlice):
                continue
            layer = self.owner.get(id(slot))
            if layer is not None:
                self.pending.setdefault(id(layer), set()).add(id(slot))

    def put(self, name, slot, transform, array):
        if isinstance(slot, StackSlice):
            experts = self.owner[id(slot.variable)] if id(slot.variable) in self.owner else None
            if not isinstance(experts, RoutedExperts):
                raise NotImplementedError(f"{name}: quantizing a stacked variable of {type(experts).__name__}")
            self._put_expert(experts, slot, transform, array)
            return
        layer = self.owner.get(id(slot))
        if layer is not None and id(layer) in self.quantized:
            raise RuntimeError(f"{name} arrived after its layer {layer.path} was quantized")
        keras_compat.allocate(slot)
        assign_permuted(slot, array, PERMUTATIONS[transform])
        if layer is not None:
            waiting = self.pending.get(id(layer), set())
            waiting.discard(id(slot))
            if not waiting:
                self._quantize_leaf(layer)

    def _put_expert(self, experts, slot, transform, array):
        if experts.quantization_mode is None:
            # Integer stacks and scales made as `RoutedExperts.quantize` makes them, without the float ones.
            experts.quantize(self.mode, float_kernels=False)
            self.quantized.add(id(experts))
        name = slot.variable.name  # gate_kernel / up_kernel / down_kernel
        perm = PERMUTATIONS[transform]
        # The float value the expert would hold in a float model (its variable's dtype), then
        # float32, as RoutedExperts.quantize reads it.
        value = array if perm is None else np.transpose(array, perm)
        value = np.asarray(value, dtype=numpy_dtype(slot.dtype)).astype(np.float32)
        q, scale = experts.quantized_expert_values(value, self.mode)
        key = (id(experts), name)
        if key not in self.stacks:
            target, target_scale = getattr(experts, name), getattr(experts, name + "_scale")
            self.stacks[key] = (np.zeros(tuple(target.shape), np.int8),
                                np.ones(tuple(target_scale.shape), np.float32), set())
        values, scales, seen = self.stacks[key]
        values[slot.index], scales[slot.index] = q, scale
        seen.add(slot.index)
        if len(seen) == values.shape[0]:
            del self.stacks[key]
            assign_from_host(getattr(experts, name), values)
            assign_from_host(getattr(experts, name + "_scale"), scales)

    def _initialise_unloaded(self, variables):
        """Storage and initial value for each variable here that no tensor filled."""
        for variable in variables:
            if keras_compat.is_allocated(variable):
                continue
            keras_compat.allocate(variable)
            if id(variable) not in self.initializers:
                continue  # not a layer weight (a dropout's seed state): its own initializer just ran
            init = keras.initializers.get(self.initializers[id(variable)])
            value = keras.ops.convert_to_numpy(init(tuple(variable.shape), dtype=variable.dtype))
            assign_from_host(variable, np.asarray(value))

    def _quantize_leaf(self, layer):
        """What `model.quantize(mode)` does to one leaf layer (its loop, without its warnings)."""
        self.quantized.add(id(layer))
        self._initialise_unloaded(layer.weights)
        before = list(layer.weights)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have a `quantize` method")
            try:
                layer.quantize(self.mode, type_check=True, config=None)
            except (NotImplementedError, AttributeError):
                return  # no quantized form (norms, convolutions, subclasses): stays float
        # The checkpoint table still refers to the replaced float kernel: free its storage now.
        kept = {id(v) for v in layer.weights}
        for variable in before:
            if id(variable) not in kept:
                keras_compat.release_storage(variable)
        keras_compat.retrack_torch_layer(layer)

    def finish(self):
        """Variables no tensor filled get their initial values (in build order, as a plain load's
        `initialise_remaining`), then the layers not yet quantized are."""
        if self.stacks:
            raise RuntimeError(f"{len(self.stacks)} expert stack(s) were not completed by the checkpoint")
        live = {id(v) for v in self.model.weights}
        self._initialise_unloaded([v for v in self._created_order() if id(v) in live])
        self._initialise_unloaded(self.model.variables)  # seed states and the like
        for layer in self.leaves:
            if id(layer) not in self.quantized:
                self._quantize_leaf(layer)

    def _created_order(self):
        weights = {id(v): v for v in self.model.weights}
        return [weights[i] for i in self.initializers if i in weights]
