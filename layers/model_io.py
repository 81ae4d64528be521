"""What both model families share at their boundary: HF-style inputs in, HF-style outputs out."""

import keras


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
        # Absent outputs read as None (e.g. `out.hidden_states` when not requested), as in HF.
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)

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
    try:
        from keras.src.tree import tree_api

        tree_api.register_tree_node_class(ModelOutput)
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - older/newer keras
        pass
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
