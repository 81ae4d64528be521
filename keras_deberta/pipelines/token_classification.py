"""Token classification (NER): a label per token, optionally grouped into entities with offsets."""

import numpy as np

from keras_deberta.pipelines._base import Pipeline, softmax, split_texts

AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """Entities with character offsets into the text.

    aggregation_strategy "none": one {entity, score, index, word, start, end} per token.
    "simple": runs of tokens with one entity type (B-X then I-X ...) grouped into
    {entity_group, score (mean), word, start, end}. "first" / "average" / "max": each word first
    takes one label (its first token's, its tokens' mean scores', or its most confident
    token's), then words are grouped as "simple". Words are found as transformers does for these
    tokenizers: a token continues a word when neither it nor the previous character is a space.
    A text longer than `max_length` tokens is truncated, so entities past that point are not
    found (truncation=False refuses such a text; transformers' `stride` windows are not here)."""

    task = "token-classification"
    per_token_outputs = True
    call_options = {"aggregation_strategy": "none", "ignore_labels": ("O",), "truncation": True}

    def __call__(self, inputs, **kwargs):
        o = self._options(kwargs)
        strategy = o["aggregation_strategy"]
        texts, single = split_texts(inputs)
        encs = [self._encode(t, truncate=o["truncation"], offsets=True) for t in texts]
        outs = self._run([(e["input_ids"], e["token_type_ids"]) for e in encs], o["batch_size"])
        special = set(self.tokenizer.all_special_ids)
        ignore = set(o["ignore_labels"] or ())
        answers = []
        for text, enc, out in zip(texts, encs, outs):
            probs = softmax(out["logits"])  # [L, num_labels]
            tokens = []
            for i, token in enumerate(enc["input_ids"]):
                if token in special:
                    continue
                start, end = (int(x) for x in enc["offset_mapping"][i])
                unknown = token == self.tokenizer.unk_token_id  # shown as the text it stands for
                piece = text[start:end] if unknown else self.tokenizer.convert_ids_to_tokens(int(token))
                tokens.append({"index": i, "probs": probs[i], "start": start, "end": end, "token": piece,
                               "is_subword": not unknown and start > 0 and " " not in text[start - 1:start + 1]})
            if strategy == "none":
                entities = [{"entity": self._label(t["probs"].argmax()), "score": float(t["probs"].max()),
                             "index": t["index"], "word": t["token"], "start": t["start"], "end": t["end"]}
                            for t in tokens]
            else:
                labelled = self._label_words(tokens, strategy) if strategy != "simple" else [
                    {"entity": self._label(t["probs"].argmax()), "score": float(t["probs"].max()), "tokens": [t]}
                    for t in tokens]
                entities = self._group(text, labelled)
            answers.append([e for e in entities if e.get("entity", e.get("entity_group")) not in ignore])
        return answers[0] if single else answers

    def _check_options(self, options):
        options = super()._check_options(options)
        strategy = str(options["aggregation_strategy"]).lower()
        if strategy not in AGGREGATION_STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {AGGREGATION_STRATEGIES}, got "
                             f"{options['aggregation_strategy']!r}")
        options["aggregation_strategy"] = strategy
        return options

    def _label_words(self, tokens, strategy):
        """Tokens -> words, each with one label and score chosen by `strategy`."""
        words = []
        for t in tokens:
            if words and t["is_subword"]:
                words[-1].append(t)
            else:
                words.append([t])
        labelled = []
        for word in words:
            if strategy == "first":
                probs = word[0]["probs"]
            elif strategy == "max":
                probs = max(word, key=lambda t: t["probs"].max())["probs"]
            else:  # average
                probs = np.mean([t["probs"] for t in word], axis=0)
            labelled.append({"entity": self._label(probs.argmax()), "score": float(probs.max()), "tokens": word})
        return labelled

    @staticmethod
    def _tag(label):
        """("B" or "I", type): labels without a B-/I- prefix continue a run of their type."""
        if label.startswith(("B-", "I-")):
            return label[0], label[2:]
        return "I", label

    def _group(self, text, labelled):
        """Adjacent items of one type merge unless the next one opens with B-."""
        runs = []
        for item in labelled:
            bi, kind = self._tag(item["entity"])
            if runs and runs[-1]["kind"] == kind and bi != "B":
                runs[-1]["items"].append(item)
            else:
                runs.append({"kind": kind, "items": [item]})
        entities = []
        for run in runs:
            tokens = [t for item in run["items"] for t in item["tokens"]]
            start, end = tokens[0]["start"], tokens[-1]["end"]
            while start < end and text[start].isspace():  # the piece's leading space is not the word
                start += 1
            entities.append({"entity_group": run["items"][0]["entity"].split("-", 1)[-1],
                             "score": float(np.mean([item["score"] for item in run["items"]])),
                             "word": text[start:end], "start": start, "end": end})
        return entities
