"""DeBERTa's disentangled self-attention: content-to-content plus c2p and p2c position terms."""

import math

import keras
import numpy as np
from keras import ops

from layers.blocked_attention import blocked_disentangled_attention
from layers.eager_torch import rows_within_budget
from layers.kernel_choice import split_under_tensor_budget
from layers.relative_position import (
    diagonal_row_indices, relative_position_rows, skew_to_relative, static_diagonal_row_indices)


# Automatic blocking (attention_block_size=None): sequences longer than this go through
# `layers.blocked_attention` in blocks of AUTO_BLOCK_SIZE query rows; shorter ones keep the full form.
AUTO_BLOCK_MIN_LENGTH = 1024
AUTO_BLOCK_SIZE = 256


@keras.saving.register_keras_serializable(package="layers")
class DisentangledSelfAttention(keras.layers.Layer):
    """Multi-head self-attention with DeBERTa's relative-position terms.

    score(i, j) = [q_i . k_j + c2p(i, j) + p2c(i, j)] / sqrt(head_size * (1 + number of terms)), where
    c2p(i, j) = q_i . Kr[row(i - j)] and p2c(i, j) = k_j . Qr[row(i - j)], Kr / Qr being the relative
    table projected by the key / query projections (`share_att_key`) or by separate
    `pos_key_proj` / `pos_query_proj`.

    DeBERTa v1 spellings are options: `fused_qkv` (one bias-free `in_proj` producing q, k, v
    interleaved per head, plus `q_bias` and `v_bias`), `position_key_bias=False` (v1's bias-free
    `pos_proj`) and `talking_head` (head-mixing projections on the scores and on the probabilities).

    The position terms are computed per diagonal and skewed into place (see
    `layers.relative_position`): the table rows of the [L_q + L_k] diagonals are projected,
    multiplied, and shifted; nothing of shape [B, H, L, L] is gathered and no integer index tensor
    larger than [L_q + L_k] exists. With lengths known in Python only the table rows the diagonals
    read are projected (2L - 1 of the 2 * span rows while L <= span).

    Args:
        hidden_size: model width (input and output of the projections' input side).
        num_heads: number of attention heads.
        head_size: per-head width (DeBERTa-v2 `attention_head_size`; may differ from
            hidden_size // num_heads).
        pos_att_type: subset of ("c2p", "p2c").
        relative_attention: whether position terms exist at all.
        share_att_key: position terms reuse query_proj / key_proj.
        position_buckets: > 0 uses log buckets and a table of 2 * position_buckets rows.
        max_relative_positions: the relative span (already resolved: > 0).
        attention_dropout, position_dropout: dropout rates on probabilities and on the table.
        fused_qkv, position_key_bias, talking_head: the DeBERTa v1 options above.
        attention_block_size: None (automatic): sequences longer than AUTO_BLOCK_MIN_LENGTH run
            in blocks of AUTO_BLOCK_SIZE query rows (memory O(L * block) instead of O(L^2), same
            outputs to float rounding); an int > 0 forces blocks of that size whenever the length
            exceeds it (and always when the length is not static); 0 never blocks. The full form
            is used anyway when attention probabilities are requested or attention dropout is
            active (training with attention_dropout > 0): both need the whole [L, L] map.
    Call args:
        hidden_states: [B, L, hidden_size].
        attention_mask: boolean, [B, L] (key and query padding) or [B, L_q, L_k] pairwise.
        rel_embeddings: [2 * span, hidden_size] relative table (already layer-normed if configured).
        query_states: optional [B, L, hidden_size] stream the queries are projected from (keys and
            values still come from hidden_states); DeBERTa's enhanced mask decoder uses it.
    Returns:
        (context [B, L, num_heads * head_size], probabilities [B, H, L, L] or None).
    """

    def __init__(
        self,
        hidden_size,
        num_heads,
        head_size=None,
        pos_att_type=("c2p", "p2c"),
        relative_attention=True,
        share_att_key=False,
        position_buckets=-1,
        max_relative_positions=512,
        attention_dropout=0.0,
        position_dropout=0.0,
        kernel_initializer="glorot_uniform",
        fused_qkv=False,
        position_key_bias=True,
        talking_head=False,
        attention_block_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention_block_size is not None and (isinstance(attention_block_size, bool) or int(attention_block_size) < 0):
            raise ValueError(f"attention_block_size must be None or an integer >= 0, got {attention_block_size!r}")
        self.attention_block_size = None if attention_block_size is None else int(attention_block_size)
        self.fused_qkv = bool(fused_qkv)
        self.position_key_bias = bool(position_key_bias)
        self.talking_head = bool(talking_head)
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.head_size = int(head_size or hidden_size // num_heads)
        self.pos_att_type = tuple(pos_att_type or ())
        unknown = set(self.pos_att_type) - {"c2p", "p2c"}
        if unknown:
            raise ValueError(f"pos_att_type may only contain 'c2p' and 'p2c', got {sorted(unknown)}")
        self.relative_attention = bool(relative_attention)
        self.share_att_key = bool(share_att_key)
        self.position_buckets = int(position_buckets)
        self.max_relative_positions = int(max_relative_positions)
        self.attention_dropout = float(attention_dropout)
        self.position_dropout = float(position_dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        inner = self.num_heads * self.head_size
        dense = lambda name, units=inner, use_bias=True: keras.layers.Dense(
            units, use_bias=use_bias, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
            name=name,
        )
        self.query_proj = self.key_proj = self.value_proj = self.in_proj = None
        if self.fused_qkv:
            if self.share_att_key:
                raise ValueError("share_att_key needs separate query/key projections, not fused_qkv")
            self.in_proj = dense("in_proj", 3 * inner, use_bias=False)  # [q_h, k_h, v_h] per head
        else:
            self.query_proj = dense("query_proj")
            self.key_proj = dense("key_proj")
            self.value_proj = dense("value_proj")
        self.pos_key_proj = self.pos_query_proj = None
        if self.relative_attention and not self.share_att_key:
            if "c2p" in self.pos_att_type:
                self.pos_key_proj = dense("pos_key_proj", use_bias=self.position_key_bias)
            if "p2c" in self.pos_att_type:
                self.pos_query_proj = dense("pos_query_proj")
        self.head_logits_proj = self.head_weights_proj = None
        if self.talking_head:
            self.head_logits_proj = dense("head_logits_proj", self.num_heads, use_bias=False)
            self.head_weights_proj = dense("head_weights_proj", self.num_heads, use_bias=False)
        self.probs_dropout = keras.layers.Dropout(self.attention_dropout)
        self.table_dropout = keras.layers.Dropout(self.position_dropout)

        self.span = self.position_buckets if self.position_buckets > 0 else self.max_relative_positions
        self._rows, self._max_distance = relative_position_rows(
            self.span, self.position_buckets, self.max_relative_positions
        )
        terms = 1 + sum(t in self.pos_att_type for t in ("c2p", "p2c"))
        self.scale = math.sqrt(self.head_size * terms)

    def build(self, input_shape):
        for proj in (self.query_proj, self.key_proj, self.value_proj, self.in_proj):
            if proj is not None:
                proj.build(input_shape)
        if self.fused_qkv:
            inner = self.num_heads * self.head_size
            self.q_bias = self.add_weight(name="q_bias", shape=(inner,), initializer="zeros")
            self.v_bias = self.add_weight(name="v_bias", shape=(inner,), initializer="zeros")
        for proj in (self.pos_key_proj, self.pos_query_proj):
            if proj is not None:
                proj.build((None, self.hidden_size))
        for proj in (self.head_logits_proj, self.head_weights_proj):
            if proj is not None:
                proj.build((None, self.num_heads))
        self.built = True

    def _split_heads(self, x):
        # [B, L, H * D] -> [B, H, L, D]
        return self._split_heads_width(x, self.head_size)

    def _project_table(self, table, proj):
        # [2 * span, hidden] -> [H, 2 * span, D]
        x = ops.reshape(proj(table), (-1, self.num_heads, self.head_size))
        return ops.transpose(x, (1, 0, 2))

    def _position_projections(self):
        """(key side, query side): the Dense layers that project the relative table for c2p / p2c."""
        if self.share_att_key:
            return self.key_proj, self.query_proj
        return self.pos_key_proj, self.pos_query_proj

    def _diagonals(self, table, proj, num_rows, num_cols, flip):
        """proj(table)[row(d)] for every diagonal of a [num_rows, num_cols] score matrix -> [Lr + Lc, H, D].

        The rows are gathered from the projected table in its [rows, H * D] layout (whole
        contiguous rows; the [H, rows, D] layout would be copied first). With lengths known in
        Python, only the contiguous range of table rows the diagonals read is projected: 2L - 1 of
        the 2 * span rows while L <= span, i.e. half the table's projection at length 128 on a v3
        checkpoint (the reference projects all of it).
        """
        if isinstance(num_rows, int) and isinstance(num_cols, int):
            index = static_diagonal_row_indices(self._rows, self._max_distance, num_rows, num_cols, flip)
            first, last = int(index.min()), int(index.max())
            table, index = table[first : last + 1], index - first
            if np.array_equal(index, np.arange(len(index))):  # p2c below the log buckets: rows in order
                return ops.reshape(proj(table), (-1, self.num_heads, self.head_size))
        else:
            index = diagonal_row_indices(self._rows, self._max_distance, num_rows, num_cols, flip)
        rows = ops.take(proj(table), index, axis=0)  # [Lr + Lc, H * D]
        return ops.reshape(rows, (-1, self.num_heads, self.head_size))

    def _relative_scores(self, states, diagonals, num_rows, num_cols, transpose=False):
        """out[b, h, r, c] = states[b, h, r] . diagonals[n(r, c), h] -> [B, H, Lr, Lc]
        ([B, H, Lc, Lr] with `transpose`).

        The product runs head-major, one [B * Lr, D] x [D, Lr + Lc] matmul per head: the diagonals
        are shared by the whole batch, and per-(batch, head) products of [Lr, D] x [D, Lr + Lc] ran
        at half the rate on XLA's CPU matmul (benchmarks/encoder.py). The skew works on any
        leading axes; one transpose then puts batch before heads (and swaps rows and columns for
        p2c)."""
        batch, heads, depth = ops.shape(states)[0], self.num_heads, self.head_size
        per_head = ops.reshape(ops.transpose(states, (1, 0, 2, 3)), (heads, -1, depth))  # [H, B * Lr, D]
        scores = ops.matmul(per_head, ops.transpose(diagonals, (1, 2, 0)))  # [H, B * Lr, Lr + Lc]
        scores = ops.reshape(scores, (heads, batch, num_rows, num_rows + num_cols))
        scores = skew_to_relative(scores, num_rows, num_cols)  # [H, B, Lr, Lc]
        return ops.transpose(scores, (1, 0, 3, 2) if transpose else (1, 0, 2, 3))

    def _query_key_value(self, hidden_states, query_only=False):
        """-> query, key, value, each [B, H, L, D] (the query alone with `query_only`)."""
        if query_only and not self.fused_qkv:
            return self._split_heads(self.query_proj(hidden_states))
        if not self.fused_qkv:
            return (self._split_heads(self.query_proj(hidden_states)),
                    self._split_heads(self.key_proj(hidden_states)),
                    self._split_heads(self.value_proj(hidden_states)))
        qkv = self._split_heads_width(self.in_proj(hidden_states), 3 * self.head_size)  # [B, H, L, 3D]
        query, key, value = ops.split(qkv, 3, axis=-1)
        per_head = lambda bias: ops.reshape(ops.cast(bias, query.dtype), (self.num_heads, 1, self.head_size))
        if query_only:
            return query + per_head(self.q_bias)
        return query + per_head(self.q_bias), key, value + per_head(self.v_bias)

    def _split_heads_width(self, x, width):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (batch, length, self.num_heads, width)), (0, 2, 1, 3))

    def _mix_heads(self, x, proj):
        # Talking heads: out[:, g] = sum_h W[g, h] x[:, h]; the Dense kernel holds W^T [h, g].
        # The kernel is read by calling the (bias-free) layer on the identity, which is exact and
        # sees what the layer computes with: the int8 / int4 dequantised kernel, LoRA deltas.
        mixing = proj(ops.eye(self.num_heads, dtype=x.dtype))  # [h, g]
        return ops.einsum("bhij,hg->bgij", x, ops.cast(mixing, x.dtype))

    def call(self, hidden_states, attention_mask=None, rel_embeddings=None, training=False,
             return_attention_scores=False, query_states=None):
        query, key, value = self._query_key_value(hidden_states)  # [B, H, L, D] each
        if query_states is not None:  # a separate query stream: only q is projected from it
            query = self._query_key_value(query_states, query_only=True)
        length = ops.shape(hidden_states)[1]

        # Scaling q before the products keeps float16 scores in range (fp16 overflow is a known
        # DeBERTa failure); the reference divides k instead, the same value in exact arithmetic.
        scaled_query = query / ops.cast(self.scale, query.dtype)
        table = self._relative_table(rel_embeddings, training)  # dropped once, shared by both forms

        full = lambda: self._full_attention(scaled_query, key, value, table, attention_mask, length, training)
        blocked = lambda block: lambda: self._blocked_attention(scaled_query, key, value, table, attention_mask,
                                                                block)
        dropout_active = bool(training) and self.attention_dropout > 0
        plan = None if (return_attention_scores or dropout_active) else self._blocking_plan(hidden_states.shape[1])
        slices = None if plan is not None else self._eager_batch_slices(hidden_states.shape[0], hidden_states.shape[1])
        if slices is not None:
            context, probs = self._full_attention_in_slices(
                slices, scaled_query, key, value, table, attention_mask, length, training, return_attention_scores)
        elif plan is None:
            context, probs = full()
        elif plan[1] is None:  # the length is known: blocks of plan[0]
            context, probs = blocked(plan[0])(), None
        else:  # length unknown while tracing (TensorFlow graphs): decide at run time
            context = ops.cond(length > plan[1], blocked(plan[0]), lambda: full()[0])
            probs = None

        context = ops.transpose(context, (0, 2, 1, 3))  # [B, L, H, D]
        batch = ops.shape(context)[0]
        context = ops.reshape(context, (batch, length, self.num_heads * self.head_size))
        return context, (probs if return_attention_scores else None)

    def _eager_batch_slices(self, batch, length):
        """[(start, stop)] slices of the batch for eager torch, or None for one full-form pass.

        The c2p / p2c products are [H, B * L, 2L]: 50 MB at 2 x 512 on deberta-v3-base, above the
        size where eager torch on CPU pays page faults at every call (`layers.eager_torch`). Slices of
        the batch keep each product within EAGER_TENSOR_BYTES; a sequence is never split, so the
        result is the same.
        """
        if not (split_under_tensor_budget() and isinstance(batch, int) and isinstance(length, int)):
            return None
        rows = rows_within_budget(self.num_heads * length * 2 * length * 4)  # float32 product of a sequence
        if rows >= batch:
            return None
        return [(start, min(start + rows, batch)) for start in range(0, batch, rows)]

    def _full_attention_in_slices(self, slices, scaled_query, key, value, table, attention_mask, length, training,
                                  with_probs):
        """`_full_attention` over batch slices (`_eager_batch_slices`), the diagonals projected once."""
        pos_key, pos_query = self._full_diagonals(table, length)
        batch = scaled_query.shape[0]
        per_row_mask = attention_mask is not None and attention_mask.shape[0] == batch
        parts = []
        for start, stop in slices:
            mask = attention_mask[start:stop] if per_row_mask else attention_mask
            parts.append(self._full_products(scaled_query[start:stop], key[start:stop], value[start:stop],
                                             pos_key, pos_query, mask, length, training))
        context = ops.concatenate([context for context, _ in parts], axis=0)
        return context, (ops.concatenate([probs for _, probs in parts], axis=0) if with_probs else None)

    def _blocking_plan(self, static_length):
        """None (full form), (block, None) (blocked form) or (block, threshold) (decide at run time)."""
        size = self.attention_block_size
        if size == 0:
            return None
        block, threshold = (AUTO_BLOCK_SIZE, AUTO_BLOCK_MIN_LENGTH) if size is None else (size, size)
        if isinstance(static_length, int):
            return (block, None) if static_length > threshold else None
        if size is not None:  # forced: blocked whatever the length (exact for any length)
            return block, None
        if keras.backend.backend() == "tensorflow":
            return block, threshold
        return None  # symbolic lengths elsewhere (jax2tf export shapes) keep the full form

    def _relative_table(self, rel_embeddings, training):
        """The [2 * span, hidden] relative table after position dropout, or None without position terms."""
        if not (self.relative_attention and self.pos_att_type):
            return None
        if rel_embeddings is None:
            raise ValueError("relative_attention needs rel_embeddings")
        return self.table_dropout(rel_embeddings[: 2 * self.span], training=training)

    def _position_tables(self, table):
        """-> (Kr, Qr), each [H, 2 * span, D] or None: the relative table through the key / query side."""
        if table is None:
            return None, None
        key_side, query_side = self._position_projections()
        pos_key = self._project_table(table, key_side) if "c2p" in self.pos_att_type else None
        pos_query = self._project_table(table, query_side) if "p2c" in self.pos_att_type else None
        return pos_key, pos_query

    def _full_attention(self, scaled_query, key, value, table, attention_mask, length, training):
        """The whole [B, H, L, L] map at once -> (context [B, H, L, D], probabilities [B, H, L, L])."""
        pos_key, pos_query = self._full_diagonals(table, length)
        return self._full_products(scaled_query, key, value, pos_key, pos_query, attention_mask, length, training)

    def _full_diagonals(self, table, length):
        """-> (Kr, Qr) per diagonal, each [2L, H, D] or None; Qr already divided by the scale."""
        if table is None:
            return None, None
        key_side, query_side = self._position_projections()
        pos_key = pos_query = None
        if "c2p" in self.pos_att_type:
            pos_key = self._diagonals(table, key_side, length, length, flip=False)
        if "p2c" in self.pos_att_type:
            # Rows are keys: p2c^T[j, i] = k_j . Qr[row(i - j)], distance seen from the key flipped.
            # The scale divides the [2L, H, D] diagonals rather than the [B, H, L, D] keys: the same
            # value to float rounding, still before the product (fp16 range), a smaller tensor.
            pos_query = self._diagonals(table, query_side, length, length, flip=True)
            pos_query = pos_query / ops.cast(self.scale, pos_query.dtype)
        return pos_key, pos_query

    def _full_products(self, scaled_query, key, value, pos_key, pos_query, attention_mask, length, training):
        """`_full_attention` given the diagonals -> (context [B, H, L, D], probabilities [B, H, L, L])."""
        scores = ops.einsum("bhid,bhjd->bhij", scaled_query, key)  # [B, H, L, L]
        if pos_key is not None:
            scores = scores + self._relative_scores(scaled_query, pos_key, length, length)
        if pos_query is not None:
            scores = scores + self._relative_scores(key, pos_query, length, length, transpose=True)

        if self.head_logits_proj is not None:
            scores = self._mix_heads(scores, self.head_logits_proj)
        # Softmax in float32 whatever the compute dtype: fp16 softmax over large scores gives NaN.
        scores = ops.cast(scores, "float32")
        if attention_mask is not None:
            mask = _pairwise_mask(attention_mask)
            scores = ops.where(mask, scores, ops.cast(-3.4028234663852886e38, "float32"))
        probs = ops.softmax(scores, axis=-1)
        probs = ops.cast(probs, value.dtype)
        dropped = self.probs_dropout(probs, training=training)
        if self.head_weights_proj is not None:
            dropped = self._mix_heads(dropped, self.head_weights_proj)
            probs = self._mix_heads(probs, self.head_weights_proj)
        return ops.einsum("bhij,bhjd->bhid", dropped, value), probs  # [B, H, L, D]

    def _blocked_attention(self, scaled_query, key, value, table, attention_mask, block):
        """`block` query rows at a time (layers.blocked_attention) -> context [B, H, L, D]."""
        pos_key, pos_query = self._position_tables(table)
        scaled_key = None if pos_query is None else key / ops.cast(self.scale, key.dtype)
        mixing = lambda proj: None if proj is None else proj(ops.eye(self.num_heads, dtype=value.dtype))
        return blocked_disentangled_attention(
            scaled_query, key, value, block=block, scaled_key=scaled_key, pos_key=pos_key, pos_query=pos_query,
            rows=self._rows, max_distance=self._max_distance, attention_mask=attention_mask,
            mix_logits=mixing(self.head_logits_proj), mix_probs=mixing(self.head_weights_proj))

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            head_size=self.head_size,
            pos_att_type=list(self.pos_att_type),
            relative_attention=self.relative_attention,
            share_att_key=self.share_att_key,
            position_buckets=self.position_buckets,
            max_relative_positions=self.max_relative_positions,
            attention_dropout=self.attention_dropout,
            position_dropout=self.position_dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            fused_qkv=self.fused_qkv,
            position_key_bias=self.position_key_bias,
            talking_head=self.talking_head,
            attention_block_size=self.attention_block_size,
        )
        return config


def _pairwise_mask(attention_mask):
    """[B, L] padding mask -> [B, 1, L, L] (query and key valid); [B, Lq, Lk] -> [B, 1, Lq, Lk]."""
    mask = ops.cast(attention_mask, "bool")
    if len(mask.shape) == 2:
        # expand_dims rather than x[:, None]: TFLite's builtin ops have no strided slice with a new axis.
        rows = ops.expand_dims(ops.expand_dims(mask, 1), 3)  # [B, 1, L, 1]
        return ops.logical_and(rows, ops.expand_dims(ops.expand_dims(mask, 1), 2))  # with [B, 1, 1, L]
    if len(mask.shape) == 3:
        return ops.expand_dims(mask, 1)
    return mask
