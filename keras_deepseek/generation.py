"""`generate()` for TFDeepseekV2ForCausalLM: prefill once, then decode over the latent-only cache.

Two compiled functions per call (`jax.jit` with the variables passed in through a `StatelessScope`
on JAX, `tf.function` on TensorFlow; eager PyTorch runs the same code):
* prefill [B, P] -> logits of the last prompt token and per-layer caches [B, T, r + dr] holding
  the prompt's latents in slots 0..P-1 (the prompt attends over its own P entries);
* the decode loop: `ops.while_loop` of absorbed-MLA steps, each writing one slot in place
  (`slice_update`; in-place on PyTorch) and attending over all T slots with unfilled ones masked.
  The first slot and the number of steps are runtime values, so one compiled loop serves every
  prompt length and position whose total fits T.
T is bucketed (16, 24, 32, 48, ...: powers of two and 1.5x them) and the compiled functions live
in a small LRU per model, so a stream of prompts reuses a bounded number of them.

Semantics follow transformers' `generate`: positions from the attention mask (left padding), greedy
argmax or sampling (temperature -> top-k -> top-p), rows that produced an eos are filled with the
pad token, and generation stops early when every row has finished; the result is prompt + new
tokens. Sampling draws its uniforms from numpy's Generator(seed), so a seed gives the same tokens on
every backend (up to float ties).
"""

import collections
import numbers
import warnings

import keras
import numpy as np
from keras import ops

from keras_deepseek.generation_outputs import GenerateDecoderOnlyOutput, processed_scores
from presets.length_buckets import MIN_BUCKET, length_bucket

NEG_INF = -1e30
# Compiled prefill / decode functions kept per model (least recently used dropped first).
GENERATE_FUNCTIONS = 8
# Cache lengths are bucketed (presets/length_buckets.py) so one compiled decode loop serves many
# prompt and output lengths, capped at max_position_embeddings.
MIN_CACHE_BUCKET = MIN_BUCKET
# eos ids are a fixed-size runtime array (padded with -1), so their number is bounded.
MAX_EOS_IDS = 8


def cache_bucket(length, max_positions):
    """Cache slots for `length` tokens: the smallest bucket >= length, capped at max_positions
    (never below length)."""
    return length_bucket(length, max_positions)


def sampling_settings(temperature, top_k, top_p, eos, pad):
    """The decode loop's runtime settings as numpy scalars / arrays (traced, never compiled in):
    temperature, top_k (0: off), top_p (1: off), eos ids padded with -1 to MAX_EOS_IDS, pad id."""
    eos_ids = np.full((MAX_EOS_IDS,), -1, "int32")
    eos_ids[: len(eos)] = eos
    return dict(temperature=np.asarray(temperature, "float32"), top_k=np.asarray(top_k or 0, "int32"),
                top_p=np.asarray(1.0 if top_p is None else top_p, "float32"), eos=eos_ids,
                pad=np.asarray(pad, "int32"))


def _as_int_list(value, name="eos_token_id"):
    if value is None:
        return []
    items = [value] if isinstance(value, numbers.Integral) or not isinstance(value, (list, tuple, np.ndarray)) \
        else list(value)
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise TypeError(f"{name} must be an int or a list of ints, got {type(item).__name__} {item!r}")
    return [int(v) for v in items]


def check_token_ids(eos, pad, vocab_size):
    """eos ids and the pad id must be token ids of the model ([0, vocab_size)): an id outside
    could never be produced (eos) or would be written into the output (pad)."""
    for name, ids in (("eos_token_id", eos), ("pad_token_id", [pad])):
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(f"{name} must lie in [0, {vocab_size}), got {bad[0]}")


def warn_if_right_padded(mask):
    """transformers' warning for right-padded prompts: a decoder-only model continues from the
    last position, so a row ending in padding continues after its pad tokens."""
    if mask.shape[0] and not mask[:, -1].all():
        warnings.warn("A decoder-only architecture is being used, but right-padding was detected! For correct "
                      "generation results, please set `padding_side='left'` when initializing the tokenizer.",
                      stacklevel=3)


