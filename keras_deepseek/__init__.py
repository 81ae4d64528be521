"""DeepSeek-V2 as Keras 3 models (Multi-head Latent Attention, DeepSeekMoE), loading Hugging Face
`deepseek_v2` checkpoints exactly and running unchanged on TensorFlow, JAX and PyTorch."""

from keras_deepseek.configuration_deepseek_v2 import DeepseekV2Config
from keras_deepseek.modeling_deepseek_v2 import (
    TFDeepseekV2ForCausalLM,
    TFDeepseekV2ForSequenceClassification,
    TFDeepseekV2Model,
    TFDeepseekV2PreTrainedModel,
)
from keras_deepseek.pipelines import InputTooLongError, pipeline
from keras_deepseek.tokenization_deepseek_v2 import DeepseekV2Tokenizer
from presets.auto import (AutoConfig, AutoTokenizer, TFAutoModel, TFAutoModelForCausalLM, TFAutoModelForMaskedLM,
                          TFAutoModelForMultipleChoice, TFAutoModelForQuestionAnswering,
                          TFAutoModelForSequenceClassification, TFAutoModelForTokenClassification,
                          register_model_type)
from presets.version import __version__

# The Auto classes (shared with keras_deberta) dispatch to these on a checkpoint's model_type.
# DeepSeek-V2 checkpoints name LlamaTokenizerFast in tokenizer_config.json.
register_model_type("deepseek_v2", DeepseekV2Config, DeepseekV2Tokenizer, {
    "base": TFDeepseekV2Model, "causal-lm": TFDeepseekV2ForCausalLM,
    "sequence-classification": TFDeepseekV2ForSequenceClassification}, ("LlamaTokenizerFast",))

__all__ = [
    "AutoConfig",
    "AutoTokenizer",
    "TFAutoModel",
    "TFAutoModelForCausalLM",
    "TFAutoModelForMaskedLM",
    "TFAutoModelForMultipleChoice",
    "TFAutoModelForQuestionAnswering",
    "TFAutoModelForSequenceClassification",
    "TFAutoModelForTokenClassification",
    "__version__",
    "DeepseekV2Config",
    "DeepseekV2Tokenizer",
    "InputTooLongError",
    "TFDeepseekV2ForCausalLM",
    "TFDeepseekV2ForSequenceClassification",
    "TFDeepseekV2Model",
    "TFDeepseekV2PreTrainedModel",
    "pipeline",
]
