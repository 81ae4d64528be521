"""Rotary position embeddings, interleaved (adjacent pairs 2i, 2i+1), with YaRN scaling.

DeepSeek-V2 rotates only the `qk_rope_head_dim` part of queries and the one shared rope key.
transformers 5.x and the original code treat each pair (x[2i], x[2i+1]) as a complex number and
multiply it by exp(i * position * inv_freq[i]) * attention_factor.

The frequencies are computed once in numpy float32, the same operations as transformers'
`_compute_default_rope_parameters` / `_compute_yarn_parameters`.
"""

import math

import numpy as np
from keras import ops


def normalize_rope_parameters(rope_parameters=None, rope_theta=None, rope_scaling=None,
                              max_position_embeddings=None):
    """One dict from the transformers-v5 form (`rope_parameters`) or the Hub's (`rope_theta` +
    `rope_scaling` with "type"). Returns {"rope_type", "rope_theta", ...scaling fields}."""
    params = dict(rope_parameters or {})
    if rope_scaling:
        for key, value in dict(rope_scaling).items():
            params.setdefault(key, value)
    rope_type = params.get("rope_type", params.get("type", "default")) or "default"
    params.pop("type", None)
    params["rope_type"] = rope_type
    if params.get("rope_theta") is None:
        params["rope_theta"] = 10000.0 if rope_theta is None else rope_theta
    if rope_type == "yarn":
        if params.get("factor") is None:
            raise ValueError("yarn rope scaling needs a 'factor'")
        params.setdefault("original_max_position_embeddings", max_position_embeddings)
    elif rope_type != "default":
        raise ValueError(f"rope_type {rope_type!r} is not supported for DeepSeek-V2 (use 'default' or 'yarn')")
    return params


def yarn_get_mscale(scale=1.0, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def rope_frequencies(rope_parameters, dim, max_position_embeddings=None):
    """(inv_freq [dim // 2] float32 numpy, attention_factor) for `rope_type` default or yarn."""
    p = rope_parameters
    base = float(p["rope_theta"])
    f32 = np.float32
    pos_freqs = np.power(f32(base), np.arange(0, dim, 2).astype(f32) / f32(dim)).astype(f32)
    if p["rope_type"] == "default":
        return (f32(1.0) / pos_freqs).astype(f32), 1.0
    factor = p.get("factor")
    original = p["original_max_position_embeddings"]
    if factor is None:
        factor = max_position_embeddings / original
    attention_factor = p.get("attention_factor")
    mscale, mscale_all_dim = p.get("mscale"), p.get("mscale_all_dim")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = yarn_get_mscale(factor)
    beta_fast = p.get("beta_fast") or 32
    beta_slow = p.get("beta_slow") or 1

    def correction_dim(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2).astype(f32) - f32(low)) / f32(high - low), 0, 1).astype(f32)
    extrapolation_factor = f32(1) - ramp
    inv_extra = f32(1.0) / pos_freqs
    inv_inter = f32(1.0) / (f32(factor) * pos_freqs)
    inv_freq = inv_inter * (f32(1) - extrapolation_factor) + inv_extra * extrapolation_factor
    return inv_freq.astype(f32), float(attention_factor)


def softmax_scale(rope_parameters, qk_head_dim):
    """qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2 under YaRN (DeepSeek's rule)."""
    scale = qk_head_dim ** -0.5
    if rope_parameters.get("rope_type", "default") != "default":
        mscale_all_dim = rope_parameters.get("mscale_all_dim", 0)
        if mscale_all_dim:
            m = yarn_get_mscale(rope_parameters["factor"], mscale_all_dim)
            scale = scale * m * m
    return scale


def rope_cos_sin(positions, inv_freq, attention_factor=1.0):
    """cos, sin [B, S, dim // 2] float32 for integer positions [B, S] (or [S])."""
    freqs = ops.cast(positions, "float32")[..., None] * ops.convert_to_tensor(np.asarray(inv_freq, "float32"))
    return ops.cos(freqs) * attention_factor, ops.sin(freqs) * attention_factor


def apply_interleaved_rope(x, cos, sin):
    """Rotates adjacent pairs of the last axis of x [B, S, ..., dim] by cos/sin [B, S, dim // 2].

    Extra axes between S and dim (heads) are broadcast. Computed in float32, cast back.
    """
    dtype = x.dtype
    shape = ops.shape(x)
    dim = x.shape[-1]
    x32 = ops.cast(x, "float32")
    pairs = ops.reshape(x32, tuple(shape[:-1]) + (dim // 2, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    for _ in range(len(x.shape) - 3):  # [B, S, half] -> [B, S, 1, half] for a heads axis
        cos, sin = cos[:, :, None], sin[:, :, None]
    out0 = x0 * cos - x1 * sin
    out1 = x0 * sin + x1 * cos
    out = ops.reshape(ops.stack([out0, out1], axis=-1), shape)
    return ops.cast(out, dtype)
