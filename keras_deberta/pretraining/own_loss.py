"""What both pretrainers share: a `keras.Model` that trains on the `loss` its call returns, logs the
outputs its `metrics` are named after, checks arrays given to `fit` before any step, and is saved
through the models it trains (they are the checkpoints), not as itself."""

import keras
import numpy as np
from keras import ops

from presets.model_io import concrete_value


class OwnLossPretrainer(keras.Model):
    """Subclasses define `metrics` (keras.metrics.Mean named after call outputs) and
    `check_batch(input_ids, labels, attention_mask)`."""

    def fit(self, x=None, y=None, *args, **kwargs):
        # Arrays known now are checked as a whole before any step runs (inside a compiled step
        # only a finite loss can be guaranteed: an all-padding batch gives 0, never NaN).
        if isinstance(x, dict) and all(concrete_value(v) is not None for v in x.values()):
            ids = ops.convert_to_tensor(x["input_ids"])
            self.check_batch(ids, ops.convert_to_tensor(x["labels"]),
                             ops.convert_to_tensor(x.get("attention_mask", np.ones(ids.shape, "int32"))))
        return super().fit(x, y, *args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return y_pred["loss"]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for metric in self.metrics:
            metric.update_state(y_pred[metric.name])
        return {metric.name: metric.result() for metric in self.metrics}

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} is not saved itself: save the models it trains "
                                  f"with their save_pretrained(dir)")
