"""Multi-head Latent Attention (DeepSeek-V2) with a latent-only decoding cache.

Per token, the cache holds only the normalised KV latent (kv_lora_rank values) and the one roped
key shared by all heads (qk_rope_head_dim values): a [batch, max_len, kv_lora_rank +
qk_rope_head_dim] tensor per layer. Two mathematically equal ways to attend over it:

* expanded (prefill, training, parity with transformers): kv_b_proj re-expands the latents into
  per-head k_nope [B, T, H, dn] and v [B, T, H, dv];
* absorbed (decoding): W_UK is folded into the query, q_lat = q_nope @ W_UK^T [B, S, H, r], the
  scores are taken against the cached latents directly, the probabilities average the latents and
  W_UV maps the result to per-head values. Nothing per-head is ever materialised for the cache.

keras.ops only.
"""

import keras
from keras import ops

from layers import kernel_choice
from layers.eager_torch import eager_torch, rows_within_budget
from layers.rms_norm import RMSNorm
from layers.rotary import apply_interleaved_rope

# Additive mask value: finite so fully-masked rows (padding queries) stay NaN-free.
MASK_VALUE = -1e9


def attention_bias(key_valid, query_length, cache_index=0):
    """Additive causal + padding bias [B, 1, S, T] (float32).

    Query i sits at cache slot `cache_index + i`; key slot j is visible when j <= that slot and
    `key_valid[b, j]` is true. A query that sees no key (a left-padding position) gets an all-zero
    attention output, as torch's SDPA (transformers' default) gives.

    Args:
        key_valid: [B, T] bool/int, which cache slots hold real tokens.
        query_length: S (static).
        cache_index: slot of the first query (int or scalar tensor).
    """
    total = key_valid.shape[1] if key_valid.shape[1] is not None else ops.shape(key_valid)[1]
    q_slot = ops.arange(query_length, dtype="int32") + ops.cast(cache_index, "int32")
    k_slot = ops.arange(total, dtype="int32")
    causal = k_slot[None, :] <= q_slot[:, None]  # [S, T]
    allowed = ops.logical_and(causal[None, :, :], ops.cast(key_valid, "bool")[:, None, :])
    return ops.where(allowed, 0.0, MASK_VALUE)[:, None, :, :]


def write_cache(cache, entries, index, in_place=False):
    """cache [B, T, w] with entries [B, S, w] written at slot `index`.

    `in_place` (the caller owns `cache` and drops the old value): on PyTorch, which runs eagerly and
    whose slice_update copies the whole tensor, the slots are overwritten in place, so a decoding
    step costs O(S) here instead of O(T). JAX (dynamic_update_slice in a compiled loop) and
    TensorFlow take the functional update."""
    if in_place and eager_torch():
        start = int(index)
        cache[:, start:start + entries.shape[1]] = entries
        return cache
    return ops.slice_update(cache, (0, index, 0), entries)


