"""Fill-mask: the most likely tokens for each mask token of a text."""

import numpy as np

from keras_deberta.pipelines._base import Pipeline, positive_int, softmax, split_texts


class FillMaskPipeline(Pipeline):
    """The top_k fills of the mask token, best first: [{score, token, token_str, sequence}].

    With several masks in one text, one such list per mask (as transformers). top_k is an integer
    from 1 to the vocabulary size."""

    task = "fill-mask"
    per_token_outputs = True
    call_options = {"top_k": 5, "truncation": True}

    def __call__(self, inputs, **kwargs):
        o = self._options(kwargs)
        top_k = o["top_k"]
        texts, single = split_texts(inputs)
        mask_id = self.tokenizer.mask_token_id
        rows, masks = [], []
        for text in texts:
            enc = self._encode(text, truncate=o["truncation"])
            where = [i for i, t in enumerate(enc["input_ids"]) if t == mask_id]
            if not where:
                mask = self.tokenizer.mask_token
                beyond = f" within its first {self.max_length} tokens (the rest is truncated)" if mask in text else ""
                raise ValueError(f"fill-mask needs a {mask} in each text; {text[:80]!r} has none{beyond}")
            rows.append((enc["input_ids"], enc["token_type_ids"]))
            masks.append(where)
        answers = []
        for (ids, _), where, out in zip(rows, masks, self._run(rows, o["batch_size"])):
            per_mask = []
            for position in where:
                probs = softmax(out["logits"][position])  # [vocab]
                fills = []
                for token in np.argsort(-probs, kind="stable")[:top_k]:
                    filled = np.array(ids)
                    filled[position] = token
                    filled = filled[filled != self.tokenizer.pad_token_id]
                    # transformers keeps special tokens when there are other masks to show.
                    fills.append({"score": float(probs[token]), "token": int(token),
                                  "token_str": self.tokenizer.decode([int(token)]),
                                  "sequence": self.tokenizer.decode(filled.tolist(),
                                                                    skip_special_tokens=len(where) == 1)})
                per_mask.append(fills)
            answers.append(per_mask[0] if len(where) == 1 else per_mask)
        return answers[0] if single else answers

    def _check_options(self, options):
        options = super()._check_options(options)
        options["top_k"] = positive_int(options["top_k"], "top_k", upper=self.config.vocab_size)
        return options
