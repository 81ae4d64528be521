"""transformers' Auto classes (`AutoConfig`, `AutoTokenizer`, `TFAutoModel`,
`TFAutoModelFor<Task>`), dispatching on a checkpoint's `model_type` over the families that
registered here.

presets never imports a family: each family calls `register_model_type` when it is imported
(keras_deberta for "deberta" / "deberta-v2", keras_deepseek for "deepseek_v2"), and both export
these same classes, so `from keras_deberta import TFAutoModel` and `from keras_deepseek import
TFAutoModel` are one class that knows every family imported so far.
"""

import importlib
import os

from presets.hub import resolve_checkpoint_dir, resolve_config_dict
from presets.io import read_json_object
from presets.loading_options import hub_options_of
from presets.tokenizer_types import TokenizerFileError

_MODEL_TYPES = {}  # model_type -> {"config": cls, "tokenizer": cls, "models": {task: cls}}
_TOKENIZER_CLASSES = {}  # tokenizer_config.json's tokenizer_class -> model_type


def register_model_type(model_type, config_class, tokenizer_class, models, tokenizer_class_names=()):
    """Called by a family on import: its config and tokenizer classes and its task classes by
    task name ("base", "sequence-classification", "token-classification", "question-answering",
    "masked-lm", "multiple-choice", "causal-lm"), each a class or "module:ClassName" (imported
    when first dispatched to, so that registering imports no Keras)."""
    _MODEL_TYPES[model_type] = {"config": config_class, "tokenizer": tokenizer_class, "models": dict(models)}
    for name in tokenizer_class_names:
        _TOKENIZER_CLASSES[name] = model_type


def _family(model_type, what):
    if model_type not in _MODEL_TYPES:
        known = ", ".join(sorted(_MODEL_TYPES)) or "none"
        raise ValueError(f"{what}: unrecognised model_type {model_type!r} (registered: {known}; keras_deberta "
                         f"registers 'deberta' and 'deberta-v2', keras_deepseek 'deepseek_v2' when imported)")
    family = _MODEL_TYPES[model_type]
    return {"config": _resolve(family["config"]), "tokenizer": _resolve(family["tokenizer"]),
            "models": {task: _resolve(cls) for task, cls in family["models"].items()}}


def _resolve(reference):
    if not isinstance(reference, str):
        return reference
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


class AutoConfig:
    """`AutoConfig.from_pretrained(dir_or_hub_id, **kwargs)`: the config class of its model_type;
    `AutoConfig.for_model(model_type, **fields)`."""

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        model_type = _model_type_of(name_or_path, kwargs)
        config_class = _family(model_type, f"AutoConfig.from_pretrained({name_or_path!r})")["config"]
        return config_class.from_pretrained(name_or_path, **kwargs)

    @classmethod
    def for_model(cls, model_type, **fields):
        return _family(model_type, "AutoConfig.for_model")["config"](**fields)


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(dir_or_hub_id, **kwargs)`: the tokenizer of the checkpoint's
    model_type (config.json), else of tokenizer_config.json's tokenizer_class."""

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        directory = resolve_checkpoint_dir(os.fspath(name_or_path), **hub_options_of(kwargs))
        model_type = None
        if os.path.isfile(os.path.join(directory, "config.json")):
            model_type = read_json_object(os.path.join(directory, "config.json"), TokenizerFileError).get("model_type")
        if model_type is None and os.path.isfile(os.path.join(directory, "tokenizer_config.json")):
            name = read_json_object(os.path.join(directory, "tokenizer_config.json"),
                                    TokenizerFileError).get("tokenizer_class")
            model_type = _TOKENIZER_CLASSES.get(name)
        tokenizer_class = _family(model_type, f"AutoTokenizer.from_pretrained({name_or_path!r})")["tokenizer"]
        return tokenizer_class.from_pretrained(name_or_path, **kwargs)


class _TFAutoModelBase:
    task = None

    @classmethod
    def _model_class(cls, model_type, where):
        models = _family(model_type, where)["models"]
        if cls.task not in models:
            raise ValueError(f"{where}: model_type {model_type!r} has no {cls.task} model "
                             f"(it has: {', '.join(sorted(models))})")
        return models[cls.task]

    @classmethod
    def from_pretrained(cls, name_or_path, *args, config=None, **kwargs):
        """The task class of the checkpoint's model_type (or of `config`), loaded with its
        `from_pretrained(name_or_path, config=config, **kwargs)`."""
        if config is not None:
            model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
        else:
            model_type = _model_type_of(name_or_path, kwargs)
        model_class = cls._model_class(model_type, f"{cls.__name__}.from_pretrained({name_or_path!r})")
        return model_class.from_pretrained(name_or_path, *args, config=config, **kwargs)

    @classmethod
    def from_config(cls, config, **kwargs):
        """A freshly initialised model of `config`'s model_type."""
        return cls._model_class(config.model_type, f"{cls.__name__}.from_config")(config, **kwargs)


def _model_type_of(name_or_path, kwargs):
    """config.json's model_type, fetched with the loading keywords among `kwargs` (left as they are)."""
    return resolve_config_dict(name_or_path, **hub_options_of(kwargs)).get("model_type")


def _auto_model(name, task):
    return type(name, (_TFAutoModelBase,), {"task": task, "__doc__": f"transformers' {name}: the {task} class "
                                                                     f"of the checkpoint's model_type."})


TFAutoModel = _auto_model("TFAutoModel", "base")
TFAutoModelForSequenceClassification = _auto_model("TFAutoModelForSequenceClassification", "sequence-classification")
TFAutoModelForTokenClassification = _auto_model("TFAutoModelForTokenClassification", "token-classification")
TFAutoModelForQuestionAnswering = _auto_model("TFAutoModelForQuestionAnswering", "question-answering")
TFAutoModelForMaskedLM = _auto_model("TFAutoModelForMaskedLM", "masked-lm")
TFAutoModelForMultipleChoice = _auto_model("TFAutoModelForMultipleChoice", "multiple-choice")
TFAutoModelForCausalLM = _auto_model("TFAutoModelForCausalLM", "causal-lm")

AUTO_CLASSES = ("AutoConfig", "AutoTokenizer", "TFAutoModel", "TFAutoModelForSequenceClassification",
                "TFAutoModelForTokenClassification", "TFAutoModelForQuestionAnswering", "TFAutoModelForMaskedLM",
                "TFAutoModelForMultipleChoice", "TFAutoModelForCausalLM")
