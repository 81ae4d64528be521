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

Outputs follow transformers' pipelines: a single input gives one answer, a list gives a list (an
empty list gives an empty list); an empty or blank string is a ValueError. The model runs with
training=False on batches of `batch_size` rows padded to the batch's longest row; scores are
computed afterwards in float32 numpy.

Inputs are bounded: every text is truncated to the tokenizer's model_max_length (512 for DeBERTa
checkpoints), or the config's max_position_embeddings when the tokenizer names none
(presets/sequence_limits.py). `truncation=False` (a pipeline or call option) refuses a longer
text with an `InputTooLongError` instead. Question answering splits a long context into
`doc_stride` windows of at most that many tokens instead.

Two deliberate differences from transformers, both about character offsets. SentencePiece pieces
carry the space before a word ("▁Berlin" spans " Berlin"), so transformers' grouped entities and
QA answers start on that space. Here grouped entities and answers start on the word itself and
`text[start:end] == word` (== answer); per-token entities (aggregation_strategy="none") keep the
token's own offsets, exactly as transformers.

One module per task family: _base.py (the shared machinery), _loading.py (checkpoints to model and
tokenizer), text_classification.py, fill_mask.py, token_classification.py, question_answering.py,
zero_shot_classification.py.
"""

import os

from keras_deberta.pipelines._loading import (DEFAULT_MODELS, check_tokenizer_fits, checkpoint_model_type,
                                              load_model_for_task, load_tokenizer, model_family)
from keras_deberta.pipelines.fill_mask import FillMaskPipeline
from keras_deberta.pipelines.question_answering import QuestionAnsweringPipeline
from keras_deberta.pipelines.text_classification import TextClassificationPipeline
from keras_deberta.pipelines.token_classification import TokenClassificationPipeline
from keras_deberta.pipelines.zero_shot_classification import ZeroShotClassificationPipeline
from presets.devices import loading_scope
from presets.errors import CheckpointNotFoundError
from presets.sequence_limits import InputTooLongError

TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
PIPELINE_CLASSES = {
    "fill-mask": FillMaskPipeline,
    "text-classification": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "zero-shot-classification": ZeroShotClassificationPipeline,
}
TASKS = tuple(PIPELINE_CLASSES)


def pipeline(task, model=None, tokenizer=None, **kwargs):
    """A callable for `task` over a DeBERTa model (instance, checkpoint directory or Hub id).

    Tasks: fill-mask, text-classification (alias sentiment-analysis), token-classification (alias
    ner), question-answering, zero-shot-classification. `tokenizer` is an instance or a directory
    and defaults to the model's directory; with a model instance it is required. Other keywords
    are the task's defaults for every call (e.g. `top_k`, `aggregation_strategy`, `batch_size`,
    `truncation`), and transformers' `device` (-1 / "cpu", a GPU index, "cuda:N"), which places
    the loading and every call under that Keras device scope.
    """
    name = TASK_ALIASES.get(task, task)
    if name not in PIPELINE_CLASSES:
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
        with loading_scope(kwargs.get("device")):  # the variables are created on that device
            model, directory = load_model_for_task(name, os.fspath(model))
        if tokenizer is None:
            tokenizer = directory
    if tokenizer is None:
        raise ValueError("pass tokenizer= (an instance or a directory) together with a model instance")
    if isinstance(tokenizer, (str, os.PathLike)):
        from presets.hub import resolve_checkpoint_dir

        tokenizer = load_tokenizer(resolve_checkpoint_dir(os.fspath(tokenizer)), model_family(model))
    check_tokenizer_fits(model, tokenizer)
    return PIPELINE_CLASSES[name](model, tokenizer, **kwargs)


__all__ = ["DEFAULT_MODELS", "InputTooLongError", "TASKS", "TASK_ALIASES", "checkpoint_model_type",
           "load_model_for_task", "load_tokenizer", "pipeline"] + [cls.__name__ for cls in PIPELINE_CLASSES.values()]
