"""Keras-native model compression and adaptation for every task model: post-training quantization
(int8 / int4, the MoE experts included) and LoRA adapters (enable, merge)."""

import contextlib
import gc
import warnings

import keras
import numpy as np
from keras import ops

from presets import keras_compat


class AdaptersMixin:
    """`quantize`, `enable_lora`, `merge_lora` and the bookkeeping they share (layer paths, the
    quantized-layer record that `get_config` carries, refusals for HF checkpoint I/O)."""

    # Layer names `enable_lora()` adapts when no target_modules are given (each family sets its
    # attention projections), and head layers that stay fully trainable beside the adapters, as
    # PEFT's `modules_to_save` keeps a task head trainable (a fresh classifier must learn).
    lora_target_modules = ()
    lora_modules_to_save = ()

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Keras post-training quantization of every Dense, EinsumDense and Embedding layer and of
        the MoE experts (`mode` "int8" or "int4"; the MoE router and the norms stay float32).

        The result saves and reloads with `save("x.keras")` / `keras.saving.load_model`, and with
        `save_weights` / `load_weights` into a model quantized the same way. A compiled model loses
        its optimizer (its state belonged to the float weights): compile again to train on top
        (e.g. `enable_lora` then `compile` and `fit`). `save_pretrained`
        refuses a quantized model: transformers checkpoints hold float weights, so save the
        float model before quantizing (or keep the .keras file).
        """
        # (Keras' wrapper around `quantize` has resolved `mode` from `config` and checked that the
        # model is built.) float8 / GPTQ / AWQ have no counterpart for the MoE experts: refused.
        if mode not in ("int8", "int4"):
            raise ValueError(f"quantize supports mode 'int8' or 'int4' (with an optional keras "
                             f"QuantizationConfig of that mode), got {mode!r}")
        if self._lora_layers():
            raise ValueError("quantize() with LoRA adapters enabled: call merge_lora() first (or quantize "
                             "the float model and enable_lora() afterwards to train adapters on top)")
        self.build_with_dummy_inputs()
        with deferred_garbage_collection(), warnings.catch_warnings():
            # Norms, convolutions and the float32 router have no quantized form: not worth a warning each.
            warnings.filterwarnings("ignore", message=r".*does not have a `quantize` method")
            super().quantize(mode, config=config, filters=filters, **kwargs)
        # The optimizer's slots (Adam moments, ...) belong to float variables that no longer exist;
        # kept, `save` would write them (a 2-3x larger file) and `load_model` would warn that they
        # do not match. The model is compiled again before further training.
        if getattr(self, "optimizer", None) is not None:
            self.optimizer = None
            self.compiled = False
        self._reset_compiled_functions()

    def _named_layers(self):
        """{path below the model (sub-layer names joined by "/"): layer}, every layer once."""
        named, seen = {}, set()

        def walk(layer, prefix):
            for child in keras_compat.child_layers(layer):
                if id(child) in seen:
                    continue
                seen.add(id(child))
                named[prefix + child.name] = child
                walk(child, prefix + child.name + "/")

        walk(self, "")
        return named

    def _quantized_layers(self):
        """{path: layer} of the quantized leaf layers (a parent's policy may name a mode too)."""
        return {path: layer for path, layer in self._named_layers().items()
                if layer.quantization_mode and not keras_compat.child_layers(layer)}

    def _quantization_config_entry(self):
        """{"quantized_layers": {path: [mode, quantization config]}} for get_config, or {} (a float
        model's config is unchanged)."""
        quantized = {
            path: [layer.quantization_mode,
                   keras.saving.serialize_keras_object(getattr(layer, "quantization_config", None))]
            for path, layer in self._quantized_layers().items()
        }
        return {"quantized_layers": quantized} if quantized else {}

    def _requantize_layers(self, quantized_layers):
        """Gives the recorded layers their quantized variables again (values come from the saved
        weights right after), when a quantized model is rebuilt from its config."""
        self.build_with_dummy_inputs()
        layers = self._named_layers()
        unknown = sorted(set(quantized_layers) - set(layers))
        if unknown:
            raise ValueError(f"the saved config quantizes layers this {type(self).__name__} does not have: {unknown}")
        with deferred_garbage_collection():
            for path, (mode, config) in quantized_layers.items():
                config = keras.saving.deserialize_keras_object(config) if config else None
                layers[path].quantize(mode, config=config, type_check=False)
        keras_compat.retrack_torch_variables(self)

    def _refuse_if_not_plain(self, action, lora_ok=False):
        quantized = list(self._quantized_layers())
        if quantized:
            raise NotImplementedError(
                f"cannot {action} a quantized model ({len(quantized)} quantized layers, e.g. {quantized[0]}): "
                "transformers checkpoints hold float weights. Use the float model (before quantize()), or "
                "model.save('x.keras') / save_weights for the quantized one.")
        if not lora_ok and self._lora_layers():
            raise ValueError(f"cannot {action} a model with LoRA adapters enabled: call merge_lora() first")

    def _lora_layers(self):
        return {p: l for p, l in self._named_layers().items() if getattr(l, "lora_enabled", False)}

    def enable_lora(self, rank, target_modules=None, lora_alpha=None, modules_to_save=None):
        """Adds Keras LoRA adapters (A [in, rank] he_uniform, B [rank, out] zeros, output scaled by
        lora_alpha / rank) to the layers named in `target_modules` (default: this family's
        `lora_target_modules`, the attention projections) and freezes everything else except the
        head layers named in `modules_to_save` (default: `lora_modules_to_save`; pass () to freeze
        the head too). Call it before `compile()`.

        The adapters train in float32; `merge_lora()` folds them into the kernels. `save("x.keras")`
        and `save_weights` store LoRA layers merged (Keras' behaviour), so a reloaded model is a plain
        one; `save_pretrained` writes the merged weights too.

        Returns: the list of adapted layer paths.
        """
        if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        explicit = target_modules is not None
        if not explicit:
            target_modules = self.lora_target_modules
        targets = (target_modules,) if isinstance(target_modules, str) else tuple(target_modules)
        if not targets:
            raise ValueError(f"no target_modules given and {type(self).__name__} declares no default")
        save = self.lora_modules_to_save if modules_to_save is None else modules_to_save
        save = (save,) if isinstance(save, str) else tuple(save)
        self.build_with_dummy_inputs()
        layers = self._named_layers()
        adaptable = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding)
        chosen = {p: l for p, l in layers.items() if l.name in targets}
        found = {l.name for l in chosen.values()}
        # Named targets must all exist; of the family defaults, those of this variant (e.g. q_proj or
        # q_a_proj / q_b_proj) are enough, as PEFT does.
        missing = [t for t in targets if t not in found] if explicit or not found else []
        if missing:
            names = sorted({l.name for l in layers.values() if isinstance(l, adaptable)})
            raise ValueError(f"target_modules {missing} name no layer of {type(self).__name__}; "
                             f"its Dense / EinsumDense / Embedding layers are named {names}")
        wrong = [p for p, l in chosen.items() if not isinstance(l, adaptable)]
        if wrong:
            raise ValueError(f"LoRA needs Dense, EinsumDense or Embedding layers; {wrong} are not")
        already = [p for p, l in chosen.items() if l.lora_enabled]
        if already:
            raise ValueError(f"LoRA is already enabled on {already}; call merge_lora() first")
        for layer in chosen.values():
            layer.enable_lora(rank, lora_alpha=lora_alpha)
        keep = {id(v) for l in chosen.values() for v in _lora_variables(l)}
        keep |= {id(v) for p, l in layers.items() if l.name in save for v in l.weights}
        frozen = self.__dict__.setdefault("_lora_frozen", [])
        for v in self.variables:
            if id(v) not in keep and v.trainable:
                v.trainable = False
                frozen.append(v)
        self._reset_compiled_functions()
        return sorted(chosen)

    def merge_lora(self):
        """Folds every LoRA adapter into its kernel (W + lora_alpha / rank * A @ B, in float32) and
        removes the adapters: plain layers again, every variable frozen by `enable_lora` trainable
        again. Outputs are unchanged up to float rounding."""
        adapted = self._lora_layers()
        if not adapted:
            raise ValueError("no LoRA adapters to merge: call enable_lora() first")
        quantized = [p for p, l in adapted.items() if l.quantization_mode]
        if quantized:
            raise NotImplementedError(
                f"merge_lora on quantized layers ({quantized[0]}, ...) is not supported: save('x.keras') "
                "stores them merged and re-quantized, or enable LoRA on the float model")
        with deferred_garbage_collection():
            for layer in adapted.values():
                _merge_lora_layer(layer)
        for v in self.__dict__.pop("_lora_frozen", []):
            v.trainable = True
        self._reset_compiled_functions()

    def _reset_compiled_functions(self):
        self.train_function = self.test_function = self.predict_function = None
        keras_compat.retrack_torch_variables(self)


