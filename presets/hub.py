"""Resolving a name to a local checkpoint: a directory, a registry entry, or a Hub download."""

import os
import re

from presets.errors import CheckpointError, CheckpointNotFoundError
from presets.io import read_json_object
from presets.registry import known_config

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Files worth downloading for our loaders; remote code (*.py) never is.
_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.h5", "*.model", "*.txt"]


def _is_hub_id(name):
    return bool(_HUB_ID.match(name)) and not os.path.exists(name)


def resolve_checkpoint_dir(name_or_path, revision=None, subfolder="", **hub_options):
    """Returns a local directory holding the checkpoint `name_or_path` (its `subfolder` when given).

    A directory is used as is. A Hub id goes through huggingface_hub's cache (and downloads when
    online); without huggingface_hub or the network it fails with a message that says so.
    `hub_options` are huggingface_hub's (token, cache_dir, local_files_only, force_download,
    proxies; see presets/loading_options.py).
    """
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        return _inside(name_or_path, subfolder, name_or_path)
    if not _is_hub_id(name_or_path):
        raise CheckpointNotFoundError(f"no checkpoint directory at {name_or_path!r}")
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointNotFoundError(
            f"{name_or_path!r} is not a local directory and huggingface_hub is not installed to "
            f"download it (pip install huggingface_hub)"
        ) from None
    patterns = [f"{subfolder.strip('/')}/{p}" for p in _ALLOW_PATTERNS] if subfolder else _ALLOW_PATTERNS
    try:
        snapshot = huggingface_hub.snapshot_download(
            name_or_path, revision=revision, allow_patterns=patterns, **hub_options
        )
    except Exception as e:  # hub raises many types: offline, 404, gated, connection errors
        raise CheckpointNotFoundError(
            f"cannot get {name_or_path!r} from the Hugging Face Hub and it is not in the local cache "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). If you are offline, "
            f"download it once with network access or pass a local directory."
        ) from None
    return _inside(snapshot, subfolder, name_or_path)


def _inside(directory, subfolder, name):
    if not subfolder:
        return directory
    path = os.path.join(directory, subfolder)
    if not os.path.isdir(path):
        raise CheckpointNotFoundError(f"{name!r} has no subfolder {subfolder!r}")
    return path


def resolve_config_dict(name_or_path, **hub_options):
    """config.json contents for a directory, a config file, a registry name or a Hub id
    (`hub_options`: those of `resolve_checkpoint_dir`)."""
    name_or_path = os.fspath(name_or_path)
    if os.path.isfile(name_or_path):
        path = name_or_path
    elif os.path.isdir(name_or_path):
        path = os.path.join(resolve_checkpoint_dir(name_or_path, **hub_options), "config.json")
        if not os.path.isfile(path):
            raise CheckpointNotFoundError(f"no config.json in {name_or_path}")
    else:
        registered = known_config(name_or_path)
        if registered is not None:
            return registered
        path = os.path.join(resolve_checkpoint_dir(name_or_path, **hub_options), "config.json")
    return read_json_object(path, CheckpointError)
