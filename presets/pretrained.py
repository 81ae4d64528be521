"""The base of every model class of both families: config handling, Keras serialization, and
from_pretrained / save_pretrained on top of the readers, writers and mapping in `presets`."""

import contextlib
import functools
import os
import re
import warnings

import keras
import numpy as np
from keras import ops

from layers.model_io import ModelOutput
from presets.hub import resolve_checkpoint_dir, resolve_config_dict
from presets.mapping import collect_tensors, load_tensors_into
from presets.readers import read_checkpoint
from presets.writers import save_safetensors


class TFPreTrainedModel(keras.Model):
    """Base of every task model: config handling, Keras serialization, HF checkpoint I/O.

    Subclasses set `config_class`, `base_model_prefix`, `hf_architecture`, implement
    `hf_weight_specs()` ({hf_name: (variable, transform)}) and `call`.
    """

    config_class = None
    base_model_prefix = ""
    hf_architecture = None
    # Checkpoint names that may be present without a variable (regexes), and model names that may
    # be absent from a checkpoint.
    ignorable_checkpoint_keys = ()
    optional_model_keys = ()

    def __init__(self, config, **kwargs):
        if isinstance(config, dict):
            config = self.config_class.from_dict(config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        super().__init__(**kwargs)
        self.config = config

    def __init_subclass__(cls, **kwargs):
        """`Model(config, dtype="mixed_bfloat16")` applies the policy to every layer the model
        builds, as `keras.config.set_dtype_policy` before construction would: Keras gives a model's
        own `dtype` to the model alone, not to the sub-layers its __init__ creates."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_applies_dtype_policy", False):
            return

        @functools.wraps(init)
        def init_under_policy(self, *args, **init_kwargs):
            dtype = init_kwargs.get("dtype")
            if dtype is None:
                return init(self, *args, **init_kwargs)
            previous = keras.config.dtype_policy()
            keras.config.set_dtype_policy(dtype)
            try:
                return init(self, *args, **init_kwargs)
            finally:
                keras.config.set_dtype_policy(previous)

        init_under_policy._applies_dtype_policy = True
        cls.__init__ = init_under_policy

    # --- Keras serialization --------------------------------------------------------------------
    def get_config(self):
        config = {"config": self.config.to_dict(), "name": self.name, "trainable": self.trainable}
        return {**config, **self._quantization_config_entry()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model_config = cls.config_class.from_dict(config.pop("config"))
        config.pop("dtype", None)
        quantized_layers = config.pop("quantized_layers", None)
        model = cls(model_config, **config)
        if quantized_layers:  # integer variables must exist before Keras restores the weights
            model._requantize_layers(quantized_layers)
        return model

    def build_from_config(self, config):
        # Keras reloading a .keras file: variables must exist before the weights are restored.
        self.build_with_dummy_inputs()

    def build_with_dummy_inputs(self):
        """Creates the variables (by one call on a [1, 2] input if the model has not built them)."""
        if not self.built or not self.weights:
            ids = np.zeros((1, 2), dtype="int32")
            self(self.dummy_inputs(ids), training=False)
        return self

    def dummy_inputs(self, ids):
        return {"input_ids": ids}

    # --- HF checkpoints -------------------------------------------------------------------------
    def hf_weight_specs(self):
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, name_or_path, *, config=None, revision=None, ignore_mismatched_sizes=False,
                        **config_overrides):
        """Builds the model from an HF checkpoint directory or Hub id and loads its weights exactly.

        Args:
            name_or_path: a directory with config.json and a weights file (model.safetensors,
                pytorch_model.bin, tf_model.h5 or a sharded index), or a Hub id.
            config: use this config instead of the checkpoint's config.json.
            ignore_mismatched_sizes: re-initialise (instead of refusing) tensors whose shape
                differs, e.g. a classifier loaded with another `num_labels`.
            **config_overrides: config fields to change, e.g. `num_labels=3`.

        A task model loaded from a checkpoint without its head (a base model or another task)
        starts with a freshly initialised head and a warning, as in transformers; tensors of other
        heads are ignored and listed in `model.load_info["ignored"]`.
        """
        directory = resolve_checkpoint_dir(name_or_path, revision=revision)
        if config is None:
            config = cls.config_class.from_dict(resolve_config_dict(directory), **config_overrides)
        tensors, source = read_checkpoint(directory)
        model = cls(config)
        model.build_with_dummy_inputs()
        model.load_info = model.load_hf_tensors(
            tensors, source=source, ignore_mismatched_sizes=ignore_mismatched_sizes
        )
        return model

    def load_hf_tensors(self, tensors, source="<tensors>", ignore_mismatched_sizes=False):
        self._refuse_if_not_plain("load HF tensors into")
        tensors = self.rename_checkpoint_tensors(tensors, source)
        specs = self.hf_weight_specs()
        optional = list(self.optional_model_keys)
        dotted = self.base_model_prefix + "."
        head_names = [n for n in specs if self.base_model_prefix and not n.startswith(dotted)]
        if head_names and any(n.startswith(dotted) for n in specs) and not any(n in tensors for n in head_names):
            warnings.warn(
                f"{source} has no weights for the {type(self).__name__} head "
                f"({', '.join(head_names)}); they are newly initialised: train before use."
            )
            optional += ["^" + re.escape(n) + "$" for n in head_names]
        return load_tensors_into(
            specs,
            tensors,
            source=source,
            prefix=self.base_model_prefix,
            ignorable=self.ignorable_checkpoint_keys,
            allow_missing=optional,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )

    def rename_checkpoint_tensors(self, tensors, source):
        """Hook for family-specific spellings of tensor names (e.g. in HF's TF checkpoints)."""
        return tensors

    def save_pretrained(self, directory):
        """Writes config.json and model.safetensors that transformers loads with identical outputs.

        Each file is written to a temporary name and renamed, so an interrupted save never leaves
        a half-written checkpoint behind. LoRA adapters, if enabled, are written merged into the
        kernels; a quantized model is refused (NotImplementedError): HF checkpoints hold floats.
        """
        self.build_with_dummy_inputs()
        self._refuse_if_not_plain("save_pretrained", lora_ok=True)
        os.makedirs(directory, exist_ok=True)
        config = self.config
        if self.hf_architecture:
            config.architectures = [self.hf_architecture]
        save_safetensors(collect_tensors(self.hf_weight_specs()), os.path.join(directory, "model.safetensors"))
        config.save_pretrained(directory)

    # --- quantization and LoRA (Keras-native, both families) -----------------------------------
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
        with _collect_garbage_once(), warnings.catch_warnings():
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
            for child in layer._flatten_layers(include_self=False, recursive=False):
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
                if layer.quantization_mode and not list(layer._flatten_layers(include_self=False))}

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
        with _collect_garbage_once():
            for path, (mode, config) in quantized_layers.items():
                config = keras.saving.deserialize_keras_object(config) if config else None
                layers[path].quantize(mode, config=config, type_check=False)
        self._post_quantize(None)  # torch: re-track the replaced variables (the mode is not used)

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
        for layer in adapted.values():
            _merge_lora_layer(layer)
        for v in self.__dict__.pop("_lora_frozen", []):
            v.trainable = True
        self._reset_compiled_functions()

    def _reset_compiled_functions(self):
        self.train_function = self.test_function = self.predict_function = None
        if keras.backend.backend() == "torch":  # torch keeps its own parameter lists per layer
            for layer in self._flatten_layers():
                layer._track_variables()

    # --- Keras training hooks -------------------------------------------------------------------
    # Names of the label inputs (HF: "labels"; QA: "start_positions", "end_positions") and of the
    # outputs an ordinary Keras loss or metric is applied to.
    label_names = ()
    primary_output_names = ("logits",)

    def hf_loss(self, outputs, labels, sample_weight=None):
        """The transformers loss of this head: outputs dict, labels {name: tensor} -> scalar."""
        raise NotImplementedError(f"{type(self).__name__} has no loss of its own; compile(loss=...)")

    def _labels_from_y(self, y):
        if isinstance(y, dict):
            missing = [n for n in self.label_names if n not in y]
            if missing:
                raise ValueError(f"y is missing {missing}; {type(self).__name__} takes {list(self.label_names)}")
            return {n: y[n] for n in self.label_names}
        if isinstance(y, (list, tuple)) and len(self.label_names) > 1:
            if len(y) != len(self.label_names):
                raise ValueError(f"y must hold {list(self.label_names)}, got {len(y)} arrays")
            return dict(zip(self.label_names, y))
        return {self.label_names[0]: y}

    def _keras_view(self, y_pred):
        """What an ordinary Keras loss / metric sees: the primary output(s), or a dict by name."""
        compiled = getattr(self, "_compile_loss", None)
        if compiled is not None and isinstance(compiled._user_loss, dict):
            return {k: v for k, v in y_pred.items() if k != "loss"}
        if len(self.primary_output_names) == 1:
            return y_pred[self.primary_output_names[0]]
        return tuple(y_pred[n] for n in self.primary_output_names)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, ModelOutput):
            if getattr(self, "_compile_loss", None) is None:
                # compile() without a loss trains on the model's own loss, as HF's TF models did:
                # labels come as `y`, or inside the input dict (then the call computed `.loss`).
                if y is not None:
                    loss = self.hf_loss(y_pred, self._labels_from_y(y), sample_weight=sample_weight)
                elif "loss" in y_pred:
                    loss = y_pred["loss"]
                else:
                    raise ValueError(
                        "no loss: pass labels (as y or in the input dict) or compile(loss=...)"
                    )
                for extra in self.losses:  # regularisers and add_loss terms
                    loss = loss + ops.cast(extra, loss.dtype)
                return loss
            y_pred = self._keras_view(y_pred)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, ModelOutput):
            y_pred = self._keras_view(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # --- calling conventions --------------------------------------------------------------------
    @staticmethod
    def finish_output(output, return_dict):
        if return_dict is False:
            return output.to_tuple()
        return output

    # --- TensorFlow SavedModel export (presets/export.py) ---------------------------------------
    # int32 inputs of the `serving_default` signature; the outputs are `primary_output_names`.
    export_input_names = ("input_ids", "attention_mask")
    # String-in signatures ("serve_text", "serve_text_pair") the model offers with a preprocessor.
    export_text_signatures = ()

    def export_input_limits(self):
        """{input name: exclusive upper bound} that the exported signatures assert."""
        return {"input_ids": self.config.vocab_size}

    def export_max_length(self):
        """The longest sequence the exported model accepts (None: no limit)."""
        return None

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, *,
               preprocessor=None, tokenizer=None, overwrite=False, sequence_length=None, jax2tf_kwargs=None):
        """Writes a TensorFlow SavedModel for TF Serving, on every backend (torch: through a
        TensorFlow subprocess). `serving_default` takes int32 `input_ids`, `attention_mask` (and
        `token_type_ids` for DeBERTa) with dynamic batch and length and returns the named outputs;
        `preprocessor=` (or `tokenizer=`) adds string-in signatures. See
        `presets.export.export_saved_model` for every argument."""
        from presets.export import export_saved_model

        if input_signature is not None:
            raise ValueError("the exported input signature is fixed by the model (int32 ids with dynamic "
                             "batch and length); input_signature is not supported")
        if preprocessor is not None and tokenizer is not None:
            raise ValueError("pass preprocessor= or tokenizer=, not both")
        return export_saved_model(
            self, filepath, preprocessor=preprocessor if preprocessor is not None else tokenizer,
            format=format, overwrite=overwrite, sequence_length=sequence_length,
            jax2tf_kwargs=jax2tf_kwargs, verbose=bool(verbose))


