"""HF's legacy TensorFlow weights (`tf_model.h5`, Keras-2 `save_weights` layout), read in a child process.

HDF5 is a large C library parsing an untrusted file: a few flipped bytes in an attribute make it
loop forever (found by tests/test_checkpoint_fuzz.py), and its history has memory-safety bugs. So
the file is parsed by this module run as a script in a child process with a time limit and an
address-space limit, which writes the tensors to an uncompressed `.npz` that the parent reads with
`allow_pickle=False`. A hang, a crash or an allocation past the limit in HDF5 costs the child, not
the caller. The child imports only numpy and h5py (never this package's __init__, which imports Keras).

Layout: root attribute `layer_names` (top-level layers), each layer group's `weight_names` (full
variable names whose slashes are nested groups). A name seen twice (a tied embedding listed again
under the MLM head) must carry the same value.
"""

import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np


class H5ReadError(Exception):
    """The file is not a readable HF TF weights file; the message says why."""


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


def _read_in_this_process(path, budget_bytes):
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as e:
        raise H5ReadError(f"not a readable HDF5 file (truncated or corrupt: {e})") from None
    out = {}
    with f:
        try:
            layer_names = _h5_string_list(f.attrs, "layer_names")
            if not layer_names:
                raise H5ReadError("no 'layer_names' attribute; not an HF TF weights file")
            for layer_name in layer_names:
                group = f[layer_name]
                for weight_name in _h5_string_list(group.attrs, "weight_names"):
                    dataset = group[weight_name]
                    if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind not in "fiub":
                        raise H5ReadError(f"{weight_name!r} is not a numeric dataset")
                    # A chunked dataset may declare any shape over a few bytes of fill value.
                    budget_bytes -= math.prod(dataset.shape) * dataset.dtype.itemsize
                    if budget_bytes < 0:
                        raise H5ReadError(f"{weight_name!r} takes the tensors past 8x the file size")
                    array = np.asarray(dataset)
                    name, transpose = tf_name_to_pt(weight_name, array.ndim)
                    if transpose == "linear":
                        array = array.T
                    elif transpose == "conv1d":
                        array = np.transpose(array, (2, 1, 0))
                    array = np.ascontiguousarray(array)
                    if name in out:
                        if out[name].shape != array.shape or not np.array_equal(out[name], array):
                            raise H5ReadError(f"two different TF variables map to {name!r}")
                        continue
                    out[name] = array
        except (KeyError, OSError, RuntimeError, TypeError, ValueError) as e:
            raise H5ReadError(f"corrupt HF TF weights file ({type(e).__name__}: {e})") from None
    return out


def _budget(path):
    return 8 * os.path.getsize(path) + 2**26


def read_tf_h5_sandboxed(path):
    """{pytorch-style name: numpy array} from `path`, parsed in a limited child process.

    Raises:
        H5ReadError with the reason (corrupt file, too large, or HDF5 hung or crashed).
    """
    size = os.path.getsize(path)
    with tempfile.TemporaryDirectory(prefix="tf_h5_") as scratch:
        result = os.path.join(scratch, "tensors.npz")
        try:
            child = subprocess.run(
                # -I: no script directory on sys.path (presets/ holds names like config.py), no user site.
                [sys.executable, "-I", os.path.abspath(__file__), os.path.abspath(path), result],
                capture_output=True, text=True, timeout=60 + size / 20e6,
            )
        except subprocess.TimeoutExpired:
            raise H5ReadError("HDF5 did not finish parsing the file in time (corrupt or hostile file)") from None
        if child.returncode != 0:
            lines = child.stderr.strip().splitlines()
            reason = lines[-1] if child.returncode == 2 and lines else f"HDF5 failed (exit status {child.returncode})"
            raise H5ReadError(reason)
        with np.load(result, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}


def _main(path, result):
    import resource

    # Address space: the tensors' bound plus the interpreter, numpy and HDF5 themselves.
    limit = _budget(path) * 2 + 2**31
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        tensors = _read_in_this_process(path, _budget(path))
    except (H5ReadError, MemoryError) as e:
        print(f"{type(e).__name__}: {e}" if isinstance(e, MemoryError) else str(e), file=sys.stderr)
        sys.exit(2)
    np.savez(result, **tensors)


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
