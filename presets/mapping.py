"""Moving checkpoint tensors onto Keras variables, with every mismatch reported by name.

A model family describes its checkpoint as {hf_name: (keras_variable or StackSlice, transform)};
this module aligns the base-model prefix, applies the transforms and refuses to load when a tensor
is missing, unexpected or mis-shaped (except names the family lists as ignorable). Loading and
saving move one tensor at a time in the variables' own dtype.
"""

import contextlib
import os
import re
import warnings

import numpy as np

from presets.errors import CheckpointError
from presets.placement import assign_entry_permuted, assign_permuted, read_permuted
from presets.progress import byte_progress, tensor_nbytes
from presets.sources import materialise, shard_of

# How an HF (PyTorch-layout) tensor becomes a Keras variable value: an axis permutation (each is
# its own inverse). Loading and saving run it with the backend's transpose (numpy's strided copy
# of a large bf16 matrix runs at a few percent of memory speed).
PERMUTATIONS = {
    "identity": None,
    "linear": (1, 0),  # torch Linear [out, in] -> Keras Dense kernel [in, out]
    "conv1d": (2, 1, 0),  # torch Conv1d [out, in/g, k] -> Keras [k, in/g, out]
}
TRANSFORMS = {name: (lambda a, p=perm: a if p is None else np.transpose(a, p)) for name, perm in PERMUTATIONS.items()}
INVERSE_TRANSFORMS = TRANSFORMS


def stacked(perm):
    """The permutation of a stack [E, ...] whose entries each take `perm`."""
    return None if perm is None else (0,) + tuple(p + 1 for p in perm)

# Older checkpoints (and HF's own TF conversion) name LayerNorm parameters gamma / beta.
_LEGACY_SUFFIXES = ((".gamma", ".weight"), (".beta", ".bias"))


def _normalise_names(tensors):
    out = {}
    for name, value in tensors.items():
        for old, new in _LEGACY_SUFFIXES:
            if name.endswith(old) and "LayerNorm" in name:
                name = name[: -len(old)] + new
        out[name] = value
    return out


def align_prefix(tensors, expected_names, prefix):
    """Adds or strips the base-model prefix (e.g. "deberta.") so checkpoint names meet the model's.

    A base model loaded from a task checkpoint strips the prefix; the task heads' tensors (outside
    the prefix) are returned separately as belonging to another head. A task model loaded from a
    base checkpoint gets the prefix added.

    Returns:
        (tensors, other_head_names)
    """
    if not prefix:
        return tensors, []
    dotted = prefix + "."
    model_has_prefix = any(n.startswith(dotted) for n in expected_names)
    ckpt_has_prefix = any(n.startswith(dotted) for n in tensors)
    if ckpt_has_prefix and not model_has_prefix:
        kept = {n[len(dotted):]: v for n, v in tensors.items() if n.startswith(dotted)}
        others = sorted(n for n in tensors if not n.startswith(dotted))
        return kept, others
    if model_has_prefix and not ckpt_has_prefix:
        return {dotted + n: v for n, v in tensors.items()}, []
    return tensors, []


class StackSlice:
    """Entry `index` (along axis 0) of a stacked variable, e.g. one expert of an [E, in, out] stack,
    so a checkpoint that stores each entry as its own tensor maps onto one variable.

    Loading fills a host buffer of the variable's dtype slice by slice and assigns the variable once
    when every entry has arrived; saving reads the variable once for all its entries (`HostReader`).
    """

    def __init__(self, variable, index):
        self.variable, self.index = variable, index
        self.shape = tuple(variable.shape[1:])
        self.dtype = variable.dtype


def variable_of(slot):
    """The Keras variable behind a spec's slot (a variable or a StackSlice)."""
    return slot.variable if isinstance(slot, StackSlice) else slot


