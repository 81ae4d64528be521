"""DeBERTa pretraining as the papers did it: DeBERTa-v3's replaced-token detection with
gradient-disentangled embedding sharing (`DebertaV3RTDPretrainer`), dynamic masking for tf.data
(`DynamicMasking`), and the converter from Microsoft's original pretraining states."""

from keras_deberta.pretraining.decoupled_optimizer import DecoupledOptimizer
from keras_deberta.pretraining.mlm_pretrainer import MaskedLMPretrainer
from keras_deberta.pretraining.masking import DynamicMasking, word_starts_from_tokenizer
from keras_deberta.pretraining.original_checkpoint import (convert_original_states, load_original_pretrainer,
                                                           original_model_config, split_original_state)
from keras_deberta.pretraining.rtd_pretrainer import DebertaV3RTDPretrainer

__all__ = ["DebertaV3RTDPretrainer", "DecoupledOptimizer", "DynamicMasking", "MaskedLMPretrainer", "convert_original_states",
           "load_original_pretrainer", "original_model_config", "split_original_state",
           "word_starts_from_tokenizer"]
