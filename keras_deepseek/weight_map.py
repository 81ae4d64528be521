"""The table from transformers' DeepSeek-V2 tensor names to this package's Keras variables.

Routed experts are stored per expert on disk (`mlp.experts.{j}.{proj}.weight`) and as stacked
[E, in, out] variables here; `_ExpertSlice` addresses one expert of a stack.
"""

import numpy as np
from keras import ops

from layers.moe import MoEBlock
from presets.placement import assign_from_host


def decoder_weight_specs(main_layer, prefix=""):
    """{transformers tensor name: (Keras variable or expert slice, transform)} for every weight of a
    `DeepseekV2MainLayer`; `prefix` is "model." inside a task model."""
    specs = {}

    def dense(name, layer):
        specs[f"{prefix}{name}.weight"] = (layer.kernel, "linear")
        if layer.use_bias:
            specs[f"{prefix}{name}.bias"] = (layer.bias, "identity")

    def norm(name, layer):
        specs[f"{prefix}{name}.weight"] = (layer.weight, "identity")

    def mlp(name, layer):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            dense(f"{name}.{proj}", getattr(layer, proj))

    specs[f"{prefix}embed_tokens.weight"] = (main_layer.embed_tokens.embeddings, "identity")
    for i, layer in enumerate(main_layer.decoder_layers):
        base = f"layers.{i}."
        att = layer.self_attn
        for proj in ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"):
            if getattr(att, proj) is not None:
                dense(f"{base}self_attn.{proj}", getattr(att, proj))
        if att.q_a_layernorm is not None:
            norm(f"{base}self_attn.q_a_layernorm", att.q_a_layernorm)
        norm(f"{base}self_attn.kv_a_layernorm", att.kv_a_layernorm)
        norm(f"{base}input_layernorm", layer.input_layernorm)
        norm(f"{base}post_attention_layernorm", layer.post_attention_layernorm)
        if isinstance(layer.mlp, MoEBlock):
            moe = layer.mlp
            specs[f"{prefix}{base}mlp.gate.weight"] = (moe.gate.kernel, "linear")
            stack = _ExpertStacks(moe.experts)
            for j in range(moe.n_routed_experts):
                for proj in ("gate_proj", "up_proj", "down_proj"):
                    specs[f"{prefix}{base}mlp.experts.{j}.{proj}.weight"] = (stack.slice(proj, j), "linear")
            if moe.shared_experts is not None:
                mlp(f"{base}mlp.shared_experts", moe.shared_experts)
        else:
            mlp(f"{base}mlp", layer.mlp)
    norm("norm", main_layer.norm)
    return specs


class _ExpertStacks:
    """Per-expert views of the stacked expert weights, so the generic loader / writer can address
    `mlp.experts.{j}.{proj}.weight` one at a time. Loading fills a numpy buffer and assigns the
    stacked variable once, when every expert of it has arrived."""

    _VARS = {"gate_proj": "gate_kernel", "up_proj": "up_kernel", "down_proj": "down_kernel"}

    def __init__(self, experts):
        if experts.quantized:
            raise NotImplementedError("reading or writing HF tensors of a quantized model is not supported")
        self.experts = experts
        self.pending = {}

    def slice(self, proj, index):
        return _ExpertSlice(self, self._VARS[proj], index)


class _ExpertSlice:
    def __init__(self, stacks, var_name, index):
        self.stacks, self.var_name, self.index = stacks, var_name, index
        self.variable = getattr(stacks.experts, var_name)
        self.shape = tuple(self.variable.shape[1:])
        self.dtype = self.variable.dtype

    def assign(self, value):
        buffer, seen = self.stacks.pending.setdefault(
            self.var_name, (np.array(ops.convert_to_numpy(self.variable)), set()))
        buffer[self.index] = value
        seen.add(self.index)
        if len(seen) == buffer.shape[0]:
            assign_from_host(self.variable, buffer)  # split over experts: each device its slice
            del self.stacks.pending[self.var_name]

    def __array__(self, dtype=None, copy=None):
        value = np.asarray(ops.convert_to_numpy(self.variable)[self.index])
        return value if dtype is None else value.astype(dtype)
