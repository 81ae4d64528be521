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

__all__ = [
    "DeepseekV2Config",
    "DeepseekV2Tokenizer",
    "InputTooLongError",
    "TFDeepseekV2ForCausalLM",
    "TFDeepseekV2ForSequenceClassification",
    "TFDeepseekV2Model",
    "TFDeepseekV2PreTrainedModel",
    "pipeline",
]
