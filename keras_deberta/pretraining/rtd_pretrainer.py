"""DeBERTa-v3's pretraining: a generator (masked LM) and a replaced-token-detection discriminator,
ELECTRA-style, with gradient-disentangled embedding sharing (GDES), as Microsoft's original code
(DeBERTa/apps/tasks/rtd_task.py, `RTDModel`) trains them.

One step, on a batch already masked (see `keras_deberta.pretraining.masking`):
  1. the generator predicts the masked tokens: `mlm_logits` [B, L, V]; `mlm_loss` = mean
     cross-entropy over the masked tokens of the batch;
  2. a replacement is sampled from the generator's softmax at each masked position (no gradient)
     and written into the masked positions: `corrupted_ids` [B, L];
  3. the discriminator labels each token replaced (1) or original (0): a masked token whose sample
     equals the original counts as original; `rtd_loss` = mean binary cross-entropy over every
     non-padding token;
  4. loss = mlm_loss + rtd_lambda * rtd_loss.

Embedding sharing:
  "gdes": the discriminator's word embeddings are stop_gradient(E_G) + delta, with E_G the
          generator's table and delta a table of ours, initialised to E_D - E_G (zero when the
          discriminator starts from the generator's table). The RTD loss reaches only delta; E_G
          learns from the MLM loss alone.
  "es":   the discriminator uses E_G itself; both losses train it.
  "none": each model keeps its own table.
Under "gdes" and "es" the discriminator's own table is not trained (it is not read); it receives
the effective table when `pretrainer.discriminator` is read (`fold_embeddings`), so
`pretrainer.discriminator.save_pretrained(dir)` writes a checkpoint transformers loads as
DebertaV2Model.
"""

import keras
from keras import ops

from keras_deberta.pretraining.decoupled_optimizer import DecoupledOptimizer
from keras_deberta.pretraining.own_loss import OwnLossPretrainer
from layers import losses
from presets.model_io import concrete_value

EMBEDDING_SHARING = ("gdes", "es", "none")
IGNORE_INDEX = -100


def _word_embeddings(model):
    return model.deberta.embeddings.word_embeddings


