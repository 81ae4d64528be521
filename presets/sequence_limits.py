"""How many tokens one input may have: one rule for the pipelines, the command lines and the exported
signatures of both model families.

Relative-position models (DeBERTa-v2/v3 and relative v1 checkpoints) have no table that bounds the
length, and their attention memory grows with its square: one 100k-character text would ask for
tens of gigabytes. So every entry point bounds its inputs by default, to

1. the tokenizer's `model_max_length` when the checkpoint names one (512 for DeBERTa checkpoints);
2. otherwise the config's `max_position_embeddings`: the length the model was trained at (512 for
   every DeBERTa checkpoint, relative-position ones included; DeepSeek-V2's RoPE table);

and never beyond the model's hard limit, `export_max_length()` (an absolute position table).
Callers that want another bound set `tokenizer.model_max_length` or pass `max_length=` to export.
"""

import numbers

# transformers writes int(1e30) as model_max_length when a checkpoint names no limit, and tokenizer
# files in the wild carry other huge sentinels. No model here runs on a billion tokens, so a value
# from this one up means "no limit given".
NO_LIMIT_SENTINEL_FLOOR = 10**9


class InputTooLongError(ValueError):
    """An input has more tokens than the model takes and truncation is switched off."""


def tokenizer_max_length(tokenizer):
    """The tokenizer's model_max_length, or None when it is absent or a "no limit" sentinel."""
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if not 0 < value < NO_LIMIT_SENTINEL_FLOOR:
        return None
    return int(value)


def default_max_length(model, tokenizer=None):
    """The longest token sequence to give `model` by default (see the module docstring); None only
    when neither the tokenizer nor the config names a length and the model has no hard limit."""
    limit = tokenizer_max_length(tokenizer) if tokenizer is not None else None
    if limit is None:
        limit = getattr(model.config, "max_position_embeddings", None)
    hard = model.export_max_length() if hasattr(model, "export_max_length") else None
    if hard is not None:
        limit = hard if limit is None else min(int(limit), int(hard))
    return None if limit is None else int(limit)


def too_long_message(n_tokens, limit, what="text",
                     source="its tokenizer's model_max_length, else the config's max_position_embeddings"):
    """The one wording of "too long" for every entry point; `source` says where `limit` comes from."""
    return (f"the {what} is {n_tokens} tokens long, more than the {limit} this model takes ({source}): "
            "shorten it, or let it be truncated (truncation=True, the default)")
