"""DeBERTa (v1) and DeBERTa-v2/v3 as Keras 3 models for TensorFlow, JAX and PyTorch."""

from presets.auto import register_model_type
from presets.lazy_exports import export
from presets.version import __version__

_MODELING_V1, _MODELING_V2 = "keras_deberta.modeling_deberta", "keras_deberta.modeling_deberta_v2"
_AUTO = {name: "presets.auto" for name in (
    "AutoConfig", "AutoTokenizer", "TFAutoModel", "TFAutoModelForCausalLM", "TFAutoModelForMaskedLM",
    "TFAutoModelForMultipleChoice", "TFAutoModelForQuestionAnswering", "TFAutoModelForSequenceClassification",
    "TFAutoModelForTokenClassification")}
_EXPORTS = {
    **_AUTO,
    "DebertaConfig": "keras_deberta.configuration_deberta",
    "DebertaV2Config": "keras_deberta.configuration_deberta_v2",
    **{name: _MODELING_V1 for name in (
        "TFDebertaForMaskedLM", "TFDebertaForMultipleChoice", "TFDebertaForQuestionAnswering",
        "TFDebertaForSequenceClassification", "TFDebertaForTokenClassification", "TFDebertaModel",
        "TFDebertaPreTrainedModel")},
    "DebertaMainLayer": "keras_deberta.encoder", "DebertaV2MainLayer": "keras_deberta.encoder",
    **{name: _MODELING_V2 for name in (
        "TFDebertaV2ForMaskedLM", "TFDebertaV2ForMultipleChoice", "TFDebertaV2ForQuestionAnswering",
        "TFDebertaV2ForSequenceClassification", "TFDebertaV2ForTokenClassification", "TFDebertaV2Model",
        "TFDebertaV2PreTrainedModel")},
    "InputTooLongError": "keras_deberta.pipelines", "pipeline": "keras_deberta.pipelines",
    "DebertaPreprocessor": "keras_deberta.preprocessing", "DebertaV2Preprocessor": "keras_deberta.preprocessing",
    "serving_module": "keras_deberta.preprocessing",
    "DebertaTokenizer": "keras_deberta.tokenization_deberta", "DebertaTokenizerFast": "keras_deberta.tokenization_deberta",
    "BatchEncoding": "keras_deberta.tokenization_deberta_v2", "DebertaV2Tokenizer": "keras_deberta.tokenization_deberta_v2",
    "DebertaV2TokenizerFast": "keras_deberta.tokenization_deberta_v2",
    "TokenizerFileError": "keras_deberta.tokenization_deberta_v2",
    "CheckpointError": "presets.errors", "CheckpointNotFoundError": "presets.errors",
    "ExportedModel": "presets.runtimes",
    "TFDebertaV2ForReplacedTokenDetection": "keras_deberta.rtd",
    "DebertaV3RTDPretrainer": "keras_deberta.pretraining", "DynamicMasking": "keras_deberta.pretraining",
}
# The Auto classes (shared with keras_deepseek) dispatch to these on a checkpoint's model_type; named
# as "module:class" so that registering imports nothing.
register_model_type("deberta-v2", "keras_deberta.configuration_deberta_v2:DebertaV2Config",
                    "keras_deberta.tokenization_deberta_v2:DebertaV2Tokenizer", {
                        "base": f"{_MODELING_V2}:TFDebertaV2Model",
                        "sequence-classification": f"{_MODELING_V2}:TFDebertaV2ForSequenceClassification",
                        "token-classification": f"{_MODELING_V2}:TFDebertaV2ForTokenClassification",
                        "question-answering": f"{_MODELING_V2}:TFDebertaV2ForQuestionAnswering",
                        "masked-lm": f"{_MODELING_V2}:TFDebertaV2ForMaskedLM",
                        "multiple-choice": f"{_MODELING_V2}:TFDebertaV2ForMultipleChoice"},
                    ("DebertaV2Tokenizer", "DebertaV2TokenizerFast"))
register_model_type("deberta", "keras_deberta.configuration_deberta:DebertaConfig",
                    "keras_deberta.tokenization_deberta:DebertaTokenizer", {
                        "base": f"{_MODELING_V1}:TFDebertaModel",
                        "sequence-classification": f"{_MODELING_V1}:TFDebertaForSequenceClassification",
                        "token-classification": f"{_MODELING_V1}:TFDebertaForTokenClassification",
                        "question-answering": f"{_MODELING_V1}:TFDebertaForQuestionAnswering",
                        "masked-lm": f"{_MODELING_V1}:TFDebertaForMaskedLM",
                        "multiple-choice": f"{_MODELING_V1}:TFDebertaForMultipleChoice"},
                    ("DebertaTokenizer", "DebertaTokenizerFast"))
export(globals(), _EXPORTS)

__all__ = sorted(_EXPORTS) + ["__version__"]
