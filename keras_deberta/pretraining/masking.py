"""Dynamic masking for masked-LM / RTD pretraining, written in TensorFlow ops so that it runs inside
`tf.data` (`dataset.map(masker)`) whatever the Keras backend trains the model; it also takes numpy
arrays eagerly.

Each non-special, non-padding token is selected with probability `mask_prob` (15%); a selected
token becomes [MASK] with probability 0.8, a random vocabulary id with 0.1 and stays itself with
0.1. `labels` hold the original id at selected positions and -100 elsewhere. A row with maskable
tokens always gets at least one (short sentences would otherwise often give nothing to predict).
With whole-word masking the choice is made per word: a word starts at a SentencePiece piece
beginning with "▁" (`word_starts_from_tokenizer`), and all its pieces are selected together.
"""

import numpy as np

IGNORE_INDEX = -100
WORD_START = "\u2581"


def word_starts_from_tokenizer(tokenizer):
    """bool [vocab]: which ids begin a word (SentencePiece pieces starting with "▁"; special tokens too)."""
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    starts = np.array([str(p).startswith(WORD_START) for p in pieces], dtype=bool)
    starts[list(tokenizer.all_special_ids)] = True
    return starts


class DynamicMasking:
    """`masker({"input_ids": [B, L] or [L], "attention_mask": ...})` -> the same dict with masked
    `input_ids` and `labels` (int32).

    Args:
        mask_token_id: the [MASK] id; `DynamicMasking.from_tokenizer(tok)` reads it.
        vocab_size: random replacements are drawn from [0, vocab_size) minus the special ids.
        special_ids: ids never selected ([CLS], [SEP], [PAD], ...).
        mask_prob, mask_token_rate, random_token_rate: 0.15, 0.8, 0.1 as in BERT / DeBERTa.
        word_starts: bool [vocab] for whole-word masking (None: per token).
        seed: seed of the masking's random generator.
        max_predictions: at most this many selected tokens per row (those with the smallest
            draws; whole words tied at the cut stay whole), to match the pretrainer's
            `max_predictions_per_seq`.
    """

    def __init__(self, mask_token_id, vocab_size, special_ids=(), mask_prob=0.15, mask_token_rate=0.8,
                 random_token_rate=0.1, word_starts=None, seed=None, max_predictions=None):
        if mask_token_id is None:
            raise ValueError("the vocabulary has no [MASK] token (mask_token_id is None): masked-LM pretraining "
                             "needs one")
        if not 0 <= int(mask_token_id) < int(vocab_size):
            raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab_size})")
        if not 0 < mask_prob < 1:
            raise ValueError(f"mask_prob must lie in (0, 1), got {mask_prob!r}")
        if not (0 <= mask_token_rate and 0 <= random_token_rate and mask_token_rate + random_token_rate <= 1):
            raise ValueError("mask_token_rate and random_token_rate must be >= 0 with a sum <= 1")
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.special_ids = sorted({int(i) for i in special_ids} | {self.mask_token_id})
        self.mask_prob = float(mask_prob)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.word_starts = None if word_starts is None else np.asarray(word_starts, dtype=bool)
        if self.word_starts is not None and self.word_starts.shape[0] < self.vocab_size:
            raise ValueError(f"word_starts has {self.word_starts.shape[0]} entries for a vocabulary of "
                             f"{self.vocab_size}")
        if max_predictions is not None and (isinstance(max_predictions, bool) or int(max_predictions) < 1):
            raise ValueError(f"max_predictions must be None or an integer >= 1, got {max_predictions!r}")
        self.max_predictions = None if max_predictions is None else int(max_predictions)
        self.seed = seed
        self._generator = None

    @classmethod
    def from_tokenizer(cls, tokenizer, whole_word=False, **kwargs):
        mask_id = getattr(tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no [MASK] token: masked-LM pretraining needs one")
        word_starts = word_starts_from_tokenizer(tokenizer) if whole_word else None
        return cls(mask_id, len(tokenizer), special_ids=tokenizer.all_special_ids, word_starts=word_starts, **kwargs)

    def _random(self):
        import tensorflow as tf

        if self._generator is None:
            self._generator = (tf.random.Generator.from_seed(self.seed) if self.seed is not None
                               else tf.random.Generator.from_non_deterministic_state())
        return self._generator

    def __call__(self, features):
        import tensorflow as tf

        features = dict(features)
        ids = tf.cast(tf.convert_to_tensor(features["input_ids"]), tf.int32)
        single = ids.shape.rank == 1
        if single:
            ids = ids[None]
        mask = features.get("attention_mask")
        mask = tf.ones_like(ids) if mask is None else tf.cast(tf.convert_to_tensor(mask), tf.int32)
        if single and mask.shape.rank == 1:
            mask = mask[None]
        maskable = tf.logical_and(tf.cast(mask, tf.bool), tf.logical_not(_isin(ids, self.special_ids)))  # [B, L]
        tf.debugging.assert_equal(
            tf.reduce_any(maskable), True,
            message="no token of this batch can be masked (only special tokens and padding): pretraining needs "
                    "text between [CLS] and [SEP]")
        rng = self._random()
        draw = rng.uniform(tf.shape(ids))  # [B, L]
        if self.word_starts is not None:
            # One draw per word: every piece reads the draw at its word's first piece.
            starts = tf.logical_or(tf.gather(tf.constant(self.word_starts), ids), tf.logical_not(maskable))
            word_index = tf.maximum(tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1, 0)  # [B, L]
            draw = tf.gather(draw, word_index, batch_dims=1)
        else:
            word_index = tf.broadcast_to(tf.range(tf.shape(ids)[1])[None], tf.shape(ids))  # every token a word
        selected = tf.logical_and(maskable, draw < self.mask_prob)
        # Rows with maskable tokens but no selection: the maskable word with the smallest draw.
        none = tf.logical_and(tf.reduce_any(maskable, axis=1), tf.logical_not(tf.reduce_any(selected, axis=1)))
        first = tf.argmin(tf.where(maskable, draw, 2.0), axis=1, output_type=tf.int32)  # [B]
        fallback_word = tf.gather(word_index, first[:, None], batch_dims=1)  # [B, 1]
        fallback = tf.logical_and(maskable, tf.equal(word_index, fallback_word))
        selected = tf.logical_or(selected, tf.logical_and(fallback, none[:, None]))
        if self.max_predictions is not None:
            k = tf.minimum(self.max_predictions, tf.shape(ids)[1])
            kth = tf.math.top_k(tf.where(selected, -draw, -3.0), k=k).values[:, -1:]  # [B, 1]
            selected = tf.logical_and(selected, -draw >= kth)

        action = rng.uniform(tf.shape(ids))
        to_mask = tf.logical_and(selected, action < self.mask_token_rate)
        to_random = tf.logical_and(selected, tf.logical_and(action >= self.mask_token_rate,
                                                            action < self.mask_token_rate + self.random_token_rate))
        random_ids = self._random_ids(rng, tf.shape(ids))
        masked = tf.where(to_mask, self.mask_token_id, tf.where(to_random, random_ids, ids))
        labels = tf.where(selected, ids, IGNORE_INDEX)
        if single:
            masked, labels, mask = masked[0], labels[0], mask[0]
        features.update(input_ids=masked, labels=labels, attention_mask=mask)
        return features

    def _random_ids(self, rng, shape):
        """Uniform over the non-special ids."""
        import tensorflow as tf

        allowed = np.setdiff1d(np.arange(self.vocab_size), self.special_ids).astype(np.int32)
        picks = rng.uniform_full_int(shape, dtype=tf.int64)
        return tf.gather(tf.constant(allowed), tf.math.floormod(picks, len(allowed)))


def _isin(ids, values):
    import tensorflow as tf

    if not values:
        return tf.zeros_like(ids, dtype=tf.bool)
    return tf.reduce_any(tf.equal(ids[..., None], tf.constant(values, dtype=ids.dtype)), axis=-1)

