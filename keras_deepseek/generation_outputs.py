"""What `generate(return_dict_in_generate=True, output_scores=True)` returns, as transformers does:
`GenerateDecoderOnlyOutput` with `sequences` and the processed `scores` of each new token."""

import numpy as np

from presets.model_io import ModelOutput


class GenerateDecoderOnlyOutput(ModelOutput):
    """transformers' output of `generate` for a decoder-only model: `sequences` [B, P + N] (prompt
    and new tokens) and, with output_scores, `scores`: a tuple of N arrays [B, V]."""


def processed_scores(logits, do_sample, temperature, top_k, top_p):
    """The scores transformers reports for one step: the logits [B, V] themselves when greedy; when
    sampling, after temperature, then top-k (values below the k-th largest, ties kept), then top-p
    (tokens after the smallest prefix of the sorted distribution whose mass reaches p), the filtered
    ones -inf. The same rules as `GenerationMixin._choose`, in vocabulary order."""
    scores = np.asarray(logits, "float32")  # [B, V]
    if not do_sample:
        return scores
    scores = scores / np.float32(temperature)
    if top_k:
        kth = -np.sort(-scores, axis=-1)[:, min(int(top_k), scores.shape[-1]) - 1:][:, :1]  # [B, 1]
        scores = np.where(scores < kth, -np.inf, scores)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-scores, axis=-1, kind="stable")  # [B, V], descending
        ranked = np.take_along_axis(scores, order, axis=-1)
        probs = np.exp(ranked - ranked[:, :1])
        probs /= probs.sum(axis=-1, keepdims=True)
        before = np.cumsum(probs, axis=-1) - probs  # mass of the better-ranked tokens
        drop = np.zeros_like(before, dtype=bool)
        np.put_along_axis(drop, order, before > top_p, axis=-1)
        scores = np.where(drop, -np.inf, scores)
    return scores.astype("float32")
