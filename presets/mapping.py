"""Moving checkpoint tensors onto Keras variables, with every mismatch reported by name.

A model family describes its checkpoint as {hf_name: (keras_variable, transform)}; this module
aligns the base-model prefix, applies the transforms and refuses to load when a tensor is missing,
unexpected or mis-shaped (except names the family lists as ignorable).
"""

import re

import numpy as np

from presets.errors import CheckpointError
from presets.placement import assign_from_host

# How an HF (PyTorch-layout) tensor becomes a Keras variable value.
TRANSFORMS = {
    "identity": lambda a: a,
    "linear": lambda a: a.T,  # torch Linear [out, in] -> Keras Dense kernel [in, out]
    "conv1d": lambda a: np.transpose(a, (2, 1, 0)),  # torch Conv1d [out, in/g, k] -> Keras [k, in/g, out]
}
INVERSE_TRANSFORMS = {
    "identity": lambda a: a,
    "linear": lambda a: a.T,
    "conv1d": lambda a: np.transpose(a, (2, 1, 0)),
}

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


def load_tensors_into(specs, tensors, *, source, prefix=None, ignorable=(), allow_missing=(),
                      ignore_mismatched_sizes=False):
    """Assigns checkpoint tensors to Keras variables.

    Args:
        specs: {hf_name: (keras_variable, transform_name)}.
        tensors: {hf_name: numpy array} as read from the checkpoint.
        source: the file, for messages.
        prefix: base-model prefix ("deberta") to align between base and task checkpoints.
        ignorable: regexes of checkpoint names that may be present without a variable.
        allow_missing: regexes of model names that may be absent (they keep their initial value).
        ignore_mismatched_sizes: skip (keep initialised) tensors whose shape differs instead of
            failing, as transformers' flag of that name (e.g. a classifier with another num_labels).
    Returns:
        dict with "ignored" (checkpoint names not used: other task heads, ignorable names),
        "missing" (allowed missing names) and "mismatched" (skipped names).
    Raises:
        CheckpointError naming every missing, unexpected or mis-shaped tensor.
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
    values = {}
    for name, (variable, transform) in specs.items():
        if name not in tensors:
            continue
        value = TRANSFORMS[transform](np.asarray(tensors[name]))
        if tuple(value.shape) != tuple(variable.shape):
            if ignore_mismatched_sizes:
                mismatched.append(name)
                continue
            problems.append(
                f"tensor {name} has shape {tuple(tensors[name].shape)}, the model expects "
                f"{tuple(INVERSE_TRANSFORMS[transform](np.empty(variable.shape, dtype=np.uint8)).shape)}"
                f" (pass ignore_mismatched_sizes=True to re-initialise it)"
            )
            continue
        if not np.issubdtype(value.dtype, np.floating):
            problems.append(f"tensor {name} has dtype {value.dtype}, expected floating point")
            continue
        values[name] = value
    if problems:
        raise CheckpointError(f"cannot load {source}: " + "; ".join(problems))
    for name, value in values.items():
        variable = specs[name][0]
        assign_from_host(variable, value.astype(variable.dtype))  # split variables: per-device slices
    ignored = sorted(set(tensors) - set(specs)) + other_heads
    missing_ok = sorted(n for n in specs if n not in tensors)
    return {"ignored": ignored, "missing": missing_ok, "mismatched": mismatched}


def add_dense_specs(specs, name, layer):
    """Adds a keras Dense layer under an HF nn.Linear name: `{name}.weight` ([out, in]) and bias."""
    specs[f"{name}.weight"] = (layer.kernel, "linear")
    if layer.use_bias:
        specs[f"{name}.bias"] = (layer.bias, "identity")


def add_layer_norm_specs(specs, name, layer):
    """Adds a keras LayerNormalization under an HF nn.LayerNorm name (weight = gamma, bias = beta)."""
    specs[f"{name}.weight"] = (layer.gamma, "identity")
    specs[f"{name}.bias"] = (layer.beta, "identity")


def collect_tensors(specs):
    """The inverse of loading: {hf_name: numpy array in HF layout} from the Keras variables."""
    from keras import ops

    out = {}
    for name, (variable, transform) in specs.items():
        value = np.asarray(ops.convert_to_numpy(variable), dtype=np.float32)
        out[name] = np.ascontiguousarray(INVERSE_TRANSFORMS[transform](value))
    return out
