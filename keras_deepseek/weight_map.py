"""The table from transformers' DeepSeek-V2 tensor names to this package's Keras variables.

Routed experts are stored per expert on disk (`mlp.experts.{j}.{proj}.weight`) and as stacked
[E, in, out] variables here; a `StackSlice` addresses one expert of a stack (loading fills each
stack in one host buffer and assigns it once; saving reads each stack once).
"""

from layers.moe import MoEBlock
from presets.mapping import StackSlice


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
            for j in range(moe.n_routed_experts):
                for proj in ("gate_proj", "up_proj", "down_proj"):
                    specs[f"{prefix}{base}mlp.experts.{j}.{proj}.weight"] = (_expert_slice(moe.experts, proj, j),
                                                                             "linear")
            if moe.shared_experts is not None:
                mlp(f"{base}mlp.shared_experts", moe.shared_experts)
        else:
            mlp(f"{base}mlp", layer.mlp)
    norm("norm", main_layer.norm)
    return specs


_STACKS = {"gate_proj": "gate_kernel", "up_proj": "up_kernel", "down_proj": "down_kernel"}


def _expert_slice(experts, proj, index):
    if experts.quantized:
        raise NotImplementedError("reading or writing HF tensors of a quantized model is not supported")
    return StackSlice(getattr(experts, _STACKS[proj]), index)
