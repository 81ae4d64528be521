"""The dtype a checkpoint is loaded in: `from_pretrained(..., dtype=...)`.

The default (None) is the Keras user's expectation: the global Keras dtype policy, float32 unless
`keras.config.set_dtype_policy` changed it. "auto" is transformers 5's default: the checkpoint's
own dtype (config.json's `dtype` / `torch_dtype`, else the first floating-point tensor's), so a
bf16 checkpoint loads into bf16 variables with no float32 copy anywhere.
"""

import keras
import numpy as np

# Names from_pretrained accepts (plus "auto" and keras.DTypePolicy objects).
POLICY_NAMES = ("float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16")


def _dtype_name(value):
    """"bfloat16" from "bfloat16", "torch.bfloat16", a numpy / torch dtype; None if unknown."""
    if value is None:
        return None
    name = str(value).replace("torch.", "")
    return name if name in ("float32", "bfloat16", "float16") else None


def checkpoint_dtype(config, tensors):
    """The dtype "auto" means: the config's `dtype` / `torch_dtype`, else the first floating-point
    tensor's dtype, else float32."""
    name = _dtype_name(getattr(config, "dtype", None))
    if name:
        return name
    for value in tensors.values():
        dtype = np.dtype(value.dtype)
        if dtype.kind == "f" or str(dtype) == "bfloat16":
            return _dtype_name(dtype) or "float32"
    return "float32"


def resolve_load_policy(dtype, config, tensors):
    """The keras.DTypePolicy to build the model under, or None for the global policy.

    Raises:
        ValueError for a dtype the model cannot be loaded in (e.g. "int8", "float64").
    """
    if dtype is None:
        return None
    if isinstance(dtype, keras.DTypePolicy):
        return dtype
    name = str(dtype).replace("torch.", "")
    if name == "auto":
        name = checkpoint_dtype(config, tensors)
    if name not in POLICY_NAMES:
        raise ValueError(f"dtype must be 'auto', one of {', '.join(POLICY_NAMES)} or a keras.DTypePolicy, "
                         f"got {dtype!r}")
    return keras.DTypePolicy(name)
