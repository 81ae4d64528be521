"""Zero-shot classification: candidate labels scored as NLI hypotheses about the text."""

import string

import numpy as np

from keras_deberta.pipelines._base import Pipeline, check_text, softmax, split_texts


def check_hypothesis_template(template):
    """The template, if it has exactly one replacement field ("{}" or "{0}") for the label."""
    if not isinstance(template, str):
        raise TypeError(f"hypothesis_template must be a string, got {type(template).__name__}")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:  # e.g. a lone "{"
        raise ValueError(f"hypothesis_template {template!r} is not a format string ({error}); "
                         "write {{ and }} for literal braces") from None
    if len(fields) != 1 or fields[0] not in ("", "0"):
        found = "none" if not fields else f"the field {{{fields[0]}}}" if len(fields) == 1 else f"{len(fields)} fields"
        raise ValueError(f"hypothesis_template {template!r} must contain exactly one {{}} where the label goes, "
                         f"found {found}")
    return template


class ZeroShotClassificationPipeline(Pipeline):
    """{sequence, labels, scores} with labels sorted by score.

    Each candidate label becomes the hypothesis `hypothesis_template.format(label)` of an NLI
    pair (sequence, hypothesis). multi_label=False: softmax of the entailment logits over the
    labels. multi_label=True (or one label): per label, softmax of (contradiction, entailment).
    The entailment id is the label2id entry starting with "entail"; contradiction is id 0 (the
    last id when entailment is 0), as transformers. A long sequence is truncated so that the pair
    fits `max_length` (the hypothesis is kept whole); truncation=False refuses it instead."""

    task = "zero-shot-classification"
    call_options = {"candidate_labels": None, "hypothesis_template": "This example is {}.", "multi_label": False,
                    "truncation": True}

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        label2id = self.config.label2id or {}
        self.entailment_id = next((int(v) for k, v in label2id.items() if str(k).lower().startswith("entail")), None)
        if self.entailment_id is None:
            raise ValueError("zero-shot-classification needs an NLI model whose config.label2id has an "
                             f"'entailment' label; this one has {list(label2id)}")
        self.contradiction_id = -1 if self.entailment_id == 0 else 0

    def _check_options(self, options):
        options = super()._check_options(options)
        check_hypothesis_template(options["hypothesis_template"])
        return options

    def __call__(self, sequences, candidate_labels=None, **kwargs):
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        o = self._options(kwargs)
        labels = o["candidate_labels"]
        if isinstance(labels, str):
            labels = [c.strip() for c in labels.split(",") if c.strip()]
        if not labels:
            raise ValueError("zero-shot-classification needs candidate_labels (a list of labels, or a string "
                             "of comma-separated labels)")
        labels = [check_text(label, "candidate label") for label in labels]
        template = o["hypothesis_template"]
        texts, single = split_texts(sequences, "sequence")
        if not texts:
            return []
        rows = []
        for text in texts:
            for label in labels:
                enc = self._encode(text, template.format(label), truncate=o["truncation"], strategy="only_first")
                rows.append((enc["input_ids"], enc["token_type_ids"]))
        outs = self._run(rows, o["batch_size"])
        logits = np.stack([out["logits"] for out in outs]).reshape(len(texts), len(labels), -1)  # [T, labels, 3]
        answers = []
        for text, row in zip(texts, logits):
            if o["multi_label"] or len(labels) == 1:
                scores = softmax(row[:, [self.contradiction_id, self.entailment_id]])[:, 1]
            else:
                scores = softmax(row[:, self.entailment_id])
            order = np.argsort(-scores, kind="stable")
            answers.append({"sequence": text, "labels": [labels[i] for i in order],
                            "scores": [float(scores[i]) for i in order]})
        return answers[0] if single else answers
