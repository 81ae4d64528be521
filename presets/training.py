"""How Keras' `fit` / `evaluate` see an HF-style model: the model's own loss when compiled without
one (as HF's TF models trained), ordinary Keras losses and metrics on the primary outputs."""

import keras
from keras import ops

from layers.model_io import ModelOutput


def _per_replica(loss):
    """The model's own loss as one replica's share under tf.distribute (MirroredStrategy): the
    replicas' gradients are summed, so each loss is divided by their number, as Keras does for
    compiled losses (its helper for it is private). Unchanged on JAX and PyTorch."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / ops.cast(replicas, loss.dtype)
    return loss


class TrainingHooksMixin:
    """Keras' `compute_loss` / `compute_metrics` for models whose call returns a `ModelOutput`."""

    # Names of the label inputs (HF: "labels"; QA: "start_positions", "end_positions") and of the
    # outputs an ordinary Keras loss or metric is applied to.
    label_names = ()
    primary_output_names = ("logits",)

    def hf_loss(self, outputs, labels, sample_weight=None):
        """The transformers loss of this head: outputs dict, labels {name: tensor} -> scalar."""
        raise NotImplementedError(f"{type(self).__name__} has no loss of its own; compile(loss=...)")

    def _labels_from_y(self, y):
        if isinstance(y, dict):
            missing = [n for n in self.label_names if n not in y]
            if missing:
                raise ValueError(f"y is missing {missing}; {type(self).__name__} takes {list(self.label_names)}")
            return {n: y[n] for n in self.label_names}
        if isinstance(y, (list, tuple)) and len(self.label_names) > 1:
            if len(y) != len(self.label_names):
                raise ValueError(f"y must hold {list(self.label_names)}, got {len(y)} arrays")
            return dict(zip(self.label_names, y))
        return {self.label_names[0]: y}

    def _keras_view(self, y_pred):
        """What an ordinary Keras loss / metric sees: the primary output(s), or a dict by name."""
        compiled = getattr(self, "_compile_loss", None)
        if compiled is not None and isinstance(compiled._user_loss, dict):
            return {k: v for k, v in y_pred.items() if k != "loss"}
        if len(self.primary_output_names) == 1:
            return y_pred[self.primary_output_names[0]]
        return tuple(y_pred[n] for n in self.primary_output_names)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, ModelOutput):
            if getattr(self, "_compile_loss", None) is None:
                # compile() without a loss trains on the model's own loss, as HF's TF models did:
                # labels come as `y`, or inside the input dict (then the call computed `.loss`).
                if y is not None:
                    loss = self.hf_loss(y_pred, self._labels_from_y(y), sample_weight=sample_weight)
                elif "loss" in y_pred:
                    loss = y_pred["loss"]
                else:
                    raise ValueError(
                        "no loss: pass labels (as y or in the input dict) or compile(loss=...)"
                    )
                for extra in self.losses:  # regularisers and add_loss terms
                    loss = loss + ops.cast(extra, loss.dtype)
                return _per_replica(loss)
            y_pred = self._keras_view(y_pred)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, ModelOutput):
            y_pred = self._keras_view(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

