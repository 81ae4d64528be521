"""Names transformers' 4.x TF test suites import that transformers 5 no longer has.

`benchmarks/transformers_tf_suite.py` copies this file into the rewritten suite as
`tests/_keras_shims.py` and points an import here only when neither keras_deberta nor the installed
transformers provides the name. Each shim does the least that keeps transformers' test bodies
unchanged; decorators that guarded a TF1 / PT<->TF / tf2onnx test skip it with a "set aside:" reason
so the runner counts it apart from real failures.
"""

import ast
import functools
import os
import sys
import unittest

import keras  # noqa: F401  (transformers.modeling_tf_utils re-exported tf.keras as `keras`)

import keras_deberta

SET_ASIDE = "set aside: "


def is_tf_available():
    """The suite's model tests need TensorFlow for their inputs; it is installed with this package."""
    return True


def is_flax_available():
    return False


def require_tf(test_case):
    return test_case


_tf_gpu_memory_limit = None


def _set_aside(reason):
    def decorate(test_case):
        return unittest.skip(SET_ASIDE + reason)(test_case)
    return decorate


is_pt_tf_cross_test = _set_aside("PT<->TF cross-loading (transformers' PyTorch classes against TF ones)")
require_tf2onnx = _set_aside("tf2onnx conversion of a TF-Keras 2 graph")


def require_read_token(fn):
    return fn


class SpecialTokensMixin:
    """Only the attribute list the tokenizer suite reads from transformers 4's mixin."""

    SPECIAL_TOKENS_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                 "cls_token", "mask_token", "additional_special_tokens"]


class HfFolder:
    """huggingface_hub's removed token helper; only the Hub push tests (@slow / staging) use it."""


def _task_mapping(v1_name, v2_name):
    """transformers' `TF_MODEL_FOR_*_MAPPING` for the two DeBERTa families (config class -> model class)."""
    mapping = {}
    if v1_name:
        mapping[keras_deberta.DebertaConfig] = getattr(keras_deberta, v1_name)
    if v2_name:
        mapping[keras_deberta.DebertaV2Config] = getattr(keras_deberta, v2_name)
    return mapping


TF_MODEL_MAPPING = _task_mapping("TFDebertaModel", "TFDebertaV2Model")
TF_MODEL_FOR_MASKED_LM_MAPPING = _task_mapping("TFDebertaForMaskedLM", "TFDebertaV2ForMaskedLM")
TF_MODEL_FOR_MULTIPLE_CHOICE_MAPPING = _task_mapping("TFDebertaForMultipleChoice", "TFDebertaV2ForMultipleChoice")
TF_MODEL_FOR_QUESTION_ANSWERING_MAPPING = _task_mapping("TFDebertaForQuestionAnswering",
                                                        "TFDebertaV2ForQuestionAnswering")
TF_MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING = _task_mapping("TFDebertaForSequenceClassification",
                                                             "TFDebertaV2ForSequenceClassification")
TF_MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING = _task_mapping("TFDebertaForTokenClassification",
                                                          "TFDebertaV2ForTokenClassification")
# Tasks DeBERTa has no class for: empty, as transformers' lazy mappings were for it.
TF_MODEL_FOR_CAUSAL_LM_MAPPING = {}
TF_MODEL_FOR_DOCUMENT_QUESTION_ANSWERING_MAPPING = {}
TF_MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING = {}
TF_MODEL_FOR_MASKED_IMAGE_MODELING_MAPPING = {}
TF_MODEL_FOR_NEXT_SENTENCE_PREDICTION_MAPPING = {}
TF_MODEL_FOR_PRETRAINING_MAPPING = {}
TF_MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING = {}
TF_MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING = {}
TF_MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING = {}


class TFSharedEmbeddings:
    """transformers' TF-Keras 2 layer; only encoder-decoder tests (none for DeBERTa) build one."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("TFSharedEmbeddings is a TF-Keras 2 layer of transformers 4")


def _output_class(name):
    return type(name, (), {"__doc__": "transformers 4's TF generation output; DeBERTa never generates."})


for _name in ("TFBeamSampleDecoderOnlyOutput", "TFBeamSampleEncoderDecoderOutput", "TFBeamSearchDecoderOnlyOutput",
              "TFBeamSearchEncoderDecoderOutput", "TFGreedySearchDecoderOnlyOutput",
              "TFGreedySearchEncoderDecoderOutput", "TFSampleDecoderOnlyOutput", "TFSampleEncoderDecoderOutput"):
    globals()[_name] = _output_class(_name)


class parameterized:  # noqa: N801  (the `parameterized` package's spelling)
    """`parameterized.expand` for suites run where the `parameterized` package is not installed."""

    @staticmethod
    def expand(cases):
        def decorate(fn):
            namespace = sys._getframe(1).f_locals  # the class body being defined, as the package does
            for index, case in enumerate(cases):
                args = case if isinstance(case, tuple) else (case,)
                suffix = "_".join(str(a) for a in args if isinstance(a, (bool, int, str)))[:40]

                def bound(self, _args=args):
                    return fn(self, *_args)
                bound.__name__ = f"{fn.__name__}_{index}" + (f"_{suffix}" if suffix else "")
                namespace[bound.__name__] = functools.wraps(fn, assigned=("__doc__",))(bound)
            return None
        return decorate


def _pipeline_test_names():
    """The test names of the suite's own test_pipeline_mixin.py (read, never imported: it imports
    every transformers pipeline test module)."""
    path = os.path.join(os.path.dirname(__file__), "test_pipeline_mixin.py")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    return sorted({node.name for node in ast.walk(tree)
                   if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")})


def _pipeline_skip(self):
    self.skipTest(SET_ASIDE + "transformers' own pipeline classes (they run transformers' PyTorch/TF models)")


PipelineTesterMixin = type("PipelineTesterMixin", (), {
    "pipeline_model_mapping": None, **{name: _pipeline_skip for name in _pipeline_test_names()}})
