"""`pipeline(task, model=..., tokenizer=...)`: text in, transformers-shaped answers out.

    clf = pipeline("text-classification")                  # the embedded default SST-2 classifier
    clf("A delight from start to finish.")                 # [{"label": "POSITIVE", "score": 0.97}]
    fill = pipeline("fill-mask", model="path/or/hub-id")
    fill("Paris is the [MASK] of France.", top_k=3)        # [{"score", "token", "token_str", "sequence"}, ...]
    ner = pipeline("ner", model=..., aggregation_strategy="simple")
    ner("My name is Wolfgang.")                            # [{"entity_group", "score", "word", "start", "end"}]
    qa = pipeline("question-answering", model=...)
    qa(question="Who?", context="...", max_answer_len=15, handle_impossible_answer=False)
    zsc = pipeline("zero-shot-classification", model=an_nli_checkpoint)
    zsc("I loved it", candidate_labels=["positive", "negative"], multi_label=False)

Outputs follow transformers' pipelines: a single input gives one answer, a list gives a list.
The model runs with training=False on batches of `batch_size` rows padded to the batch's longest
row; scores are computed afterwards in float32 numpy.

Two deliberate differences from transformers, both about character offsets. SentencePiece pieces
carry the space before a word ("▁Berlin" spans " Berlin"), so transformers' grouped entities and
QA answers start on that space. Here grouped entities and answers start on the word itself and
`text[start:end] == word` (== answer); per-token entities (aggregation_strategy="none") keep the
token's own offsets, exactly as transformers.
"""

import os

import keras
import numpy as np
from keras import ops

from presets.errors import CheckpointNotFoundError
from presets.io import read_json_object

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
# Tasks that have a default model shipped inside the package (no network needed).
DEFAULT_MODELS = {"text-classification": os.path.join(ASSETS, "sst2-tiny")}
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
TASKS = ("fill-mask", "text-classification", "token-classification", "question-answering",
         "zero-shot-classification")
AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
# transformers' tokenizers use 1e30 to mean "no limit".
NO_LENGTH_LIMIT = int(1e30)
PAD_TO_MULTIPLE_OF = 16


def _softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _model_classes(task):
    """(DeBERTa-v2 class, DeBERTa v1 class) for a task."""
    import keras_deberta as kd

    return {
        "fill-mask": (kd.TFDebertaV2ForMaskedLM, kd.TFDebertaForMaskedLM),
        "text-classification": (kd.TFDebertaV2ForSequenceClassification, kd.TFDebertaForSequenceClassification),
        "zero-shot-classification": (kd.TFDebertaV2ForSequenceClassification,
                                     kd.TFDebertaForSequenceClassification),
        "token-classification": (kd.TFDebertaV2ForTokenClassification, kd.TFDebertaForTokenClassification),
        "question-answering": (kd.TFDebertaV2ForQuestionAnswering, kd.TFDebertaForQuestionAnswering),
    }[task]


