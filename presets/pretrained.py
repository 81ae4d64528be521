"""The base of every model class of both families: an HF-style config, construction under one dtype
policy, Keras serialization, and the mixins that give each concern its own module."""

import os

import keras

from presets import keras_compat
from presets.adapters import AdaptersMixin
from presets.config_bounds import check_against_stored_weights, check_buildable, check_file_values
from presets.export import ExportMixin
from presets.hf_checkpoint import HFCheckpointMixin
from presets.hf_model_api import HFModelAPIMixin
from presets.io import atomic_path
from presets.layout import LayoutMapMixin, build_checking_layouts
from presets.model_io import OUTPUT_FLAGS, check_int32_range, python_rows_as_array
from presets.task_protocol import TaskProtocol
from presets.tf_datasets import TFDatasetMixin
from presets.training import CheckedStepsMixin, TrainingHooksMixin


class TFPreTrainedModel(TaskProtocol, HFModelAPIMixin, HFCheckpointMixin, AdaptersMixin, CheckedStepsMixin,
                        TrainingHooksMixin, TFDatasetMixin, LayoutMapMixin, ExportMixin, keras.Model):
    """Base of every task model: a Keras model built from an HF-style config.

    Each concern has its own module: the calling protocol of every task (presets/task_protocol.py),
    transformers' TF model API (presets/hf_model_api.py), HF checkpoint I/O (presets/hf_checkpoint.py), quantization and LoRA (presets/adapters.py),
    Keras training hooks (presets/training.py), `prepare_tf_dataset` (presets/tf_datasets.py),
    `get_layout_map` for keras.distribution (presets/layout.py) and SavedModel export
    (presets/export.py).

    Construction: `Model(config, dtype=None, remat=False, name=None, ...)`. A subclass creates its layers in
    `create_layers()` and creates their variables in `build()`; both run here, so every variable
    exists from construction on (as with HF's TF models). `dtype` (a policy name such as
    "bfloat16" / "mixed_float16" or a `keras.DTypePolicy`) applies to every layer of the model,
    without touching the global policy; without it the model follows the global policy.

    Subclasses set `config_class`, `base_model_prefix`, `hf_architecture` and implement
    `hf_weight_specs()` ({hf_name: (variable, transform)}) and the task protocol's hooks.
    """

    config_class = None
    base_model_prefix = ""
    hf_architecture = None

    def __init__(self, config, remat=False, **kwargs):
        if isinstance(config, dict):
            config = self.config_class.from_dict(config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        check_buildable(config, config.field_specs)  # before any layer: sizes within the documented maxima
        explicit_policy = kwargs.get("dtype") is not None
        super().__init__(**kwargs)
        self.config = config
        # remat=True: each block's activations are recomputed in the backward pass instead of kept
        # (`keras.remat` per block; the family's main layer applies it), so training memory stops
        # growing with depth.
        self.remat = bool(remat)
        self.create_layers(config)
        if explicit_policy:
            _apply_policy_to_sublayers(self, self.dtype_policy)
        self.build()

    def create_layers(self, config):
        """Creates the model's layers (not their variables: `build` does that)."""
        raise NotImplementedError

    def build(self, input_shape=None):
        """Creates every variable from the config's shapes. The model builds itself at construction,
        so a later `model.build(...)` (HF TF code calls it) changes nothing."""
        if self.built:
            return
        build_checking_layouts(self, self.build_layers)
        self.built = True

    def build_layers(self):
        raise NotImplementedError

    def build_with_dummy_inputs(self):
        """The model, built (kept for callers written before models built at construction)."""
        self.build()
        return self

    def __call__(self, *args, **kwargs):
        if args:
            args = (python_rows_as_array(args[0]),) + args[1:]
        if "input_ids" in kwargs:
            kwargs["input_ids"] = python_rows_as_array(kwargs["input_ids"])
        # Keras converts numpy inputs to the backend's tensors before `call` sees them; on JAX int64
        # becomes int32 and ids >= 2**31 wrap silently, so 64-bit host integers are checked first.
        if args and isinstance(args[0], dict) and type(args[0]) is not dict:
            # A tokenizer's BatchEncoding (`model(tokenizer(..., return_tensors="tf"))`, as in
            # transformers): Keras reads only plain dicts as input structures.
            args = (dict(args[0]),) + args[1:]
        check_int32_range(args[0] if args else kwargs.get("input_ids"), "input_ids")
        for name, value in kwargs.items():
            check_int32_range(value, name)
        # HF's TF models accept call options inside the input dict (`{"input_ids": ...,
        # "output_hidden_states": True}`); Keras allows only tensors there, so they become keywords.
        if args and isinstance(args[0], dict) and any(f in args[0] for f in OUTPUT_FLAGS):
            inputs = dict(args[0])
            for flag in OUTPUT_FLAGS:
                if flag in inputs:
                    value = inputs.pop(flag)
                    if kwargs.get(flag) is not None:
                        raise ValueError(f"{flag} was given twice (in the input dict and as a keyword)")
                    kwargs[flag] = value
            args = (inputs,) + args[1:]
        if keras.backend.backend() == "torch" and not kwargs.get("training") and _holds_tf_tensor((args, kwargs)):
            # transformers-TF code on the torch backend (`model(tokenizer(..., return_tensors="tf"))`
            # then `tf.nn.softmax(out.logits)`): TF cannot read torch tensors that require grad, and
            # TF inputs carry no torch autograd history, so an inference call runs without it.
            import torch

            with torch.no_grad():
                return super().__call__(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    # --- Keras serialization --------------------------------------------------------------------
    def get_config(self):
        config = {"config": self.config.to_dict(), "name": self.name, "trainable": self.trainable,
                  "dtype": keras.saving.serialize_keras_object(self.dtype_policy), "remat": self.remat}
        return {**config, **self._quantization_config_entry()}

    @classmethod
    def from_config(cls, config):
        """Keras deserialization ({"config": {...}, ...} from `get_config`), or transformers'
        `Model.from_config(config_object)`: a fresh model from an HF-style config."""
        if isinstance(config, cls.config_class):
            return cls(config)
        config = dict(config)
        model_config = cls._config_from_keras_file(config.pop("config"))
        dtype = config.pop("dtype", None)
        if isinstance(dtype, dict):
            dtype = keras.saving.deserialize_keras_object(dtype)
        quantized_layers = config.pop("quantized_layers", None)
        model = cls(model_config, dtype=dtype, **config)
        if quantized_layers:  # integer variables must exist before Keras restores the weights
            model._requantize_layers(quantized_layers)
        return model

    @classmethod
    def _config_from_keras_file(cls, values):
        """The model config inside a Keras config, held to the bounds of a config.json and, when a
        `.keras` archive is being loaded, to what the weights stored in it can hold, before any
        layer is built."""
        check_file_values(values, cls.config_class.field_specs, "the Keras config")
        config = cls.config_class.from_dict(values)
        stored = keras_compat.stored_weights_bytes_being_loaded()
        if stored is not None:
            check_against_stored_weights(config, stored, "the .keras file")
        return config

    def save(self, filepath, overwrite=True, **kwargs):
        """Keras' `model.save`, made atomic: the file is written under a hidden temporary name and
        renamed, so a save killed midway leaves the previous file intact; temporaries left by an
        earlier crash are removed. `overwrite=False` refuses an existing file (FileExistsError)
        instead of prompting on stdin."""
        self._save_atomically(super().save, filepath, overwrite, (".keras", ".h5"), kwargs)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """Keras' `save_weights`, atomic like `save`."""
        self._save_atomically(super().save_weights, filepath, overwrite, (".weights.h5", ".weights.json"), kwargs)

    @staticmethod
    def _save_atomically(keras_save, filepath, overwrite, endings, kwargs):
        path = os.fspath(filepath)
        ending = next((e for e in endings if path.endswith(e)), None)
        if ending is None or kwargs.get("zipped") is False:
            return keras_save(filepath, overwrite=overwrite, **kwargs)  # Keras' own error or a directory
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        with atomic_path(path, suffix=ending) as tmp:  # also removes temporaries of earlier crashed saves
            keras_save(tmp, overwrite=True, **kwargs)

    def build_from_config(self, config):
        # Keras reloading a .keras file: the variables exist since construction.
        self.build()


def _holds_tf_tensor(structure):
    """Whether a TensorFlow tensor is among the leaves (checked by type, without importing TF)."""
    return any(type(leaf).__module__.startswith("tensorflow") for leaf in keras.tree.flatten(structure))


def _apply_policy_to_sublayers(model, policy):
    """Gives every layer below `model` the model's dtype policy before any variable exists, as a
    global `keras.config.set_dtype_policy` before construction would (Keras gives a model's own
    `dtype` to the model alone). Quantized layers keep their own policy."""
    pending = keras_compat.child_layers(model)
    while pending:
        layer = pending.pop()
        if layer.dtype_policy.quantization_mode is None:
            layer.dtype_policy = policy
        pending.extend(keras_compat.child_layers(layer))
