"""Text classification (sentiment analysis): one label per text or text pair."""

import numpy as np

from keras_deberta.pipelines._base import Pipeline, check_text, positive_int, softmax

FUNCTIONS = {"softmax": softmax, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "none": lambda x: x}


class TextClassificationPipeline(Pipeline):
    """[{label, score}] per text; with top_k=None every label, best first.

    As transformers: a call without top_k gives one dict per text (a one-element list for a
    single string); with top_k it gives a list of the best top_k per text (every label when top_k
    is larger than their number). A pair of texts is given as {"text": ..., "text_pair": ...}."""

    task = "text-classification"
    call_options = {"top_k": 1, "function_to_apply": None, "truncation": True}

    def __call__(self, inputs, **kwargs):
        legacy = "top_k" not in kwargs and "top_k" not in self.defaults
        o = self._options(kwargs)
        top_k, function = o["top_k"], o["function_to_apply"]
        single = isinstance(inputs, (str, dict))
        if not single and not isinstance(inputs, (list, tuple)):
            raise TypeError("text-classification takes a string, a {text, text_pair} dict or a list of them, "
                            f"got {type(inputs).__name__}")
        rows = [self._row(item, o["truncation"]) for item in ([inputs] if single else inputs)]
        answers = []
        for out in self._run(rows, o["batch_size"]):
            scores = FUNCTIONS[function](out["logits"])  # [num_labels]
            ranked = [{"label": self._label(i), "score": float(scores[i])} for i in np.argsort(-scores, kind="stable")]
            answers.append(ranked if top_k is None else ranked[:top_k])
        if legacy:
            answers = [a[0] for a in answers]
            return answers  # a single string gives a one-element list, as transformers
        return answers[0] if single else answers

    def _check_options(self, options):
        options = super()._check_options(options)
        if options["top_k"] is not None:
            options["top_k"] = positive_int(options["top_k"], "top_k")
        if options["function_to_apply"] is None:  # transformers' rule
            multi = self.config.problem_type == "multi_label_classification" or self.config.num_labels == 1
            options["function_to_apply"] = "sigmoid" if multi else "softmax"
        if options["function_to_apply"] not in FUNCTIONS:
            raise ValueError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', "
                             f"got {options['function_to_apply']!r}")
        return options

    def _row(self, item, truncate):
        """(ids, type_ids) of one text or {text, text_pair}."""
        if isinstance(item, dict):
            unknown = set(item) - {"text", "text_pair"}
            if unknown or "text" not in item:
                raise ValueError("a text pair is a dict with 'text' and optionally 'text_pair', "
                                 f"got keys {sorted(item)}")
            text, pair = check_text(item["text"]), item.get("text_pair")
            if pair is not None:
                check_text(pair, "text_pair")
        else:
            text, pair = check_text(item), None
        encoding = self._encode(text, pair, truncate=truncate)
        return encoding["input_ids"], encoding["token_type_ids"]
