"""Hostile weight files: every reader answers CheckpointError or a bounded, correct load, never a
crash, an out-of-bounds read, a hang or an allocation beyond a multiple of the file's size.

The targeted cases are the attacks that once worked on the `.bin` reader (a negative storage
offset read memory outside the storage, a negative stride crashed the process, zero strides or a
deflated member inflated a 1 KB file to gigabytes). The fuzz loop mutates real small checkpoints of
every format written by transformers / torch / h5py and runs in a subprocess under an address-space
limit, so an unbounded allocation fails the test instead of the machine.
"""

import collections
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from hf_reference import build_hf_model, hf_config
from presets.errors import CheckpointError
from presets.readers import read_tf_h5, read_torch_bin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- hand-written PyTorch pickles ------------------------------------------------------------------


class _Storage:
    """Placeholder pickled as a persistent id, like torch's storages."""


class _View:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        import torch._utils

        return torch._utils._rebuild_tensor_v2, self.args


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            import torch

            return ("storage", torch.FloatStorage, "0", "cpu", 4)
        return None


def write_bin(path, offset=0, size=(2, 2), stride=(2, 1), storage=np.arange(4, dtype=np.float32),
              compress=zipfile.ZIP_STORED):
    """A pytorch_model.bin holding one tensor `w` viewed over `storage` as torch would pickle it."""
    import io

    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(collections.OrderedDict(w=_View(_Storage(), offset, size, stride)))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buffer.getvalue())
        zf.writestr("archive/byteorder", "little")
        zf.writestr(zipfile.ZipInfo("archive/data/0"), storage.tobytes(), compress_type=compress)
    return str(path)


def test_hand_written_pickle_reads_like_torch(tmp_path):
    # The writer above is only a fair attacker if a well-formed file from it loads correctly.
    got = read_torch_bin(write_bin(tmp_path / "ok.bin", offset=1, size=(3,), stride=(1,)))
    np.testing.assert_array_equal(got["w"], np.array([1.0, 2.0, 3.0], dtype=np.float32))


@pytest.mark.parametrize(
    "view, message",
    [
        (dict(offset=-3, size=(2,), stride=(1,)), "storage offset"),
        (dict(offset=0, size=(2, 2), stride=(-1, 1)), "stride"),
        (dict(offset=0, size=(100000, 100000), stride=(0, 0)), "elements over a storage of 4"),
        (dict(offset=2, size=(2, 2), stride=(2, 1)), "reaches element"),
        (dict(offset=0, size=(2, -2), stride=(1, 1)), "size"),
        (dict(offset=0, size=(2, 2), stride=(1,)), "rank"),
    ],
)
def test_hostile_tensor_views_are_named_errors(tmp_path, view, message):
    path = write_bin(tmp_path / "bad.bin", **view)
    with pytest.raises(CheckpointError, match=message) as err:
        read_torch_bin(path)
    assert "'w'" in str(err.value)


def test_compressed_members_are_refused(tmp_path):
    # 64 MB of zeros deflate to ~64 KB: a reader that inflates members would materialise them.
    zeros = np.zeros(2**24, dtype=np.float32)
    path = write_bin(tmp_path / "zip.bin", size=(4,), stride=(1,), storage=zeros, compress=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 2**20
    with pytest.raises(CheckpointError, match="compressed"):
        read_torch_bin(path)


def test_h5_dataset_declaring_a_huge_shape_is_refused(tmp_path):
    import h5py

    path = str(tmp_path / "tf_model.h5")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"deberta"]
        group = f.create_group("deberta")
        # Chunked with a fill value: ~1 KB on disk, 40 GB if read.
        group.create_dataset("deberta/w:0", shape=(100000, 100000), dtype="f4", chunks=(16, 16))
        group.attrs["weight_names"] = [b"deberta/w:0"]
    assert os.path.getsize(path) < 2**16
    with pytest.raises(CheckpointError, match="8x the file size"):
        read_tf_h5(path)


# --- mutation fuzzing in a memory-limited subprocess ----------------------------------------------

_FUZZ_WORKER = textwrap.dedent(
    """
    import json, os, resource, sys, types
    repo, cases_file = sys.argv[1], sys.argv[2]
    # Import the readers without the package's __init__ (which imports Keras): a few MB of numpy
    # and h5py fit easily under the address-space limit below.
    package = types.ModuleType("presets"); package.__path__ = [os.path.join(repo, "presets")]
    sys.modules["presets"] = package
    import h5py, numpy
    from presets.errors import CheckpointError
    from presets.readers import read_weight_file
    limit = 2 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    bad = []
    for path in json.load(open(cases_file)):
        print(os.path.basename(path), file=sys.stderr, flush=True)  # the culprit if it hangs
        try:
            tensors = read_weight_file(path)
            assert all(isinstance(v, numpy.ndarray) for v in tensors.values())
        except CheckpointError:
            pass
        except BaseException as e:  # MemoryError included: an allocation past the bound
            bad.append(f"{os.path.basename(path)}: {type(e).__name__}: {e}"[:300])
    print(json.dumps(bad))
    """
)


