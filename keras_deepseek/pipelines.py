"""`pipeline("text-generation", ...)`: prompts (or chats) in, generated text out, shaped like
transformers' text-generation pipeline.

    gen = pipeline("text-generation", model="path/or/hub-id")
    gen("Once upon a time", max_new_tokens=20, do_sample=False)
    # [{"generated_text": "Once upon a time ..."}]
    gen(["a", "b"])                                   # [[{...}], [{...}]]
    gen([{"role": "user", "content": "Hi"}])          # [{"generated_text": [..., {"role": "assistant", ...}]}]

Semantics follow transformers 5 (`TextGenerationPipeline`): the prompt is tokenized with the
tokenizer's special tokens (bos), chats go through the chat template with a generation prompt (or
continue a final assistant message), the new tokens are decoded with `skip_special_tokens=True`, and
`return_full_text=True` puts the prompt string (not its decoding) in front. Generation settings come
from, in rising priority: transformers' pipeline defaults (max_new_tokens=256, do_sample=True,
temperature=0.7), the checkpoint's generation_config.json, `pipeline(...)` keywords, call keywords.

Unlike transformers' pipeline (one prompt per `generate` call by default), prompts are batched
(`batch_size`, default 8): left-padded to a multiple of 16 tokens, so a stream of prompts of
varying length reuses a few compiled generation loops instead of compiling one per length. Each
row's new tokens end at its first eos, as if it had been generated alone.

Inputs are bounded by the config's max_position_embeddings: a prompt longer than
`max_position_embeddings - max_new_tokens` tokens keeps only its last tokens (as transformers'
`handle_long_generation="hole"`; `return_full_text` still shows the whole prompt), or, with
`truncation=False`, is refused with an `InputTooLongError`. An empty list of prompts gives an empty
list; an empty prompt is a ValueError.
"""

import numbers
import os

import numpy as np
from keras import ops

from keras_deepseek.modeling_deepseek_v2 import TFDeepseekV2ForCausalLM
from keras_deepseek.tokenization_deepseek_v2 import DeepseekV2Tokenizer
from presets.devices import keras_device_name, loading_scope, on_own_device
from presets.hub import resolve_checkpoint_dir
from presets.io import read_json_object
from presets.sequence_limits import InputTooLongError, too_long_message

SUPPORTED_TASKS = ("text-generation",)
# transformers' TextGenerationPipeline defaults, used where generation_config.json sets nothing.
PIPELINE_GENERATION_DEFAULTS = dict(max_new_tokens=256, do_sample=True, temperature=0.7)
GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "eos_token_id", "seed")
# Prompt widths are rounded up to a multiple of this so that compiled loops are reused.
PROMPT_WIDTH_BUCKET = 16


def pipeline(task, model=None, tokenizer=None, batch_size=8, device=None, **generation_kwargs):
    """Builds a pipeline for `task` (only "text-generation").

    Args:
        model: a TFDeepseekV2ForCausalLM, or a checkpoint directory / Hub id to load one from.
        tokenizer: a DeepseekV2Tokenizer or a directory holding tokenizer.json (default: the
            model's directory; required when `model` is an instance).
        batch_size: prompts per `generate` call.
        device: transformers' device (-1 / "cpu", a GPU index, "cuda:N"): loading and every call
            run under that Keras device scope.
        **generation_kwargs: defaults for every call (max_new_tokens, do_sample, temperature,
            top_k, top_p, eos_token_id, seed).
    """
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"unknown task {task!r}; keras_deepseek pipelines support: {', '.join(SUPPORTED_TASKS)}")
    if model is None:
        raise ValueError("pipeline('text-generation') needs model=: a TFDeepseekV2ForCausalLM, a checkpoint "
                         "directory or a Hub id such as 'deepseek-ai/DeepSeek-V2-Lite-Chat'")
    unknown = sorted(set(generation_kwargs) - set(GENERATION_KEYS))
    if unknown:
        raise TypeError(f"unknown pipeline argument(s): {', '.join(unknown)}")
    file_defaults = {}
    if isinstance(model, (str, os.PathLike)):
        directory = resolve_checkpoint_dir(model)
        file_defaults = read_generation_config(directory)
        with loading_scope(device):  # the variables are created on that device
            model = TFDeepseekV2ForCausalLM.from_pretrained(directory)
        if tokenizer is None:
            tokenizer = directory
    elif not isinstance(model, TFDeepseekV2ForCausalLM):
        raise TypeError(f"model must be a TFDeepseekV2ForCausalLM, a directory or a Hub id, got {type(model).__name__}")
    if tokenizer is None:
        raise ValueError("pass tokenizer= (a DeepseekV2Tokenizer or its directory) with a model instance")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = DeepseekV2Tokenizer.from_pretrained(os.fspath(tokenizer))
    elif not isinstance(tokenizer, DeepseekV2Tokenizer):
        raise TypeError(f"tokenizer must be a DeepseekV2Tokenizer or a directory, got {type(tokenizer).__name__}")
    defaults = {**PIPELINE_GENERATION_DEFAULTS, **file_defaults, **generation_kwargs}
    return TextGenerationPipeline(model, tokenizer, batch_size=batch_size, device=device, **defaults)


