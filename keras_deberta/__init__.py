"""DeBERTa (v1) and DeBERTa-v2/v3 as Keras 3 models for TensorFlow, JAX and PyTorch."""

from keras_deberta.configuration_deberta import DebertaConfig
from keras_deberta.configuration_deberta_v2 import DebertaV2Config
from keras_deberta.modeling_deberta import (
    TFDebertaForMaskedLM,
    TFDebertaForMultipleChoice,
    TFDebertaForQuestionAnswering,
    TFDebertaForSequenceClassification,
    TFDebertaForTokenClassification,
    TFDebertaModel,
    TFDebertaPreTrainedModel,
)
from keras_deberta.encoder import DebertaMainLayer, DebertaV2MainLayer
from keras_deberta.modeling_deberta_v2 import (
    TFDebertaV2ForMaskedLM,
    TFDebertaV2ForMultipleChoice,
    TFDebertaV2ForQuestionAnswering,
    TFDebertaV2ForSequenceClassification,
    TFDebertaV2ForTokenClassification,
    TFDebertaV2Model,
    TFDebertaV2PreTrainedModel,
)
from keras_deberta.pipelines import InputTooLongError, pipeline
from keras_deberta.rtd import TFDebertaV2ForReplacedTokenDetection
from keras_deberta.pretraining import DebertaV3RTDPretrainer, DynamicMasking
from keras_deberta.preprocessing import DebertaPreprocessor, DebertaV2Preprocessor, serving_module
from keras_deberta.tokenization_deberta import DebertaTokenizer, DebertaTokenizerFast
from keras_deberta.tokenization_deberta_v2 import (
    BatchEncoding,
    DebertaV2Tokenizer,
    DebertaV2TokenizerFast,
    TokenizerFileError,
)
from presets.errors import CheckpointError, CheckpointNotFoundError

__all__ = [
    "BatchEncoding",
    "CheckpointError",
    "DebertaPreprocessor",
    "DebertaTokenizer",
    "DebertaTokenizerFast",
    "DebertaV2Preprocessor",
    "DebertaV2Tokenizer",
    "DebertaV3RTDPretrainer",
    "DynamicMasking",
    "DebertaV2TokenizerFast",
    "InputTooLongError",
    "TokenizerFileError",
    "pipeline",
    "serving_module",
    "CheckpointNotFoundError",
    "DebertaConfig",
    "DebertaMainLayer",
    "DebertaV2Config",
    "DebertaV2MainLayer",
    "TFDebertaForMaskedLM",
    "TFDebertaForMultipleChoice",
    "TFDebertaForQuestionAnswering",
    "TFDebertaForSequenceClassification",
    "TFDebertaForTokenClassification",
    "TFDebertaModel",
    "TFDebertaPreTrainedModel",
    "TFDebertaV2ForMaskedLM",
    "TFDebertaV2ForMultipleChoice",
    "TFDebertaV2ForQuestionAnswering",
    "TFDebertaV2ForReplacedTokenDetection",
    "TFDebertaV2ForSequenceClassification",
    "TFDebertaV2ForTokenClassification",
    "TFDebertaV2Model",
    "TFDebertaV2PreTrainedModel",
]
