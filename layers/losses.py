"""Task losses with transformers' semantics (ignored labels, means over what is kept), keras.ops only.

Every function accepts an optional per-example `sample_weight` [B]; each kept element is weighted
by its example's weight and the result is the weighted mean, which is HF's plain mean when no
weights are given. When nothing is kept the loss is 0 (transformers returns NaN there).
"""

from keras import ops


def _weighted_mean(values, keep, sample_weight=None):
    """values, keep: [B, ...]; sample_weight: [B] or None."""
    weights = ops.cast(keep, values.dtype)
    if sample_weight is not None:
        sw = ops.cast(ops.reshape(sample_weight, (-1,)), values.dtype)
        weights = weights * ops.reshape(sw, (-1,) + (1,) * (len(values.shape) - 1))
    total = ops.sum(values * weights)
    count = ops.sum(weights)
    return ops.where(count > 0, total / ops.maximum(count, 1e-12), ops.zeros_like(total))


def sparse_cross_entropy(logits, labels, ignore_index=-100, ignore_negative=False, sample_weight=None):
    """Mean cross-entropy over labels != ignore_index (or every negative label when ignore_negative).

    Args:
        logits: [..., C] (computed in float32); labels: integer [...] matching logits' leading axes.
    """
    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "int32")
    keep = labels >= 0 if ignore_negative else ops.not_equal(labels, ignore_index)
    safe = ops.where(keep, labels, ops.zeros_like(labels))
    log_probs = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    return _weighted_mean(-picked, keep, sample_weight)


def soft_cross_entropy(logits, targets, sample_weight=None):
    """-(log_softmax(logits) * targets).sum(-1), averaged: classification with label distributions."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    per_example = -ops.sum(log_probs * ops.cast(targets, "float32"), axis=-1)
    return _weighted_mean(per_example, ops.ones_like(per_example), sample_weight)


def mean_squared_error(predictions, targets, sample_weight=None):
    diff = ops.cast(predictions, "float32") - ops.cast(targets, "float32")
    return _weighted_mean(diff * diff, ops.ones_like(diff), sample_weight)


def binary_cross_entropy_with_logits(logits, targets, sample_weight=None, keep=None):
    """Mean binary cross-entropy; `keep` (same shape as logits, bool) limits the mean to those elements."""
    x = ops.cast(logits, "float32")
    z = ops.cast(targets, "float32")
    # max(x, 0) - x z + log(1 + exp(-|x|)): the stable form torch uses.
    values = ops.maximum(x, 0.0) - x * z + ops.log1p(ops.exp(-ops.abs(x)))
    return _weighted_mean(values, ops.ones_like(values) if keep is None else keep, sample_weight)


def causal_lm_loss(logits, labels, sample_weight=None):
    """transformers' ForCausalLMLoss: position t predicts token t + 1; -100 ignored; mean in float32.

    Args:
        logits: [B, S, V]; labels: [B, S] (not yet shifted); sample_weight: [B] or None.
    """
    return sparse_cross_entropy(logits[:, :-1], labels[:, 1:], sample_weight=sample_weight)


def classification_problem(labels, num_labels, problem_type=None):
    """transformers' choice when config.problem_type is unset: one label is regression, integer
    labels are single-label classification, anything else multi-label."""
    if problem_type is not None:
        return problem_type
    if num_labels == 1:
        return "regression"
    return "single_label_classification" if "int" in str(labels.dtype) else "multi_label_classification"


def sequence_classification_loss(logits, labels, num_labels, problem_type=None, sample_weight=None):
    """transformers' ForSequenceClassificationLoss (the generic one; DeBERTa's differs and lives
    with its head). logits: [B, num_labels]; labels: [B] (class ids, -100 ignored; regression
    values) or [B, num_labels] (multi-label targets, or regression with several outputs)."""
    problem = classification_problem(labels, num_labels, problem_type)
    if problem == "regression":
        if num_labels == 1:
            return mean_squared_error(ops.reshape(logits, (-1,)), ops.reshape(labels, (-1,)), sample_weight)
        return mean_squared_error(logits, labels, sample_weight)
    if problem == "single_label_classification":
        return sparse_cross_entropy(ops.reshape(logits, (-1, num_labels)), ops.reshape(labels, (-1,)),
                                    sample_weight=sample_weight)
    if problem == "multi_label_classification":
        return binary_cross_entropy_with_logits(logits, labels, sample_weight)
    raise ValueError(f"unknown problem_type {problem!r}")