def _lora_names(layer):
    """Attribute names of a Keras layer's LoRA factors (A, B)."""
    if isinstance(layer, keras.layers.Embedding):
        return ("lora_embeddings_a", "lora_embeddings_b")
    return ("lora_kernel_a", "lora_kernel_b")


def _lora_variables(layer):
    return [getattr(layer, n) for n in _lora_names(layer)]


def _merge_lora_layer(layer):
    """W <- W + alpha / rank * A @ B for one Keras Dense / EinsumDense / Embedding, adapters removed."""
    base = layer._embeddings if isinstance(layer, keras.layers.Embedding) else layer._kernel
    a, b = _lora_variables(layer)
    w = np.asarray(ops.convert_to_numpy(base), dtype=np.float32)
    delta = (layer.lora_alpha / layer.lora_rank) * np.matmul(
        np.asarray(ops.convert_to_numpy(a), np.float32), np.asarray(ops.convert_to_numpy(b), np.float32))
    base.assign((w + delta).astype(np.float32))
    layer._tracker.unlock()
    with _collect_garbage_once():
        for name in _lora_names(layer):
            delattr(layer, name)
    layer._tracker.lock()
    base.trainable = True  # enable_lora froze it
    layer.lora_enabled = False
    layer.lora_rank = layer.lora_alpha = None


@contextlib.contextmanager
def _collect_garbage_once():
    """Keras runs gc.collect() after every variable it deletes (to free device memory at once);
    quantizing or merging replaces hundreds of variables, each collection costing a full heap
    walk, so the collections are deferred to one at the end."""
    import gc

    collect = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        gc.collect = collect
        gc.collect()
