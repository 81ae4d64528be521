"""How Keras' `compile` / `fit` / `evaluate` see an HF-style model: the model's own loss when
compiled without one (as HF's TF models trained), ordinary Keras losses and metrics on the primary
outputs. Labels may come as `y` or inside the input dict (HF TF style); sample weights apply in
both cases."""

import keras
from keras import ops

from presets.keras_compat import lean_torch_adam
from presets.model_io import ModelOutput


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

    def compile(self, optimizer="rmsprop", loss=None, *args, **kwargs):
        # Remembered to tell "compiled without a loss" (train on the model's own) from a Keras
        # loss, and whether that loss is a dict by output name.
        self._user_loss = loss
        kwargs["metrics"] = self._metrics_per_output(kwargs.get("metrics"))
        super().compile(optimizer, loss, *args, **kwargs)
        # PyTorch: Keras' Adam / AdamW step without its five parameter-sized temporaries (the
        # 128k-row embedding table made them most of a training step; see keras_compat).
        lean_torch_adam(self.optimizer)

    def _metrics_per_output(self, metrics):
        """A flat metrics list on a head with several primary outputs (QA's start and end logits):
        applied to each output, as TF-Keras 2 did for transformers' TF models (Keras 3 wants one
        list per output); each output gets its own metric objects."""
        outputs = len(self.primary_output_names)
        if outputs < 2 or not isinstance(metrics, (list, tuple)) or not metrics or \
                any(isinstance(m, (list, tuple, dict)) for m in metrics):
            return metrics

        def fresh(metric):
            return metric if isinstance(metric, str) else type(metric).from_config(metric.get_config())
        return [list(metrics)] + [[fresh(m) for m in metrics] for _ in range(outputs - 1)]

    def compile_from_config(self, config):
        """`keras.saving.load_model` recompiling a saved compiled model: Keras' own version skips
        every model whose `compile` is overridden (this one is, to train on the model's own loss),
        leaving it without an optimizer. The saved arguments go through our `compile`, and the
        optimizer's variables are created so that Keras restores their saved values next."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # Keras drops `sample_weight` when `y` is None (its data adapters pack (x, None, w) as x alone),
    # so labels inside the input dict would silently train unweighted: they move to `y` first.
    def fit(self, x=None, y=None, *args, **kwargs):
        x, y = self._labels_to_y_for_weights(x, y, kwargs.get("sample_weight"))
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        x, y = self._labels_to_y_for_weights(x, y, kwargs.get("sample_weight"))
        return super().evaluate(x, y, *args, **kwargs)

    def _labels_to_y_for_weights(self, x, y, sample_weight):
        labels = self._labels_in_x(x)
        if y is not None or sample_weight is None or not labels:
            return x, y
        x = {k: v for k, v in x.items() if k not in labels}
        return x, self._y_from_labels(labels)

    def _uses_own_loss(self):
        return getattr(self, "_user_loss", None) is None

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

    def _checked_labels(self, x, labels):
        """Labels given as `y`, checked (and normalised) by the head as the call checks its own."""
        if isinstance(x, dict):
            values = {k: v for k, v in x.items() if k in ("input_ids", "inputs_embeds")}
        else:
            values = {"input_ids": x[0] if isinstance(x, (list, tuple)) else x}
        values.update({k: ops.convert_to_tensor(v) if not hasattr(v, "shape") else v for k, v in labels.items()})
        self.check_labels(values)
        return {n: values[n] for n in labels}

    def _labels_in_x(self, x):
        """Labels that travel inside the input dict, {name: tensor}, or {}."""
        if not isinstance(x, dict):
            return {}
        return {n: x[n] for n in self.label_names if x.get(n) is not None}

    def _keras_view(self, y_pred):
        """What an ordinary Keras loss / metric sees: the primary output(s), or a dict by name."""
        if isinstance(getattr(self, "_user_loss", None), dict):
            return {k: v for k, v in y_pred.items() if k != "loss"}
        if len(self.primary_output_names) == 1:
            return y_pred[self.primary_output_names[0]]
        return tuple(y_pred[n] for n in self.primary_output_names)

    def _per_example_weight(self, sample_weight):
        """One weight per example, as transformers' losses take it. Keras maps a single
        `sample_weight` onto the structure of `y`, so with labels given as a dict (or list) it
        arrives as {label name: weights}; each entry is that same per-example weight, and the first
        label's is used."""
        if isinstance(sample_weight, dict):
            names = [n for n in self.label_names if sample_weight.get(n) is not None]
            names += [n for n, v in sample_weight.items() if v is not None and n not in names]
            return sample_weight[names[0]] if names else None
        if isinstance(sample_weight, (list, tuple)):
            present = [w for w in sample_weight if w is not None]
            return present[0] if present else None
        return sample_weight

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, ModelOutput):
            if self._uses_own_loss():
                sample_weight = self._per_example_weight(sample_weight)
                # compile() without a loss trains on the model's own loss, as HF's TF models did:
                # labels come as `y`, or inside the input dict (the call then computed an
                # unweighted `.loss`; with sample weights it is computed again, weighted).
                labels = self._checked_labels(x, self._labels_from_y(y)) if y is not None else self._labels_in_x(x)
                if labels and (y is not None or sample_weight is not None or "loss" not in y_pred):
                    loss = self.hf_loss(y_pred, labels, sample_weight=sample_weight)
                elif "loss" in y_pred:
                    loss = y_pred["loss"]
                else:
                    raise ValueError("no loss: pass labels (as y or in the input dict) or compile(loss=...)")
                loss = ops.reshape(loss, ())  # the output's HF-shaped [1] loss -> Keras' scalar
                for extra in self.losses:  # regularisers and add_loss terms
                    loss = loss + ops.cast(extra, loss.dtype)
                return _per_replica(loss)
            y_pred = self._keras_view(y_pred)
            if y is None:
                y = self._y_from_x(x)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, ModelOutput):
            y_pred = self._keras_view(y_pred)
            if y is None:
                y = self._y_from_x(x)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _y_from_x(self, x):
        """Labels inside the input dict in the form Keras losses / metrics take `y`."""
        labels = self._labels_in_x(x)
        return self._y_from_labels(labels) if labels else None

    def _y_from_labels(self, labels):
        if len(self.label_names) == 1:
            return labels[self.label_names[0]]
        return tuple(labels.get(n) for n in self.label_names)


