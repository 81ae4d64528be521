"""DeBERTa v1 model classes (`model_type` "deberta"), weight-compatible with transformers.

They share the encoder layers and heads with v2/v3; the config switches on v1's fused q/k/v
projection (in_proj + q_bias + v_bias), bias-free pos_proj and optional talking heads.
`TFDebertaForMultipleChoice` has no transformers counterpart; it is the v2 head on v1.
"""

import keras

from keras_deberta import tasks
from keras_deberta.configuration_deberta import DebertaConfig
from keras_deberta.encoder import DebertaMainLayer
from keras_deberta.preprocessing import DebertaPreprocessor

_register = keras.saving.register_keras_serializable(package="keras_deberta")


@_register
class TFDebertaPreTrainedModel(tasks.DebertaTaskModel):
    config_class = DebertaConfig
    main_layer_class = DebertaMainLayer
    preprocessor_class = DebertaPreprocessor  # the string-in SavedModel signatures' tokenisation


@_register
class TFDebertaModel(tasks.BaseModelTask, TFDebertaPreTrainedModel):
    """The bare DeBERTa v1 encoder: `last_hidden_state` [B, L, hidden]."""

    hf_architecture = "DebertaModel"


@_register
class TFDebertaForMaskedLM(tasks.MaskedLMTask, TFDebertaPreTrainedModel):
    hf_architecture = "DebertaForMaskedLM"


@_register
class TFDebertaForSequenceClassification(tasks.SequenceClassificationTask, TFDebertaPreTrainedModel):
    hf_architecture = "DebertaForSequenceClassification"


@_register
class TFDebertaForTokenClassification(tasks.TokenClassificationTask, TFDebertaPreTrainedModel):
    hf_architecture = "DebertaForTokenClassification"


@_register
class TFDebertaForQuestionAnswering(tasks.QuestionAnsweringTask, TFDebertaPreTrainedModel):
    hf_architecture = "DebertaForQuestionAnswering"


@_register
class TFDebertaForMultipleChoice(tasks.MultipleChoiceTask, TFDebertaPreTrainedModel):
    """Multiple choice on DeBERTa v1 (transformers has none): inputs [B, num_choices, L]."""

    hf_architecture = None  # no transformers class to name in config.json
