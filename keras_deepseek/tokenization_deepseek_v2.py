"""DeepSeek-V2 tokenizer: the Hub's `tokenizer.json` (byte-level BPE) run by the `tokenizers` library.

DeepSeek-V2 checkpoints ship an HF "fast" tokenizer: `tokenizer.json` (BPE model, a Sequence of
Split regexes + ByteLevel pre-tokenizer, ByteLevel decoder) and `tokenizer_config.json` (class
LlamaTokenizerFast, bos "<｜begin▁of▁sentence｜>", eos "<｜end▁of▁sentence｜>", add_bos_token,
chat_template). `tokenizers.Tokenizer.from_file` reads that file as data (no code runs), and it is
the engine transformers itself uses, so the ids are transformers' by construction. transformers 5
loads such a repo as `TokenizersBackend` (LlamaTokenizer would impose a Metaspace pre-tokenizer on a
byte-level file); the rules below are that class's:

- tokenizer.json's post-processor adds the special tokens (DeepSeek's: a TemplateProcessing
  `bos $A`); `add_bos_token` / `add_eos_token` in tokenizer_config.json are ignored, as transformers
  5 ignores them when a tokenizer.json exists. Passed as keywords to `from_pretrained`, they rebuild
  the post-processor as `[bos] $A [eos]`.
- Special tokens named in the config but missing from the vocabulary are added as special tokens.
- Decoding ignores `clean_up_tokenization_spaces` for BPE (transformers 5 skips that clean-up for
  BPE models because it removes real spaces before punctuation).

Differences, on purpose: padding is on the LEFT unless tokenizer_config.json names a side
(decoder-only generation needs the prompt to end at the last column; transformers'
TokenizersBackend defaults to right).
Chat templates render in jinja2's ImmutableSandboxedEnvironment, as transformers does: a template
from a downloaded repo cannot reach Python internals.
"""

import json
import numbers
import os

import numpy as np

from presets.hub import resolve_checkpoint_dir
from presets.io import atomic_write_text, read_json_object
from presets.loading_options import pop_loading_options
from presets.tokenizer_types import (VERY_LARGE_INTEGER, BatchEncoding, TokenizerFileError, as_framework_tensors,
                                     model_max_length_of, padding_of, tensor_type_of)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # transformers 5 saves the template beside the config
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")

# The result of a call, under this module's earlier name.
Encoding = BatchEncoding