class CheckedStepsMixin:
    """A bad batch never costs the model its state.

    On JAX, Keras' fit / evaluate / predict move the variables' arrays out of the model (the
    variables are purged) into a state that compiled steps *donate* (their buffers are reused);
    an index check failing inside a step (a host callback) raised after the donation, and every
    later call failed ("Array has been deleted"). So on JAX every batch is checked on the host,
    with the checks the call makes, before it enters a compiled step, and when it is refused the
    state, still intact, is written back into the variables before the error propagates.
    TensorFlow and PyTorch neither purge nor donate: their checks fail before anything changes.
    """

    # The state tuple Keras' JAX steps take, by step kind.
    _JAX_STATE_PARTS = {
        "train": ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables"),
        "test": ("trainable_variables", "non_trainable_variables", "metrics_variables"),
        "predict": ("trainable_variables", "non_trainable_variables"),
    }

    def make_train_function(self, force=False):
        super().make_train_function(force)
        self.train_function = self._checking_batches(self.train_function, "train")
        return self.train_function

    def make_test_function(self, force=False):
        super().make_test_function(force)
        self.test_function = self._checking_batches(self.test_function, "test")
        return self.test_function

    def make_predict_function(self, force=False):
        super().make_predict_function(force)
        self.predict_function = self._checking_batches(self.predict_function, "predict")
        return self.predict_function

    def _checking_batches(self, step_function, kind):
        if keras.backend.backend() != "jax" or step_function is None or getattr(step_function, "_checks", False):
            return step_function

        def checked(state, iterator):
            batches = _CheckedBatches(iterator, self.check_batch)
            try:
                return step_function(state, batches)
            except RefusedBatch:
                if batches.pulled == 1:  # refused before any step ran: the state is intact
                    self._jax_state = dict(zip(self._JAX_STATE_PARTS[kind], state))
                    self._jax_state_synced = False
                    self.jax_state_sync()
                raise

        checked._checks = True
        return checked

    def check_batch(self, data):
        """Raises RefusedBatch (a ValueError) when a (x, y, sample_weight) batch holds what the
        call would refuse (ids or labels out of range, mismatched shapes)."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        try:
            values = self.parse_inputs(x, {})
            if y is not None and self.label_names and self._uses_own_loss():
                values.update(self._labels_from_y(y))
                self.check_labels(values)
        except ValueError as e:
            raise RefusedBatch(str(e)) from None


class RefusedBatch(ValueError):
    """A batch failed the model's input or label checks before entering a compiled step."""


class _CheckedBatches:
    """The iterator Keras' JAX steps pull batches from, checking each before it is used."""

    def __init__(self, iterator, check):
        self._iterator, self._check = iterator, check
        self.pulled = 0

    def __iter__(self):
        return self

    def __next__(self):
        data = next(self._iterator)
        self.pulled += 1
        self._check(data)
        return data
