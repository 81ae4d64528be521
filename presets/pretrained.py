"""The base of every model class of both families: an HF-style config, Keras serialization, and
the mixins that give each concern its own module."""

import functools

import keras
import numpy as np

from presets.adapters import AdaptersMixin
from presets.export import ExportMixin
from presets.hf_checkpoint import HFCheckpointMixin
from presets.training import TrainingHooksMixin


class TFPreTrainedModel(HFCheckpointMixin, AdaptersMixin, TrainingHooksMixin, ExportMixin, keras.Model):
    """Base of every task model: a Keras model built from an HF-style config, with Keras
    serialization here and one concern per mixin: HF checkpoint I/O (presets/hf_checkpoint.py),
    quantization and LoRA (presets/adapters.py), Keras training hooks (presets/training.py) and
    SavedModel export (presets/export.py).

    Subclasses set `config_class`, `base_model_prefix`, `hf_architecture`, implement
    `hf_weight_specs()` ({hf_name: (variable, transform)}) and `call`.
    """

    config_class = None
    base_model_prefix = ""
    hf_architecture = None

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

    # --- calling conventions --------------------------------------------------------------------
    @staticmethod
    def finish_output(output, return_dict):
        if return_dict is False:
            return output.to_tuple()
        return output