def release_free_memory():
    """Hands freed heap pages back to the OS (glibc `malloc_trim`). Each tensor's host copies are
    freed after its assignment, but glibc keeps freed chunks below its (self-raising) mmap threshold
    in the heap, where they would count against the process until exit; trimming every few
    megabytes keeps the peak near the model's own bytes. A no-op where glibc is absent."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None
_TRIM_BYTES = 16 * 2**20  # trim after freeing this much (a trim costs about a millisecond)


def numpy_dtype(dtype):
    """A Keras or backend dtype ("bfloat16", torch.float32, ...) as a numpy dtype (bf16: ml_dtypes)."""
    import keras
    import ml_dtypes  # noqa: F401  (registers "bfloat16" with numpy)

    return np.dtype(keras.backend.standardize_dtype(dtype))


class _StackFiller:
    """Entries of stacked variables. On PyTorch each entry is written straight into its slice of
    the variable. Elsewhere (immutable arrays) a host buffer per variable is allocated on first use
    in the checkpoint's layout ([E, out, in]) and the variable's dtype: each entry is one plain copy
    into it, and the whole stack is permuted once, by the backend, when its last entry arrives."""

    def __init__(self):
        self.pending = {}

    def put(self, slot, array, transform):
        if assign_entry_permuted(slot.variable, slot.index, array, PERMUTATIONS[transform]):
            return  # written straight into the variable (torch)
        key = id(slot.variable)
        if key not in self.pending:
            shape = (slot.variable.shape[0],) + _hf_shape(slot, transform)
            self.pending[key] = (np.empty(shape, dtype=numpy_dtype(slot.variable.dtype)), set())
        buffer, seen = self.pending[key]
        buffer[slot.index] = array
        seen.add(slot.index)
        if len(seen) == buffer.shape[0]:
            del self.pending[key]
            assign_permuted(slot.variable, buffer, stacked(PERMUTATIONS[transform]))


def spec_order(specs):
    """{name: sort key} that keeps the entries of one stacked variable together (in index order)
    and everything else in the specs' order, so at most one stack is buffered at a time."""
    first = {}
    for position, (slot, _) in enumerate(specs.values()):
        first.setdefault(id(variable_of(slot)), position)
    return {name: (first[id(variable_of(slot))], slot.index if isinstance(slot, StackSlice) else 0)
            for name, (slot, _) in specs.items()}


def _hf_shape(slot, transform):
    return tuple(INVERSE_TRANSFORMS[transform](np.empty(slot.shape, dtype=np.uint8)).shape)


def load_tensors_into(specs, tensors, *, source, prefix=None, ignorable=(), allow_missing=(),
                      ignore_mismatched_sizes=False, sink=None):
    """Assigns checkpoint tensors to Keras variables, one tensor at a time.

    Every name, shape and dtype is checked first (from the headers of lazily opened shards), so a
    bad checkpoint is refused before any variable changes. Then each tensor is read, transposed,
    cast to its variable's dtype, assigned and dropped, shard by shard (each shard mapped only
    while its own tensors are read); no float32 copy of the model ever exists.

    Args:
        specs: {hf_name: (keras_variable or StackSlice, transform_name)}.
        tensors: {hf_name: numpy array or LazyTensor} (`presets.readers.open_checkpoint`).
        source: the file, for messages.
        prefix: base-model prefix ("deberta") to align between base and task checkpoints.
        ignorable: regexes of checkpoint names that may be present without a variable.
        allow_missing: regexes of model names that may be absent (they keep their initial value).
        ignore_mismatched_sizes: skip (keep initialised) tensors whose shape differs instead of
            failing, as transformers' flag of that name (e.g. a classifier with another num_labels);
            each skipped tensor is named in a warning with both shapes.
        sink: where each checked tensor goes once read: an object with `begin(specs, names)` (the
            names about to arrive, after every check passed) and `put(name, slot, transform, array)`;
            default: assigned to its variable as it is (presets/quantized_loading.py quantizes
            instead).
    Returns:
        dict with "ignored" (checkpoint names not used: other task heads, ignorable names),
        "missing" (allowed missing names) and "mismatched" (skipped names).
    Raises:
        CheckpointError naming every missing, unexpected, mis-shaped or non-float tensor.
    """
    tensors = _normalise_names(tensors)
    tensors, other_heads = align_prefix(tensors, specs.keys(), prefix)
    ignore = [re.compile(p) for p in ignorable]
    optional = [re.compile(p) for p in allow_missing]

    if prefix and any(n.startswith(prefix + ".") for n in specs):
        # A task model: checkpoint tensors outside the base model belong to another task's head,
        # which transformers drops with a warning; ours are listed in the result.
        other_heads += sorted(n for n in tensors if n not in specs and not n.startswith(prefix + "."))
        tensors = {n: v for n, v in tensors.items() if n in specs or n.startswith(prefix + ".")}
    missing = [n for n in specs if n not in tensors and not any(p.search(n) for p in optional)]
    unexpected = [n for n in tensors if n not in specs and not any(p.search(n) for p in ignore)]
    mismatched = []
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(sorted(missing))}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(sorted(unexpected))}")
    to_load = []
    for name, (slot, transform) in specs.items():
        if name not in tensors:
            continue
        got, want = tuple(tensors[name].shape), _hf_shape(slot, transform)
        if got != want:
            if ignore_mismatched_sizes:
                mismatched.append((name, got, want))
                continue
            problems.append(f"tensor {name} has shape {got}, the model expects {want}"
                            f" (pass ignore_mismatched_sizes=True to re-initialise it)")
            continue
        if not np.issubdtype(np.dtype(tensors[name].dtype), np.floating) and str(tensors[name].dtype) != "bfloat16":
            problems.append(f"tensor {name} has dtype {tensors[name].dtype}, expected floating point")
            continue
        to_load.append(name)
    if problems:
        raise CheckpointError(f"cannot load {source}: " + "; ".join(problems))
    if mismatched:
        warnings.warn(f"{source}: re-initialised {len(mismatched)} tensor(s) whose shape differs from the model "
                      "(ignore_mismatched_sizes=True): " + "; ".join(
                          f"{n}: checkpoint {got}, model {want}" for n, got, want in mismatched)
                      + ". Train them before use.", stacklevel=3)

    # Shard by shard (in-memory arrays first), and within a shard in spec order with each stack's
    # entries together, so at most one stack buffer and one mapped shard exist at a time.
    order = spec_order(specs)
    by_shard = {}
    for name in to_load:
        by_shard.setdefault(shard_of(tensors[name]), []).append(name)
    sink = FloatSink() if sink is None else sink
    sink.begin(specs, to_load)
    total = sum(tensor_nbytes(tensors[n].shape, tensors[n].dtype) for n in to_load)
    with byte_progress(total, f"Loading {os.path.basename(os.fspath(source))}") as advance:
        _assign_by_shard(specs, tensors, by_shard, order, sink, advance)
    release_free_memory()
    ignored = sorted(set(tensors) - set(specs)) + other_heads
    if other_heads:  # transformers' "Some weights of the model checkpoint ... were not used"
        shown = ", ".join(other_heads[:8]) + (f" and {len(other_heads) - 8} more" if len(other_heads) > 8 else "")
        warnings.warn(f"{source}: {len(other_heads)} checkpoint tensor(s) this model does not use were ignored "
                      f"(another task's head): {shown}", stacklevel=3)
    missing_ok = sorted(n for n in specs if n not in tensors)
    return {"ignored": ignored, "missing": missing_ok, "mismatched": [n for n, _, _ in mismatched]}


