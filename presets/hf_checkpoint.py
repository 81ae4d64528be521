"""Hugging Face checkpoints in and out of a model: `from_pretrained`, `load_hf_tensors`,
`save_pretrained`, on top of the readers, writers and name mapping in `presets`."""

import copy
import os
import re
import warnings

from presets.config_bounds import check_against_checkpoint
from presets.hub import resolve_checkpoint_dir, resolve_config_dict
from presets.keras_compat import deferred_initialisation
from presets.lazy_init import initialise_remaining
from presets.loading_options import pop_loading_options, refuse_unknown_keywords
from presets.load_dtype import resolve_load_policy
from presets.mapping import HostReader, hf_tensor_layout, load_tensors_into, spec_order, variable_of
from presets.quantized_loading import check_quantize_policy, check_quantize_request, load_quantized
from presets.readers import open_checkpoint
from presets.writers import save_safetensors_checkpoint


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
                        dtype=None, remat=False, torch_dtype=None, quantize=None, **config_overrides):
        """Builds the model from an HF checkpoint directory or Hub id and loads its weights exactly.

        Args:
            name_or_path: a directory with config.json and a weights file (model.safetensors,
                pytorch_model.bin, tf_model.h5 or a sharded index), or a Hub id.
            config: use this config instead of the checkpoint's config.json (it is copied:
                `config_overrides` change the copy, never the caller's object).
            ignore_mismatched_sizes: re-initialise (instead of refusing) tensors whose shape
                differs, e.g. a classifier loaded with another `num_labels`; a warning names each
                one with the checkpoint's and the model's shape.
            dtype: the variables' dtype: None (default: the global Keras policy, float32 unless
                set otherwise), "auto" (the checkpoint's own dtype, transformers 5's default),
                "float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16" or a
                `keras.DTypePolicy`. Variables are created in that dtype and every tensor is cast
                on its own, so a bf16 checkpoint loaded as bf16 never exists in float32.
                `torch_dtype` is transformers' older name for it.
            remat: passed to the constructor (recompute each block in the backward pass).
            quantize: "int8" or "int4" to quantize while loading: the same variables, values
                and layout as `from_pretrained(...)` then `model.quantize(mode)`, made tensor by
                tensor as the shards stream in, so the float model never exists (the peak is the
                quantized model plus about one layer's float kernel; presets/quantized_loading.py).
                `dtype` is the float dtype the weights pass through and the non-quantized ones
                keep. Any other value is a ValueError before anything is read.
            **config_overrides: config fields to change, e.g. `num_labels=3`, and transformers'
                loading keywords (token, cache_dir, revision, local_files_only, force_download,
                subfolder, from_pt / from_tf / use_safetensors, trust_remote_code;
                presets/loading_options.py), which go to the Hub download and are never stored
                in the config. A keyword that is neither raises TypeError.

        Shards are opened lazily and every tensor's name, shape and dtype is checked from the
        headers before any is read; then tensors are read, converted and assigned one at a time.
        A task model loaded from a checkpoint without its head (a base model or another task)
        starts with a freshly initialised head and a warning, as in transformers; tensors of other
        heads are ignored and listed in `model.load_info["ignored"]`.
        """
        mode = check_quantize_request(quantize)  # before anything is read
        if torch_dtype is not None:
            if dtype is not None and dtype != torch_dtype:
                raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass dtype only")
            dtype = torch_dtype
        hub_options = pop_loading_options(config_overrides)
        if revision is not None:
            hub_options["revision"] = revision
        directory = resolve_checkpoint_dir(name_or_path, **hub_options)
        if config is None:
            config = cls.config_class.from_file_dict(resolve_config_dict(directory), f"{directory}/config.json")
        elif isinstance(config, dict):
            config = cls.config_class.from_dict(config)
        else:
            config = copy.deepcopy(config)
        refuse_unknown_keywords(config, config_overrides, f"{cls.__name__}.from_pretrained")
        for key, value in config_overrides.items():  # after construction, as from_dict does
            setattr(config, key, value)
        tensors, source = open_checkpoint(directory)  # headers only: every shard checked
        # The config's sizes against the headers, before any variable: a model costs what its file holds.
        check_against_checkpoint(config, tensors, source)
        policy = resolve_load_policy(dtype, config, tensors)
        model_kwargs = {"remat": remat} if policy is None else {"remat": remat, "dtype": policy}
        if mode is not None:
            check_quantize_policy(mode, policy)
            model = load_quantized(cls, config, model_kwargs, tensors, source, mode, ignore_mismatched_sizes)
            model.config.dtype = model.dtype_policy.variable_dtype
            return model
        # Every variable starts unfilled instead of with a random draw the checkpoint would
        # overwrite; the ones it does not provide (a new head) get their initial values afterwards.
        with deferred_initialisation() as created:
            model = cls(config, **model_kwargs)
        model.load_info = model.load_hf_tensors(
            tensors, source=source, ignore_mismatched_sizes=ignore_mismatched_sizes
        )
        not_loaded = set(model.load_info["missing"]) | set(model.load_info["mismatched"])
        loaded = {id(variable_of(slot)) for name, (slot, _) in model.hf_weight_specs().items()
                  if name not in not_loaded}
        initialise_remaining(created, loaded)
        model.config.dtype = model.dtype_policy.variable_dtype  # what the variables now hold
        return model

    def load_hf_tensors(self, tensors, source="<tensors>", ignore_mismatched_sizes=False, sink=None):
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
            sink=sink,
        )

    def rename_checkpoint_tensors(self, tensors, source):
        """Hook for family-specific spellings of tensor names (e.g. in HF's TF checkpoints)."""
        return tensors

    def save_pretrained(self, directory, saved_model=False, version=1, signatures=None, max_shard_size="5GB",
                        safe_serialization=True):
        """Writes config.json and model.safetensors (or, above `max_shard_size`, shards
        model-0000i-of-0000n.safetensors and model.safetensors.index.json) that transformers loads
        with identical outputs, in the variables' own dtype (bf16 variables are written as BF16).

        Args:
            directory: where to write (created if needed).
            saved_model: also export a TensorFlow SavedModel to `directory/saved_model/{version}`
                (through `model.export`), as HF's TF `save_pretrained` did.
            version: the SavedModel's version directory.
            signatures: not supported (use `model.export` / `keras.export.ExportArchive` for
                custom endpoints).
            max_shard_size: largest weights file, as an int of bytes or "5GB" / "500MB" / "2GiB".
            safe_serialization: only safetensors is written (transformers' default too).

        Tensors are streamed one at a time (each expert stack read once for all its experts).
        Each file is written to a temporary name and renamed once all are complete, so an
        interrupted save leaves the previous checkpoint in `directory` loadable; stale shards of
        an older save are removed only after the new index is in place. LoRA adapters, if enabled,
        are written merged into the kernels; a quantized model is refused (NotImplementedError):
        HF checkpoints hold floats.
        """
        if not safe_serialization:
            raise NotImplementedError("save_pretrained writes safetensors only (safe_serialization=True); "
                                      "transformers and this package both load it")
        if signatures is not None:
            raise NotImplementedError("custom SavedModel signatures: use model.export(...) or "
                                      "keras.export.ExportArchive")
        self.build_with_dummy_inputs()
        self._refuse_if_not_plain("save_pretrained", lora_ok=True)
        specs = self.hf_weight_specs()
        layout = hf_tensor_layout(specs)
        order = spec_order(specs)
        reader = HostReader()
        try:
            save_safetensors_checkpoint(
                directory, layout, lambda name: reader.read(*specs[name]), max_shard_size=max_shard_size,
                write_order=lambda names: sorted(names, key=order.__getitem__))
        finally:
            reader.release()
        config = self.config
        if self.hf_architecture:
            config.architectures = [self.hf_architecture]
        dtypes = {str(dtype) for _, dtype in layout.values()}
        config.dtype = dtypes.pop() if len(dtypes) == 1 else self.dtype_policy.variable_dtype
        config.save_pretrained(directory)
        if saved_model:
            self.export(os.path.join(directory, "saved_model", str(version)), overwrite=True)
