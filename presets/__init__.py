"""Checkpoint files, weight mapping and Hub resolution, independent of any model class."""

from presets.config import BaseConfig
from presets.errors import CheckpointError, CheckpointNotFoundError
from presets.hub import resolve_checkpoint_dir, resolve_config_dict
from presets.mapping import collect_tensors, load_tensors_into
from presets.readers import open_checkpoint, read_checkpoint, read_safetensors, read_tf_h5, read_torch_bin
from presets.registry import KNOWN_CHECKPOINTS, known_config, list_known
from presets.writers import save_safetensors, save_safetensors_checkpoint
from presets.pretrained import TFPreTrainedModel
