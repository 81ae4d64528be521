"""Which model class and tokenizer a pipeline loads from a checkpoint, and whether a given pair fits."""

import os

from keras_deberta.modeling_deberta import (TFDebertaForMaskedLM, TFDebertaForQuestionAnswering,
                                            TFDebertaForSequenceClassification, TFDebertaForTokenClassification)
from keras_deberta.modeling_deberta_v2 import (TFDebertaV2ForMaskedLM, TFDebertaV2ForQuestionAnswering,
                                               TFDebertaV2ForSequenceClassification,
                                               TFDebertaV2ForTokenClassification)
from keras_deberta.tokenization_deberta import DebertaTokenizer
from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer
from presets.errors import CheckpointNotFoundError
from presets.hub import resolve_checkpoint_dir
from presets.io import read_json_object
from presets.runtime_export import METADATA_FILE
from presets.runtimes import ExportedModel

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
# Tasks that have a default model shipped inside the package (no network needed).
DEFAULT_MODELS = {"text-classification": os.path.join(ASSETS, "sst2-tiny")}


def _model_classes(task):
    """(DeBERTa-v2 class, DeBERTa v1 class) for a task."""
    return {
        "fill-mask": (TFDebertaV2ForMaskedLM, TFDebertaForMaskedLM),
        "text-classification": (TFDebertaV2ForSequenceClassification, TFDebertaForSequenceClassification),
        "zero-shot-classification": (TFDebertaV2ForSequenceClassification, TFDebertaForSequenceClassification),
        "token-classification": (TFDebertaV2ForTokenClassification, TFDebertaForTokenClassification),
        "question-answering": (TFDebertaV2ForQuestionAnswering, TFDebertaForQuestionAnswering),
    }[task]


def checkpoint_model_type(directory):
    """config.json's model_type ("deberta" or "deberta-v2") of a checkpoint directory."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"{directory}: no config.json, so not a model checkpoint directory")
    model_type = read_json_object(path, CheckpointNotFoundError).get("model_type")
    if model_type not in ("deberta", "deberta-v2"):
        raise ValueError(f"{directory} holds a {model_type!r} checkpoint; keras_deberta pipelines need "
                         "'deberta' or 'deberta-v2'")
    return model_type


def load_model_for_task(task, name_or_path, **options):
    """(model, directory): the task's class for the checkpoint's model_type, from_pretrained
    (with `options`, e.g. dtype=); for a directory that `model.export(..., format="onnx" |
    "openvino" | "litert")` wrote, the export in its runtime (`presets.runtimes.ExportedModel`)."""
    directory = resolve_checkpoint_dir(name_or_path)
    v2_class, v1_class = _model_classes(task)
    cls = v2_class if checkpoint_model_type(directory) == "deberta-v2" else v1_class
    if os.path.isfile(os.path.join(directory, METADATA_FILE)):
        exported = ExportedModel(directory, config_class=cls.config_class, **options)
        if exported.metadata["architecture"] != cls.hf_architecture:
            raise ValueError(f"{directory} holds an exported {exported.metadata['architecture']}; the {task} "
                             f"pipeline needs a {cls.hf_architecture}")
        return exported, directory
    return cls.from_pretrained(directory, **options), directory


def load_tokenizer(directory, model_type):
    return (DebertaV2Tokenizer if model_type == "deberta-v2" else DebertaTokenizer).from_pretrained(directory)


def model_family(model):
    model_type = getattr(model.config, "model_type", None)  # Keras models and exported ones alike
    if model_type in ("deberta", "deberta-v2"):
        return model_type
    return "deberta-v2" if type(model).__name__.startswith("TFDebertaV2") else "deberta"


def check_tokenizer_fits(model, tokenizer):
    """A tokenizer from another checkpoint gives ids the embedding table lacks, or wrong ones."""
    family = model_family(model)
    expected = DebertaV2Tokenizer if family == "deberta-v2" else DebertaTokenizer
    other = DebertaTokenizer if family == "deberta-v2" else DebertaV2Tokenizer
    if isinstance(tokenizer, other) and not isinstance(tokenizer, expected):
        raise ValueError(f"a {type(tokenizer).__name__} does not belong to a {family!r} model "
                         f"({type(model).__name__}): pass a {expected.__name__}")
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} ids but the model's vocab_size is "
                         f"{model.config.vocab_size}: they are from different checkpoints")
