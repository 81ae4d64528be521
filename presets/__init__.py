"""Checkpoint files, weight mapping and Hub resolution, independent of any model class."""

from presets import quiet_tensorflow

# Before anything of ours (or Keras) imports TensorFlow: every model, tokenizer and command of both
# families imports this package first.
quiet_tensorflow.install()

from presets.lazy_exports import export  # noqa: E402

export(globals(), {
    "BaseConfig": "presets.config", "CheckpointError": "presets.errors",
    "CheckpointNotFoundError": "presets.errors", "resolve_checkpoint_dir": "presets.hub",
    "resolve_config_dict": "presets.hub", "collect_tensors": "presets.mapping", "load_tensors_into": "presets.mapping",
    "open_checkpoint": "presets.readers", "read_checkpoint": "presets.readers", "read_safetensors": "presets.readers",
    "read_tf_h5": "presets.readers", "read_torch_bin": "presets.readers", "KNOWN_CHECKPOINTS": "presets.registry",
    "known_config": "presets.registry", "list_known": "presets.registry", "save_safetensors": "presets.writers",
    "save_safetensors_checkpoint": "presets.writers", "TFPreTrainedModel": "presets.pretrained",
})
