"""Writing checkpoints that transformers loads: safetensors files (one, or shards plus
`model.safetensors.index.json`), streamed one tensor at a time, every file crash-safe.

A safetensors file is an 8-byte header length, a JSON header ({name: dtype, shape, byte range})
and the tensors' bytes. The header depends only on shapes and dtypes, so it is written first and
each tensor is then read from its variable, written and dropped: the host never holds more than
one tensor (or one expert stack, read once for all its experts).

Interrupted saves: every file is written under a temporary name; only when all of them are
complete are they renamed into place, then the index, and only after that are files of an
older save that the new one does not use (stale shards, a single file now replaced by shards)
removed. Until the renames, the previous checkpoint in the directory is untouched.
"""

import json
import os
import re
import tempfile

import numpy as np

from presets.io import atomic_path, atomic_write_text, remove_stale_temporaries_in
from presets.progress import byte_progress, tensor_nbytes
from presets.sources import SAFETENSORS_CODES

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_SHARD_PATTERN = r"model-\d{5}-of-\d{5}\.safetensors"
_SHARD_NAME = re.compile("^" + _SHARD_PATTERN + "$")
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size):
    """Bytes in `size`: an int, or a string such as "5GB" (10^9, as transformers) or "500MiB"."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        value = int(size)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(size).upper())
        if not match:
            raise ValueError(f"max_shard_size must be a number of bytes or a size such as '5GB', got {size!r}")
        value = int(float(match.group(1)) * _UNITS[match.group(2) or "B"])
    if value <= 0:
        raise ValueError(f"max_shard_size must be positive, got {size!r}")
    return value


def plan_shards(layout, max_bytes):
    """Splits {name: (shape, dtype)} (in order) into lists of names of at most `max_bytes` each, as
    transformers does: a tensor that does not fit starts a new shard; one larger than the limit
    gets a shard of its own."""
    shards, current, current_bytes = [], [], 0
    for name, (shape, dtype) in layout.items():
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if current and current_bytes + size > max_bytes:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(name)
        current_bytes += size
    if current or not shards:
        shards.append(current)
    return shards


def write_safetensors(path, layout, names, fetch, metadata=None):
    """Writes the tensors `names` (shapes and dtypes from `layout`) to `path` as safetensors.

    `fetch(name)` returns one tensor as a C-contiguous numpy array; tensors are fetched and
    written in the order of `names` (the byte order in the file), one at a time.
    """
    header, offset = {}, 0
    for name in names:
        shape, dtype = layout[name]
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": SAFETENSORS_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as the library writes it
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for name in names:
            shape, dtype = layout[name]
            value = fetch(name)
            if tuple(value.shape) != tuple(shape) or value.dtype != dtype:
                raise RuntimeError(f"tensor {name} changed while saving: {value.shape} {value.dtype}, "
                                   f"expected {shape} {dtype}")
            f.write(np.ascontiguousarray(value).reshape(-1).view(np.uint8).data)
            del value
        f.flush()
        os.fsync(f.fileno())


def _temporary(directory, filename):
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=directory)
    os.close(fd)
    return tmp


def save_safetensors_checkpoint(directory, layout, fetch, *, max_shard_size="5GB", write_order=None,
                                metadata=None):
    """Writes `layout` ({name: (shape, dtype)}, in checkpoint order) to `directory` as
    model.safetensors, or as model-0000i-of-0000n.safetensors shards plus the index when it exceeds
    `max_shard_size`. `write_order(names)` may reorder tensors inside a file (e.g. to keep a
    stack's entries together); `fetch(name)` gives one tensor.

    Returns:
        the file names written (the index last when sharded).
    """
    max_bytes = parse_size(max_shard_size)
    os.makedirs(directory, exist_ok=True)
    # Temporaries of earlier killed saves (single file, any shard count, the index) are never read
    # but can be gigabytes: gone before this save writes its own.
    remove_stale_temporaries_in(directory, "|".join([re.escape(WEIGHTS_NAME), re.escape(INDEX_NAME), _SHARD_PATTERN]))
    shards = plan_shards(layout, max_bytes)
    if len(shards) == 1:
        filenames = [WEIGHTS_NAME]
    else:
        filenames = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    umask = os.umask(0)
    os.umask(umask)
    temporaries = []
    total = sum(tensor_nbytes(shape, dtype) for shape, dtype in layout.values())
    try:
        with byte_progress(total, f"Saving {os.path.basename(os.path.normpath(directory))}") as advance:
            def fetch_counted(name):
                advance(tensor_nbytes(*layout[name]))
                return fetch(name)

            for filename, names in zip(filenames, shards):
                tmp = _temporary(directory, filename)
                temporaries.append(tmp)
                write_safetensors(tmp, layout, write_order(names) if write_order else names, fetch_counted, metadata)
                os.chmod(tmp, 0o666 & ~umask)
    except BaseException:
        for tmp in temporaries:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    # Every file is complete: move them in, then the index, then remove what the new save replaced.
    for tmp, filename in zip(temporaries, filenames):
        os.replace(tmp, os.path.join(directory, filename))
    written = list(filenames)
    if len(shards) > 1:
        total = sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in layout.values())
        parameters = sum(int(np.prod(shape, dtype=np.int64)) for shape, _ in layout.values())
        index = {"metadata": {"total_parameters": parameters, "total_size": total},
                 "weight_map": {name: filename for filename, names in zip(filenames, shards) for name in names}}
        atomic_write_text(os.path.join(directory, INDEX_NAME), json.dumps(index, indent=2, sort_keys=True) + "\n")
        written.append(INDEX_NAME)
        stale = [WEIGHTS_NAME] + [f for f in os.listdir(directory) if _SHARD_NAME.match(f) and f not in filenames]
    else:
        stale = [INDEX_NAME] + [f for f in os.listdir(directory) if _SHARD_NAME.match(f)]
    for filename in stale:
        path = os.path.join(directory, filename)
        if os.path.isfile(path):
            os.remove(path)
    return written


def save_safetensors(tensors, path, metadata=None):
    """Writes {name: numpy array} as one safetensors file via a temporary file renamed into place."""
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    layout = {k: (v.shape, v.dtype) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        write_safetensors(tmp, layout, list(tensors), tensors.__getitem__, metadata)
