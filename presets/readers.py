"""Readers for the weight files of Hugging Face checkpoints, into {name: tensor}.

Formats: safetensors (headers here, bytes one tensor at a time through `presets/sources.py`), PyTorch's zip `pytorch_model.bin` (a
restricted unpickler that only rebuilds tensors: it never imports or runs anything else, and does
not need torch), HF's legacy Keras-2 `tf_model.h5`, and sharded checkpoints (`*.index.json`).
Tensors keep the file's dtype (bf16 as ml_dtypes.bfloat16). Every structural problem (truncation,
a bad header, an unknown dtype) raises CheckpointError.
"""

import collections
import os
import pickle
import re
import zipfile

import ml_dtypes
import numpy as np

from presets.errors import CheckpointError
from presets.sources import materialise, open_safetensors, open_sharded

# --- safetensors ---------------------------------------------------------------------------------


def read_safetensors(path):
    """{name: numpy array} of a whole safetensors file, in the file's dtypes (bf16 as
    ml_dtypes.bfloat16). Loading a model streams instead (`open_safetensors`)."""
    tensors = open_safetensors(path)
    if not tensors:
        return {}
    with next(iter(tensors.values())).shard.opened():
        return {name: t.read() for name, t in tensors.items()}


# --- PyTorch zip pickle --------------------------------------------------------------------------

_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = _TORCH_STORAGE_DTYPES[name]


class _Storage:
    def __init__(self, array):
        self.array = array  # flat numpy array over the storage's bytes


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    flat = storage.array
    size, stride = tuple(size), tuple(stride)
    if not size:
        return flat[storage_offset].copy()
    last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride) if s > 0)
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=flat.dtype)
    if last >= flat.size:
        raise CheckpointError("tensor view reaches past its storage (corrupt pytorch checkpoint)")
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape=size, strides=tuple(st * item for st in stride), writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data, *unused):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


class _TypeMarker:
    """Stands in for torch.Tensor / Parameter classes named inside a pickle; never instantiated."""


# The only globals a state dict legitimately needs. Anything else (os.system, builtins.eval,
# arbitrary classes) is refused before it can be resolved, so no pickled code can run.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TypeMarker,
    ("torch.nn.parameter", "Parameter"): _TypeMarker,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix, path):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self._path}: refusing to load '{module}.{name}': a weights file should hold only "
                f"tensors, and loading never runs code from a checkpoint"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self._path}: unsupported storage type {storage_type!r}")
        if key not in self._storages:
            member = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(member)
            except KeyError:
                raise CheckpointError(f"{self._path}: storage {member} is missing (truncated file?)") from None
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise CheckpointError(f"{self._path}: storage {member} is unreadable ({e})") from None
            array = np.frombuffer(raw, dtype=np.dtype(storage_type.dtype).newbyteorder("<"))
            self._storages[key] = _Storage(array)
        return self._storages[key]


