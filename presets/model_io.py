"""What both model families share at their boundary: HF-style inputs in (parsed and checked),
HF-style outputs out."""

import contextlib

import keras
import numpy as np
from keras import ops

from presets import keras_compat

# Every output name a task model of either family can return (transformers' ModelOutput fields):
# reading one that a call did not produce gives None, as in transformers; any other name is a typo
# and raises AttributeError.
OUTPUT_FIELDS = frozenset({
    "loss", "logits", "last_hidden_state", "hidden_states", "attentions", "start_logits", "end_logits",
    "sequences", "scores",  # generate(return_dict_in_generate=True)
})
# Call options that may also arrive inside the input dict, as HF's TF models accepted them.
OUTPUT_FLAGS = ("output_attentions", "output_hidden_states", "return_dict")


class ModelOutput(dict):
    """A dict of model outputs with attribute and index access, as transformers' ModelOutput.

    Only entries that are not None are stored, in the order given, so `out[0]` is the first
    output (e.g. `logits`, or `loss` when labels were given) and `out.to_tuple()` equals the
    `return_dict=False` result. It is registered as a tree node with Keras (and JAX), so `fit`,
    `predict` and compiled functions can pass it through.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            if value is not None:
                self[key] = value

    def __getattr__(self, name):
        if name in self:
            return self[name]
        if name in OUTPUT_FIELDS:  # an output this call did not produce, e.g. unrequested hidden_states
            return None
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}; it holds {list(self)}")

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self):
        return tuple(self.values())

    # Tree protocol (optree / keras.tree): children in key order, keys as metadata.
    def tree_flatten(self):
        keys = tuple(self.keys())
        return tuple(self[k] for k in keys), keys, keys

    @classmethod
    def tree_unflatten(cls, keys, children):
        out = cls()
        for key, value in zip(keys, children):
            dict.__setitem__(out, key, value)
        return out

    # The same protocol in torch.utils._pytree's spelling (Keras' torch backend uses it).
    def torchtree_flatten(self):
        return list(self.values()), list(self.keys())

    @classmethod
    def torchtree_unflatten(cls, children, keys):
        return cls.tree_unflatten(keys, children)

    def torchtree_flatten_with_keys(self):
        from torch.utils._pytree import MappingKey

        return [(MappingKey(k), v) for k, v in self.items()], list(self.keys())


def _register_tree_node():
    keras_compat.register_tree_node_class(ModelOutput)
    if keras.backend.backend() == "jax":
        import jax

        jax.tree_util.register_pytree_node(
            ModelOutput,
            lambda o: (tuple(o.values()), tuple(o.keys())),
            lambda keys, children: ModelOutput.tree_unflatten(keys, children),
        )


_register_tree_node()


def unpack_inputs(input_ids, names, kwargs):
    """Normalises the calling conventions of HF's TF models into one dict of tensors.

    `input_ids` may be a tensor / array, a dict keyed by input names, or a list / tuple in the
    order of `names`; keyword arguments fill what the first argument did not. A name given twice
    is an error rather than a silent choice.
    """
    values = {}
    if isinstance(input_ids, dict):
        unknown = set(input_ids) - set(names)
        if unknown:
            raise ValueError(f"unexpected input names {sorted(unknown)}; this model takes {list(names)}")
        values.update({k: v for k, v in input_ids.items() if v is not None})
    elif isinstance(input_ids, (list, tuple)):
        if len(input_ids) > len(names):
            raise ValueError(f"got {len(input_ids)} positional inputs; this model takes at most {list(names)}")
        values.update({n: v for n, v in zip(names, input_ids) if v is not None})
    elif input_ids is not None:
        values["input_ids"] = input_ids
    for name in names:
        if kwargs.get(name) is not None:
            if name in values:
                raise ValueError(f"{name} was given twice (in the first argument and as a keyword)")
            values[name] = kwargs[name]
    return values


def python_rows_as_array(x):
    """A list of lists of ints (a batch of token rows typed in Python) as an int array; anything
    else unchanged. Read as HF's positional inputs ([input_ids, attention_mask, ...]) each row
    would be a rank-1 tensor, which no input is, so a batch is the only meaning it can have."""
    if not _is_python_rows(x):
        return x
    lengths = sorted({len(row) for row in x})
    if len(lengths) > 1:
        raise ValueError(f"input_ids rows have different lengths {lengths}; pad them to one length (the "
                         f"tokenizer's padding=True) and pass the attention_mask")
    return np.asarray(x)


def _is_python_rows(x):
    """True for a non-empty Python list / tuple of non-empty lists / tuples of integers."""
    if not isinstance(x, (list, tuple)) or not x:
        return False
    rows = [r for r in x if isinstance(r, (list, tuple)) and r]
    return len(rows) == len(x) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for r in rows for v in r)


def concrete_value(x):
    """x as a numpy array when its value is known now (eager), else None (while tracing)."""
    if x is None or isinstance(x, keras.KerasTensor):
        return None
    if isinstance(x, (np.ndarray, list, tuple, int)):
        return np.asarray(x)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return None if isinstance(x, jax.core.Tracer) else np.asarray(x)
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or tf.is_symbolic_tensor(x):
            return None
        return x.numpy()
    if backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
        return x.detach().cpu().numpy()
    return None


# In-graph checks of traced ids (TF assert ops, a JAX host callback of two scalars). Exporters that
# cannot carry such ops switch them off with `runtime_index_checks_disabled()` (jax2tf refuses to
# serialise host callbacks); eager calls are always checked.
RUNTIME_INDEX_CHECKS = True


@contextlib.contextmanager
def runtime_index_checks_disabled():
    """Calls traced inside this block carry no index checks of their own (values known now are
    still checked). For exporters, which then check the inputs at their own boundary."""
    global RUNTIME_INDEX_CHECKS
    previous = RUNTIME_INDEX_CHECKS
    RUNTIME_INDEX_CHECKS = False
    try:
        yield
    finally:
        RUNTIME_INDEX_CHECKS = previous


def _raise_if_out_of_range(name, upper, low, high):
    low, high = int(np.asarray(low)), int(np.asarray(high))
    if low < 0 or high >= upper:
        raise ValueError(f"{name} must lie in [0, {upper}); found values from {low} to {high}")


def check_index_range(name, x, upper, ignore_value=None, ignore_negative=False):
    """Raises when an index tensor has values outside [0, upper).

    Values equal to `ignore_value` (e.g. -100 for labels), or every negative value when
    `ignore_negative`, are allowed. JAX and TensorFlow gathers clamp out-of-range ids silently (a
    wrong answer, no error), so the values are checked: in numpy when they are known now; when
    traced, by tf.debugging asserts on TensorFlow and by a host callback on the min and max on JAX
    (both raise at run time).
    """
    value = concrete_value(x)
    if value is not None:
        kept = value
        if ignore_negative:
            kept = value[value >= 0]
        elif ignore_value is not None:
            kept = value[value != ignore_value]
        if kept.size and (kept.min() < 0 or kept.max() >= upper):
            bad = kept[(kept < 0) | (kept >= upper)]
            allowed = " (or -100 to ignore)" if ignore_value is not None and not ignore_negative else ""
            raise ValueError(
                f"{name} must lie in [0, {upper}){allowed}; found {int(bad.flat[0])} "
                f"({bad.size} value(s) out of range, min {int(kept.min())}, max {int(kept.max())})"
            )
        return x
    if isinstance(x, keras.KerasTensor) or not RUNTIME_INDEX_CHECKS:
        return x
    checked = x
    if ignore_negative:
        checked = ops.where(x >= 0, x, ops.zeros_like(x))
    elif ignore_value is not None:
        checked = ops.where(ops.equal(x, ignore_value), ops.zeros_like(x), x)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.control_dependencies([
            tf.debugging.assert_non_negative(checked, message=f"{name} must be >= 0"),
            tf.debugging.assert_less(checked, tf.cast(upper, x.dtype), message=f"{name} must be < {upper}"),
        ]):
            return tf.identity(x)
    if backend == "jax":
        import functools

        import jax

        jax.debug.callback(
            functools.partial(_raise_if_out_of_range, name, upper), ops.min(checked), ops.max(checked)
        )
    return x


def check_int32_range(value, name):
    """Raises when a 64-bit numpy integer input (a dict / list of them too) holds values outside
    int32: backends that compute ids in int32 (JAX without x64) would wrap them silently."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_int32_range(item, key)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_int32_range(item, name)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.dtype.itemsize > 4 and value.size:
        low, high = value.min(), value.max()
        if low < -(2**31) or high >= 2**31:
            raise ValueError(f"{name} holds values from {low} to {high}, outside the int32 range; "
                             f"ids must lie in [0, vocab_size)")


def sequence_reference(values):
    """The tensor whose shape every per-token input and label must match: input_ids, or the
    leading axes of inputs_embeds."""
    ids = values.get("input_ids")
    return ids if ids is not None else values["inputs_embeds"][..., 0]


def check_same_shape(name, x, reference, reference_name="input_ids"):
    xs, rs = tuple(x.shape), tuple(reference.shape)
    if len(xs) != len(rs) or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(xs, rs)):
        raise ValueError(f"{name} has shape {xs} but {reference_name} has shape {rs}; they must be equal")