class DebertaV3RTDPretrainer(OwnLossPretrainer):
    """RTD pretraining of a generator / discriminator pair.

    Args:
        generator: a masked LM (`TFDebertaV2ForMaskedLM`, usually with `enhanced_mask_decoder=True`
            and half the discriminator's depth, as in the original rtd configs).
        discriminator: a `TFDebertaV2ForReplacedTokenDetection`.
        rtd_lambda: weight of the RTD loss (> 0); 50 as in the DeBERTa-v3 paper (the original
            code's default was 10).
        embedding_sharing: "gdes" (default), "es" or "none".
        seed: seed of the replacement sampling.
        max_predictions_per_seq: None (default): the generator predicts every position and
            `mlm_logits` is [B, L, V]. An int K: only the first K masked positions of each row go
            through the MLM head (`mlm_logits` [B, K, V], their positions in `mlm_positions`
            [B, K]), as the original computes logits only where tokens are masked; with a
            128k-row vocabulary that head is most of a small model's step. Mask with the same cap
            (`DynamicMasking(max_predictions=K)`): a masked token beyond it is not predicted nor
            replaced, and the discriminator is told it is replaced (it is [MASK]).

    Call: a dict of `input_ids` [B, L] (already masked), `attention_mask` [B, L], `labels` [B, L]
    (the original id at masked positions, -100 elsewhere) and, for tests, `replacement_ids`
    [number of masked tokens] (row-major; replaces sampling). Returns a dict of `loss`,
    `mlm_loss`, `rtd_loss`, `mlm_logits` [B, L, V], `rtd_logits` [B, L], `corrupted_ids` [B, L].

    Training: `compile(optimizer=...)` (one optimizer for both) or
    `compile(generator_optimizer=..., discriminator_optimizer=...)` (the original recipes'
    decoupled training), then `fit`; the logs carry `loss`, `mlm_loss` and `rtd_loss`.
    """

    def __init__(self, generator, discriminator, rtd_lambda=50.0, embedding_sharing="gdes", seed=None,
                 max_predictions_per_seq=None, **kwargs):
        super().__init__(**kwargs)
        if max_predictions_per_seq is not None and (isinstance(max_predictions_per_seq, bool) or not isinstance(
                max_predictions_per_seq, int) or max_predictions_per_seq < 1):
            raise ValueError(f"max_predictions_per_seq must be None or an integer >= 1, got {max_predictions_per_seq!r}")
        self.max_predictions_per_seq = max_predictions_per_seq
        if isinstance(rtd_lambda, bool) or not isinstance(rtd_lambda, (int, float)) or not rtd_lambda > 0:
            raise ValueError(f"rtd_lambda must be a number > 0, got {rtd_lambda!r}")
        if embedding_sharing not in EMBEDDING_SHARING:
            raise ValueError(f"embedding_sharing must be one of {EMBEDDING_SHARING}, got {embedding_sharing!r}")
        _check_pair(generator, discriminator, embedding_sharing)
        self.generator_model = generator
        self.discriminator_model = discriminator
        self.rtd_lambda = float(rtd_lambda)
        self.embedding_sharing = embedding_sharing
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.embedding_delta = None
        if embedding_sharing != "none":
            # The discriminator's table is not read while sharing: it must not be stepped (weight
            # decay would move it) and holds the effective table only when folded.
            _word_embeddings(discriminator).trainable = False
        # A table assigned from the other model's (`disc.assign(gen)`) may hold the very same
        # buffer on JAX, which a compiled step cannot take twice: each gets its own copy.
        disc_table = _word_embeddings(discriminator).embeddings
        disc_table.assign(ops.copy(disc_table))
        if embedding_sharing == "gdes":
            gen_table = _word_embeddings(generator).embeddings
            disc_table = _word_embeddings(discriminator).embeddings
            self.embedding_delta = self.add_weight(
                name="embedding_delta", shape=tuple(gen_table.shape), initializer="zeros", dtype=gen_table.dtype)
            self.embedding_delta.assign(ops.cast(disc_table, gen_table.dtype) - gen_table)
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.rtd_loss_tracker = keras.metrics.Mean(name="rtd_loss")
        self.total_loss_tracker = keras.metrics.Mean(name="loss")  # each named after a call output

    # --- the two models -------------------------------------------------------------------------
    @property
    def generator(self):
        return self.generator_model

    @property
    def discriminator(self):
        """The discriminator with the shared embeddings folded into its own table (ready to save)."""
        self.fold_embeddings()
        return self.discriminator_model

    def fold_embeddings(self):
        """Writes the discriminator's effective word embeddings (E_G + delta, or E_G) into its table."""
        if self.embedding_sharing == "none":
            return
        table = _word_embeddings(self.discriminator_model).embeddings
        table.assign(ops.cast(self._discriminator_table(), table.dtype))

    def _discriminator_table(self):
        """[V, E] effective discriminator word embeddings (gradient: the delta only under gdes)."""
        gen_table = _word_embeddings(self.generator_model).embeddings
        if self.embedding_sharing == "gdes":
            return ops.stop_gradient(gen_table) + self.embedding_delta
        return gen_table

    # --- one step -------------------------------------------------------------------------------
    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            raise TypeError(f"{type(self).__name__} takes a dict of input_ids, attention_mask, labels; "
                            f"got {type(inputs).__name__}")
        missing = [n for n in ("input_ids", "labels") if n not in inputs]
        if missing:
            raise ValueError(f"{type(self).__name__} needs {missing} in its input dict")
        unknown = sorted(set(inputs) - {"input_ids", "attention_mask", "labels", "replacement_ids"})
        if unknown:
            raise ValueError(f"unexpected inputs {unknown}; the pretrainer takes input_ids, attention_mask, labels "
                             f"and (tests) replacement_ids")
        input_ids = ops.cast(inputs["input_ids"], "int32")  # [B, L]
        labels = ops.cast(inputs["labels"], "int32")  # [B, L], -100 where not masked
        mask = inputs.get("attention_mask")
        mask = ops.ones_like(input_ids) if mask is None else ops.cast(mask, "int32")  # [B, L]
        replacement_ids = inputs.get("replacement_ids")
        _check_batch(input_ids, labels, mask, replacement_ids, self.generator_model.config.vocab_size)

        masked = ops.not_equal(labels, IGNORE_INDEX)  # [B, L]
        outputs = {}
        if self.max_predictions_per_seq is None:
            gen = self.generator_model({"input_ids": input_ids, "attention_mask": mask}, training=training)
            mlm_logits, mlm_labels, predicted = gen["logits"], labels, masked  # [B, L, V], [B, L], [B, L]
        else:
            positions, valid = _first_masked_positions(masked, self.max_predictions_per_seq)  # [B, K] each
            mlm_logits = self._generator_logits_at(input_ids, mask, positions, training)  # [B, K, V]
            mlm_labels = ops.where(valid, ops.take_along_axis(labels, positions, axis=1), IGNORE_INDEX)  # [B, K]
            scatter = ops.one_hot(positions, ops.shape(labels)[1], dtype="int32") * ops.cast(valid, "int32")[..., None]
            predicted = ops.sum(scatter, axis=1) > 0  # [B, L]: masked and predicted
            outputs["mlm_positions"] = positions
        mlm_loss = losses.sparse_cross_entropy(mlm_logits, mlm_labels, ignore_index=IGNORE_INDEX)

        if replacement_ids is not None:
            sampled = _scatter_row_major(ops.cast(replacement_ids, "int32"), masked)  # [B, L]
        elif self.max_predictions_per_seq is None:
            sampled = self._sample(mlm_logits)  # [B, L]
        else:
            sampled = ops.sum(scatter * self._sample(mlm_logits)[..., None], axis=1)  # [B, K] -> [B, L]
        corrupted = ops.where(predicted if replacement_ids is None else masked, sampled, input_ids)  # [B, L]
        rtd_labels = ops.logical_and(masked, ops.not_equal(corrupted, labels))  # [B, L]

        disc_inputs = {"attention_mask": mask}
        if self.embedding_sharing == "none":
            disc_inputs["input_ids"] = corrupted
        else:
            embeddings_layer = self.discriminator_model.deberta.embeddings
            disc_inputs["inputs_embeds"] = ops.cast(
                ops.take(self._discriminator_table(), corrupted, axis=0), embeddings_layer.compute_dtype)
        rtd_logits = self.discriminator_model(disc_inputs, training=training)["logits"]  # [B, L]
        rtd_loss = losses.binary_cross_entropy_with_logits(rtd_logits, rtd_labels, keep=ops.cast(mask, "bool"))

        outputs.update(loss=mlm_loss + self.rtd_lambda * rtd_loss, mlm_loss=mlm_loss, rtd_loss=rtd_loss,
                       mlm_logits=mlm_logits, rtd_logits=rtd_logits, corrupted_ids=corrupted)
        return outputs

    def _generator_logits_at(self, input_ids, mask, positions, training):
        """The generator's MLM logits at positions [B, K] only -> [B, K, V]."""
        gen = self.generator_model
        states = gen.run_backbone({"input_ids": input_ids, "attention_mask": mask}, training=training,
                                  output_hidden_states=False, output_attentions=False)["last_hidden_state"]
        picked = ops.take_along_axis(states, positions[..., None], axis=1)  # [B, K, hidden]
        return gen.head(picked, {}, training=training)["logits"]

    def _sample(self, mlm_logits):
        """One draw from softmax(logits) per position, no gradient: [B, P, V] -> [B, P] int32.

        By the inverse CDF: one uniform number per position against the cumulative
        probabilities, instead of the V Gumbel numbers per position `keras.random.categorical`
        draws (with a 128k vocabulary generating them took most of a CPU step)."""
        batch, length = ops.shape(mlm_logits)[0], ops.shape(mlm_logits)[1]
        probs = ops.softmax(ops.stop_gradient(ops.cast(mlm_logits, "float32")), axis=-1)
        cdf = ops.cumsum(ops.reshape(probs, (batch * length, -1)), axis=-1)  # [B * P, V]
        u = keras.random.uniform((batch * length, 1), seed=self.seed_generator) * cdf[:, -1:]
        draws = ops.sum(ops.cast(cdf <= u, "int32"), axis=-1)  # first index whose cdf exceeds u
        draws = ops.minimum(draws, ops.shape(cdf)[1] - 1)
        return ops.reshape(draws, (batch, length))

    # --- Keras training -------------------------------------------------------------------------
    def compile(self, optimizer=None, generator_optimizer=None, discriminator_optimizer=None, **kwargs):
        """One `optimizer` for both models, or `generator_optimizer` + `discriminator_optimizer`."""
        if kwargs.get("loss") is not None:
            raise ValueError("the pretrainer trains on its own loss (mlm + rtd_lambda * rtd); compile without loss=")
        if (generator_optimizer is None) != (discriminator_optimizer is None):
            raise ValueError("decoupled training needs both generator_optimizer and discriminator_optimizer")
        if generator_optimizer is not None:
            if optimizer is not None:
                raise ValueError("pass optimizer= or generator_optimizer= + discriminator_optimizer=, not both")
            optimizer = DecoupledOptimizer(generator_optimizer, discriminator_optimizer,
                                           self.generator_model.trainable_variables)
        super().compile(optimizer=optimizer if optimizer is not None else "adam", **kwargs)

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.mlm_loss_tracker, self.rtd_loss_tracker]

    def check_batch(self, input_ids, labels, attention_mask):
        _check_batch(input_ids, labels, attention_mask, None, self.generator_model.config.vocab_size)


