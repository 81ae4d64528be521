"""Special and added tokens of the DeBERTa tokenizers, as transformers keeps them: named special
tokens (settable `*_token` / `*_token_id`), extra ("additional") special tokens, and the table of
tokens matched in the text before the model sees it (`add_tokens`, `add_special_tokens`).
"""

import re
from typing import NamedTuple

from presets.tokenizer_types import TokenizerFileError

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class AddedToken(NamedTuple):
    """A token matched in the text before the model sees it (transformers' AddedToken fields)."""
    content: str
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = True
    single_word: bool = False
    special: bool = False


def as_added_token(token, special=False):
    """An AddedToken from a string, a `tokenizers.AddedToken`, ours, or transformers' saved dict."""
    if isinstance(token, str):
        return AddedToken(token, normalized=not special, special=bool(special))
    if isinstance(token, dict) and isinstance(token.get("content"), str):
        fields = {k: bool(token[k]) for k in AddedToken._fields[1:] if k in token}
        return AddedToken(token["content"], **{"normalized": not fields.get("special", special), **fields})
    if isinstance(getattr(token, "content", None), str):
        return AddedToken(token.content, *(bool(getattr(token, k, d)) for k, d in
                                           zip(AddedToken._fields[1:], AddedToken._field_defaults.values())))
    raise TypeError(f"a token must be a string or an AddedToken, got {type(token).__name__}")


def added_tokens_by_id(added_tokens):
    """{id: AddedToken} from {id: AddedToken / str / dict} or the older {content: id or (id, lstrip, rstrip)}."""
    out = {}
    for key, value in (added_tokens or {}).items():
        if isinstance(key, str):
            idx, lstrip, rstrip = tuple(value) if isinstance(value, (tuple, list)) else (value, False, False)
            out[int(idx)] = AddedToken(key, lstrip=bool(lstrip), rstrip=bool(rstrip), normalized=False)
        else:
            out[int(key)] = as_added_token(value)
    return out


def _special_token_property(name):
    def get(self):
        return self._special.get(name)

    def set(self, value):
        self._special[name] = None if value is None else as_added_token(value).content

    return property(get, set, doc=f"The {name.replace('_', ' ')} (a string, or None); settable, as in "
                                  f"transformers (setting it does not add it to the vocabulary).")


def _special_id_property(name):
    def get(self):
        content = self._special.get(name)
        return None if content is None else self.convert_tokens_to_ids(content)

    def set(self, value):
        self._special[name] = None if value is None else self.convert_ids_to_tokens(int(value))

    return property(get, set, doc=f"The id of the {name.replace('_', ' ')}; settable (names the token of that id).")


