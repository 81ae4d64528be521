"""Bounds on the size fields of a config, so a hostile config.json cannot allocate without bound.

Three checks, at three moments:

- `check_file_values(values, specs, source)`: the raw dict of a config read from a file
  (config.json, a `.keras` archive) before the config object is made: every known field has the
  right type and lies in its range, so a wrong type is a `ConfigFieldTypeError` naming the field
  instead of an error from deep inside the constructor.
- `check_buildable(config, specs)`: where a model is built (a config made in Python may hold any
  value transformers allows, e.g. the 0s and 1s of its ConfigTester; only building needs bounds):
  the documented maxima below, which keep every derived table (relative-position rows, label
  maps) small.
- `check_against_checkpoint(config, tensors, source)` and `check_against_stored_weights(...)`:
  before any variable exists, the config's sizes against what the weights on disk imply (tensor
  headers of an HF checkpoint; the byte size of a `.keras` file's weights), so a model built from
  a checkpoint never costs more than its own tensors.

The maxima are far above every released checkpoint (DeBERTa-v3: vocab 128,100, 24 layers, 512
positions; DeepSeek-V2: vocab 102,400, 60 layers, 163,840 positions, 160 experts); README's
"Reliability bounds" section lists them.
"""

import math
import re

from layers.relative_position import MAX_RELATIVE_DISTANCE
from presets.errors import CheckpointError

MAX_VOCAB_SIZE = 2**22  # 4,194,304 rows
MAX_WIDTH = 2**16  # hidden / embedding / pooler width, MLA ranks
MAX_INTERMEDIATE_SIZE = 2**18
MAX_LAYERS = 1024
MAX_HEADS = 1024
MAX_HEAD_DIM = 2**12
MAX_POSITIONS = MAX_RELATIVE_DISTANCE  # DeBERTa's max_position_embeddings, relative span, buckets
MAX_ROTARY_POSITIONS = 2**24  # DeepSeek: rotary positions are computed per call, never tabled
MAX_SMALL_TABLE = 2**16  # type_vocab_size, conv kernels and groups
MAX_EXPERTS = 2**12
MAX_LABELS = 2**20


class ConfigFieldError(CheckpointError):
    """A config field holds a value no model can be built from; `field` names it."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


class ConfigFieldTypeError(ConfigFieldError):
    """A config field holds a value of the wrong type. Not a TypeError: Keras' deserialisation
    would bury a TypeError under a generic "could not be deserialized" message."""


# A field spec: (kind, low, high). Kinds: "int", "float", "bool", "str", "pos_att_type"; a trailing
# "?" allows None. low / high are inclusive (None: unbounded).
def int_field(low, high, optional=False):
    return ("int?" if optional else "int", low, high)


def float_field(low=None, high=None, low_open=False):
    return ("float>" if low_open else "float", low, high)


BOOL, STR, OPTIONAL_STR = ("bool", None, None), ("str", None, None), ("str?", None, None)

# Fields every config has (BaseConfig).
BASE_SPECS = {
    "num_labels": int_field(0, MAX_LABELS, optional=True),
    "output_hidden_states": BOOL, "output_attentions": BOOL, "return_dict": BOOL,
    "tie_word_embeddings": BOOL, "problem_type": OPTIONAL_STR,
}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _type_error(field, value, expected, source):
    return ConfigFieldTypeError(field, f"{source}: config field {field!r} must be {expected}, got "
                                       f"{type(value).__name__} {_short(value)}")


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_range(field, value, low, high, source, why=""):
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at most {high}" if low is None else f"at least {low}" if high is None else \
            f"in [{low}, {high}]"
        raise ConfigFieldError(field, f"{source}: config field {field!r} = {_short(value)} must be {bounds}{why}")


def check_value(field, value, spec, source="config"):
    """Checks one field's type and range (raises ConfigFieldTypeError / ConfigFieldError)."""
    kind, low, high = spec
    if kind.endswith("?"):
        if value is None:
            return
        kind = kind[:-1]
    if kind == "int":
        if not _is_int(value):
            raise _type_error(field, value, "an integer", source)
        _check_range(field, value, low, high, source)
    elif kind in ("float", "float>"):
        if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
            raise _type_error(field, value, "a finite number", source)
        if kind == "float>" and not value > low:
            raise ConfigFieldError(field, f"{source}: config field {field!r} must be > {low}, got {_short(value)}")
        _check_range(field, value, None if kind == "float>" else low, high, source)
    elif kind == "bool":
        if not (isinstance(value, bool) or value in (0, 1)) or isinstance(value, float):
            raise _type_error(field, value, "true or false", source)
    elif kind == "str":
        if not isinstance(value, str):
            raise _type_error(field, value, "a string", source)
    elif kind == "pos_att_type":
        items = value.split("|") if isinstance(value, str) else value
        if value is not None and (not isinstance(items, (list, tuple)) or
                                  not all(isinstance(x, str) for x in items)):
            raise _type_error(field, value, 'null, a "p2c|c2p" string or a list of strings', source)
    else:  # a spec typo in this package, not a user error
        raise AssertionError(f"unknown field kind {kind!r}")


