"""The base of every model class of both families: config handling, Keras serialization, and
from_pretrained / save_pretrained on top of the readers, writers and mapping in `presets`."""

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

    # --- Keras serialization --------------------------------------------------------------------
    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model_config = cls.config_class.from_dict(config.pop("config"))
        config.pop("dtype", None)
        return cls(model_config, **config)

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
        a half-written checkpoint behind.
        """
        self.build_with_dummy_inputs()
        os.makedirs(directory, exist_ok=True)
        config = self.config
        if self.hf_architecture:
            config.architectures = [self.hf_architecture]
        save_safetensors(collect_tensors(self.hf_weight_specs()), os.path.join(directory, "model.safetensors"))
        config.save_pretrained(directory)

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