class GenerationMixin:
    """Adds `generate` to a causal LM that has `.model` (a DeepseekV2MainLayer) and
    `.logits_from_hidden`."""

    _UNSET = object()

    def generate(self, input_ids, attention_mask=None, max_new_tokens=None, do_sample=False,
                 temperature=1.0, top_k=None, top_p=None, eos_token_id=_UNSET, pad_token_id=None,
                 seed=None, use_cache=True, jit_compile=True, max_length=None, return_dict_in_generate=False,
                 output_scores=False):
        """Generates up to `max_new_tokens` tokens after each prompt.

        Args:
            input_ids: [B, P] ints; rows may be left-padded (with `attention_mask`).
            attention_mask: [B, P] 1 for tokens, 0 for padding (default: all ones).
            max_new_tokens: how many tokens to add at most (default 20).
            max_length: transformers' other bound: prompt + new tokens at most (`max_new_tokens`
                wins when both are given, as in transformers).
            do_sample: False for greedy decoding; True samples with temperature / top_k / top_p.
            temperature: > 0; top_k: int >= 0 (0 or None: off); top_p: in (0, 1] (None or 1: off).
            eos_token_id: int or list (default: config.eos_token_id; None: never stop early).
            pad_token_id: fills finished rows (default: config.pad_token_id, else the first eos).
            seed: int for sampling (None: a fresh random seed).
            use_cache: False recomputes the whole sequence at every step (a slow reference path).
            jit_compile: compile the loop on JAX / TensorFlow.
            return_dict_in_generate: return a `GenerateDecoderOnlyOutput` (`.sequences`, and
                `.scores` with output_scores) instead of the tensor.
            output_scores: with return_dict_in_generate, the processed scores of each new token
                as transformers gives them: a tuple of [B, V] float32 arrays (the logits; when
                sampling, after temperature, top-k and top-p, -inf where filtered). They come from
                one extra forward pass over the generated sequences.
        Returns:
            int32 tensor [B, P + generated] (generated <= max_new_tokens; fewer when every row
            reached an eos), or the output object above.
        """
        sequences = self._generate_sequences(input_ids, attention_mask, max_new_tokens, max_length, do_sample,
                                             temperature, top_k, top_p, eos_token_id, pad_token_id, seed,
                                             use_cache, jit_compile)
        if not return_dict_in_generate:
            return sequences
        scores = None
        if output_scores:
            scores = self._processed_scores(sequences, attention_mask, np.shape(input_ids)[1], do_sample,
                                            temperature, top_k, top_p)
        return GenerateDecoderOnlyOutput(sequences=sequences, scores=scores)

    def _generate_sequences(self, input_ids, attention_mask, max_new_tokens, max_length, do_sample, temperature,
                            top_k, top_p, eos_token_id, pad_token_id, seed, use_cache, jit_compile):
        config = self.config
        ids = np.asarray(ops.convert_to_numpy(input_ids))
        if ids.ndim != 2:
            raise ValueError(f"input_ids must have shape [batch, length], got {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= config.vocab_size):
            raise ValueError(f"input_ids must lie in [0, {config.vocab_size}); found values from "
                             f"{ids.min()} to {ids.max()}")
        ids = ids.astype("int32")
        batch, prompt = ids.shape
        if prompt == 0:
            raise ValueError("input_ids must hold at least one token per row")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(ops.convert_to_numpy(attention_mask))
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask has shape {mask.shape} but input_ids has shape {ids.shape}")
        mask = (mask != 0).astype("int32")
        if not mask.any(axis=1).all():
            raise ValueError("every row of attention_mask needs at least one token")
        if max_new_tokens is None and max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or max_length <= prompt:
                raise ValueError(f"max_length={max_length!r} counts the prompt too and must exceed its length "
                                 f"({prompt}); or pass max_new_tokens")
            max_new_tokens = int(max_length) - prompt
        elif max_new_tokens is None:
            max_new_tokens = 20  # transformers' default length budget, spent on new tokens here
        warn_if_right_padded(mask)
        if not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        max_new_tokens = int(max_new_tokens)
        if prompt + max_new_tokens > config.max_position_embeddings:
            raise ValueError(
                f"prompt length {prompt} + max_new_tokens {max_new_tokens} = {prompt + max_new_tokens} "
                f"exceeds max_position_embeddings ({config.max_position_embeddings})")
        if do_sample:
            if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
                raise ValueError(f"temperature must be a positive number, got {temperature!r}")
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0):
                raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
            if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                                      or not 0 < top_p <= 1):
                raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        eos = _as_int_list(config.eos_token_id if eos_token_id is self._UNSET else eos_token_id)
        if pad_token_id is None:
            pad_token_id = config.pad_token_id if config.pad_token_id is not None else (eos[0] if eos else 0)
        (pad_token_id,) = _as_int_list(pad_token_id, "pad_token_id")
        check_token_ids(eos, pad_token_id, config.vocab_size)
        if max_new_tokens == 0 or batch == 0:  # nothing to generate (an empty batch: an empty answer)
            return ops.convert_to_tensor(ids)
        self.build_with_dummy_inputs()

        if do_sample:
            uniforms = np.random.default_rng(seed).random((max_new_tokens, batch)).astype("float32")
        else:
            uniforms = np.zeros((max_new_tokens, batch), "float32")
        if len(eos) > MAX_EOS_IDS:
            raise ValueError(f"at most {MAX_EOS_IDS} eos_token_id values are supported, got {len(eos)}")
        # The sampling settings are runtime values of the compiled loop (only greedy vs sampling is
        # compiled in), so new temperatures, top-k / top-p, eos or pad ids reuse the same loop.
        settings = sampling_settings(temperature, top_k, top_p, eos, pad_token_id)
        if not use_cache:
            tokens, steps = self._generate_uncached(ids, mask, uniforms, bool(do_sample), settings,
                                                    prompt, max_new_tokens)
            return ops.convert_to_tensor(np.asarray(tokens)[:, : prompt + steps].astype("int32"))
        # Prompts are left-padded (masked) to a bucket length, so a stream of prompt lengths compiles
        # a few prefills; positions come from the mask, so the padding changes no real token.
        bucket = cache_bucket(prompt, config.max_position_embeddings)
        padded = bucket if bucket + max_new_tokens <= config.max_position_embeddings else prompt
        run_ids = np.pad(ids, ((0, 0), (padded - prompt, 0)))
        run_mask = np.pad(mask, ((0, 0), (padded - prompt, 0)))
        total = cache_bucket(padded + max_new_tokens, config.max_position_embeddings)
        prefill = self._generate_function(("prefill", batch, padded, total), jit_compile,
                                          lambda ids, mask: self._prefill(ids, mask, total))
        logits, caches, key_valid, next_pos = prefill(run_ids, run_mask)
        decode = self._decode_function(batch, total, bool(do_sample), jit_compile)
        padded_uniforms = np.zeros((total, batch), "float32")
        padded_uniforms[:max_new_tokens] = uniforms
        new_tokens, steps = decode(logits, caches, key_valid, next_pos, np.asarray(padded, "int32"),
                                   np.asarray(max_new_tokens, "int32"), padded_uniforms, settings)
        steps = int(np.asarray(ops.convert_to_numpy(steps)))
        new_tokens = np.asarray(ops.convert_to_numpy(new_tokens))[:, :steps]
        return ops.convert_to_tensor(np.concatenate([ids, new_tokens], axis=1).astype("int32"))

    # --- token choice ----------------------------------------------------------------------------
    @staticmethod
    def _choose(logits, uniform, do_sample, s):
        """The next token [B] from logits [B, V]: argmax, or (do_sample) a draw after temperature ->
        top-k -> top-p as transformers applies them; `s` holds those settings as tensors."""
        logits = ops.cast(logits, "float32")  # [B, V]
        if not do_sample:
            return ops.cast(ops.argmax(logits, axis=-1), "int32")
        vocab = logits.shape[-1]
        temperature, top_p = (ops.convert_to_tensor(s[n], "float32") for n in ("temperature", "top_p"))
        values, order = ops.top_k(logits / temperature, vocab)  # sorted, descending
        # top-k keeps every value >= the k-th largest (ties included, as transformers); k = 0 is off.
        k = ops.clip(ops.convert_to_tensor(s["top_k"], "int32"), 0, vocab)
        kth = ops.take_along_axis(values, ops.zeros((values.shape[0], 1), "int32") + ops.maximum(k - 1, 0), axis=-1)
        values = ops.where(ops.logical_and(k > 0, values < kth), NEG_INF, values)
        probs = ops.softmax(values, axis=-1)
        # top-p keeps the smallest prefix whose mass reaches p (always the first token); p = 1 is off.
        before = ops.cumsum(probs, axis=-1) - probs
        values = ops.where(ops.logical_and(top_p < 1.0, before > top_p), NEG_INF, values)
        probs = ops.softmax(values, axis=-1)
        cdf = ops.cumsum(probs, axis=-1)
        choice = ops.sum(ops.cast(cdf < uniform[:, None] * cdf[:, -1:], "int32"), axis=-1)
        choice = ops.minimum(choice, vocab - 1)
        return ops.cast(ops.take_along_axis(order, choice[:, None], axis=-1)[:, 0], "int32")

    # --- the loop ----------------------------------------------------------------------------------
    def _prefill(self, ids, mask, total):
        """Runs the prompt [B, P] once and writes its latents into fresh caches of `total` slots.

        Returns (logits of the last prompt token [B, V] float32, caches (one [B, total, width] per
        layer), key_valid [B, total] int32, next position [B] int32)."""
        config = self.config
        B, P = ids.shape[0], ids.shape[1]
        ids, mask = ops.cast(ids, "int32"), ops.cast(mask, "int32")
        positions = ops.cumsum(mask, axis=-1) - 1
        positions = ops.where(mask == 0, 1, positions)
        width = config.cache_values_per_token
        caches = [ops.zeros((B, total, width), dtype=self.compute_dtype) for _ in range(config.num_hidden_layers)]
        key_valid = ops.concatenate([mask, ops.zeros((B, total - P), "int32")], axis=1)
        # cache_index is the Python int 0: each layer attends over the prompt's own P entries only.
        out = self.model(ids, position_ids=positions, caches=caches, cache_index=0, key_valid=key_valid,
                         cache_in_place=True)
        logits = self.logits_from_hidden(out["last_hidden_state"][:, -1:])[:, 0]
        return (ops.cast(logits, "float32"), tuple(out["caches"]), key_valid,
                ops.max(positions, axis=-1) + 1)

    def _decode_loop(self, logits, caches, key_valid, next_pos, start, num_new, uniforms, s, do_sample):
        """Up to `num_new` decoding steps over static-shape caches; one compiled function for every
        prompt length and position that fits the caches' T slots.

        Args: logits [B, V] of the token before slot `start`; caches [B, T, width] per layer;
        key_valid [B, T]; next_pos [B]; start, num_new: int32 scalars (tensors, not compile-time
        constants); uniforms [T, B] (row i drives step i when sampling); s: `sampling_settings`
        (tensors too); do_sample: the one setting compiled in.
        Returns (new tokens [B, T] (the first `steps` columns are meaningful), steps)."""
        B, T = key_valid.shape[0], key_valid.shape[1]
        start, num_new = ops.cast(start, "int32"), ops.cast(num_new, "int32")
        pad = ops.cast(s["pad"], "int32")
        new_tokens = ops.zeros((B, T), dtype="int32") + pad
        finished = ops.zeros((B,), "bool")
        eos = ops.cast(s["eos"], "int32")  # [MAX_EOS_IDS], -1 where unused: never a token
        # Loop-invariant per-layer weights, computed here once rather than at every step.
        absorbed = [layer.self_attn.absorbed_kernels() for layer in self.model.decoder_layers]

        def cond(i, logits, caches, key_valid, new_tokens, finished, next_pos):
            return ops.logical_and(i < num_new, ops.logical_not(ops.all(finished)))

        def body(i, logits, caches, key_valid, new_tokens, finished, next_pos):
            token = self._choose(logits, ops.take(uniforms, i, axis=0), do_sample, s)
            token = ops.where(finished, pad, token)
            slot = start + i
            new_tokens = ops.slice_update(new_tokens, (0, i), token[:, None])
            finished = ops.logical_or(finished, ops.any(token[:, None] == eos[None, :], axis=-1))
            key_valid = ops.slice_update(key_valid, (0, slot), ops.ones((B, 1), "int32"))
            out = self.model(token[:, None], position_ids=next_pos[:, None], caches=list(caches),
                             cache_index=slot, key_valid=key_valid, absorb=True, cache_in_place=True,
                             absorbed=absorbed)
            logits = self.logits_from_hidden(out["last_hidden_state"])[:, 0]
            return (i + 1, ops.cast(logits, "float32"), tuple(out["caches"]), key_valid, new_tokens, finished,
                    next_pos + 1)

        state = (ops.convert_to_tensor(0, "int32"), ops.cast(logits, "float32"), tuple(caches),
                 ops.cast(key_valid, "int32"), new_tokens, finished, ops.cast(next_pos, "int32"))
        state = ops.while_loop(cond, body, state)
        return state[4], state[0]

    def _compiled(self, run, jit_compile=True):
        """`run` as one compiled function: jax.jit with the variables passed in (StatelessScope),
        tf.function on TensorFlow; as is on PyTorch (or when jit_compile is False)."""
        backend = keras.backend.backend()
        if jit_compile and backend == "jax":
            import jax

            variables = list(self.variables)

            def stateless(values, *args):
                with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                    return run(*args)

            jitted = jax.jit(stateless)
            return lambda *args: jitted([v.value for v in variables], *args)
        if jit_compile and backend == "tensorflow":
            import tensorflow as tf

            return tf.function(run, reduce_retracing=False)
        if backend == "torch":  # eager, without autograd bookkeeping
            import torch

            def no_grad(*args):
                with torch.no_grad():
                    return run(*args)

            return no_grad
        return run

    # Compiled generation loops capture the model's variables when built: whatever replaces or adds
    # variables (quantization, LoRA adapters, merging them) resets compiled functions, these too.
    # Generation sees LoRA adapters: the absorbed decode reads kv_b_proj's kernel through Keras'
    # `kernel` property, which adds the LoRA delta, and every other projection is called as a layer.
    def _reset_compiled_functions(self):
        self._generate_functions().clear()
        super()._reset_compiled_functions()

    def _generate_functions(self):
        """The model's one LRU of compiled generation functions (cached and uncached paths share
        it). It lives in the instance __dict__: a Keras attribute would be wrapped as a tracked
        dict, which has no `move_to_end`."""
        return self.__dict__.setdefault("_generate_fns", collections.OrderedDict())

    def _decode_function(self, batch, total, do_sample, jit_compile=True):
        """The compiled `_decode_loop` for `batch` rows over caches of `total` slots:
        fn(logits, caches, key_valid, next_pos, start, num_new, uniforms, settings) -> (new tokens, steps)."""
        return self._generate_function(("decode", batch, total, bool(do_sample)), jit_compile,
                                       lambda *args: self._decode_loop(*args, do_sample=bool(do_sample)))

    def _generate_function(self, key, jit_compile, run):
        """The compiled function for `key` from a small LRU (most recent GENERATE_FUNCTIONS kept):
        cache lengths are bucketed, so a stream of prompts reuses a few functions and the number
        held stays bounded whatever the lengths."""
        key = (keras.backend.backend(), jit_compile) + key
        functions = self._generate_functions()
        if key in functions:
            functions.move_to_end(key)
        else:
            functions[key] = self._compiled(run, jit_compile)
            while len(functions) > GENERATE_FUNCTIONS:
                functions.popitem(last=False)
        return functions[key]

    def _full_forward(self):
        """Compiled fn(tokens [B, T], mask [B, T], positions [B, T]) -> logits [B, T, V] float32."""
        def forward(tokens, mask, positions):
            out = self.model(tokens, attention_mask=mask, position_ids=positions)
            return ops.cast(self.logits_from_hidden(out["last_hidden_state"]), "float32")

        return self._generate_function(("full_forward",), True, forward)

    def _processed_scores(self, sequences, attention_mask, prompt, do_sample, temperature, top_k, top_p):
        """(scores of new token 1, 2, ...): each a [B, V] array, from one forward pass over
        `sequences` [B, P + N] (generated tokens, pads of finished rows included, attended as
        transformers attends them)."""
        tokens = np.asarray(ops.convert_to_numpy(sequences)).astype("int32")
        B, T = tokens.shape
        mask = np.ones((B, T), "int32")
        if attention_mask is not None:
            mask[:, :prompt] = np.asarray(ops.convert_to_numpy(attention_mask)) != 0
        positions = np.where(mask == 0, 1, np.cumsum(mask, axis=-1) - 1).astype("int32")
        logits = np.asarray(ops.convert_to_numpy(self._full_forward()(tokens, mask, positions)))
        return tuple(processed_scores(logits[:, t], do_sample, temperature, top_k, top_p)
                     for t in range(prompt - 1, T - 1))

    def _generate_uncached(self, ids, mask, uniforms, do_sample, s, prompt, max_new):
        """Reference path without a cache: at every step the whole [B, P + max_new] buffer is run
        through the model (a fixed shape, so it compiles once) and the logits of the last real
        token are read; causality makes the not-yet-written slots irrelevant."""
        P, N = prompt, max_new
        pad, eos = int(s["pad"]), [int(e) for e in s["eos"] if e >= 0]
        B, T = ids.shape[0], P + N
        forward = self._full_forward()
        tokens = np.full((B, T), pad, "int32")
        tokens[:, :P] = ids
        full_mask = np.zeros((B, T), "int32")
        full_mask[:, :P] = mask
        finished = np.zeros((B,), bool)
        steps = 0
        for i in range(N):
            positions = np.where(full_mask == 0, 1, np.cumsum(full_mask, axis=-1) - 1).astype("int32")
            logits = forward(tokens, full_mask, positions)[:, P + i - 1]
            token = self._choose(logits, ops.convert_to_tensor(uniforms[i]), do_sample, s)
            token = np.where(finished, pad, np.asarray(ops.convert_to_numpy(token))).astype("int32")
            tokens[:, P + i] = token
            full_mask[:, P + i] = 1
            if eos:
                finished |= np.isin(token, eos)
            steps += 1
            if finished.all():
                break
        return tokens, steps
