"""The few private Keras APIs this project needs, each in one place with the reason and the public
API that would replace it. Nothing else in the project reaches into `keras.src` or a layer's
private attributes."""

import contextlib

import keras


def register_tree_node_class(cls):
    """Makes Keras' tree utilities (used by fit / predict / compiled functions on every backend)
    treat `cls` as a container. Keras 3.15 exposes `keras.tree` functions but no public
    registration; `keras.tree.register_tree_node_class` would replace this if it appears."""
    try:
        from keras.src.tree import tree_api
    except ImportError:  # pragma: no cover - a Keras without the private module
        return
    try:
        tree_api.register_tree_node_class(cls)
    except ValueError:  # already registered (a module imported twice under two names)
        pass


def child_layers(layer):
    """The layers `layer` tracks directly, in creation order. Keras has `Model.layers` but no
    public equivalent on a plain `Layer`; `_flatten_layers` is what `Model.layers` uses."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def all_layers(layer):
    """`layer` and every layer below it, each once (what `Model.layers` walks, recursively)."""
    return list(layer._flatten_layers())


@contextlib.contextmanager
def never_initialised():
    """Variables created inside stay without values for good: `unallocated_variables`, and every
    variable made in the block then leaves Keras' list of those awaiting storage (made for
    bookkeeping only, e.g. the 236B shapes of a memory plan). No public API says "abstract
    variable"; `keras.Variable` on a jax ShapeDtypeStruct would."""
    before = {id(v) for v in _awaiting_storage()}
    try:
        with unallocated_variables():
            yield
    finally:
        forget_unallocated([v for v in _awaiting_storage() if id(v) not in before])


def default_quantization_config(mode):
    """The config Keras' `quantize` wrapper gives a layer when none is passed (int4: blocks of 128
    inputs, zero points and a group index). Public form: `keras.quantizers.QuantizationConfig`
    subclasses, whose defaults this resolves the same way."""
    from keras.src.quantizers.quantization_config import validate_and_resolve_config

    return validate_and_resolve_config(mode, None)


def delete_layer_variables(layer, names):
    """Deletes the variables `layer.<name>` (e.g. LoRA factors) from a built layer, whose variable
    tracker is locked after build. Keras' own `enable_lora` / `quantize` unlock it the same way;
    there is no public API to remove a variable."""
    layer._tracker.unlock()
    try:
        for name in names:
            delattr(layer, name)
    finally:
        layer._tracker.lock()


def retrack_torch_variables(model):
    """After variables were replaced (quantize, LoRA), the torch backend's per-layer parameter
    lists must be rebuilt or `model.trainable_variables` / optimizers see stale tensors. Keras
    does this in its private `_post_quantize`; no public hook exists."""
    if keras.backend.backend() != "torch":
        return
    for layer in model._flatten_layers():
        layer._track_variables()


def unadapted_weight(layer):
    """The stored kernel (Dense / EinsumDense) or table (Embedding) variable of a LoRA-enabled
    layer: the public `kernel` / `embeddings` properties return it plus the LoRA delta."""
    return layer._embeddings if isinstance(layer, keras.layers.Embedding) else layer._kernel


def replace_variable(layer, attribute, value):
    """Replaces the variable `layer.<attribute>` by a new one holding `value` (another shape, e.g.
    a resized vocabulary), keeping its name, dtype and trainability. Keras has no public API to
    replace a built layer's variable; this is what its own `quantize` does for kernels."""
    old = getattr(layer, attribute)
    layer._tracker.unlock()
    try:
        delattr(layer, attribute)
        new = layer.add_weight(name=old.name, shape=value.shape, dtype=old.dtype, initializer="zeros",
                               trainable=old.trainable)
        new.assign(value)
        setattr(layer, attribute, new)
    finally:
        layer._tracker.lock()


def in_shape_inference():
    """True while Keras infers output shapes symbolically (`keras.SymbolicScope`, public, is the
    scope; asking whether it is active is not). On PyTorch that inference runs the model on
    placeholder tensors whose unknown dimensions are filled with an arbitrary size (83), so checks
    of concrete lengths must not act there."""
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    return in_symbolic_scope()


_original_add_weight = keras.layers.Layer.add_weight
_record = None  # the list being recorded into, while a `deferred_initialisation` block runs


