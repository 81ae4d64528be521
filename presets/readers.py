"""Readers for the weight files of Hugging Face checkpoints, into {name: tensor}.

Formats: safetensors (headers here, bytes one tensor at a time through `presets/sources.py`), PyTorch's zip `pytorch_model.bin` (a
restricted unpickler that only rebuilds tensors: it never imports or runs anything else, and does
not need torch), HF's legacy Keras-2 `tf_model.h5`, and sharded checkpoints (`*.index.json`).
Tensors keep the file's dtype (bf16 as ml_dtypes.bfloat16). Every structural problem (truncation,
a bad header, an unknown dtype) raises CheckpointError.
"""

import collections
import io
import math
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

from presets.errors import CheckpointError
from presets.sources import materialise, open_safetensors, open_sharded
from presets.tf_h5 import H5ReadError, read_tf_h5_sandboxed

# --- safetensors ---------------------------------------------------------------------------------


def read_safetensors(path):
    """{name: numpy array} of a whole safetensors file, in the file's dtypes (bf16 as
    ml_dtypes.bfloat16). Loading a model streams instead (`open_safetensors`)."""
    tensors = open_safetensors(path)
    if not tensors:
        return {}
    with next(iter(tensors.values())).shard.opened():
        return {name: np.array(t.read()) for name, t in tensors.items()}  # copies: the map closes


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
    def __init__(self, array, key):
        self.array, self.key = array, key  # flat numpy array over the storage's bytes


def _non_negative_ints(values, what):
    values = tuple(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise CheckpointError(f"{what} {values!r} must be non-negative integers")
    return values


class _TensorView:
    """A tensor as the pickle describes it (storage, offset, size, stride), materialised only after
    unpickling, when its name is known, so every error names the tensor."""

    def __init__(self, storage, storage_offset, size, stride):
        self.storage, self.storage_offset, self.size, self.stride = storage, storage_offset, size, stride

    def materialise(self, name, budget):
        flat = self.storage.array
        try:
            (offset,) = _non_negative_ints((self.storage_offset,), "storage offset")
            size = _non_negative_ints(self.size, "size")
            stride = _non_negative_ints(self.stride, "stride")
            if len(size) != len(stride):
                raise CheckpointError(f"size {size} and stride {stride} differ in rank")
            count = math.prod(size)  # Python ints: no int64 wrap-around on hostile sizes
            # A view never holds more elements than its storage: zero or overlapping strides
            # would otherwise let a tiny file materialise an arbitrarily large array.
            if count > flat.size:
                raise CheckpointError(f"view of {count} elements over a storage of {flat.size}")
            if count == 0:
                if math.prod(max(s, 1) for s in size) >= 2**48:  # numpy refuses such shapes even when empty
                    raise CheckpointError(f"empty view of an impossible shape {size}")
                return np.zeros(size, dtype=flat.dtype)
            stride = tuple(0 if s == 1 else st for s, st in zip(size, stride))  # unused strides
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= flat.size:
                raise CheckpointError(f"view reaches element {last} of a storage of {flat.size}")
        except CheckpointError as e:
            raise CheckpointError(f"tensor {name!r} (storage {self.storage.key}): {e}") from None
        budget.spend(name, count * flat.dtype.itemsize)
        if not size:
            return flat[offset].copy()
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(st * item for st in stride), writeable=False
        )
        return np.array(view)


class _ByteBudget:
    """Bounds the bytes a checkpoint may materialise by a multiple of its file size (tied weights
    legitimately reference one storage several times; a hostile pickle could reference it millions
    of times)."""

    def __init__(self, path, file_size):
        self.path, self.left = path, 8 * file_size + 2**26

    def spend(self, name, nbytes):
        self.left -= nbytes
        if self.left < 0:
            raise CheckpointError(
                f"{self.path}: tensor {name!r} takes the materialised size past 8x the file size; "
                f"refusing a checkpoint that expands without bound"
            )


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"a tensor is rebuilt from {type(storage).__name__}, not a storage")
    return _TensorView(storage, storage_offset, size, stride)


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


def _stored_member(archive, member, path, limit):
    """The bytes of one zip member, refusing compressed members (torch never writes them; a
    deflated member can inflate without bound) and sizes past the archive itself."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise CheckpointError(f"{path}: {member} is missing (truncated file?)") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{path}: {member} is compressed; PyTorch checkpoints store members uncompressed")
    if info.file_size > limit:
        raise CheckpointError(f"{path}: {member} claims {info.file_size} bytes, more than the file holds")
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise CheckpointError(f"{path}: {member} is unreadable ({type(e).__name__}: {e})") from None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix, path):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._limit = os.path.getsize(path)
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
            raw = _stored_member(self._archive, member, self._path, self._limit)
            array = np.frombuffer(raw, dtype=np.dtype(storage_type.dtype).newbyteorder("<"))
            self._storages[key] = _Storage(array, member)
        return self._storages[key]


def read_torch_bin(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic[:1] == b"\x80":
            raise CheckpointError(
                f"{path}: legacy (pre-zip) PyTorch serialization is not supported; re-save it with a "
                f"current torch or convert it to safetensors"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch zip checkpoint (truncated or corrupt)") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl")]
        if not pickles:
            raise CheckpointError(f"{path}: no data.pkl inside; not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        limit = os.path.getsize(path)
        if byteorder in names and _stored_member(archive, byteorder, path, limit).strip() != b"little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        pickled = _stored_member(archive, pickles[0], path, limit)
        try:
            state = _RestrictedUnpickler(io.BytesIO(pickled), archive, prefix, path).load()
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError,
                AttributeError, KeyError, IndexError, RecursionError, NotImplementedError) as e:
            raise CheckpointError(f"{path}: corrupt PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    budget = _ByteBudget(path, limit)
    out = {}
    for name, value in state.items():
        if not isinstance(value, _TensorView):
            raise CheckpointError(f"{path}: entry {name!r} is not a tensor ({type(value).__name__})")
        out[str(name)] = value.materialise(str(name), budget)
    return out


# --- HF legacy TF (Keras 2) h5 -------------------------------------------------------------------


def read_tf_h5(path):
    """HF's TF `tf_model.h5`, read by presets/tf_h5.py in a child process (see there for why)."""
    try:
        return read_tf_h5_sandboxed(path)
    except H5ReadError as e:
        raise CheckpointError(f"{path}: {e}") from None


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
