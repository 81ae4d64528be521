"""Extractive question answering: the best spans of a context, over overlapping windows."""

import numbers

import numpy as np

from keras_deberta.pipelines._base import Pipeline, positive_int, softmax, split_texts


class QuestionAnsweringPipeline(Pipeline):
    """{score, start, end, answer}; a list of top_k of them when top_k > 1; a list per pair for lists.

    Called as qa(question=..., context=...), qa(question, context), qa({"question", "context"})
    or with lists. Long contexts are cut into windows of at most `max_seq_len` tokens (question
    included) whose contexts overlap by `doc_stride` tokens; every window is scored and the best
    spans over all windows win. Scores as transformers' pipeline: softmax of start and of end
    logits over the context tokens and [CLS], their product for a span of at most max_answer_len
    tokens; with handle_impossible_answer the empty answer (start = end = 0) scores [CLS]'s
    start x end probability (the lowest over windows), as SQuAD 2.0 models predict it.

    Bounds: a window is at most min(max_seq_len, max_length) tokens, the question at most
    max_question_len tokens (cut beyond); a question may be longer than its context."""

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
            items = [item] if single else list(item) if isinstance(item, (list, tuple)) else None
            if items is None or not all(isinstance(i, dict) and {"question", "context"} <= set(i) for i in items):
                raise ValueError("question-answering takes question= and context=, or {question, context} dicts")
            question = items[0]["question"] if single else [i["question"] for i in items]
            context = items[0]["context"] if single else [i["context"] for i in items]
        elif args:
            raise TypeError("question-answering takes (question, context) or question= and context=")
        if question is None or context is None:
            raise ValueError("question-answering needs both question= and context=")
        o = self._options(kwargs)
        questions, single = split_texts(question, "question")
        contexts, _ = split_texts(context, "context")
        if not questions:
            return []
        if len(contexts) == 1 and len(questions) > 1:
            contexts = contexts * len(questions)
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions for {len(contexts)} contexts")
        features = [self._windows(q, c, o) for q, c in zip(questions, contexts)]
        rows = [row for windows, _ in features for row, _ in windows]
        outs = iter(self._run(rows, o["batch_size"]))
        answers = [self._best(context, offsets, [(layout, next(outs)) for _, layout in windows], o)
                   for context, (windows, offsets) in zip(contexts, features)]
        return answers[0] if single else answers

    def _check_options(self, options):
        options = super()._check_options(options)
        for name in ("top_k", "max_answer_len", "max_seq_len", "max_question_len"):
            options[name] = positive_int(options[name], name)
        stride = options["doc_stride"]
        if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 0:
            raise ValueError(f"doc_stride must be a non-negative integer, got {stride!r}")
        return options

    def _windows(self, question, context, o):
        """([((ids, type_ids), (first context position, first, end context token))], context offsets)."""
        tok = self.tokenizer
        q_ids = tok(question, add_special_tokens=False)["input_ids"][:o["max_question_len"]]
        c = tok(context, add_special_tokens=False, return_offsets_mapping=True)
        c_ids, c_off = c["input_ids"], c["offset_mapping"]
        if not c_ids:
            raise ValueError(f"the context {context[:80]!r} gives no tokens: there is nothing to answer from")
        max_seq_len = o["max_seq_len"] if self.max_length is None else min(o["max_seq_len"], self.max_length)
        room = max_seq_len - len(q_ids) - tok.num_special_tokens_to_add(pair=True)  # context tokens per window
        if room <= 0:
            raise ValueError(f"max_seq_len {max_seq_len} leaves no room for the context after the question "
                             f"({len(q_ids)} tokens)")
        stride = o["doc_stride"]
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
        top_k, max_answer_len = o["top_k"], o["max_answer_len"]
        candidates, null_score = [], None
        for (first, begin, end), out in scored_windows:
            n = end - begin
            allowed = np.zeros(len(out["start_logits"]), bool)  # [L]: context tokens and [CLS]
            allowed[first:first + n] = True
            allowed[0] = True
            start_p = softmax(np.where(allowed, out["start_logits"], -10000.0))
            end_p = softmax(np.where(allowed, out["end_logits"], -10000.0))
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
