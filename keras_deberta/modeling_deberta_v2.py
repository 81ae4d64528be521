"""The DeBERTa-v2/v3 model classes (`model_type` "deberta-v2"; v3 checkpoints are "deberta-v2"),
weight-compatible with transformers: the shared encoder (keras_deberta/encoder.py) plus one task
head each (keras_deberta/tasks.py)."""

import keras

from keras_deberta import tasks
from keras_deberta.configuration_deberta_v2 import DebertaV2Config
from keras_deberta.encoder import DebertaMainLayer
from keras_deberta.preprocessing import DebertaV2Preprocessor

_register = keras.saving.register_keras_serializable(package="keras_deberta")


@_register
class TFDebertaV2PreTrainedModel(tasks.DebertaTaskModel):
    """Base of the DeBERTa-v2/v3 classes: the `deberta` main layer plus one task head."""

    config_class = DebertaV2Config
    main_layer_class = DebertaMainLayer
    preprocessor_class = DebertaV2Preprocessor  # the string-in SavedModel signatures' tokenisation

    def rename_checkpoint_tensors(self, tensors, source):
        if not str(source).endswith(".h5"):
            return tensors
        # HF's TF classes named the separate position projections pos_proj / pos_q_proj.
        renamed = {}
        for name, value in tensors.items():
            name = name.replace("attention.self.pos_proj.", "attention.self.pos_key_proj.")
            name = name.replace("attention.self.pos_q_proj.", "attention.self.pos_query_proj.")
            renamed[name] = value
        return renamed


@_register
class TFDebertaV2Model(tasks.BaseModelTask, TFDebertaV2PreTrainedModel):
    """The bare DeBERTa-v2/v3 encoder: `last_hidden_state` [B, L, hidden] (+ hidden states, attentions).

    Call it as transformers' TF model: `model(ids)`, `model({"input_ids": ..., "attention_mask":
    ...})`, `model([ids, mask])` or `model(input_ids=..., attention_mask=..., token_type_ids=...)`.
    """

    hf_architecture = "DebertaV2Model"


@_register
class TFDebertaV2ForMaskedLM(tasks.MaskedLMTask, TFDebertaV2PreTrainedModel):
    """Masked LM: `logits` [B, L, vocab]; `labels` [B, L] (-100 ignored) add `loss`. The head is
    `cls.predictions` when config.legacy (transformers' default) else `lm_predictions.lm_head`."""

    hf_architecture = "DebertaV2ForMaskedLM"


@_register
class TFDebertaV2ForSequenceClassification(tasks.SequenceClassificationTask, TFDebertaV2PreTrainedModel):
    """Classification / regression on the pooled [CLS] state: `logits` [B, num_labels]."""

    hf_architecture = "DebertaV2ForSequenceClassification"


@_register
class TFDebertaV2ForTokenClassification(tasks.TokenClassificationTask, TFDebertaV2PreTrainedModel):
    """Per-token classification (NER): `logits` [B, L, num_labels]; labels -100 ignored."""

    hf_architecture = "DebertaV2ForTokenClassification"


@_register
class TFDebertaV2ForQuestionAnswering(tasks.QuestionAnsweringTask, TFDebertaV2PreTrainedModel):
    """Extractive QA: `start_logits`, `end_logits` [B, L]; `start_positions` / `end_positions` [B]."""

    hf_architecture = "DebertaV2ForQuestionAnswering"


@_register
class TFDebertaV2ForMultipleChoice(tasks.MultipleChoiceTask, TFDebertaV2PreTrainedModel):
    """Multiple choice: inputs [B, num_choices, L] -> `logits` [B, num_choices]; labels [B]."""

    hf_architecture = "DebertaV2ForMultipleChoice"