def _lora_names(layer):
    """Attribute names of a Keras layer's LoRA factors (A, B)."""
    if isinstance(layer, keras.layers.Embedding):
        return ("lora_embeddings_a", "lora_embeddings_b")
    return ("lora_kernel_a", "lora_kernel_b")


def _lora_variables(layer):
    return [getattr(layer, n) for n in _lora_names(layer)]


def _merge_lora_layer(layer):
    """W <- W + alpha / rank * A @ B for one Keras Dense / EinsumDense / Embedding, adapters removed."""
    base = keras_compat.unadapted_weight(layer)
    a, b = _lora_variables(layer)
    w = np.asarray(ops.convert_to_numpy(base), dtype=np.float32)
    delta = (layer.lora_alpha / layer.lora_rank) * np.matmul(
        np.asarray(ops.convert_to_numpy(a), np.float32), np.asarray(ops.convert_to_numpy(b), np.float32))
    base.assign((w + delta).astype(np.float32))
    keras_compat.delete_layer_variables(layer, _lora_names(layer))
    base.trainable = True  # enable_lora froze it
    layer.lora_enabled = False
    layer.lora_rank = layer.lora_alpha = None


@contextlib.contextmanager
def deferred_garbage_collection():
    """Keras runs gc.collect() after every variable it deletes (to free device memory at once);
    with TensorFlow, JAX and torch loaded each full collection walks a large heap, and quantizing
    or merging deletes hundreds of variables. `gc.freeze()` puts every object that exists now out
    of the collector's reach, so those collections only examine what the operation itself created;
    `unfreeze` restores normal collection and one full collection at the end frees the replaced
    variables. (The collector itself is never replaced.)"""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()