class _Unfilled(keras.initializers.Initializer):
    """A variable's first value when a checkpoint is about to overwrite it: `keras.ops.empty`,
    an uninitialised buffer on PyTorch (no pass over the memory; on the 3.3 GB checkpoint of
    benchmarks/loading.py, writing zeros first took 0.7 s of the load) and zeros on JAX and
    TensorFlow, which have no uninitialised arrays."""

    def __call__(self, shape, dtype=None):
        return keras.ops.empty(tuple(shape), dtype=dtype)


def _add_weight(self, *args, **kwargs):
    record = _record
    if record is None:
        return _original_add_weight(self, *args, **kwargs)
    if len(args) > 1:  # Keras 2 style add_weight(shape, initializer, dtype): move to keywords
        names = ("shape", "initializer", "dtype")
        kwargs.update(dict(zip(names, args)))
        args = ()
    initializer = kwargs.get("initializer")
    kwargs["initializer"] = _Unfilled()
    variable = _original_add_weight(self, *args, **kwargs)
    if initializer is None:  # Keras' own default, resolved as add_weight resolves it
        initializer = "glorot_uniform" if "float" in str(variable.dtype) else "zeros"
    record.append((variable, initializer))
    return variable


@contextlib.contextmanager
def deferred_initialisation():
    """Within the block, new layer variables are created without their initial values (see
    `_Unfilled`); yields the list of (variable, original initializer) pairs, and every variable the
    checkpoint does not fill must then get its initial value (presets/lazy_init.py). Keras has no
    public way to build a layer without running its initializers, so `Layer.add_weight` is wrapped
    for the duration of the block only (models are built on one thread); a public "skip
    initialisation" scope in Keras would replace this."""
    global _record
    if _record is not None:  # nested: the outer block records
        yield _record
        return
    _record = []
    keras.layers.Layer.add_weight = _add_weight
    try:
        yield _record
    finally:
        keras.layers.Layer.add_weight = _original_add_weight
        _record = None


def lean_torch_adam(optimizer):
    """Gives Keras' PyTorch Adam / AdamW (exactly those classes, without amsgrad) an update step
    that allocates one parameter-sized temporary per variable instead of five.

    Keras 3.15's torch Adam builds g * g, m * alpha, sqrt(v), sqrt(v) + eps and their quotient as
    new tensors every step. For a 128,100 x 768 word-embedding table each of those is a fresh
    393 MB allocation, page-faulted in, and the optimizer step dominated a deberta-v3-small
    training step (benchmarks/train_step.py prints the step time). The same update in place
    (addcmul into v, addcdiv into the variable) keeps only the denominator; the first moment is
    updated exactly as Keras does, the second moment and the variable to float rounding
    ((a * g) * g instead of a * (g * g); m / (den / alpha) instead of (m * alpha) / den). Only the instance's step is replaced, so other optimizers, other models and
    a Keras that changes this class are untouched. A Keras release with in-place foreach updates
    would make this unnecessary. Returns the optimizer."""
    if keras.backend.backend() != "torch":
        return optimizer
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer (mixed_float16)
    if inner is not None:
        lean_torch_adam(inner)
        return optimizer
    try:
        from keras.src.backend.torch.optimizers import torch_adam, torch_adamw
    except ImportError:  # pragma: no cover - a Keras without these modules
        return optimizer
    if type(optimizer) not in (torch_adam.Adam, torch_adamw.AdamW) or optimizer.amsgrad:
        return optimizer
    if getattr(type(optimizer), "_parallel_update_step", None) is not torch_adam.Adam._parallel_update_step:
        return optimizer
    import types

    optimizer._parallel_update_step = types.MethodType(_lean_adam_update, optimizer)
    return optimizer


