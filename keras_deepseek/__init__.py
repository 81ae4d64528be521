"""DeepSeek-V2 as Keras 3 models (Multi-head Latent Attention, DeepSeekMoE), loading Hugging Face
`deepseek_v2` checkpoints exactly and running unchanged on TensorFlow, JAX and PyTorch."""

from presets.auto import register_model_type
from presets.lazy_exports import export
from presets.version import __version__

_MODELING = "keras_deepseek.modeling_deepseek_v2"
_EXPORTS = {
    **{name: "presets.auto" for name in (
        "AutoConfig", "AutoTokenizer", "TFAutoModel", "TFAutoModelForCausalLM", "TFAutoModelForMaskedLM",
        "TFAutoModelForMultipleChoice", "TFAutoModelForQuestionAnswering", "TFAutoModelForSequenceClassification",
        "TFAutoModelForTokenClassification")},
    "DeepseekV2Config": "keras_deepseek.configuration_deepseek_v2",
    **{name: _MODELING for name in ("TFDeepseekV2ForCausalLM", "TFDeepseekV2ForSequenceClassification",
                                    "TFDeepseekV2Model", "TFDeepseekV2PreTrainedModel")},
    "InputTooLongError": "keras_deepseek.pipelines", "pipeline": "keras_deepseek.pipelines",
    "DeepseekV2Tokenizer": "keras_deepseek.tokenization_deepseek_v2",
    "ExportedModel": "presets.runtimes",
    **{name: "keras_deepseek.distribution_plan" for name in ("DistributionPlan", "plan_distribution")},
}
# The Auto classes (shared with keras_deberta) dispatch to these on a checkpoint's model_type;
# DeepSeek-V2 checkpoints name LlamaTokenizerFast in tokenizer_config.json.
register_model_type("deepseek_v2", "keras_deepseek.configuration_deepseek_v2:DeepseekV2Config",
                    "keras_deepseek.tokenization_deepseek_v2:DeepseekV2Tokenizer", {
                        "base": f"{_MODELING}:TFDeepseekV2Model", "causal-lm": f"{_MODELING}:TFDeepseekV2ForCausalLM",
                        "sequence-classification": f"{_MODELING}:TFDeepseekV2ForSequenceClassification"},
                    ("LlamaTokenizerFast",))
export(globals(), _EXPORTS)

__all__ = sorted(_EXPORTS) + ["__version__"]