def _token_text(value):
    """A special token from tokenizer_config.json: a string or an AddedToken dict ({"content": ...})."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise TokenizerFileError(f"cannot read a special token from {value!r}")


class DeepseekV2Tokenizer:
    """DeepSeek-V2 tokenizer over a `tokenizers.Tokenizer` (byte-level BPE from tokenizer.json).

    Args:
        tokenizer_object: a `tokenizers.Tokenizer`.
        config: the contents of tokenizer_config.json (kept whole, so unknown keys survive
            `save_pretrained`); keyword arguments override its entries.
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, tokenizer_object, config=None, **overrides):
        from tokenizers import AddedToken

        self.init_config = {**(config or {}), **overrides}
        cfg = self.init_config
        self._tokenizer = tokenizer_object
        # Padding and truncation happen per call below; settings baked into tokenizer.json would
        # silently apply to every call otherwise.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

        for name in SPECIAL_TOKEN_NAMES:
            setattr(self, name, _token_text(cfg.get(name)))
        missing = [t for t in (getattr(self, n) for n in SPECIAL_TOKEN_NAMES)
                   if t is not None and self._tokenizer.token_to_id(t) is None]
        if missing:
            self._tokenizer.add_special_tokens([AddedToken(t, special=True) for t in dict.fromkeys(missing)])

        # transformers 5 drops add_bos_token / add_eos_token read from tokenizer_config.json when a
        # tokenizer.json exists: that file's post-processor decides. Passed explicitly (a keyword),
        # they rebuild it as `[bos] $A [eos]`.
        if "add_bos_token" in overrides or "add_eos_token" in overrides:
            self._set_post_processor(bool(overrides.get("add_bos_token", False)),
                                     bool(overrides.get("add_eos_token", False)))
        bare = self._tokenizer.encode("", add_special_tokens=True).ids
        self.add_bos_token = self.bos_token_id is not None and bare[:1] == [self.bos_token_id]
        self.add_eos_token = self.eos_token_id is not None and bare[-1:] == [self.eos_token_id]

        self.padding_side = cfg.get("padding_side") or "left"
        self.truncation_side = cfg.get("truncation_side") or "right"
        for name, side in (("padding_side", self.padding_side), ("truncation_side", self.truncation_side)):
            if side not in ("left", "right"):
                raise TokenizerFileError(f"{name} must be 'left' or 'right', got {side!r}")
        max_length = cfg.get("model_max_length")
        self.model_max_length = int(max_length) if isinstance(max_length, numbers.Real) else VERY_LARGE_INTEGER
        self.chat_template = cfg.get("chat_template")
        if isinstance(self.chat_template, list):  # several named templates: use "default"
            named = {t.get("name"): t.get("template") for t in self.chat_template if isinstance(t, dict)}
            self.chat_template = named.get("default")

    def _set_post_processor(self, add_bos, add_eos):
        from tokenizers import processors

        add_bos = add_bos and self.bos_token is not None
        add_eos = add_eos and self.eos_token is not None
        first = ([f"{self.bos_token}:0"] if add_bos else []) + ["$A:0"] + ([f"{self.eos_token}:0"] if add_eos else [])
        second = ([f"{self.bos_token}:1"] if add_bos else []) + ["$B:1"] + ([f"{self.eos_token}:1"] if add_eos else [])
        specials = ([(self.bos_token, self.bos_token_id)] if add_bos else []) + \
                   ([(self.eos_token, self.eos_token_id)] if add_eos else [])
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=" ".join(first), pair=" ".join(first + second), special_tokens=specials)

    # --- loading and saving ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, **overrides):
        """Loads tokenizer.json (+ tokenizer_config.json, chat_template.jinja when present) from a
        directory, or from a Hub id already in the local cache (downloads only when online). transformers'
        loading keywords (token, cache_dir, subfolder, ...: presets/loading_options.py) go to the
        download and are never stored; other keywords override tokenizer_config.json's entries."""
        from tokenizers import Tokenizer

        directory = resolve_checkpoint_dir(name_or_path, **pop_loading_options(overrides))
        path = os.path.join(directory, TOKENIZER_FILE)
        if not os.path.isfile(path):
            raise TokenizerFileError(
                f"no {TOKENIZER_FILE} in {directory}: DeepseekV2Tokenizer reads the byte-level BPE "
                f"tokenizer.json that DeepSeek-V2 checkpoints ship")
        try:
            backend = Tokenizer.from_file(path)
        except Exception as e:  # the Rust parser raises a bare Exception with the serde message
            raise TokenizerFileError(f"{path} is not a valid tokenizers file: {e}") from None
        config = {}
        config_path = os.path.join(directory, CONFIG_FILE)
        if os.path.isfile(config_path):
            config = read_json_object(config_path, TokenizerFileError)
        # The checkpoint's input limit: the config's, else the model's position table (config.json)
        limit = model_max_length_of(directory, config.get("model_max_length"), None)
        if limit is not None:
            config["model_max_length"] = limit
        template_path = os.path.join(directory, CHAT_TEMPLATE_FILE)
        if os.path.isfile(template_path):
            with open(template_path, encoding="utf-8") as f:
                config["chat_template"] = f.read()
        return cls(backend, config, **overrides)

    def save_pretrained(self, directory):
        """Writes tokenizer.json and tokenizer_config.json (each atomically) that this class and
        transformers' AutoTokenizer load back identically. Returns the written paths."""
        os.makedirs(directory, exist_ok=True)
        # tokenizer.json carries the post-processor in use (the one that adds bos / eos); the flags
        # in the config only describe it.
        config = dict(self.init_config)
        config.update(padding_side=self.padding_side, truncation_side=self.truncation_side,
                      add_bos_token=self.add_bos_token, add_eos_token=self.add_eos_token)
        config.setdefault("tokenizer_class", "LlamaTokenizerFast")
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        paths = [os.path.join(directory, TOKENIZER_FILE), os.path.join(directory, CONFIG_FILE)]
        atomic_write_text(paths[0], self._tokenizer.to_str())
        atomic_write_text(paths[1], json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return paths

    # --- vocabulary ------------------------------------------------------------------------------
    @property
    def backend_tokenizer(self):
        return self._tokenizer

    @property
    def vocab_size(self):
        """The BPE vocabulary without added tokens (transformers' `vocab_size`)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self):
        """Every id the tokenizer can produce, added tokens included (transformers' `len(tok)`)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def max_token_id(self):
        return max(self._tokenizer.get_vocab(with_added_tokens=True).values())

    def get_vocab(self):
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self._tokenizer.token_to_id(tokens)
        return [self._tokenizer.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, numbers.Integral):
            return self._tokenizer.id_to_token(int(ids))
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def _id(self, token):
        return None if token is None else self._tokenizer.token_to_id(token)

    bos_token_id = property(lambda self: self._id(self.bos_token))
    eos_token_id = property(lambda self: self._id(self.eos_token))
    pad_token_id = property(lambda self: self._id(self.pad_token))
    unk_token_id = property(lambda self: self._id(self.unk_token))

    @property
    def all_special_ids(self):
        return sorted({i for i in (self.bos_token_id, self.eos_token_id, self.pad_token_id, self.unk_token_id)
                       if i is not None})

    # --- encoding --------------------------------------------------------------------------------
    def tokenize(self, text, add_special_tokens=False):
        return self._tokenizer.encode(_check_text(text), add_special_tokens=add_special_tokens).tokens

    def encode(self, text, add_special_tokens=True, truncation=False, max_length=None):
        """Token ids of one text (a list of ints)."""
        return self(text, add_special_tokens=add_special_tokens, truncation=truncation, max_length=max_length,
                    return_attention_mask=False)["input_ids"]

    def __call__(self, text, add_special_tokens=True, padding=False, truncation=False, max_length=None,
                 pad_to_multiple_of=None, padding_side=None, return_tensors=None, return_attention_mask=True,
                 return_length=False, pad_to_max_length=False):
        """Encodes one text or a list of texts.

        Args:
            text: a string or a list of strings.
            add_special_tokens: add bos (and eos) as tokenizer_config.json says.
            padding: False / "do_not_pad"; True / "longest" (to the longest in the batch);
                "max_length" (to `max_length`).
            truncation: True / "longest_first" / "only_first" cut each text to `max_length` tokens
                (special tokens included) on `truncation_side`; False keeps every token.
            max_length: the length for truncation and "max_length" padding (default:
                model_max_length).
            pad_to_multiple_of: round padded lengths up to a multiple of this.
            padding_side: "left" or "right" (default: `self.padding_side`, "left").
            return_tensors: None (lists) or "np" ([batch, length] int32 arrays; a single text
                gives a batch of one, as transformers does), "tf", "pt" or "jax" (or
                transformers' `TensorType`): that framework's tensors, on any Keras backend.
            pad_to_max_length: transformers 4's deprecated spelling of padding="max_length"
                (padding=True without a max_length).
        Returns:
            A `BatchEncoding` with input_ids (and attention_mask, length when asked).
        """
        single = isinstance(text, str)
        texts = [text] if single else list(_check_texts(text))
        framework = tensor_type_of(return_tensors)
        return_tensors = framework and "np"  # numpy first; another framework's tensors at the end
        padding = padding_of(padding, pad_to_max_length, max_length)
        padding_side = padding_side or self.padding_side
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        padding = {True: "longest", False: "do_not_pad", None: "do_not_pad"}.get(padding, padding)
        if padding not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        truncation = {True: "longest_first", False: None, None: None,
                      "do_not_truncate": None}.get(truncation, truncation)
        if truncation not in (None, "longest_first", "only_first"):
            raise ValueError(f"truncation must be True, False, 'longest_first' or 'only_first' for single texts, "
                             f"got {truncation!r}")
        if max_length is None and (truncation or padding == "max_length"):
            max_length = self.model_max_length
        if max_length is not None and (not isinstance(max_length, numbers.Integral) or max_length < 1):
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")

        if truncation and max_length < VERY_LARGE_INTEGER:
            # The backend leaves room for the special tokens the post-processor adds, as transformers does.
            self._tokenizer.enable_truncation(int(max_length), direction=self.truncation_side)
        try:
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self._tokenizer.no_truncation()
        ids = [list(e.ids) for e in encodings]
        lengths = [len(row) for row in ids]

        if padding != "do_not_pad":
            ids, masks = self._pad(ids, padding, max_length, pad_to_multiple_of, padding_side)
        else:
            masks = [[1] * n for n in lengths]
        if return_tensors == "np":
            if len(set(map(len, ids))) > 1:
                raise ValueError("texts of different lengths cannot form one array: pass padding=True "
                                 "(or return_tensors=None for lists)")
            width = len(ids[0]) if ids else 0
            ids = np.asarray(ids, dtype="int32").reshape(len(ids), width)
            masks = np.asarray(masks, dtype="int32").reshape(len(masks), width)
        elif single:
            ids, masks, lengths = ids[0], masks[0], lengths[0]
        out = BatchEncoding({"input_ids": ids})
        if return_attention_mask:
            out["attention_mask"] = masks
        if return_length:
            out["length"] = np.asarray(lengths, "int32") if return_tensors == "np" else lengths
        return as_framework_tensors(out, framework)

    def _pad(self, ids, padding, max_length, pad_to_multiple_of, padding_side):
        if self.pad_token_id is None:
            raise ValueError(
                "this tokenizer has no pad_token (tokenizer_config.json names none); set "
                "tokenizer.pad_token = tokenizer.eos_token to pad with the eos token")
        width = max(map(len, ids), default=0) if padding == "longest" else max_length
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        padded, masks = [], []
        for row in ids:
            fill = max(0, width - len(row))
            if padding_side == "left":
                padded.append([self.pad_token_id] * fill + row)
                masks.append([0] * fill + [1] * len(row))
            else:
                padded.append(row + [self.pad_token_id] * fill)
                masks.append([1] * len(row) + [0] * fill)
        return padded, masks

    # --- decoding --------------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        """Text of one sequence of ids. `clean_up_tokenization_spaces` is accepted and ignored, as
        transformers 5 ignores it for BPE tokenizers."""
        del clean_up_tokenization_spaces
        return self._tokenizer.decode(_ids_list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        rows = np.asarray(sequences).tolist() if isinstance(sequences, np.ndarray) else sequences
        return self._tokenizer.decode_batch([_ids_list(r) for r in rows], skip_special_tokens=skip_special_tokens)

    # --- chat ------------------------------------------------------------------------------------
    def apply_chat_template(self, conversation, add_generation_prompt=False, continue_final_message=False,
                            tokenize=True, return_dict=True, chat_template=None, padding=False,
                            truncation=False, max_length=None, return_tensors=None, **template_kwargs):
        """Renders a chat (a list of {"role", "content"} dicts, or a list of chats) with the chat
        template in a sandboxed jinja2 environment, then tokenizes it without adding special tokens
        (the template writes them), like transformers.

        Returns the rendered string(s) when `tokenize=False`; else a `BatchEncoding` (return_dict=True,
        the transformers 5 default) or the ids.
        """
        template = chat_template if chat_template is not None else self.chat_template
        if template is None:
            raise ValueError("this tokenizer has no chat_template (tokenizer_config.json has none); pass "
                             "chat_template=... or give plain text prompts")
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        chats = list(conversation) if batched else [conversation]
        special = {name: getattr(self, name) for name in SPECIAL_TOKEN_NAMES}
        texts = [render_chat(template, chat, add_generation_prompt=add_generation_prompt,
                             continue_final_message=continue_final_message, **{**special, **template_kwargs})
                 for chat in chats]
        if not tokenize:
            return texts if batched else texts[0]
        enc = self(texts if batched else texts[0], add_special_tokens=False, padding=padding, truncation=truncation,
                   max_length=max_length, return_tensors=return_tensors)
        return enc if return_dict else enc["input_ids"]


# --- chat template rendering ---------------------------------------------------------------------
_CONTINUE_TAG = "\x00CONTINUE_FINAL_MESSAGE\x00"


def _compile_template(source):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # jinja's own tojson escapes HTML characters, which chat templates do not expect.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        import datetime

        return datetime.datetime.now().strftime(fmt)

    # Templates come from downloaded repos: the immutable sandbox refuses attribute access to
    # Python internals and mutation of the objects we pass in.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def render_chat(template, messages, add_generation_prompt=False, continue_final_message=False, **variables):
    """The chat template's text for `messages`; with `continue_final_message` the text stops at the
    end of the last message's content, so generation continues it (an assistant prefill)."""
    import jinja2

    messages = [dict(m) for m in _check_chat(messages)]
    if continue_final_message:
        if add_generation_prompt:
            raise ValueError("add_generation_prompt and continue_final_message cannot both be set: the first "
                             "starts a new assistant message, the second continues the last one")
        if not isinstance(messages[-1].get("content"), str):
            raise ValueError("continue_final_message needs a final message with string content")
        messages[-1]["content"] += _CONTINUE_TAG
    try:
        text = _compile_template(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                  **variables)
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"the chat template failed: {e}") from None
    if continue_final_message:
        if _CONTINUE_TAG not in text:
            raise ValueError("continue_final_message: the chat template does not write the final message's content")
        text = text[: text.index(_CONTINUE_TAG)]
    return text


# --- input checks --------------------------------------------------------------------------------
def _check_text(text):
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    return text


def _check_texts(texts):
    texts = list(texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"expected a string or a list of strings, got a list holding {bad[0]}")
    return texts


def _check_chat(messages):
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("a chat is a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"chat message {i} must be a dict with 'role' and 'content', got {m!r}")
    return messages


def _ids_list(ids):
    if isinstance(ids, numbers.Integral):
        return [int(ids)]
    if hasattr(ids, "numpy") and not isinstance(ids, np.ndarray):
        ids = ids.numpy()
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"decode takes one sequence of ids (1-D), got shape {arr.shape}; use batch_decode")
    return [int(i) for i in arr.tolist()]