@keras.saving.register_keras_serializable(package="layers")
class MultiHeadLatentAttention(keras.layers.Layer):
    """DeepSeek-V2 MLA. Weight names follow transformers' `DeepseekV2Attention`.

    Args:
        hidden_size: model width d.
        num_heads: H.
        q_lora_rank: None -> q_proj; else q_a_proj -> RMSNorm -> q_b_proj.
        kv_lora_rank: r, the latent width.
        qk_nope_head_dim, qk_rope_head_dim, v_head_dim: dn, dr, dv.
        scale: softmax scale (see `layers.rotary.softmax_scale`).
        use_bias: bias on q_a_proj, kv_a_proj_with_mqa and o_proj (config.attention_bias).
        attention_dropout: dropout on the probabilities (training only).
    Call:
        hidden [B, S, d]; cos, sin [B, S, dr // 2]; bias [B, 1, S, T] (see `attention_bias`);
        cache: None or [B, T, r + dr]; the new entries are written at `cache_index`, and attention
        runs over the whole (updated) cache; without a cache T = S.
        absorb: use the absorbed form (decoding) instead of the expanded one.
        absorbed: None, or `absorbed_kernels()` computed once by the caller (a decode loop).
        cache_in_place: the caller gives up `cache` (see `write_cache`).
    Returns:
        (output [B, S, d], cache or the new entries [B, S, r + dr], probs [B, H, S, T] or None).
    """

    def __init__(self, hidden_size, num_heads, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
                 v_head_dim, q_lora_rank=None, scale=None, use_bias=False, attention_dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.q_lora_rank = q_lora_rank
        self.kv_lora_rank = kv_lora_rank
        self.qk_nope_head_dim = qk_nope_head_dim
        self.qk_rope_head_dim = qk_rope_head_dim
        self.v_head_dim = v_head_dim
        self.qk_head_dim = qk_nope_head_dim + qk_rope_head_dim
        self.scale = self.qk_head_dim ** -0.5 if scale is None else float(scale)
        self.use_bias = use_bias
        self.attention_dropout = attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        def dense(units, name, bias=False):
            return keras.layers.Dense(units, use_bias=bias, name=name,
                                      kernel_initializer=self.kernel_initializer)

        H = num_heads
        if q_lora_rank is None:
            self.q_proj = dense(H * self.qk_head_dim, "q_proj")
            self.q_a_proj = self.q_a_layernorm = self.q_b_proj = None
        else:
            self.q_proj = None
            self.q_a_proj = dense(q_lora_rank, "q_a_proj", use_bias)
            self.q_a_layernorm = RMSNorm(1e-6, name="q_a_layernorm")  # transformers' default eps
            self.q_b_proj = dense(H * self.qk_head_dim, "q_b_proj")
        self.kv_a_proj_with_mqa = dense(kv_lora_rank + qk_rope_head_dim, "kv_a_proj_with_mqa", use_bias)
        self.kv_a_layernorm = RMSNorm(1e-6, name="kv_a_layernorm")
        self.kv_b_proj = dense(H * (qk_nope_head_dim + v_head_dim), "kv_b_proj")
        self.o_proj = dense(hidden_size, "o_proj", use_bias)
        self.dropout = keras.layers.Dropout(attention_dropout)

    @property
    def cache_width(self):
        """Values cached per token: kv_lora_rank + qk_rope_head_dim."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def build(self, input_shape=None):
        d = self.hidden_size
        if self.q_proj is not None:
            self.q_proj.build((None, None, d))
        else:
            self.q_a_proj.build((None, None, d))
            self.q_a_layernorm.build((None, None, self.q_lora_rank))
            self.q_b_proj.build((None, None, self.q_lora_rank))
        self.kv_a_proj_with_mqa.build((None, None, d))
        self.kv_a_layernorm.build((None, None, self.kv_lora_rank))
        self.kv_b_proj.build((None, None, self.kv_lora_rank))
        self.o_proj.build((None, None, self.num_heads * self.v_head_dim))
        self.built = True

    # --- pieces ----------------------------------------------------------------------------------
    def _queries(self, hidden, cos, sin):
        B, S = ops.shape(hidden)[0], ops.shape(hidden)[1]
        if self.q_proj is not None:
            q = self.q_proj(hidden)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden)))
        q = ops.reshape(q, (B, S, self.num_heads, self.qk_head_dim))  # [B, S, H, dn + dr]
        q_nope = q[..., : self.qk_nope_head_dim]  # [B, S, H, dn]
        q_pe = apply_interleaved_rope(q[..., self.qk_nope_head_dim:], cos, sin)  # [B, S, H, dr]
        return q_nope, q_pe

    def latent_entries(self, hidden, cos, sin):
        """What the cache stores for these tokens: [B, S, r + dr] = [RMSNorm(latent), roped k_pe]."""
        compressed = self.kv_a_proj_with_mqa(hidden)  # [B, S, r + dr]
        latent = self.kv_a_layernorm(compressed[..., : self.kv_lora_rank])  # [B, S, r]
        k_pe = apply_interleaved_rope(compressed[..., self.kv_lora_rank:], cos, sin)  # [B, S, dr]
        return ops.concatenate([latent, ops.cast(k_pe, latent.dtype)], axis=-1)

    def _kv_b_kernel(self):
        """W of kv_b_proj as [r, H, dn + dv] (dequantised if the layer was quantized)."""
        dense = self.kv_b_proj
        if getattr(dense, "quantization_mode", None) or getattr(dense.dtype_policy, "quantization_mode", None):
            eye = ops.eye(self.kv_lora_rank, dtype=self.compute_dtype)
            w = dense(eye)  # exact for per-channel int8: each row's abs-max is 1
        else:
            w = ops.cast(dense.kernel, self.compute_dtype)
        return ops.reshape(w, (self.kv_lora_rank, self.num_heads, self.qk_nope_head_dim + self.v_head_dim))

    def absorbed_kernels(self):
        """(W_UK [H, r, dn], W_UV [H, dv, r]): kv_b_proj's halves in the head-major layouts the
        absorbed products read. A decode loop computes them once, before the loop: XLA does not
        hoist these transposes out of a while loop, where they ran at every token and layer
        (benchmarks/deepseek.py, decode)."""
        w = self._kv_b_kernel()  # [r, H, dn + dv]
        dn = self.qk_nope_head_dim
        return ops.transpose(w[..., :dn], (1, 0, 2)), ops.transpose(w[..., dn:], (1, 2, 0))

    @staticmethod
    def _sees_a_key(bias):
        """[B, 1, S, 1] float32: 1 where the query sees at least one key, 0 for a query that sees
        none (a left-padding position), which attends to nothing (output 0, like torch SDPA)."""
        return ops.cast(ops.max(ops.cast(bias, "float32"), axis=-1, keepdims=True) > MASK_VALUE / 2, "float32")

    def _softmax(self, scores, bias, training, zero_empty_rows=True):
        # Scores arrive scaled (the query was); the softmax runs in float32 whatever the compute dtype.
        # Keras casts float call arguments to the compute dtype, where float16 turns the -1e9 mask
        # into -inf (a fully masked row would give NaN): clamp it back to MASK_VALUE.
        bias = ops.maximum(ops.cast(bias, "float32"), MASK_VALUE)
        scores = ops.cast(scores, "float32") + bias
        probs = ops.softmax(scores, axis=-1)
        if zero_empty_rows:  # else the caller zeroes those rows of its (smaller) context instead
            probs = probs * self._sees_a_key(bias)
        return self.dropout(ops.cast(probs, self.compute_dtype), training=training)

    # --- call ------------------------------------------------------------------------------------
    # Prompts longer than this attend in query blocks of this many rows ([B, H, block, T] scores at
    # a time instead of [B, H, S, T]); every row still sees all its keys, so the result is the same.
    query_block = 256
    # Decoding over a cache of T >= 2 * decode_chunk slots (T a multiple of it) reads the cache in
    # chunks of this many slots with a streaming softmax and stops after the chunk holding the
    # newest token: the work follows the tokens written, not the cache's (bucketed) length.
    decode_chunk = 512

    def call(self, hidden, cos, sin, bias, cache=None, cache_index=0, absorb=False, training=False,
             return_attention_scores=False, cache_in_place=False, absorbed=None):
        B, S = ops.shape(hidden)[0], ops.shape(hidden)[1]
        # RoPE is computed in float32; Keras has cast the tables to the compute dtype on the way in.
        cos, sin = ops.cast(cos, "float32"), ops.cast(sin, "float32")
        q_nope, q_pe = self._queries(hidden, cos, sin)
        # The softmax scale goes on the query before any product: float16 / bfloat16 scores then
        # stay in range (the unscaled q.k of wide heads can overflow float16's 65504).
        scale = ops.cast(self.scale, q_nope.dtype)
        q_nope, q_pe = q_nope * scale, q_pe * scale
        entries = self.latent_entries(hidden, cos, sin)  # [B, S, r + dr]
        keys = entries
        if cache is not None:
            cache = write_cache(cache, ops.cast(entries, cache.dtype), cache_index, cache_in_place)
            # Filling an empty cache from slot 0 (a prefill): the queries can only see their own
            # entries (causality), so they attend over those S keys, not the whole cache.
            if not (isinstance(cache_index, int) and cache_index == 0):
                keys = ops.cast(cache, self.compute_dtype)  # [B, T, r + dr]
        if absorb and keys is not entries and not return_attention_scores and eager_torch():
            # Eager PyTorch knows the filled length now: attend over the written slots only (views,
            # no copy), so a step costs what the tokens written cost, in one pass.
            filled = int(cache_index) + S
            keys, bias = keys[:, :filled], bias[..., :filled]
        T = keys.shape[1]
        if (absorb and keys is not entries and not training and not return_attention_scores
                and isinstance(T, int) and T >= 2 * self.decode_chunk and T % self.decode_chunk == 0):
            context, probs = self._absorbed_streaming(q_nope, q_pe, keys, bias, cache_index + S, absorbed), None
        elif absorb:
            context, probs = self._absorbed(q_nope, q_pe, keys, bias, training, absorbed)
        else:
            context, probs = self._expanded(q_nope, q_pe, keys, bias, training, return_attention_scores)
        out = self.o_proj(ops.reshape(context, (B, S, self.num_heads * self.v_head_dim)))
        return out, (cache if cache is not None else entries), (probs if return_attention_scores else None)

    def _absorbed(self, q_nope, q_pe, keys, bias, training, absorbed=None):
        """Attention over the latents themselves, as two batched matmuls against the whole
        [B, T, r + dr] cache (no per-head keys or values, no slice copies of the cache).

        The latent half of each query is q_nope @ W_UK^T; with q_pe beside it one product against
        [latent, k_pe] gives q_lat . latent + q_pe . k_pe. The probabilities average the full cache
        rows, whose latent half then goes through W_UV."""
        B, S, H = ops.shape(q_nope)[0], ops.shape(q_nope)[1], self.num_heads
        r, T = self.kv_lora_rank, ops.shape(keys)[1]
        w_uk, w_uv = absorbed or self.absorbed_kernels()  # [H, r, dn], [H, dv, r]
        q_lat = ops.einsum("bshd,hrd->bshr", q_nope, w_uk)  # [B, S, H, r]
        query = ops.reshape(ops.concatenate([q_lat, ops.cast(q_pe, q_lat.dtype)], axis=-1),
                            (B, S * H, self.cache_width))  # [B, S*H, r + dr]
        scores = ops.einsum("bqc,btc->bqt", query, keys)  # [B, S*H, T]
        scores = ops.transpose(ops.reshape(scores, (B, S, H, T)), (0, 2, 1, 3))  # [B, H, S, T]
        probs = self._softmax(scores, bias, training)
        flat = ops.reshape(ops.transpose(probs, (0, 2, 1, 3)), (B, S * H, T))  # [B, S*H, T]
        ctx = ops.einsum("bqt,btc->bqc", flat, keys)[..., :r]  # [B, S*H, r]
        context = ops.einsum("bshr,hdr->bshd", ops.reshape(ctx, (B, S, H, r)), w_uv)  # [B, S, H, dv]
        return context, probs

    def _absorbed_streaming(self, q_nope, q_pe, keys, bias, filled, absorbed=None):
        """`_absorbed` over the first ceil(filled / decode_chunk) chunks of the cache only, with an
        online softmax (running max and sum per query row, float32). Slots at or past `filled`
        are masked in `bias` anyway, so skipping them changes nothing but float rounding."""
        B, S, H = ops.shape(q_nope)[0], ops.shape(q_nope)[1], self.num_heads
        r, C, c = self.kv_lora_rank, self.decode_chunk, self.cache_width
        w_uk, w_uv = absorbed or self.absorbed_kernels()  # [H, r, dn], [H, dv, r]
        q_lat = ops.einsum("bshd,hrd->bshr", q_nope, w_uk)  # [B, S, H, r]
        query = ops.reshape(ops.concatenate([q_lat, ops.cast(q_pe, q_lat.dtype)], axis=-1), (B, S * H, c))
        bias = ops.maximum(ops.cast(bias[:, 0], "float32"), MASK_VALUE)  # [B, S, T]
        chunks = (ops.cast(filled, "int32") + C - 1) // C

        def body(j, best, total, acc):
            k = ops.slice(keys, (0, j * C, 0), (B, C, c))  # [B, C, r + dr]
            b = ops.slice(bias, (0, 0, j * C), (B, S, C))[:, :, None, :]  # [B, S, 1, C]
            scores = ops.cast(ops.einsum("bqc,btc->bqt", query, k), "float32")  # [B, S*H, C]
            scores = ops.reshape(ops.reshape(scores, (B, S, H, C)) + b, (B, S * H, C))
            new_best = ops.maximum(best, ops.max(scores, axis=-1, keepdims=True))  # [B, S*H, 1]
            decay = ops.exp(best - new_best)
            p = ops.exp(scores - new_best)
            total = total * decay + ops.sum(p, axis=-1, keepdims=True)
            acc = acc * decay + ops.cast(ops.einsum("bqt,btc->bqc", ops.cast(p, k.dtype), k), "float32")
            return j + 1, new_best, total, acc

        init = (ops.convert_to_tensor(0, "int32"), ops.full((B, S * H, 1), 2 * MASK_VALUE, "float32"),
                ops.zeros((B, S * H, 1), "float32"), ops.zeros((B, S * H, c), "float32"))
        _, best, total, acc = ops.while_loop(lambda j, *_: j < chunks, body, init)
        # A query that sees no key (a padding row) attends to nothing, as in `_softmax`.
        ctx = ops.where(best > MASK_VALUE / 2, acc / total, 0.0)[..., :r]  # [B, S*H, r]
        ctx = ops.cast(ops.reshape(ctx, (B, S, H, r)), self.compute_dtype)
        return ops.einsum("bshr,hdr->bshd", ctx, w_uv)  # [B, S, H, dv]

    def _expanded(self, q_nope, q_pe, keys, bias, training, return_attention_scores):
        """kv_b_proj re-expands the latents into per-head keys and values (prefill, training)."""
        B, T, H = ops.shape(keys)[0], ops.shape(keys)[1], self.num_heads
        latent, k_pe = keys[..., : self.kv_lora_rank], keys[..., self.kv_lora_rank:]  # [B, T, r], [B, T, dr]
        kv = ops.reshape(self.kv_b_proj(latent), (B, T, H, self.qk_nope_head_dim + self.v_head_dim))
        k_nope, value = kv[..., : self.qk_nope_head_dim], kv[..., self.qk_nope_head_dim:]
        # One product over dn + dr instead of two summed ones (q_nope.k_nope + q_pe.k_pe): the
        # shared k_pe is broadcast to every head, as transformers does. Two [B, H, S, T] products
        # and their sum cost more than this [B, T, H, dr] copy (benchmarks/deepseek.py, prefill).
        k_pe = ops.broadcast_to(ops.cast(k_pe, k_nope.dtype)[:, :, None, :], (B, T, H, self.qk_rope_head_dim))
        key = ops.concatenate([k_nope, k_pe], axis=-1)  # [B, T, H, dn + dr]
        query = ops.concatenate([q_nope, ops.cast(q_pe, q_nope.dtype)], axis=-1)  # [B, S, H, dn + dr]

        def attend(query, bias, probs_out):
            scores = ops.einsum("bshd,bthd->bhst", query, key)  # [B, H, S, T]
            # Queries that see no key get a zero output: zeroing those rows of the context
            # [B, S, H, dv] costs less than zeroing the probabilities [B, H, S, T] (same result),
            # which are zeroed only when they are returned.
            probs = self._softmax(scores, bias, training, zero_empty_rows=probs_out)
            context = ops.einsum("bhst,bthd->bshd", probs, value)  # [B, S, H, dv]
            if not probs_out:
                context = context * ops.cast(ops.transpose(self._sees_a_key(bias), (0, 2, 1, 3)), context.dtype)
            return context, probs

        kernel = kernel_choice.latent_attention_kernel(training, self.attention_dropout, return_attention_scores)
        if kernel == kernel_choice.ATTENTION_FUSED:
            return self._fused(query, key, value, bias), None

        S = query.shape[1]
        block = self.query_block
        if kernel_choice.split_under_tensor_budget() and isinstance(B, int) and isinstance(T, int):
            # [B, H, block, T] float32 scores within `layers.eager_torch`'s budget (blocks of 64
            # instead of 256 on a 4096-token prompt of benchmarks/deepseek.py's realistic config).
            block = min(block, rows_within_budget(B * H * T * 4))
        if return_attention_scores or not isinstance(S, int) or S <= 2 * block:
            return attend(query, bias, return_attention_scores)
        # Long prompt: query blocks ([B, H, block, T] scores live at a time; exact, see query_block).
        # A bias broadcast over queries ([B, 1, 1, T]) is used as is by every block.
        parts = []
        for i in range(0, S, block):
            b = bias if bias.shape[2] == 1 else bias[:, :, i:i + block]
            parts.append(attend(query[:, i:i + block], b, False)[0])
        return ops.concatenate(parts, axis=1), None

    def _fused(self, query, key, value, bias):
        """The expanded attention through `ops.dot_product_attention` (flash attention on GPUs
        where the backend has it): query [B, S, H, dn + dr] (already scaled), key [B, T, H, dn + dr],
        value [B, T, H, dv] -> context [B, S, H, dv]. Fused kernels want one head width for keys
        and values, so the values are zero-padded to dn + dr and the padding sliced off after, as
        MLA prefill is run elsewhere on flash attention."""
        dv, dk = self.v_head_dim, self.qk_head_dim
        if dv < dk:
            value = ops.pad(value, ((0, 0), (0, 0), (0, 0), (0, dk - dv)))
        # The bias goes in the compute dtype: float16 would turn MASK_VALUE into -inf (a row
        # that sees no key would then give NaN), so it is clamped to a finite float16 there.
        sees = ops.transpose(self._sees_a_key(bias), (0, 2, 1, 3))  # [B, S, 1, 1]
        floor = -3e4 if keras.backend.standardize_dtype(query.dtype) == "float16" else MASK_VALUE
        bias = ops.maximum(ops.cast(bias, "float32"), floor)
        context = ops.dot_product_attention(query, key, value, bias=ops.cast(bias, query.dtype), scale=1.0)
        context = context[..., :dv]  # [B, S, H, dv]
        # A query that sees no key (left padding) attends to nothing, as in `_softmax`.
        return context * ops.cast(sees, context.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size, "num_heads": self.num_heads,
            "kv_lora_rank": self.kv_lora_rank, "qk_nope_head_dim": self.qk_nope_head_dim,
            "qk_rope_head_dim": self.qk_rope_head_dim, "v_head_dim": self.v_head_dim,
            "q_lora_rank": self.q_lora_rank, "scale": self.scale, "use_bias": self.use_bias,
            "attention_dropout": self.attention_dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
