"""Hugging Face checkpoints in and out of a model: `from_pretrained`, `load_hf_tensors`,
`save_pretrained`, on top of the readers, writers and name mapping in `presets`."""

import os
import re
import warnings

from presets.hub import resolve_checkpoint_dir, resolve_config_dict
from presets.mapping import collect_tensors, load_tensors_into
from presets.readers import read_checkpoint
from presets.writers import save_safetensors


class HFCheckpointMixin:
    """HF checkpoint I/O for a model that has `config`, `config_class`, `base_model_prefix`,
    `hf_architecture` and implements `hf_weight_specs()` ({hf_name: (variable, transform)})."""

    # Checkpoint names that may be present without a variable (regexes), and model names that may
    # be absent from a checkpoint.
    ignorable_checkpoint_keys = ()
    optional_model_keys = ()

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

