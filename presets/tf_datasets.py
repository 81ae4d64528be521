"""`model.prepare_tf_dataset(...)`: a tokenized table (a `datasets.Dataset`, or a dict of columns)
-> a batched `tf.data.Dataset` of (features, labels) for `model.fit`, as transformers' TF models
offered it. tf.data feeds `fit` on every Keras backend.

Batches are padded to a few length buckets by default (presets/length_buckets.py), not each to its
own longest row as transformers' collator does: JAX (and TensorFlow's compiled steps) compile one
train step per input shape, so per-batch lengths recompiled at nearly every step of a fit.
"""

import numpy as np

from presets.length_buckets import length_bucket

# Column names transformers' data collators turn into `labels`.
_LABEL_ALIASES = ("label", "label_ids")


class TFDatasetMixin:
    """transformers' `prepare_tf_dataset` on our task models."""

    def prepare_tf_dataset(self, dataset, batch_size=8, shuffle=True, tokenizer=None, collate_fn=None,
                           collate_fn_args=None, drop_remainder=None, prefetch=True, seed=None,
                           pad_to_multiple_of=None, bucket_lengths=True):
        """Batches `dataset` for `fit` / `evaluate` / `predict`.

        Args:
            dataset: a `datasets.Dataset` (anything with `column_names`, `len` and row indexing)
                or a dict {column: list or array}. Columns the model does not take are dropped;
                `label` / `label_ids` become `labels`.
            batch_size: rows per batch.
            shuffle: reshuffle the rows at every epoch (seeded by `seed` when given).
            tokenizer: pads each batch with `tokenizer.pad` (transformers'
                `DataCollatorWithPadding`): to the length bucket of its longest row (16, 24, 32,
                48, 64, 96, ..., capped at max_position_embeddings), so that a fit compiles one
                step per bucket; without a tokenizer, rows must already have equal lengths.
            pad_to_multiple_of: pad each batch to its longest row rounded up to a multiple of
                this (transformers' collator argument) instead of a bucket.
            bucket_lengths: False pads each batch to its own longest row, as transformers does
                (a new shape, and on JAX a new compile, for nearly every batch).
            collate_fn: list of row dicts -> dict of arrays, replacing the default collation;
                `collate_fn_args` are passed to it.
            drop_remainder: drop a last, smaller batch (default: when shuffling, as transformers).
            prefetch: overlap batch preparation with training.
        Returns:
            tf.data.Dataset of (features, labels): features a dict (a single tensor when the model
            gets one input column), labels a tensor (a dict for several label columns), or features
            alone when there are no labels.
        """
        import tensorflow as tf

        columns, num_rows, row = _table(dataset)
        wanted = set(self.input_names) | set(self.label_names) | set(_LABEL_ALIASES)
        kept = [c for c in columns if c in wanted]
        if not any(c in self.input_names for c in kept):
            raise ValueError(f"the dataset has none of the model's inputs {list(self.input_names)}; "
                             f"its columns are {columns}")
        if collate_fn is None:
            cap = getattr(self.config, "max_position_embeddings", None)
            collate_fn = (_pad_with(tokenizer, pad_to_multiple_of, bucket_lengths, cap) if tokenizer is not None
                          else _stack_rows)
        if drop_remainder is None:
            drop_remainder = shuffle
        rng = np.random.default_rng(seed)
        input_names, label_names = set(self.input_names), set(self.label_names)

        def batches():
            order = rng.permutation(num_rows) if shuffle else np.arange(num_rows)
            for start in range(0, num_rows, batch_size):
                index = order[start:start + batch_size]
                if drop_remainder and len(index) < batch_size:
                    return
                batch = collate_fn([{c: row(int(i))[c] for c in kept} for i in index], **(collate_fn_args or {}))
                batch = {("labels" if k in _LABEL_ALIASES else k): np.asarray(v) for k, v in batch.items()}
                features = {k: v for k, v in batch.items() if k in input_names}
                labels = {k: v for k, v in batch.items() if k in label_names}
                features = next(iter(features.values())) if len(features) == 1 else features
                if not labels:
                    yield features
                else:
                    yield features, (next(iter(labels.values())) if len(labels) == 1 else labels)

        first = next(batches())
        signature = tf.nest.map_structure(
            lambda a: tf.TensorSpec((None,) * a.ndim, tf.as_dtype(a.dtype)), first)
        out = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return out.prefetch(tf.data.AUTOTUNE) if prefetch else out


def _table(dataset):
    """(column names, number of rows, row(i) -> {column: value})."""
    if isinstance(dataset, dict):
        columns = list(dataset)
        lengths = {len(dataset[c]) for c in columns}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        return columns, lengths.pop(), lambda i: {c: dataset[c][i] for c in columns}
    if hasattr(dataset, "column_names") and hasattr(dataset, "__getitem__"):
        return list(dataset.column_names), len(dataset), lambda i: dataset[i]
    raise TypeError(f"prepare_tf_dataset takes a datasets.Dataset or a dict of columns, got {type(dataset).__name__}")


def _stack_rows(rows):
    """Rows of equal shapes -> {column: stacked array} (transformers' DefaultDataCollator)."""
    out = {}
    for column in rows[0]:
        values = [np.asarray(r[column]) for r in rows]
        if len({v.shape for v in values}) != 1:
            raise ValueError(f"column {column!r} has rows of different lengths; pass tokenizer= to pad each batch")
        out[column] = np.stack(values)
    return out


def _pad_with(tokenizer, pad_to_multiple_of, bucket_lengths, cap):
    """transformers' DataCollatorWithPadding (`tokenizer.pad`), to the length bucket of the batch's
    longest row unless `pad_to_multiple_of` is given or `bucket_lengths` is False."""
    def collate(rows):
        if pad_to_multiple_of or not bucket_lengths:
            return dict(tokenizer.pad(rows, padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="np"))
        main = tokenizer.model_input_names[0]
        longest = max(len(r[main]) for r in rows)  # [L] per row
        return dict(tokenizer.pad(rows, padding="max_length", max_length=length_bucket(longest, cap),
                                  return_tensors="np"))

    return collate