def _model_type(directory):
    """config.json's model_type ("deberta" or "deberta-v2") of a checkpoint directory."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"{directory}: no config.json, so not a model checkpoint directory")
    model_type = read_json_object(path, CheckpointNotFoundError).get("model_type")
    if model_type not in ("deberta", "deberta-v2"):
        raise ValueError(f"{directory} holds a {model_type!r} checkpoint; keras_deberta pipelines need "
                         "'deberta' or 'deberta-v2'")
    return model_type


def load_model_for_task(task, name_or_path):
    """(model, directory): the task's class for the checkpoint's model_type, from_pretrained."""
    from presets.hub import resolve_checkpoint_dir

    directory = resolve_checkpoint_dir(name_or_path)
    v2_class, v1_class = _model_classes(task)
    cls = v2_class if _model_type(directory) == "deberta-v2" else v1_class
    return cls.from_pretrained(directory), directory


def load_tokenizer(directory, model_type):
    from keras_deberta import DebertaTokenizer, DebertaV2Tokenizer

    return (DebertaV2Tokenizer if model_type == "deberta-v2" else DebertaTokenizer).from_pretrained(directory)


def _family(model):
    return "deberta-v2" if type(model).__name__.startswith("TFDebertaV2") else "deberta"


def _check_tokenizer_fits(model, tokenizer):
    """A tokenizer from another checkpoint gives ids the embedding table lacks, or wrong ones."""
    from keras_deberta import DebertaTokenizer, DebertaV2Tokenizer

    family = _family(model)
    expected = DebertaV2Tokenizer if family == "deberta-v2" else DebertaTokenizer
    other = DebertaTokenizer if family == "deberta-v2" else DebertaV2Tokenizer
    if isinstance(tokenizer, other) and not isinstance(tokenizer, expected):
        raise ValueError(f"a {type(tokenizer).__name__} does not belong to a {family!r} model "
                         f"({type(model).__name__}): pass a {expected.__name__}")
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} ids but the model's vocab_size is "
                         f"{model.config.vocab_size}: they are from different checkpoints")


def pipeline(task, model=None, tokenizer=None, **kwargs):
    """A callable for `task` over a DeBERTa model (instance, checkpoint directory or Hub id).

    Tasks: fill-mask, text-classification (alias sentiment-analysis), token-classification (alias
    ner), question-answering, zero-shot-classification. `tokenizer` is an instance or a directory
    and defaults to the model's directory; with a model instance it is required. Other keywords
    are the task's defaults for every call (e.g. `top_k`, `aggregation_strategy`, `batch_size`).
    """
    name = TASK_ALIASES.get(task, task)
    if name not in TASKS:
        raise ValueError(f"unknown task {task!r}; keras_deberta pipelines: {', '.join(TASKS + tuple(TASK_ALIASES))}")
    if model is None:
        if name not in DEFAULT_MODELS:
            raise ValueError(f"task {task!r} has no built-in default model: pass model= (a checkpoint "
                             "directory or Hub id)")
        model = DEFAULT_MODELS[name]
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise CheckpointNotFoundError(f"the embedded default model for {task!r} is missing from {model}; "
                                          "reinstall keras_deberta or pass model=")
    if isinstance(model, (str, os.PathLike)):
        model, directory = load_model_for_task(name, os.fspath(model))
        if tokenizer is None:
            tokenizer = directory
    if tokenizer is None:
        raise ValueError("pass tokenizer= (an instance or a directory) together with a model instance")
    if isinstance(tokenizer, (str, os.PathLike)):
        from presets.hub import resolve_checkpoint_dir

        tokenizer = load_tokenizer(resolve_checkpoint_dir(os.fspath(tokenizer)), _family(model))
    _check_tokenizer_fits(model, tokenizer)
    classes = {"fill-mask": FillMaskPipeline, "text-classification": TextClassificationPipeline,
               "token-classification": TokenClassificationPipeline, "question-answering": QuestionAnsweringPipeline,
               "zero-shot-classification": ZeroShotClassificationPipeline}
    return classes[name](model, tokenizer, **kwargs)


class Pipeline:
    """Runs a model over tokenised batches; subclasses pre- and post-process."""

    task = None
    per_token_outputs = False  # outputs are [B, L, ...] (cut to each row's length) or [B, ...]
    call_options = {}  # every option a call accepts, with its default

    def __init__(self, model, tokenizer, batch_size=8, **defaults):
        unknown = set(defaults) - set(self.call_options)
        if unknown:
            raise TypeError(f"{self.task} pipeline: unknown options {sorted(unknown)}; "
                            f"known: batch_size, {', '.join(sorted(self.call_options))}")
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.defaults = dict(defaults, batch_size=batch_size)

    def _options(self, kwargs):
        unknown = set(kwargs) - set(self.call_options) - {"batch_size"}
        if unknown:
            raise TypeError(f"{self.task} pipeline: unknown options {sorted(unknown)}; "
                            f"known: batch_size, {', '.join(sorted(self.call_options))}")
        options = dict(self.call_options)
        options.update(self.defaults)
        options.update(kwargs)
        if int(options["batch_size"]) < 1:
            raise ValueError(f"batch_size must be >= 1, got {options['batch_size']}")
        return options

    @staticmethod
    def _texts(inputs, what="text"):
        """([texts], whether a single string was given), each text checked."""
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs) if isinstance(inputs, (list, tuple)) else None
        if texts is None:
            raise TypeError(f"the {what} must be a string or a list of strings, got {type(inputs).__name__}")
        if not texts:
            raise ValueError(f"no {what} given (an empty list)")
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"each {what} must be a string, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"empty {what}: nothing to run the model on")
        return texts, single

    def _max_length(self):
        """Rows longer than this cannot run: absolute position tables and the tokenizer set it."""
        limits = [self.model.export_max_length() or NO_LENGTH_LIMIT,
                  getattr(self.tokenizer, "model_max_length", None) or NO_LENGTH_LIMIT]
        limit = min(limits)
        return None if limit >= NO_LENGTH_LIMIT else limit

    def _encode(self, text, text_pair=None, offsets=False, truncation="longest_first"):
        limit = self._max_length()
        return self.tokenizer(text, text_pair=text_pair, truncation=truncation if limit else None,
                              max_length=limit, return_offsets_mapping=offsets)

    def _run(self, rows, batch_size):
        """rows: [(ids, type_ids)] -> one dict of float32 numpy outputs per row, padding cut off.

        A batch is padded to its longest row rounded up to a multiple of PAD_TO_MULTIPLE_OF:
        masked padding leaves the outputs as they are, and far fewer distinct shapes reach the
        backend (JAX and TF compile once per shape)."""
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


class TextClassificationPipeline(Pipeline):
    """[{label, score}] per text; with top_k=None every label, best first.

    As transformers: a call without top_k gives one dict per text (a one-element list for a
    single string); with top_k it gives a list of the best top_k per text. A pair of texts is
    given as {"text": ..., "text_pair": ...}."""

    task = "text-classification"
    call_options = {"top_k": 1, "function_to_apply": None}

    def __call__(self, inputs, **kwargs):
        legacy = "top_k" not in kwargs and "top_k" not in self.defaults
        o = self._options(kwargs)
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else list(inputs) if isinstance(inputs, (list, tuple)) else None
        if not items:
            raise ValueError("text-classification needs a string, a {text, text_pair} dict or a non-empty list")
        rows = []
        for item in items:
            text, pair = (item.get("text"), item.get("text_pair")) if isinstance(item, dict) else (item, None)
            self._texts(text)
            if pair is not None:
                self._texts(pair, "text_pair")
            enc = self._encode(text, pair)
            rows.append((enc["input_ids"], enc["token_type_ids"]))
        function = o["function_to_apply"]
        if function is None:  # transformers' rule
            multi = self.config.problem_type == "multi_label_classification" or self.config.num_labels == 1
            function = "sigmoid" if multi else "softmax"
        if function not in ("softmax", "sigmoid", "none"):
            raise ValueError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function!r}")
        answers = []
        for out in self._run(rows, int(o["batch_size"])):
            logits = out["logits"]  # [num_labels]
            scores = {"softmax": _softmax, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
                      "none": lambda x: x}[function](logits)
            ranked = [{"label": self._label(i), "score": float(scores[i])} for i in np.argsort(-scores, kind="stable")]
            answers.append(ranked if o["top_k"] is None else ranked[:int(o["top_k"])])
        if legacy:
            answers = [a[0] for a in answers]
            return answers if not single else answers[:1]
        return answers[0] if single else answers


class FillMaskPipeline(Pipeline):
    """The top_k fills of the mask token, best first: [{score, token, token_str, sequence}].

    With several masks in one text, one such list per mask (as transformers)."""

    task = "fill-mask"
    per_token_outputs = True
    call_options = {"top_k": 5}

    def __call__(self, inputs, **kwargs):
        o = self._options(kwargs)
        texts, single = self._texts(inputs)
        mask_id = self.tokenizer.mask_token_id
        rows, masks = [], []
        for text in texts:
            enc = self._encode(text)
            where = [i for i, t in enumerate(enc["input_ids"]) if t == mask_id]
            if not where:
                raise ValueError(f"fill-mask needs a {self.tokenizer.mask_token} in each text; {text!r} has none")
            rows.append((enc["input_ids"], enc["token_type_ids"]))
            masks.append(where)
        answers = []
        for (ids, _), where, out in zip(rows, masks, self._run(rows, int(o["batch_size"]))):
            per_mask = []
            for position in where:
                probs = _softmax(out["logits"][position])  # [vocab]
                fills = []
                for token in np.argsort(-probs, kind="stable")[:int(o["top_k"])]:
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


class TokenClassificationPipeline(Pipeline):
    """Entities with character offsets into the text.

    aggregation_strategy "none": one {entity, score, index, word, start, end} per token.
    "simple": runs of tokens with one entity type (B-X then I-X ...) grouped into
    {entity_group, score (mean), word, start, end}. "first" / "average" / "max": each word first
    takes one label (its first token's, its tokens' mean scores', or its most confident
    token's), then words are grouped as "simple". Words are found as transformers does for these
    tokenizers: a token continues a word when neither it nor the previous character is a space."""

    task = "token-classification"
    per_token_outputs = True
    call_options = {"aggregation_strategy": "none", "ignore_labels": ("O",)}

    def __call__(self, inputs, **kwargs):
        o = self._options(kwargs)
        strategy = str(o["aggregation_strategy"]).lower()
        if strategy not in AGGREGATION_STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {AGGREGATION_STRATEGIES}, got "
                             f"{o['aggregation_strategy']!r}")
        texts, single = self._texts(inputs)
        encs = [self._encode(t, offsets=True) for t in texts]
        outs = self._run([(e["input_ids"], e["token_type_ids"]) for e in encs], int(o["batch_size"]))
        special = set(self.tokenizer.all_special_ids)
        ignore = set(o["ignore_labels"] or ())
        answers = []
        for text, enc, out in zip(texts, encs, outs):
            probs = _softmax(out["logits"])  # [L, num_labels]
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


class QuestionAnsweringPipeline(Pipeline):
    """{score, start, end, answer}; a list of top_k of them when top_k > 1; a list per pair for lists.

    Called as qa(question=..., context=...), qa(question, context), qa({"question", "context"})
    or with lists. Long contexts are cut into windows of at most `max_seq_len` tokens (question
    included) whose contexts overlap by `doc_stride` tokens; every window is scored and the best
    spans over all windows win. Scores as transformers' pipeline: softmax of start and of end
    logits over the context tokens and [CLS], their product for a span of at most max_answer_len
    tokens; with handle_impossible_answer the empty answer (start = end = 0) scores [CLS]'s
    start x end probability (the lowest over windows), as SQuAD 2.0 models predict it."""

    task = "question-answering"
    per_token_outputs = True
    call_options = {"top_k": 1, "max_answer_len": 15, "max_seq_len": 384, "doc_stride": 128,
                    "max_question_len": 64, "handle_impossible_answer": False}

    def __call__(self, *args, question=None, context=None, **kwargs):
        if len(args) == 2 and question is None and context is None:
            question, context = args
        elif len(args) == 1 and question is None and context is None:
            item = args[0]
            single = isinstance(item, dict)
            items = [item] if single else list(item) if isinstance(item, (list, tuple)) else []
            if not items or not all(isinstance(i, dict) and {"question", "context"} <= set(i) for i in items):
                raise ValueError("question-answering takes question= and context=, or {question, context} dicts")
            question = items[0]["question"] if single else [i["question"] for i in items]
            context = items[0]["context"] if single else [i["context"] for i in items]
        elif args:
            raise TypeError("question-answering takes (question, context) or question= and context=")
        if question is None or context is None:
            raise ValueError("question-answering needs both question= and context=")
        o = self._options(kwargs)
        for name in ("top_k", "max_answer_len", "max_seq_len", "max_question_len"):
            if int(o[name]) < 1:
                raise ValueError(f"{name} must be >= 1, got {o[name]}")
        questions, single = self._texts(question, "question")
        contexts, _ = self._texts(context, "context")
        if len(contexts) == 1 and len(questions) > 1:
            contexts = contexts * len(questions)
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions for {len(contexts)} contexts")
        features = [self._windows(q, c, o) for q, c in zip(questions, contexts)]
        rows = [row for windows, _ in features for row, _ in windows]
        outs = iter(self._run(rows, int(o["batch_size"])))
        answers = [self._best(context, offsets, [(layout, next(outs)) for _, layout in windows], o)
                   for context, (windows, offsets) in zip(contexts, features)]
        return answers[0] if single else answers

    def _windows(self, question, context, o):
        """([((ids, type_ids), (first context position, first, end context token))], context offsets)."""
        if len(context.strip()) < len(question.strip()):
            raise ValueError(f"the context ({len(context)} characters) is shorter than the question "
                             f"({len(question)}): were question and context swapped?")
        tok = self.tokenizer
        q_ids = tok(question, add_special_tokens=False)["input_ids"][:int(o["max_question_len"])]
        c = tok(context, add_special_tokens=False, return_offsets_mapping=True)
        c_ids, c_off = c["input_ids"], c["offset_mapping"]
        max_seq_len = min(int(o["max_seq_len"]), self._max_length() or NO_LENGTH_LIMIT)
        room = max_seq_len - len(q_ids) - tok.num_special_tokens_to_add(pair=True)  # context tokens per window
        if room <= 0:
            raise ValueError(f"max_seq_len {max_seq_len} leaves no room for the context after the question "
                             f"({len(q_ids)} tokens)")
        stride = int(o["doc_stride"])
        if len(c_ids) > room and not 0 <= stride < room:
            raise ValueError(f"doc_stride {stride} must be >= 0 and smaller than the {room} context tokens "
                             f"a window of max_seq_len {max_seq_len} holds")
        windows, begin = [], 0
        while True:  # each window starts `room - stride` tokens after the previous one
            end = min(begin + room, len(c_ids))
            ids, types, _ = tok._assemble((q_ids, None), (c_ids[begin:end], None), True)
            first = len(ids) - 1 - (end - begin)  # position of the window's first context token
            windows.append(((ids, types), (first, begin, end)))
            if end >= len(c_ids):
                break
            begin += room - stride
        return windows, c_off

    def _best(self, context, offsets, scored_windows, o):
        top_k, max_answer_len = int(o["top_k"]), int(o["max_answer_len"])
        candidates, null_score = [], None
        for (first, begin, end), out in scored_windows:
            n = end - begin
            allowed = np.zeros(len(out["start_logits"]), bool)  # [L]: context tokens and [CLS]
            allowed[first:first + n] = True
            allowed[0] = True
            start_p = _softmax(np.where(allowed, out["start_logits"], -10000.0))
            end_p = _softmax(np.where(allowed, out["end_logits"], -10000.0))
            if o["handle_impossible_answer"]:
                window_null = float(start_p[0] * end_p[0])
                null_score = window_null if null_score is None else min(null_score, window_null)
            spans = np.outer(start_p[first:first + n], end_p[first:first + n])  # [n, n] start x end
            spans = np.tril(np.triu(spans), max_answer_len - 1)  # end >= start, at most max_answer_len tokens
            for flat in np.argsort(-spans, axis=None, kind="stable")[:top_k]:
                i, j = np.unravel_index(flat, spans.shape)
                a, b = offsets[begin + i][0], offsets[begin + j][1]
                while a < b and context[a].isspace():  # the piece's leading space is not the answer
                    a += 1
                candidates.append({"score": float(spans[i, j]), "start": int(a), "end": int(b),
                                   "answer": context[a:b]})
        if null_score is not None:
            candidates.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        candidates.sort(key=lambda x: -x["score"])
        unique, seen = [], set()  # overlapping windows find the same span twice
        for cand in candidates:
            if (cand["start"], cand["end"]) not in seen:
                seen.add((cand["start"], cand["end"]))
                unique.append(cand)
        return unique[0] if top_k == 1 else unique[:top_k]


class ZeroShotClassificationPipeline(Pipeline):
    """{sequence, labels, scores} with labels sorted by score.

    Each candidate label becomes the hypothesis `hypothesis_template.format(label)` of an NLI
    pair (sequence, hypothesis). multi_label=False: softmax of the entailment logits over the
    labels. multi_label=True (or one label): per label, softmax of (contradiction, entailment).
    The entailment id is the label2id entry starting with "entail"; contradiction is id 0 (the
    last id when entailment is 0), as transformers."""

    task = "zero-shot-classification"
    call_options = {"candidate_labels": None, "hypothesis_template": "This example is {}.", "multi_label": False}

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        label2id = self.config.label2id or {}
        self.entailment_id = next((int(v) for k, v in label2id.items() if str(k).lower().startswith("entail")), None)
        if self.entailment_id is None:
            raise ValueError("zero-shot-classification needs an NLI model whose config.label2id has an "
                             f"'entailment' label; this one has {list(label2id)}")
        self.contradiction_id = -1 if self.entailment_id == 0 else 0

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
        template = o["hypothesis_template"]
        if template.format("\x00") == template:
            raise ValueError(f"hypothesis_template {template!r} must contain {{}} where the label goes")
        texts, single = self._texts(sequences, "sequence")
        rows = []
        for text in texts:
            for label in labels:
                enc = self._encode(text, template.format(label), truncation="only_first")
                rows.append((enc["input_ids"], enc["token_type_ids"]))
        outs = self._run(rows, int(o["batch_size"]))
        logits = np.stack([out["logits"] for out in outs]).reshape(len(texts), len(labels), -1)  # [T, labels, 3]
        answers = []
        for text, row in zip(texts, logits):
            if o["multi_label"] or len(labels) == 1:
                scores = _softmax(row[:, [self.contradiction_id, self.entailment_id]])[:, 1]
            else:
                scores = _softmax(row[:, self.entailment_id])
            order = np.argsort(-scores, kind="stable")
            answers.append({"sequence": text, "labels": [labels[i] for i in order],
                            "scores": [float(scores[i]) for i in order]})
        return answers[0] if single else answers
