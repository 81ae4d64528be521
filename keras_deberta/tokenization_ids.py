"""transformers' tokenizer methods on ids already tokenized: `prepare_for_model`,
`truncate_sequences` (both only on transformers' Python backend, and followed as it has them: its
rule for pairs, overflow returned as `overflowing_tokens`) and `pad`.
"""

import numpy as np

from keras_deberta.tokenization_arguments import check_length_arguments
from keras_deberta.tokenization_encoding import TRUNCATION_STRATEGIES, as_int64_array, check_strategy
from presets.tokenizer_types import BatchEncoding, as_framework_tensors, tensor_type_of


class IdsMixin:
    """Part of `DebertaTokenizerBase` (uses its template, special token ids and strategies)."""

    def prepare_for_model(self, ids, pair_ids=None, add_special_tokens=True, padding=False, truncation=False,
                          max_length=None, stride=0, pad_to_multiple_of=None, padding_side=None,
                          return_tensors=None, return_token_type_ids=None, return_attention_mask=None,
                          return_overflowing_tokens=False, return_special_tokens_mask=False, return_length=False,
                          verbose=True, prepend_batch_axis=False):
        """Adds special tokens to ids (and pair_ids), truncates and pads them: transformers' Python
        backend's `prepare_for_model`, its truncation rule and `overflowing_tokens` included."""
        del verbose
        check_length_arguments(self, padding, truncation, max_length, stride, pad_to_multiple_of,
                               add_special_tokens, pair=pair_ids is not None)
        padding, truncation, max_length = self._padding_truncation(padding, truncation, max_length,
                                                                   pad_to_multiple_of)
        framework = tensor_type_of(return_tensors)
        return_tensors = framework and "np"
        if return_overflowing_tokens and truncation == "longest_first" and pair_ids is not None:
            raise ValueError("Not possible to return overflowing tokens for pair of sequences with the "
                             "`longest_first`. Please select another truncation strategy than `longest_first`, "
                             "for instance `only_second` or `only_first`.")
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        ids, pair_ids = [int(i) for i in ids], None if pair_ids is None else [int(i) for i in pair_ids]
        n_special = self.num_special_tokens_to_add(pair_ids is not None) if add_special_tokens else 0
        total = len(ids) + len(pair_ids or []) + n_special
        overflowing = []
        if truncation is not None and max_length and total > max_length:
            ids, pair_ids, overflowing = self.truncate_sequences(ids, pair_ids, total - max_length, truncation, stride)
        if add_special_tokens:
            sequence = self.build_inputs_with_special_tokens(ids, pair_ids)
            token_type_ids = self.create_token_type_ids_from_sequences(ids, pair_ids)
        else:
            sequence = ids + (pair_ids or [])
            token_type_ids = [0] * len(sequence)
        out = {"input_ids": sequence}
        if return_token_type_ids:
            out["token_type_ids"] = token_type_ids
        if return_special_tokens_mask:
            out["special_tokens_mask"] = (self.get_special_tokens_mask(ids, pair_ids) if add_special_tokens
                                          else [0] * len(sequence))
        if return_overflowing_tokens and not return_tensors and overflowing:
            out["overflowing_tokens"] = overflowing
            out["num_truncated_tokens"] = total - max_length if max_length else 0
        if padding is not None or return_attention_mask:
            out = self._pad_one(out, max_length, padding, pad_to_multiple_of, padding_side, return_attention_mask)
        if return_length:
            out["length"] = len(out["input_ids"])
        if return_tensors == "np":
            out = {k: np.asarray([v] if prepend_batch_axis else v, dtype=np.int64) for k, v in out.items()}
        return as_framework_tensors(BatchEncoding(out), framework)

    def truncate_sequences(self, ids, pair_ids=None, num_tokens_to_remove=0, truncation_strategy="longest_first",
                           stride=0):
        """(ids, pair_ids, overflowing_tokens) with `num_tokens_to_remove` tokens removed, as
        transformers' Python backend does it (longest_first on a pair alternates between the two and
        returns no overflow)."""
        if num_tokens_to_remove <= 0:
            return ids, pair_ids, []
        strategy = truncation_strategy
        strategy = "longest_first" if strategy is True else strategy
        strategy = check_strategy(strategy, TRUNCATION_STRATEGIES, "TruncationStrategy")
        right, overflowing = self.truncation_side == "right", []
        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            window = min(len(ids), stride + num_tokens_to_remove)
            overflowing = ids[-window:] if right else ids[:window]
            ids = ids[:-num_tokens_to_remove] if right else ids[num_tokens_to_remove:]
        elif strategy == "longest_first":
            n1, n2 = len(ids), len(pair_ids or [])
            first_remove = min(abs(n2 - n1), num_tokens_to_remove)
            second_remove = num_tokens_to_remove - first_remove
            if n1 > n2:
                from_ids, from_pair = first_remove + second_remove // 2, second_remove - second_remove // 2
            else:
                from_ids, from_pair = second_remove // 2, first_remove + second_remove - second_remove // 2
            if right:
                ids = ids[:-from_ids] if from_ids > 0 else ids
                pair_ids = pair_ids[:-from_pair] if pair_ids and from_pair > 0 else pair_ids
            else:
                ids, pair_ids = ids[from_ids:], pair_ids[from_pair:] if pair_ids else None
        elif strategy == "only_second" and pair_ids:
            window = min(len(pair_ids), stride + num_tokens_to_remove)
            overflowing = pair_ids[-window:] if right else pair_ids[:window]
            pair_ids = pair_ids[:-num_tokens_to_remove] if right else pair_ids[num_tokens_to_remove:]
        return ids, pair_ids, overflowing

    # ---- pad -------------------------------------------------------------------------------------
    def pad(self, encoded_inputs, padding=True, max_length=None, pad_to_multiple_of=None, padding_side=None,
            return_attention_mask=None, return_tensors=None, verbose=True):
        """Pads one encoding or a batch (a dict of lists, a list of dicts, numpy arrays) as
        transformers' `pad`: input_ids with pad_token_id, token_type_ids with pad_token_type_id,
        special_tokens_mask with 1 and a 0 attention mask; other keys are left as they are."""
        del verbose
        check_length_arguments(self, padding, False, max_length, 0, pad_to_multiple_of, add_special_tokens=False)
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], dict):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        encoded_inputs = dict(encoded_inputs)
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise ValueError(f"You should supply an encoding or a list of encodings to this method that includes "
                             f"{main}, but you provided {list(encoded_inputs)}")
        if len(encoded_inputs[main]) == 0:
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return BatchEncoding(encoded_inputs)
        if any(isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and v and isinstance(v[0], np.ndarray))
               for v in encoded_inputs.values()):
            return_tensors = "np" if return_tensors is None else return_tensors
            encoded_inputs = {k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else
                              [np.asarray(x).tolist() for x in v] for k, v in encoded_inputs.items()}
        framework = tensor_type_of(return_tensors)
        return_tensors = framework and "np"
        padding, _, max_length = self._padding_truncation(padding, None, max_length)
        if not isinstance(encoded_inputs[main][0], (list, tuple)):
            out = self._pad_one(encoded_inputs, max_length, padding, pad_to_multiple_of, padding_side,
                                return_attention_mask)
            out = BatchEncoding({k: np.asarray(v, dtype=np.int64) for k, v in out.items()} if return_tensors else out)
            return as_framework_tensors(out, framework)
        n = len(encoded_inputs[main])
        if any(len(v) != n for v in encoded_inputs.values()):
            raise ValueError("Some items in the output dictionary have a different batch size than others.")
        if padding == "longest":
            padding, max_length = "max_length", max(len(x) for x in encoded_inputs[main])
        batch = {}
        for i in range(n):
            out = self._pad_one({k: v[i] for k, v in encoded_inputs.items()}, max_length, padding,
                                pad_to_multiple_of, padding_side, return_attention_mask)
            for key, value in out.items():
                batch.setdefault(key, []).append(value)
        if return_tensors == "np":
            batch = {k: as_int64_array(k, v) for k, v in batch.items()}
        return as_framework_tensors(BatchEncoding(batch), framework)

    def _pad_one(self, encoded, max_length, padding, pad_to_multiple_of, padding_side, return_attention_mask):
        """transformers' `_pad` on one example (a dict of lists)."""
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        encoded = dict(encoded)
        main = self.model_input_names[0]
        required = list(encoded[main])
        if padding == "longest":
            max_length = len(required)
        if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        if return_attention_mask and "attention_mask" not in encoded:
            encoded["attention_mask"] = [1] * len(required)
        difference = 0 if padding is None or max_length is None else max_length - len(required)
        if difference > 0:
            side = padding_side or self.padding_side
            if side not in ("left", "right"):
                raise ValueError(f"Invalid padding side: {side!r}")
            fills = {"attention_mask": 0, "token_type_ids": self.pad_token_type_id, "special_tokens_mask": 1,
                     main: self.pad_token_id}
            for key, fill in fills.items():
                if key in encoded and (key != "attention_mask" or return_attention_mask):
                    values = list(encoded[key])
                    encoded[key] = values + [fill] * difference if side == "right" else [fill] * difference + values
        return encoded
