"""What every keras_deberta pipeline shares: call options, input checks, the length bound, and the
model run over padded batches."""

import numbers

import keras
import numpy as np
from keras import ops

from presets.devices import keras_device_name, on_own_device
from presets.sequence_limits import InputTooLongError, default_max_length, too_long_message

# A batch is padded to its longest row rounded up to a multiple of this: masked padding leaves the
# outputs as they are, and far fewer distinct shapes reach the backend (JAX and TF compile per shape).
PAD_TO_MULTIPLE_OF = 16


def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def positive_int(value, name, upper=None):
    """`value` as an int in [1, upper]; anything else is a ValueError that says what is allowed."""
    allowed = "a positive integer" if upper is None else f"an integer from 1 to {upper}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1 or \
            (upper is not None and value > upper):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_text(text, what="text"):
    """A text to run the model on: a string with something besides whitespace in it."""
    if not isinstance(text, str):
        raise TypeError(f"each {what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"empty {what}: nothing to run the model on")
    return text


def split_texts(inputs, what="text"):
    """([texts], whether one string was given). An empty list is no texts (the answer is an empty
    list, as transformers'); an empty string is an error (there is nothing to answer about)."""
    if isinstance(inputs, str):
        return [check_text(inputs, what)], True
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"the {what} must be a string or a list of strings, got {type(inputs).__name__}")
    return [check_text(text, what) for text in inputs], False


class Pipeline:
    """Runs a model over tokenised batches; subclasses pre- and post-process.

    Every input is bounded: texts are truncated to `max_length` tokens (the tokenizer's
    model_max_length, else the config's max_position_embeddings; presets/sequence_limits.py), or,
    with the call option `truncation=False`, a longer text is an `InputTooLongError`."""

    task = None
    per_token_outputs = False  # outputs are [B, L, ...] (cut to each row's length) or [B, ...]
    call_options = {}  # every option a call accepts, with its default

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__call__" in vars(cls):  # every task's call runs under the pipeline's device scope
            cls.__call__ = on_own_device(vars(cls)["__call__"])

    def __init__(self, model, tokenizer, batch_size=8, device=None, **defaults):
        self._check_known(defaults)
        keras_device_name(device)  # a bad device fails here, not at the first call
        self.device = device  # transformers' device=: calls run under keras.device (presets/devices.py)
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.defaults = dict(defaults, batch_size=batch_size)
        self._options({})  # a bad default fails here, not at the first call

    def _check_known(self, options):
        unknown = set(options) - set(self.call_options) - {"batch_size"}
        if unknown:
            raise TypeError(f"{self.task} pipeline: unknown options {sorted(unknown)}; "
                            f"known: batch_size, {', '.join(sorted(self.call_options))}")

    def _options(self, kwargs):
        """The call's options over the pipeline's defaults over the task's, checked."""
        self._check_known(kwargs)
        options = dict(self.call_options)
        options.update(self.defaults)
        options.update(kwargs)
        return self._check_options(options)

    def _check_options(self, options):
        """Options -> checked options (a ValueError names a bad one); subclasses add their own."""
        options["batch_size"] = positive_int(options["batch_size"], "batch_size")
        if "truncation" in options and not isinstance(options["truncation"], bool):
            raise ValueError(f"truncation must be True (cut long texts) or False (refuse them), "
                             f"got {options['truncation']!r}")
        return options

    @property
    def max_length(self):
        """The most tokens one model input may have (read at each call: a change to the
        tokenizer's model_max_length takes effect)."""
        return default_max_length(self.model, self.tokenizer)

    def _encode(self, text, text_pair=None, truncate=True, offsets=False, strategy="longest_first"):
        """The tokenizer's encoding, at most `max_length` tokens: cut by `strategy`, or with
        truncate=False an InputTooLongError when it is longer."""
        limit = self.max_length
        if limit is None:
            return self.tokenizer(text, text_pair=text_pair, return_offsets_mapping=offsets)
        if truncate:
            return self.tokenizer(text, text_pair=text_pair, truncation=strategy, max_length=limit,
                                  return_offsets_mapping=offsets)
        encoding = self.tokenizer(text, text_pair=text_pair, return_offsets_mapping=offsets)
        if len(encoding["input_ids"]) > limit:
            raise InputTooLongError(too_long_message(len(encoding["input_ids"]), limit,
                                                     "text" if text_pair is None else "text pair"))
        return encoding

    def _run(self, rows, batch_size):
        """rows: [(ids, type_ids)] -> one dict of float32 numpy outputs per row, padding cut off."""
        outputs = []
        pad = self.tokenizer.pad_token_id or 0
        for begin in range(0, len(rows), batch_size):
            chunk = rows[begin:begin + batch_size]
            length = -(-max(len(ids) for ids, _ in chunk) // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF
            ids = np.full((len(chunk), length), pad, dtype="int32")  # [B, L]
            types = np.zeros_like(ids)
            mask = np.zeros_like(ids)
            for i, (row_ids, row_types) in enumerate(chunk):
                n = len(row_ids)
                ids[i, :n], types[i, :n], mask[i, :n] = row_ids, row_types, 1
            inputs = {"input_ids": ids, "attention_mask": mask}
            if self.config.type_vocab_size > 0:
                inputs["token_type_ids"] = types
            out = self._forward(inputs)
            arrays = {k: np.asarray(ops.convert_to_numpy(out[k]), dtype=np.float32)
                      for k in self.model.primary_output_names}
            for i, (row_ids, _) in enumerate(chunk):
                outputs.append({k: v[i, :len(row_ids)] if self.per_token_outputs else v[i]
                                for k, v in arrays.items()})
        return outputs

    def _forward(self, inputs):
        """The model at inference (training=False). On JAX through predict_on_batch: one jitted
        program per shape compiles about 3x faster than the eager call's op-by-op compiles; TF and
        torch run eagerly, where a new shape costs nothing to trace."""
        if keras.backend.backend() == "jax":
            return self.model.predict_on_batch(inputs)
        return self.model(inputs, training=False)

    def _label(self, index):
        id2label = self.config.id2label or {}
        return id2label.get(int(index), id2label.get(str(int(index)), f"LABEL_{int(index)}"))

    def __call__(self, inputs, **kwargs):
        raise NotImplementedError