def _check_label_map(values, source):
    id2label = values.get("id2label")
    if id2label is None:
        return
    if not isinstance(id2label, dict):
        raise _type_error("id2label", id2label, "an object of {label id: name}", source)
    if len(id2label) > MAX_LABELS:
        raise ConfigFieldError("id2label", f"{source}: id2label holds {len(id2label)} labels, more than {MAX_LABELS}")
    for key in id2label:
        if not (_is_int(key) or (isinstance(key, str) and re.fullmatch(r"\s*\d+\s*", key))):
            raise ConfigFieldTypeError("id2label", f"{source}: id2label keys must be label ids (non-negative "
                                                   f"integers), got {_short(key)}")
    label2id = values.get("label2id")
    if label2id is not None and (not isinstance(label2id, dict) or not all(_is_int(v) for v in label2id.values())):
        raise _type_error("label2id", label2id, "an object of {name: label id}", source)


def check_file_values(values, specs, source="config"):
    """Checks the fields of a config dict read from a file, before any config object exists."""
    for field, spec in {**BASE_SPECS, **specs}.items():
        if field in values:
            check_value(field, values[field], spec, source)
    _check_label_map(values, source)


def check_buildable(config, specs):
    """Checks a config's numeric fields against their bounds where a model is built from it (the
    other fields may hold what transformers allows in Python, e.g. an activation function)."""
    source = type(config).__name__
    for field, spec in {**BASE_SPECS, **specs}.items():
        value = getattr(config, field, None)
        if value is not None and spec[0].startswith(("int", "float")):
            check_value(field, value, spec, source)


def require_labels(config):
    """config.num_labels for a head with one output per label: at least 1 (a config may hold 0,
    as transformers allows; a head cannot be built from it)."""
    if not 1 <= config.num_labels <= MAX_LABELS:
        raise ConfigFieldError("num_labels", f"this head needs num_labels in [1, {MAX_LABELS}], got "
                                             f"{config.num_labels} (set num_labels or id2label)")
    return config.num_labels


# --- against the weights on disk -----------------------------------------------------------------


def _find(tensors, suffix):
    """The (name, shape) of the checkpoint tensor named `suffix` or ending in "." + suffix."""
    for name, value in tensors.items():
        if name == suffix or name.endswith("." + suffix):
            return name, tuple(value.shape)
    return None, None


LAYER_INDEX = r"(?:^|\.)layers?\.(\d+)\."


def count_indexed(tensors, pattern):
    """1 + the largest index `pattern` (a regex with one group of digits) finds in the names, or 0."""
    found = [int(m.group(1)) for m in (pattern.search(n) for n in tensors) if m]
    return max(found) + 1 if found else 0


def check_against_checkpoint(config, tensors, source):
    """Refuses a config whose sizes exceed the checkpoint's tensor headers, before any variable is
    built: building would allocate what the config claims, not what the file holds.

    The config names its claims (`config.checkpoint_shape_claims()`: (tensor suffix, axis, size,
    field) for tensors whose shape follows from a field; `config.checkpoint_count_claims()`:
    (regex with one group of digits, count, field) for numbered tensors such as layers or experts,
    of which the config may not claim more than the checkpoint holds). A size may be smaller than
    the file's: the loader then names the mis-shaped tensor (or re-initialises it with
    `ignore_mismatched_sizes`).
    """
    for suffix, axis, size, field in config.checkpoint_shape_claims():
        name, shape = _find(tensors, suffix)
        # Smaller than the file: the loader names the mis-shaped tensor (or re-initialises it with
        # ignore_mismatched_sizes); only a size past the file's would cost more than the file.
        if name is None or len(shape) <= axis or size <= shape[axis]:
            continue
        raise ConfigFieldError(field, f"{source}: config {field} implies {size} along axis {axis} of {name!r}, but "
                                      f"the checkpoint holds shape {list(shape)}; fix config.json")
    for pattern, count, field in config.checkpoint_count_claims():
        held = count_indexed(tensors, re.compile(pattern))
        if held and count > held:
            raise ConfigFieldError(field, f"{source}: config {field} = {count}, but the checkpoint holds {held}")


# Fewest bytes a stored weight can take (int4 packs two per byte).
_MIN_BYTES_PER_WEIGHT = 0.5


def check_against_stored_weights(config, stored_bytes, source):
    """Refuses a config that implies more weights than `stored_bytes` can hold (a `.keras` file's
    weights member), before any layer is built. `config.minimum_weight_count()` is a lower bound
    on the weights any model of that config has."""
    needed = config.minimum_weight_count()
    if needed * _MIN_BYTES_PER_WEIGHT > stored_bytes + 2**20:
        raise ConfigFieldError(
            None, f"{source}: the config implies at least {needed:,} weights, more than the "
                                 f"{stored_bytes:,} bytes of stored weights can hold (check num_hidden_layers, "
                                 f"vocab_size and the widths)")