class SpecialTokensMixin:
    """Special and added tokens over `self._model` (see tokenization_utils); state set up by
    `DebertaTokenizerBase._init_tokens`: `_special` {name: content}, `_extra_special` [content],
    `_added_decoder` {id: AddedToken}, `_added` {content: id}, `_added_flags` {content: (lstrip,
    rstrip)} (read by the in-graph preprocessors)."""

    # ---- added tokens ------------------------------------------------------------------------
    def _add_token(self, token, idx=None):
        """Registers `token` (at `idx` when known); returns True when it took a new id."""
        base = self._model.token_to_id(token.content)
        new = base is None and idx is None
        if self._model.owns_added_tokens:
            got = self._model.add_token(token)
            if idx is not None and got != idx:
                raise TokenizerFileError(f"added token {token.content!r} has id {idx} in the config but {got} "
                                         f"in the tokenizer (ids of added tokens must follow the vocabulary)")
            idx = got
        elif idx is None:
            idx = base if base is not None else len(self)
        old = self._added_decoder.get(idx)
        if old is not None and old.content != token.content:
            self._added.pop(old.content, None)
            self._added_flags.pop(old.content, None)
        self._added_decoder[idx] = token
        self._added[token.content] = idx
        self._added_flags[token.content] = (token.lstrip, token.rstrip)
        self._patterns = {}
        return new

    def add_tokens(self, new_tokens, special_tokens=False):
        """Adds tokens matched in the text before the model; returns how many took a new id (a token
        already in the vocabulary keeps its id). Resize the model's embeddings to `len(tokenizer)`."""
        if not new_tokens:
            return 0
        added = 0
        for token in new_tokens if isinstance(new_tokens, (list, tuple)) else [new_tokens]:
            if isinstance(token, str) and (token == "" or token in self._added):
                continue
            is_special = special_tokens or (isinstance(token, str) and token in self.all_special_tokens)
            token = as_added_token(token, special=is_special)
            if special_tokens and not token.special:
                token = token._replace(special=True)
            if token.content == "" or self._added_decoder.get(self._added.get(token.content)) == token:
                continue
            if not token.special and token.normalized and self._model.lowercases:
                token = token._replace(content=token.content.lower())  # as transformers: matched lower-cased
            added += self._add_token(token, self._added.get(token.content))
            if token.special and token.content not in self.all_special_tokens:
                self._extra_special.append(token.content)
        return added

    def add_special_tokens(self, special_tokens_dict, replace_extra_special_tokens=True,
                           replace_additional_special_tokens=None):
        """Sets named special tokens ({"pad_token": "[PAD]", ...}) and extra ones
        ("extra_special_tokens" or "additional_special_tokens": [...]), adding those not yet known;
        returns how many took a new id. `replace_additional_special_tokens` is transformers 4's
        name of `replace_extra_special_tokens`."""
        if replace_additional_special_tokens is not None:
            replace_extra_special_tokens = replace_additional_special_tokens
        tokens = dict(special_tokens_dict or {})
        if "additional_special_tokens" in tokens and not tokens.get("extra_special_tokens"):
            tokens["extra_special_tokens"] = tokens.pop("additional_special_tokens")
        to_add = []
        for key, value in tokens.items():
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"Tokens {value} for key {key} should be a list of str or AddedToken")
                new = [as_added_token(t, special=True)._replace(special=True) for t in value]
                if replace_extra_special_tokens:
                    self._extra_special = [t.content for t in new]
                else:
                    self._extra_special += [t.content for t in new if t.content not in self._extra_special]
                to_add += new
            elif key in SPECIAL_TOKEN_NAMES:
                token = as_added_token(value, special=True)._replace(special=True)
                self._special[key] = token.content
                to_add.append(token)
            else:
                raise ValueError(f"Key {key} is not a valid special token. Valid keys are: "
                                 f"{list(SPECIAL_TOKEN_NAMES) + ['extra_special_tokens']}")
        return self.add_tokens(to_add, special_tokens=True)

    @property
    def additional_special_tokens(self):
        """Special tokens beyond the named ones (transformers 4 name; 5 calls them
        extra_special_tokens); None after being set to None, as transformers reads it."""
        if not self._extra_special and getattr(self, "_extra_special_unset", False):
            return None
        return list(self._extra_special)

    @additional_special_tokens.setter
    def additional_special_tokens(self, tokens):
        self._extra_special_unset = tokens is None
        self._extra_special = [as_added_token(t).content for t in (tokens or [])]

    extra_special_tokens = additional_special_tokens

    @property
    def additional_special_tokens_ids(self):
        """Ids of `additional_special_tokens`; settable (names the tokens of those ids), as in transformers."""
        return self.convert_tokens_to_ids(self._extra_special)

    @additional_special_tokens_ids.setter
    def additional_special_tokens_ids(self, ids):
        self.additional_special_tokens = None if ids is None else [self.convert_ids_to_tokens(int(i)) for i in ids]

    extra_special_tokens_ids = additional_special_tokens_ids

    @property
    def special_tokens_map(self):
        return {name: content for name, content in self._special.items() if content is not None}

    @property
    def all_special_tokens(self):
        return list(dict.fromkeys([c for c in self._special.values() if c is not None] + self._extra_special))

    @property
    def all_special_ids(self):
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def added_tokens_decoder(self):
        return dict(sorted(self._added_decoder.items()))

    @property
    def added_tokens_encoder(self):
        return {token.content: idx for idx, token in sorted(self._added_decoder.items())}

    def get_added_vocab(self):
        return self.added_tokens_encoder

    def _pattern(self, split_special):
        """The regex of added tokens (longest first, as transformers' trie), cached."""
        if split_special not in self._patterns:
            alternatives = []
            for content in sorted(self._added, key=len, reverse=True):
                token = self._added_decoder[self._added[content]]
                if split_special and token.special:
                    continue
                body = re.escape(content)
                if token.normalized and self._model.lowercases:
                    body = f"(?i:{body})"
                if token.single_word:
                    body = rf"(?<!\w){body}(?!\w)"
                alternatives.append(body)
            self._patterns[split_special] = re.compile("|".join(alternatives)) if alternatives else None
        return self._patterns[split_special]

    def _split_added(self, text, split_special=False):
        """[(text, start, end, added token or None)]: added tokens matched as transformers does (a token
        with lstrip / rstrip also takes the whitespace beside it); None when the text holds none."""
        pattern = self._pattern(split_special)
        first = None if pattern is None else pattern.search(text)
        if first is None:
            return None
        parts, pos = [], 0
        for m in pattern.finditer(text, first.start()):
            start, end = m.span()
            token = self._added_decoder[self._added[m.group() if m.group() in self._added else m.group().lower()]]
            if token.lstrip:
                while start > pos and text[start - 1].isspace():
                    start -= 1
            if token.rstrip:
                while end < len(text) and text[end].isspace():
                    end += 1
            if start > pos:
                parts.append((text[pos:start], pos, start, None))
            parts.append((text[start:end], start, end, token))
            pos = end
        if pos < len(text):
            parts.append((text[pos:], pos, len(text), None))
        return parts


for _name in SPECIAL_TOKEN_NAMES:
    setattr(SpecialTokensMixin, _name, _special_token_property(_name))
    setattr(SpecialTokensMixin, _name + "_id", _special_id_property(_name))
del _name