def _lean_adam_update(self, grads, variables, learning_rate):
    """Keras' torch `Adam._parallel_update_step` (same bias correction and epsilon placement)
    with the moment and variable updates in place."""
    import torch

    from keras import ops

    keras_variables = variables
    variables = [v.value for v in keras_variables]
    dtype = variables[0].dtype
    lr = ops.cast(learning_rate, dtype)
    local_step = ops.cast(self.iterations + 1, dtype)
    beta_1_power = ops.power(ops.cast(self.beta_1, dtype), local_step)
    beta_2_power = ops.power(ops.cast(self.beta_2, dtype), local_step)
    alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)  # a 0-d tensor: no host sync

    m_list = [self._momentums[self._get_variable_index(v)].value for v in keras_variables]
    v_list = [self._velocities[self._get_variable_index(v)].value for v in keras_variables]
    torch._foreach_mul_(m_list, self.beta_1)
    torch._foreach_add_(m_list, grads, alpha=1 - self.beta_1)
    torch._foreach_mul_(v_list, self.beta_2)
    torch._foreach_addcmul_(v_list, grads, grads, value=1 - self.beta_2)
    denominators = torch._foreach_sqrt(v_list)  # the one temporary per variable
    torch._foreach_add_(denominators, self.epsilon)
    torch._foreach_div_(denominators, alpha)
    torch._foreach_addcdiv_(variables, m_list, denominators, value=-1)


def patch_tf2onnx():
    """Keras' own numpy-2 fixes for tf2onnx (`np.object`, its constant-folding rewrite), applied
    once before an ONNX conversion. No public replacement: `keras.export.export_onnx` runs the same
    patch but only converts a model it traces itself, not a SavedModel signature."""
    from keras.src.export.tf2onnx_lib import patch_tf2onnx as keras_patch

    keras_patch()


# Members of a `.keras` archive that hold the weights (Keras 3 writes one of them).
_KERAS_WEIGHTS_MEMBERS = ("model.weights.h5", "model.weights.npz")


def stored_weights_bytes_being_loaded():
    """Bytes of the weights inside the `.keras` archive that `keras.saving.load_model` is reading
    right now (None outside such a load). Keras deserialises the model before it opens the
    weights and passes the archive to no hook, so this looks for the open `zipfile.ZipFile` of
    `saving_lib._load_model_from_fileobj` up the stack; a public "archive being loaded" API would
    replace it. It lets `from_config` bound a hostile config by the weights the file holds."""
    import inspect
    import zipfile

    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "_load_model_from_fileobj":
                archive = frame.f_locals.get("zf")
                if isinstance(archive, zipfile.ZipFile):
                    sizes = [info.file_size for info in archive.infolist()
                             if info.filename in _KERAS_WEIGHTS_MEMBERS]
                    return sum(sizes) if sizes else None
                return None
            frame = frame.f_back
        return None
    finally:
        del frame


@contextlib.contextmanager
def unallocated_variables():
    """Within the block, new variables get a shape, dtype and path but no storage (Keras' public
    `StatelessScope(initialize_variables=False)`), so a model of any size is built for free; each
    variable then gets its storage from `allocate`, or is deleted before it ever had one (a float
    kernel that a quantized one replaces). Keras keeps every such variable in a private global
    list and would allocate all of them when the next stateless scope closes: `forget_unallocated`
    takes them off it."""
    with keras.StatelessScope(initialize_variables=False):
        yield


def is_allocated(variable):
    """Whether the variable has its storage (see `unallocated_variables`); Keras has no public test."""
    return getattr(variable, "_value", True) is not None


def allocate(variable):
    """Gives a variable made in `unallocated_variables` its storage, from its own initializer
    (Keras' private `_deferred_initialize`, what the end of a stateless scope runs for all)."""
    if not is_allocated(variable):
        variable._deferred_initialize()


def forget_unallocated(variables):
    """Takes `variables` off Keras' list of variables awaiting storage (private global state, no
    public API): they are either allocated already (Keras would refuse to allocate them again) or
    were replaced and must never cost memory."""
    pending = _awaiting_storage()
    if pending:
        ids = {id(v) for v in variables}
        pending[:] = [v for v in pending if id(v) not in ids]


def _awaiting_storage():
    """Keras' (private, global) list of the variables made in `unallocated_variables` that await
    storage; the list itself, so that `forget_unallocated` edits it in place."""
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("uninitialized_variables") or []


def release_storage(variable):
    """Drops the storage of a variable its layer no longer holds (a float kernel that `quantize`
    replaced) while other objects (a loader's checkpoint table) still refer to it. Keras frees a
    deleted variable only when its last reference goes; there is no public way to free it sooner.
    The variable reads as unallocated afterwards. (On PyTorch the layer's parameter list held it
    too: rebuild that list with `retrack_torch_layer`.)"""
    variable._value = None


def retrack_torch_layer(layer):
    """`retrack_torch_variables` for one layer (after its variables were replaced)."""
    if keras.backend.backend() == "torch":
        layer._track_variables()