def read_generation_config(directory):
    """The generation settings of generation_config.json in `directory` that `generate` takes."""
    path = os.path.join(directory, "generation_config.json")
    if not os.path.isfile(path):
        return {}
    data = read_json_object(path)
    return {k: data[k] for k in GENERATION_KEYS if k in data and data[k] is not None}


class TextGenerationPipeline:
    """Callable text generation over a TFDeepseekV2ForCausalLM and a DeepseekV2Tokenizer."""

    task = "text-generation"

    def __init__(self, model, tokenizer, batch_size=8, device=None, **generation_defaults):
        vocab = model.config.vocab_size
        if tokenizer.max_token_id >= vocab:
            raise ValueError(
                f"the tokenizer produces ids up to {tokenizer.max_token_id} but the model's vocab_size is "
                f"{vocab}: they do not belong to the same checkpoint")
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        keras_device_name(device)  # a bad device fails here, not at the first call
        self.device = device
        self.model, self.tokenizer, self.batch_size = model, tokenizer, int(batch_size)
        self.generation_defaults = dict(generation_defaults)

    @on_own_device
    def __call__(self, inputs, return_full_text=True, num_return_sequences=1, continue_final_message=None,
                 add_special_tokens=None, batch_size=None, truncation=True, **generation_kwargs):
        """Completes a prompt, a list of prompts, a chat or a list of chats.

        Args:
            inputs: a string, a list of strings, a chat (list of {"role", "content"} dicts) or a
                list of chats.
            return_full_text: prepend the prompt (chats: return the whole conversation).
            num_return_sequences: completions per input (needs do_sample=True for more than one).
            continue_final_message: continue a chat's last message instead of starting an
                assistant reply (default: when that message is the assistant's).
            add_special_tokens: for string prompts (default: the tokenizer's, i.e. add bos).
            truncation: True (default) keeps the last `max_position_embeddings - max_new_tokens`
                tokens of a longer prompt; False refuses it with an InputTooLongError.
            **generation_kwargs: max_new_tokens, do_sample, temperature, top_k, top_p,
                eos_token_id, seed.
        Returns:
            For one input a list of `num_return_sequences` dicts {"generated_text": ...}; for a
            list of inputs, a list of such lists.
        """
        unknown = sorted(set(generation_kwargs) - set(GENERATION_KEYS))
        if unknown:
            raise TypeError(f"unknown generation argument(s): {', '.join(unknown)}")
        settings = {**self.generation_defaults, **generation_kwargs}
        if not isinstance(num_return_sequences, numbers.Integral) or num_return_sequences < 1:
            raise ValueError(f"num_return_sequences must be a positive integer, got {num_return_sequences!r}")
        if num_return_sequences > 1 and not settings.get("do_sample"):
            raise ValueError("greedy decoding gives one completion per prompt: num_return_sequences > 1 needs "
                             "do_sample=True")
        if not isinstance(truncation, bool):
            raise ValueError(f"truncation must be True (keep the end of a long prompt) or False (refuse it), "
                             f"got {truncation!r}")
        budget = self._prompt_budget(settings)
        prompts, single = _split_inputs(inputs)
        encoded = [self._bounded(self._encode(p, add_special_tokens, continue_final_message), budget, truncation)
                   for p in prompts]
        size = self.batch_size if batch_size is None else batch_size
        if not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {size!r}")
        new_tokens = []
        for start in range(0, len(encoded), size):
            new_tokens += self._generate(encoded[start:start + size], settings, num_return_sequences)
        results = []
        for prompt, rows in zip(prompts, new_tokens):
            results.append([{"generated_text": self._text(prompt, row, return_full_text, continue_final_message)}
                            for row in rows])
        return results[0] if single else results

    # --- steps -----------------------------------------------------------------------------------
    def _prompt_budget(self, settings):
        """The most prompt tokens that leave room for max_new_tokens in the position table."""
        max_new = settings.get("max_new_tokens", PIPELINE_GENERATION_DEFAULTS["max_new_tokens"])
        if isinstance(max_new, bool) or not isinstance(max_new, numbers.Integral) or max_new < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new!r}")
        limit = self.model.config.max_position_embeddings
        if max_new >= limit:
            raise ValueError(f"max_new_tokens {max_new} leaves no room for a prompt: this model takes "
                             f"{limit} tokens in all (max_position_embeddings)")
        return limit - int(max_new)

    @staticmethod
    def _bounded(ids, budget, truncation):
        if len(ids) <= budget:
            return ids
        if not truncation:
            raise InputTooLongError(too_long_message(len(ids), budget, "prompt",
                                                     source="max_position_embeddings minus max_new_tokens"))
        return ids[len(ids) - budget:]  # the end of the prompt is what the continuation follows

    def _encode(self, prompt, add_special_tokens, continue_final_message):
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("empty prompt: give some text (to generate from the bos token alone, pass "
                                 "tokenizer.bos_token as the prompt with add_special_tokens=False)")
            kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
            ids = self.tokenizer(prompt, **kwargs)["input_ids"]
        else:
            cont = _continues(prompt, continue_final_message)
            ids = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=not cont,
                                                     continue_final_message=cont)["input_ids"]
        if not ids:
            raise ValueError(f"the prompt {prompt!r} gives no tokens (this tokenizer adds no bos token): "
                             f"give a non-empty prompt")
        return ids

    def _generate(self, rows, settings, copies):
        """New token lists for each prompt row (a list of `copies` lists per row)."""
        config = self.model.config
        max_new = settings.get("max_new_tokens", PIPELINE_GENERATION_DEFAULTS["max_new_tokens"])
        longest = max(map(len, rows))
        width = -(-longest // PROMPT_WIDTH_BUCKET) * PROMPT_WIDTH_BUCKET
        # Bucketing must not push a prompt that fits past the position table.
        width = max(longest, min(width, config.max_position_embeddings - int(max_new)))
        pad = next(i for i in (self.tokenizer.pad_token_id, config.pad_token_id, self.tokenizer.eos_token_id, 0)
                   if i is not None)
        ids = np.full((len(rows), width), pad, "int32")  # [B, W], left-padded
        mask = np.zeros((len(rows), width), "int32")
        for r, row in enumerate(rows):
            ids[r, width - len(row):] = row
            mask[r, width - len(row):] = 1
        if copies > 1:
            ids, mask = np.repeat(ids, copies, axis=0), np.repeat(mask, copies, axis=0)  # [B * copies, W]
        kwargs = {k: settings[k] for k in GENERATION_KEYS if k in settings}
        out = np.asarray(ops.convert_to_numpy(self.model.generate(ids, attention_mask=mask, **kwargs)))
        eos = settings.get("eos_token_id", config.eos_token_id)
        eos = set() if eos is None else {int(eos)} if isinstance(eos, numbers.Integral) else set(map(int, eos))
        new = []
        for row in out[:, width:].tolist():
            # A row that ended early is filled with pad tokens: keep up to and including its eos.
            end = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
            new.append(row[:end])
        return [new[r * copies:(r + 1) * copies] for r in range(len(rows))]

    def _text(self, prompt, new_ids, return_full_text, continue_final_message):
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        if not return_full_text:
            return text
        if isinstance(prompt, str):
            return prompt + text
        if _continues(prompt, continue_final_message):
            last = dict(prompt[-1])
            return [dict(m) for m in prompt[:-1]] + [{"role": last["role"], "content": last["content"] + text}]
        return [dict(m) for m in prompt] + [{"role": "assistant", "content": text}]


def _is_chat(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(m, dict) for m in value)


def _continues(chat, continue_final_message):
    return chat[-1].get("role") == "assistant" if continue_final_message is None else bool(continue_final_message)


def _split_inputs(inputs):
    """(list of prompts, whether the input was a single prompt); a prompt is a str or a chat."""
    if isinstance(inputs, str):
        return [inputs], True
    if _is_chat(inputs):
        return [list(inputs)], True
    if isinstance(inputs, (list, tuple)):
        for i, item in enumerate(inputs):
            if not (isinstance(item, str) or _is_chat(item)):
                raise TypeError(f"input {i} is a {type(item).__name__}; expected a string or a chat "
                                f"(a list of {{'role': ..., 'content': ...}} dicts)")
        return [item if isinstance(item, str) else list(item) for item in inputs], False
    raise TypeError(f"expected a string, a list of strings, a chat or a list of chats, got {type(inputs).__name__}")
