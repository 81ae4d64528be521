"""Checkpoint tensors as lazy handles: headers read up front, bytes read one tensor at a time.

`open_checkpoint(directory)` returns {name: tensor} where a safetensors tensor is a `LazyTensor`
(shape and dtype from the file's header, bytes not yet read) and a `.bin` / `.h5` tensor is a numpy
array (those formats are read whole). Every structural problem of every shard (truncation, a bad
header, a shard the index names but that is missing, a tensor held by two shards) is found from
the headers, before any tensor is read, and raises CheckpointError naming the file and tensor.

Safetensors bytes are read from a memory map of the file (`Shard.opened()` maps one shard while
its tensors are read and drops the mapping after): a tensor is a zero-copy view of the mapped
bytes within the range its header entry was validated to hold, so each byte is copied once, by
the backend, straight into its variable. The `safetensors` library's `safe_open` for numpy copies
every tensor into a fresh array first, a large share of a load's time (benchmarks/loading.py),
hence this reader. Mappings are copy-on-write
(`MAP_PRIVATE`): a write to a view never reaches the file.
"""

import collections
import contextlib
import json
import math
import os
import struct

import ml_dtypes
import numpy as np

from presets.errors import CheckpointError

# safetensors dtype codes -> numpy dtypes (bf16 as ml_dtypes.bfloat16, which every backend takes).
SAFETENSORS_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
SAFETENSORS_CODES = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # the safetensors library's own limit