def read_torch_bin(path):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic[:1] == b"\x80":
            raise CheckpointError(
                f"{path}: legacy (pre-zip) PyTorch serialization is not supported; re-save it with a "
                f"current torch or convert it to safetensors"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch zip checkpoint (truncated or corrupt)") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not pickles:
            raise CheckpointError(f"{path}: no data.pkl inside; not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        try:
            with archive.open(pickles[0]) as f:
                state = _RestrictedUnpickler(f, archive, prefix, path).load()
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: corrupt PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    out = {}
    for name, value in state.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: entry {name!r} is not a tensor ({type(value).__name__})")
        out[str(name)] = value
    return out


# --- HF legacy TF (Keras 2) h5 -------------------------------------------------------------------


def tf_name_to_pt(tf_name, ndim):
    """Converts an HF TensorFlow variable name to its PyTorch state-dict name.

    Follows transformers' `convert_tf_weight_name_to_pt_weight_name`: drop ":0" and the model scope
    (the first component), "_._" -> ".", "/" -> ".", kernel / embeddings / gamma -> weight,
    beta -> bias.

    Returns:
        (pt_name, transpose): transpose is "linear" for 2-D kernels ([in, out] -> [out, in]),
        "conv1d" for 3-D kernels ([k, in, out] -> [out, in, k]), or None.
    """
    name = tf_name.replace(":0", "")
    name = re.sub(r"/[^/]*___([^/]*)/", r"/\1/", name)
    name = name.replace("_._", "/")
    name = re.sub(r"//+", "/", name)
    parts = name.split("/")
    if len(parts) > 1:
        parts = parts[1:]
    transpose = None
    if parts[-1] == "kernel":
        transpose = {2: "linear", 3: "conv1d"}.get(ndim)
    if parts[-1] in ("kernel", "embeddings", "gamma"):
        parts[-1] = "weight"
    elif parts[-1] == "beta":
        parts[-1] = "bias"
    return ".".join(parts), transpose


def _h5_string_list(attrs, name):
    """Keras-2 h5 attribute lists, which Keras splits into name0, name1, ... when they are large."""
    if name in attrs:
        values = list(attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in attrs:
            values.extend(attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_tf_h5(path):
    """Reads HF's TF `tf_model.h5` (Keras-2 `save_weights` layout) into PyTorch-style names.

    Layout: root attribute `layer_names` (top-level layers), each layer group's `weight_names`
    (full variable names whose slashes are nested groups). A name seen twice (a tied embedding
    listed again under the MLM head) must carry the same value.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file (truncated or corrupt: {e})") from None
    out = {}
    with f:
        layer_names = _h5_string_list(f.attrs, "layer_names")
        if not layer_names:
            raise CheckpointError(f"{path}: no 'layer_names' attribute; not an HF TF weights file")
        try:
            for layer_name in layer_names:
                group = f[layer_name]
                for weight_name in _h5_string_list(group.attrs, "weight_names"):
                    array = np.asarray(group[weight_name])
                    name, transpose = tf_name_to_pt(weight_name, array.ndim)
                    if transpose == "linear":
                        array = array.T
                    elif transpose == "conv1d":
                        array = np.transpose(array, (2, 1, 0))
                    array = np.ascontiguousarray(array)
                    if name in out:
                        if out[name].shape != array.shape or not np.array_equal(out[name], array):
                            raise CheckpointError(f"{path}: two different TF variables map to {name!r}")
                        continue
                    out[name] = array
        except (KeyError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{path}: corrupt HF TF weights file ({e})") from None
    return out


# --- directory level -----------------------------------------------------------------------------

_OPENERS = {".safetensors": open_safetensors, ".bin": lambda path: read_torch_bin(path),
            ".h5": lambda path: read_tf_h5(path)}

# In the order transformers prefers them.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "tf_model.h5",
)


def open_weight_file(path):
    """{name: tensor} of one weights file: LazyTensors for safetensors, arrays for .bin / .h5."""
    for suffix, opener in _OPENERS.items():
        if path.endswith(suffix):
            return opener(path)
    raise CheckpointError(f"{path}: unknown weight file type")


def read_weight_file(path):
    return {name: materialise(t) for name, t in open_weight_file(path).items()}


def read_sharded(index_path):
    return {name: materialise(t) for name, t in open_sharded(index_path, open_weight_file).items()}


def find_weight_file(directory):
    for name in WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise CheckpointError(
        f"no weights file in {directory}: expected one of {', '.join(WEIGHT_FILES)}"
    )


def open_checkpoint(directory):
    """The tensors of an HF checkpoint directory, every header checked, bytes not yet read.

    Returns:
        (tensors, path): {pytorch-style name: LazyTensor or numpy array}, and the weights file
        (or index) they come from.
    """
    path = find_weight_file(directory)
    if path.endswith(".index.json"):
        return open_sharded(path, open_weight_file), path
    return open_weight_file(path), path


def read_checkpoint(directory):
    """Reads the weights of an HF checkpoint directory into memory (in their own dtypes).

    Returns:
        (tensors, path): {pytorch-style name: numpy array}, and the file it came from.
    """
    tensors, path = open_checkpoint(directory)
    return {name: materialise(t) for name, t in tensors.items()}, path