def _first_masked_positions(masked, count):
    """The first `count` masked positions of each row -> (positions [B, K] int32, valid [B, K] bool);
    rows with fewer masked tokens are filled with unmasked positions marked invalid."""
    length = ops.shape(masked)[1]
    count = min(count, length) if isinstance(length, int) else count
    earlier_first = ops.where(masked, length - ops.arange(length, dtype="int32")[None, :], 0)  # [B, L]
    scores, positions = ops.top_k(earlier_first, count, sorted=True)
    return ops.cast(positions, "int32"), scores > 0


def _scatter_row_major(values, selected):
    """values [N] into the N True positions of selected [B, L] (row-major) -> [B, L] (0 elsewhere)."""
    flat = ops.reshape(ops.cast(selected, "int32"), (-1,))
    order = ops.cumsum(flat) - 1  # [B * L]: rank of each selected position
    order = ops.clip(order, 0, ops.shape(values)[0] - 1)
    picked = ops.where(ops.cast(flat, "bool"), ops.take(values, order, axis=0), ops.zeros_like(flat))
    return ops.reshape(picked, ops.shape(selected))


def _check_pair(generator, discriminator, embedding_sharing):
    for label, model, head in (("generator", generator, "lm_head"), ("discriminator", discriminator,
                                                                      "mask_predictions")):
        if not hasattr(model, head) or not hasattr(model, "deberta"):
            raise TypeError(f"{label} must be a DeBERTa {'masked LM' if head == 'lm_head' else 'RTD model'} "
                            f"(TFDebertaV2ForMaskedLM / TFDebertaV2ForReplacedTokenDetection), got "
                            f"{type(model).__name__}")
    gen_vocab, disc_vocab = generator.config.vocab_size, discriminator.config.vocab_size
    if gen_vocab != disc_vocab:
        raise ValueError(f"generator vocab_size {gen_vocab} != discriminator vocab_size {disc_vocab}: the "
                         f"generator's samples are the discriminator's input ids")
    if embedding_sharing != "none":
        gen_shape = tuple(_word_embeddings(generator).embeddings.shape)
        disc_shape = tuple(_word_embeddings(discriminator).embeddings.shape)
        if gen_shape != disc_shape:
            raise ValueError(f'embedding_sharing="{embedding_sharing}" shares the word embeddings, but the '
                             f"generator's are {gen_shape} and the discriminator's {disc_shape}; use "
                             f'embedding_sharing="none" or models of one embedding_size')