def read_safetensors_header(path):
    """{name: (dtype, shape, (begin, end))} of a safetensors file, checked against its size.

    Raises CheckpointError for a truncated file, a corrupt header, an unknown dtype, a tensor
    whose byte range does not match its shape or reaches past the end of the file, and byte ranges
    that overlap or leave gaps.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: file is truncated (no safetensors header)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8 or header_len > _MAX_HEADER:
            raise CheckpointError(f"{path}: header length {header_len} exceeds the file; truncated or not safetensors")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    data_size = size - 8 - header_len
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry {info!r}") from None
        if begin < 0 or end < begin or any(d < 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has a negative size or byte range {info!r}")
        if end > data_size:
            raise CheckpointError(f"{path}: file is truncated (tensor {name!r} ends past the end of the file)")
        if end - begin != math.prod(shape) * dtype.itemsize:  # Python ints: no int64 wrap-around
            raise CheckpointError(f"{path}: tensor {name!r} has {end - begin} bytes for shape {shape}")
        out[name] = (dtype, shape, (begin, end))
    _check_byte_ranges_tile(path, out, data_size)
    return out


def _check_byte_ranges_tile(path, entries, data_size):
    """Refuses tensors whose byte ranges overlap or leave gaps, as the `safetensors` library does:
    the ranges, sorted, must tile the data section exactly. Overlap would let one tensor's bytes
    (an embedding) be read as another (a bias); a gap or trailing bytes are data nothing owns."""
    end_so_far, previous = 0, None
    for name, (_, _, (begin, end)) in sorted(entries.items(), key=lambda item: item[1][2]):
        if begin != end_so_far:
            what = "overlaps" if begin < end_so_far else "leaves a gap after"
            other = repr(previous) if previous is not None else "the start of the data"
            raise CheckpointError(f"{path}: tensor {name!r} (bytes {begin}..{end}) {what} {other}; tensors' byte "
                                  f"ranges must tile the data without overlaps or gaps")
        end_so_far, previous = end, name
    if end_so_far != data_size:
        raise CheckpointError(f"{path}: {data_size - end_so_far} bytes after the last tensor belong to no "
                              f"tensor; not a well-formed safetensors file")


class Shard:
    """One safetensors file; `opened()` maps it for the duration of a block."""

    def __init__(self, path):
        self.path = path
        self._mapping = None
        self._entries = None  # {name: (dtype, shape, (begin, end))}, validated against the file
        self._data_start = None

    @contextlib.contextmanager
    def opened(self):
        if self._mapping is not None:  # re-entrant: the outer block owns the mapping
            yield self
            return
        # Only opening is guarded: an error raised by the caller's block must pass through as it is.
        # The header is validated again at opening: the file may have changed since it was listed.
        self._entries = read_safetensors_header(self.path)
        try:
            with open(self.path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
            self._data_start = 8 + header_len
            self._mapping = np.memmap(self.path, dtype=np.uint8, mode="c")
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{self.path}: unreadable safetensors file ({e})") from None
        try:
            yield self
        finally:
            # Views handed out keep the map alive (numpy references it) until they are dropped.
            self._mapping = None

    def read(self, name):
        """The tensor as a view of the mapped file (a copy when its offset is not aligned to its
        dtype, which torch and XLA would not accept as a buffer)."""
        if self._mapping is None:
            with self.opened():
                return self.read(name)
        if name not in self._entries:
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r} (not in the file's header)")
        dtype, shape, (begin, end) = self._entries[name]
        start = self._data_start + begin
        raw = self._mapping[start:self._data_start + end]
        if start % dtype.itemsize:
            raw = raw.copy()
        return raw.view(dtype).reshape(shape)


class LazyTensor:
    """A tensor of a safetensors shard: `shape` and `dtype` from the header; `read()` the bytes."""

    __slots__ = ("shard", "name", "shape", "dtype")

    def __init__(self, shard, name, shape, dtype):
        self.shard, self.name, self.shape, self.dtype = shard, name, tuple(shape), dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def read(self):
        return self.shard.read(self.name)

    def __array__(self, dtype=None, copy=None):
        value = self.read()
        return value if dtype is None else value.astype(dtype)

    def __repr__(self):
        return f"LazyTensor({self.name!r}, shape={self.shape}, dtype={self.dtype}, file={self.shard.path!r})"


def open_safetensors(path):
    """{name: LazyTensor} of one safetensors file (its header checked; no tensor read)."""
    shard = Shard(path)
    return {name: LazyTensor(shard, name, shape, dtype)
            for name, (dtype, shape, _) in read_safetensors_header(path).items()}


def read_index(index_path):
    """The weight map of a `*.index.json`: {tensor name: shard file name}."""
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{index_path}: not a valid shard index ({type(e).__name__}: {e})") from None
    for filename in weight_map.values():
        if not isinstance(filename, str) or os.path.basename(filename) != filename:
            raise CheckpointError(f"{index_path}: shard name {filename!r} must be a plain file name")
    return weight_map


def open_sharded(index_path, open_file):
    """{name: tensor} of a sharded checkpoint, every shard's header checked before any tensor is read.

    `open_file(path)` opens one shard ({name: tensor}). Refuses a shard the index names but that is
    missing, a tensor the index places in a shard that lacks it, and a tensor held by two shards.
    """
    weight_map = read_index(index_path)
    directory = os.path.dirname(index_path)
    by_file = collections.defaultdict(list)
    for name, filename in weight_map.items():
        by_file[filename].append(name)
    shards = {}
    for filename in sorted(by_file):
        shard_path = os.path.join(directory, filename)
        if not os.path.isfile(shard_path):
            raise CheckpointError(f"{index_path}: shard {filename} is missing (it holds {by_file[filename][0]!r})")
        shards[filename] = open_file(shard_path)
    holder = {}
    for filename, tensors in shards.items():
        for name in tensors:
            if name in holder:
                raise CheckpointError(f"{index_path}: tensor {name!r} is held by two shards, {holder[name]} and "
                                      f"{filename}")
            holder[name] = filename
    out = {}
    for filename, names in sorted(by_file.items()):
        absent = [n for n in names if n not in shards[filename]]
        if absent:
            raise CheckpointError(f"{os.path.join(directory, filename)}: tensors listed in the index are "
                                  f"absent: {absent[:5]}")
        out.update({n: shards[filename][n] for n in names})
    return out


def shard_of(value):
    """The `Shard` a tensor is read from (None for an in-memory array)."""
    return value.shard if isinstance(value, LazyTensor) else None


def materialise(value):
    """A tensor's numpy value (reads a LazyTensor's bytes)."""
    return value.read() if isinstance(value, LazyTensor) else np.asarray(value)
