"""Masked-LM pretraining alone (DeBERTa v1 / v2's objective), with the MLM head computed only at the
masked positions: the baseline that RTD pretraining is compared against, and the way to pretrain a
model with the enhanced mask decoder. `TFDebertaV2ForMaskedLM.fit` with labels works too, but
computes [B, L, vocab] logits: with a 128k vocabulary that is most of a small model's step."""

import keras
from keras import ops

from keras_deberta.pretraining.own_loss import OwnLossPretrainer
from keras_deberta.pretraining.rtd_pretrainer import IGNORE_INDEX, _check_batch, _first_masked_positions
from layers import losses


class MaskedLMPretrainer(OwnLossPretrainer):
    """`model`: a DeBERTa masked LM. Call on a dict of `input_ids` (masked), `attention_mask`,
    `labels` (-100 where not masked) -> `loss`, `mlm_logits` [B, K, V], `mlm_positions` [B, K]
    (the first K = `max_predictions_per_seq` masked positions of each row)."""

    def __init__(self, model, max_predictions_per_seq=20, **kwargs):
        super().__init__(**kwargs)
        if not hasattr(model, "lm_head"):
            raise TypeError(f"model must be a DeBERTa masked LM, got {type(model).__name__}")
        if isinstance(max_predictions_per_seq, bool) or not isinstance(max_predictions_per_seq, int) \
                or max_predictions_per_seq < 1:
            raise ValueError(f"max_predictions_per_seq must be an integer >= 1, got {max_predictions_per_seq!r}")
        self.model = model
        self.max_predictions_per_seq = max_predictions_per_seq
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        input_ids = ops.cast(inputs["input_ids"], "int32")  # [B, L]
        labels = ops.cast(inputs["labels"], "int32")
        mask = inputs.get("attention_mask")
        mask = ops.ones_like(input_ids) if mask is None else ops.cast(mask, "int32")
        self.check_batch(input_ids, labels, mask)
        positions, valid = _first_masked_positions(ops.not_equal(labels, IGNORE_INDEX), self.max_predictions_per_seq)
        states = self.model.run_backbone({"input_ids": input_ids, "attention_mask": mask}, training=training,
                                         output_hidden_states=False, output_attentions=False)["last_hidden_state"]
        picked = ops.take_along_axis(states, positions[..., None], axis=1)  # [B, K, hidden]
        logits = self.model.head(picked, {}, training=training)["logits"]  # [B, K, V]
        targets = ops.where(valid, ops.take_along_axis(labels, positions, axis=1), IGNORE_INDEX)
        loss = losses.sparse_cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
        return {"loss": loss, "mlm_logits": logits, "mlm_positions": positions}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def check_batch(self, input_ids, labels, attention_mask):
        _check_batch(input_ids, labels, attention_mask, None, self.model.config.vocab_size)