def _check_batch(input_ids, labels, mask, replacement_ids, vocab_size):
    """Refuses, by name, batches a step cannot learn from (checked where the values are known)."""
    if tuple(labels.shape) != tuple(input_ids.shape) or tuple(mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"input_ids {tuple(input_ids.shape)}, labels {tuple(labels.shape)} and attention_mask "
                         f"{tuple(mask.shape)} must have one shape [batch, length]")
    ids, lab, att = concrete_value(input_ids), concrete_value(labels), concrete_value(mask)
    if ids is not None and ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"input_ids must lie in [0, {vocab_size}); found {int(ids.min())}..{int(ids.max())}")
    if att is not None and len(att.shape) == 2 and (att.sum(axis=1) == 0).any():
        rows = [int(r) for r in (att.sum(axis=1) == 0).nonzero()[0]]
        raise ValueError(f"rows {rows} of attention_mask are all padding: drop them before pretraining")
    if lab is None:
        return
    kept = lab[lab != IGNORE_INDEX]
    if kept.size == 0:
        raise ValueError("labels mark no masked token (all -100): the batch has nothing to predict; mask it "
                         "with keras_deberta.pretraining.mask_tokens (rows need a maskable token)")
    if kept.min() < 0 or kept.max() >= vocab_size:
        raise ValueError(f"labels must lie in [0, {vocab_size}) or be -100; found {int(kept.min())}..{int(kept.max())}")
    if att is not None and ((lab != IGNORE_INDEX) & (att == 0)).any():
        raise ValueError("labels mark masked tokens at padding positions (attention_mask 0)")
    rep = concrete_value(replacement_ids) if replacement_ids is not None else None
    if rep is not None and (rep.ndim != 1 or rep.shape[0] != kept.size):
        raise ValueError(f"replacement_ids must hold one id per masked token ({kept.size}), got shape "
                         f"{tuple(rep.shape)}")
    if rep is not None and rep.size and (rep.min() < 0 or rep.max() >= vocab_size):
        raise ValueError(f"replacement_ids must lie in [0, {vocab_size})")