class FloatSink:
    """The plain load: each tensor assigned to its variable (stack entries through `_StackFiller`)."""

    def __init__(self):
        self.stacks = _StackFiller()

    def begin(self, specs, names):
        pass

    def put(self, name, slot, transform, array):
        if isinstance(slot, StackSlice):
            self.stacks.put(slot, array, transform)  # copied (and cast) into the stack's buffer
        else:
            assign_permuted(slot, array, PERMUTATIONS[transform])  # cast + permuted by the backend


def _assign_by_shard(specs, tensors, by_shard, order, sink, advance):
    """Reads, converts and assigns every tensor of `by_shard` ({shard: names}), one shard mapped at
    a time; `advance(nbytes)` after each (a progress bar)."""
    unreturned = 0  # bytes of host copies freed since the last trim
    for shard, names in sorted(by_shard.items(), key=lambda kv: "" if kv[0] is None else kv[0].path):
        with (shard.opened() if shard is not None else contextlib.nullcontext()):
            for name in sorted(names, key=order.__getitem__):
                slot, transform = specs[name]
                array = materialise(tensors[name])  # [HF layout], the file's dtype
                sink.put(name, slot, transform, array)
                advance(array.nbytes)
                unreturned += 3 * array.nbytes
                del array
                if unreturned >= _TRIM_BYTES:
                    release_free_memory()
                    unreturned = 0


def add_dense_specs(specs, name, layer):
    """Adds a keras Dense layer under an HF nn.Linear name: `{name}.weight` ([out, in]) and bias."""
    specs[f"{name}.weight"] = (layer.kernel, "linear")
    if layer.use_bias:
        specs[f"{name}.bias"] = (layer.bias, "identity")


def add_layer_norm_specs(specs, name, layer):
    """Adds a keras LayerNormalization under an HF nn.LayerNorm name (weight = gamma, bias = beta)."""
    specs[f"{name}.weight"] = (layer.gamma, "identity")
    specs[f"{name}.bias"] = (layer.beta, "identity")


class HostReader:
    """Reads checkpoint tensors (HF layout, the variable's dtype) from the variables one at a time;
    the entries of a stacked variable share one host copy of the stack (the last one read)."""

    def __init__(self):
        self._stack_key, self._stack = None, None

    def read(self, slot, transform):
        perm = PERMUTATIONS[transform]
        if isinstance(slot, StackSlice):
            if self._stack_key != id(slot.variable):
                self._stack_key, self._stack = None, None  # drop the previous stack first
                self._stack = read_permuted(slot.variable, stacked(perm))  # [E, out, in]
                self._stack_key = id(slot.variable)
            return self._stack[slot.index]
        return read_permuted(slot, perm)

    def release(self):
        self._stack_key, self._stack = None, None


def hf_tensor_layout(specs):
    """{hf_name: (shape, numpy dtype)} of the checkpoint `specs` would write, from shapes only."""
    return {name: (_hf_shape(slot, transform), numpy_dtype(slot.dtype)) for name, (slot, transform) in specs.items()}


def collect_tensors(specs):
    """The inverse of loading: {hf_name: numpy array in HF layout, in the variable's dtype}."""
    reader = HostReader()
    return {name: reader.read(slot, transform) for name, (slot, transform) in specs.items()}