def _mutations(data, rng, count):
    """Byte-level mutations: flips, overwrites with edge values, truncations, splices."""
    edges = [b"\x00" * 8, b"\xff" * 8, b"\x7f\xff\xff\xff\xff\xff\xff\xff", b"\x80" + b"\x00" * 7,
             (2**31).to_bytes(8, "little"), b"-1", b"99999999999"]
    out = []
    for _ in range(count):
        buf = bytearray(data)
        kind = rng.randint(4)
        # Headers (safetensors JSON, zip directories, pickles, HDF5 superblocks) sit in the first and
        # last kilobytes: aim most mutations there.
        region = rng.randint(3)
        span = min(len(buf), 1024)
        pos = int(rng.randint(span)) if region == 0 else len(buf) - 1 - int(rng.randint(span)) \
            if region == 1 else int(rng.randint(len(buf)))
        if kind == 0:
            buf[pos] ^= 1 << int(rng.randint(8))
        elif kind == 1:
            edge = edges[rng.randint(len(edges))]
            buf[pos:pos + len(edge)] = edge
        elif kind == 2:
            del buf[int(rng.randint(len(buf))):]
        else:
            start = int(rng.randint(len(buf)))
            buf[pos:pos + 16] = bytes(buf[start:start + 16])
        out.append(bytes(buf))
    return out


def _safetensors_header_mutations(data, rng, count):
    """Structured edits of a safetensors JSON header: offsets, shapes and dtypes at their edges."""
    (length,) = np.frombuffer(data[:8], dtype="<u8")
    header = json.loads(data[8:8 + int(length)])
    names = [n for n in header if n != "__metadata__"]
    values = [-1, 0, 1, 2**31, 2**62, 10**12]
    out = []
    for _ in range(count):
        edited = json.loads(json.dumps(header))
        entry = edited[names[rng.randint(len(names))]]
        field = ["data_offsets", "shape", "dtype"][rng.randint(3)]
        if field == "dtype":
            entry["dtype"] = ["F64", "I8", "BOOL", "X9", "BF16", 3][rng.randint(6)]
        elif entry[field]:
            entry[field][rng.randint(len(entry[field]))] = values[rng.randint(len(values))]
        raw = json.dumps(edited).encode()
        out.append(len(raw).to_bytes(8, "little") + raw + data[8 + int(length):])
    return out


def _bin_view_mutations(rng, count, directory):
    values = [-(2**40), -1, 0, 1, 3, 2**31, 2**62]
    paths = []
    for i in range(count):
        rank = int(rng.randint(1, 4))
        pick = lambda: int(values[rng.randint(len(values))])  # noqa: E731
        paths.append(write_bin(os.path.join(directory, f"view{i}.bin"), offset=pick(),
                               size=[pick() for _ in range(rank)], stride=[pick() for _ in range(rank)]))
    return paths


def test_mutated_checkpoints_of_every_format_never_crash_or_explode(tmp_path):
    import safetensors.torch
    import torch

    from test_checkpoints import _write_hf_tf_h5

    model = build_hf_model(hf_config(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, vocab_size=40))
    sources = tmp_path / "sources"
    sources.mkdir()
    torch.save(model.state_dict(), sources / "pytorch_model.bin")
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(sources / "model.safetensors"))
    _write_hf_tf_h5(model, str(sources))
    # FUZZ_SEED / FUZZ_CASES widen the search locally; CI runs the fixed, small default.
    rng = np.random.RandomState(int(os.environ.get("FUZZ_SEED", 0)))
    cases = tmp_path / "cases"
    cases.mkdir()
    paths = _bin_view_mutations(rng, 40, str(cases))
    for name in ("pytorch_model.bin", "model.safetensors", "tf_model.h5"):
        data = (sources / name).read_bytes()
        # Each .h5 case costs a child process (the reader sandboxes HDF5), so fewer of them.
        count = int(os.environ.get("FUZZ_CASES", 60)) // (3 if name.endswith(".h5") else 1)
        mutated = _mutations(data, rng, count)
        if name.endswith(".safetensors"):
            mutated += _safetensors_header_mutations(data, rng, 40)
        stem, suffix = name.split(".", 1)
        for i, blob in enumerate(mutated):
            path = cases / f"{stem}-{i}.{suffix}"
            path.write_bytes(blob)
            paths.append(str(path))
    listing = tmp_path / "cases.json"
    listing.write_text(json.dumps(paths))
    worker = tmp_path / "worker.py"
    worker.write_text(_FUZZ_WORKER)
    try:
        result = subprocess.run([sys.executable, str(worker), REPO, str(listing)], capture_output=True,
                                text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        last = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        pytest.fail(f"a reader hung on {last}")
    assert result.returncode == 0, f"the reader process died ({result.returncode}): {result.stderr[-2000:]}"
    bad = json.loads(result.stdout.strip().splitlines()[-1])
    assert not bad, f"{len(bad)} of {len(paths)} hostile files escaped as non-CheckpointError:\n" + "\n".join(bad[:20])
