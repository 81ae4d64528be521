"""DeBERTa-v3 RTD pretraining beyond the reference fixture: the RTD head's checkpoint names and round
trip, the enhanced mask decoder's switch, `fit` of the pretrainer (coupled, decoupled,
mixed_bfloat16, tf.data with dynamic masking) on real text, the models it saves as transformers
loads them, and the bad inputs the issue lists."""

import os

import keras
import numpy as np
import pytest

import keras_deberta as kd
from conftest import SHARED_DATA
from harness import perturb_variables, to_numpy
from hf_reference import TINY_V2, V2_VARIANTS, assert_close, hf_forward

SPM_DIR = os.path.join(SHARED_DATA, "vocab", "deberta-v3")
WIKITEXT = os.path.join(SHARED_DATA, "lm", "wikitext-2", "valid.txt")
needs_text = pytest.mark.skipif(not (os.path.isfile(WIKITEXT) and os.path.isdir(SPM_DIR)),
                                reason="../shared/data (WikiText-2 and the v3 spm.model) absent")


def _config(**overrides):
    return kd.DebertaV2Config(**{**TINY_V2, **V2_VARIANTS["v3_like"], "hidden_dropout_prob": 0.0,
                                 "attention_probs_dropout_prob": 0.0, **overrides})


def _pair(vocab_size=99, generator_layers=2, discriminator_layers=2, dtype=None, seed=0):
    gen = kd.TFDebertaV2ForMaskedLM(_config(vocab_size=vocab_size, num_hidden_layers=generator_layers,
                                            enhanced_mask_decoder=True), dtype=dtype)
    disc = kd.TFDebertaV2ForReplacedTokenDetection(_config(vocab_size=vocab_size,
                                                           num_hidden_layers=discriminator_layers), dtype=dtype)
    perturb_variables(gen, seed=seed)
    perturb_variables(disc, seed=seed + 1)
    return gen, disc


def _masked_batch(rng, vocab_size=99, batch=3, length=10):
    ids = rng.randint(5, vocab_size, size=(batch, length)).astype("int32")
    ids[:, 0], ids[:, -1] = 1, 2
    mask = np.ones_like(ids)
    mask[-1, length - 3:] = 0
    ids[-1, length - 3:] = 0
    labels = np.full_like(ids, -100)
    labels[:, 2], labels[0, 5] = ids[:, 2], ids[0, 5]
    masked = ids.copy()
    masked[labels != -100] = 4
    return {"input_ids": masked, "attention_mask": mask, "labels": labels}


# --- the RTD head ------------------------------------------------------------------------------
def test_rtd_head_round_trips_under_mask_predictions_names(tmp_path, rng):
    from safetensors.numpy import load_file

    disc = perturb_variables(kd.TFDebertaV2ForReplacedTokenDetection(_config()))
    disc.save_pretrained(tmp_path)
    saved = load_file(os.path.join(tmp_path, "model.safetensors"))
    head = {n: v.shape for n, v in saved.items() if n.startswith("mask_predictions.")}
    assert head == {"mask_predictions.LayerNorm.weight": (32,), "mask_predictions.LayerNorm.bias": (32,),
                    "mask_predictions.dense.weight": (32, 32), "mask_predictions.dense.bias": (32,),
                    "mask_predictions.classifier.weight": (1, 32), "mask_predictions.classifier.bias": (1,)}
    reloaded = kd.TFDebertaV2ForReplacedTokenDetection.from_pretrained(tmp_path)
    ids = rng.randint(1, 99, size=(2, 9)).astype("int32")
    np.testing.assert_array_equal(to_numpy(reloaded(ids).logits), to_numpy(disc(ids).logits))
    # A Hub-style encoder checkpoint without the head: the head is new (warned), the encoder loads.
    base = tmp_path / "base"
    kd.TFDebertaV2Model(_config()).save_pretrained(base)
    with pytest.warns(UserWarning, match="mask_predictions"):
        kd.TFDebertaV2ForReplacedTokenDetection.from_pretrained(base)


def test_transformers_loads_the_rtd_checkpoint_as_deberta_v2_model(tmp_path, rng):
    import transformers

    disc = perturb_variables(kd.TFDebertaV2ForReplacedTokenDetection(_config()))
    disc.save_pretrained(tmp_path)
    theirs = transformers.DebertaV2Model.from_pretrained(tmp_path).eval()
    ids = rng.randint(1, 99, size=(2, 9)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    ours = disc({"input_ids": ids, "attention_mask": mask}, output_hidden_states=True).hidden_states[-1]
    assert_close(to_numpy(ours), hf_forward(theirs, ids, mask).last_hidden_state.numpy(), where=mask == 1,
                 tol=1e-5, what="last_hidden_state")


def test_rtd_loss_is_the_mean_over_non_padding_tokens(rng):
    disc = perturb_variables(kd.TFDebertaV2ForReplacedTokenDetection(_config()))
    ids = rng.randint(5, 99, size=(2, 8)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    labels = rng.randint(0, 2, size=ids.shape).astype("int32")
    out = disc({"input_ids": ids, "attention_mask": mask, "labels": labels})
    x = to_numpy(out.logits).astype("float64")
    per_token = np.logaddexp(0, x) - x * labels  # -[z log s(x) + (1 - z) log(1 - s(x))]
    np.testing.assert_allclose(float(to_numpy(out.loss)[0]), per_token[mask == 1].mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        disc({"input_ids": ids, "labels": labels + 1})


# --- the enhanced mask decoder -----------------------------------------------------------------
def test_enhanced_mask_decoder_is_off_by_default_and_a_from_pretrained_keyword(tmp_path, rng):
    gen = perturb_variables(kd.TFDebertaV2ForMaskedLM(_config(legacy=False)))
    assert "enhanced_mask_decoder" not in gen.config.to_dict()  # config.json stays transformers'
    gen.save_pretrained(tmp_path)
    ids = rng.randint(5, 99, size=(2, 9)).astype("int32")
    plain = to_numpy(kd.TFDebertaV2ForMaskedLM.from_pretrained(tmp_path)(ids).logits)
    np.testing.assert_array_equal(plain, to_numpy(gen(ids).logits))
    # The saved file has no position table (transformers' v3 MLM has none): EMD needs one.
    with pytest.raises(Exception, match="position_embeddings"):
        kd.TFDebertaV2ForMaskedLM.from_pretrained(tmp_path, enhanced_mask_decoder=True)


def test_emd_generator_saves_a_checkpoint_transformers_loads(tmp_path, rng):
    import transformers

    gen, _ = _pair()
    gen.save_pretrained(tmp_path)
    ids = rng.randint(5, 99, size=(2, 9)).astype("int32")
    reloaded = kd.TFDebertaV2ForMaskedLM.from_pretrained(tmp_path)  # enhanced_mask_decoder in config.json
    np.testing.assert_array_equal(to_numpy(reloaded(ids).logits), to_numpy(gen(ids).logits))
    # transformers has no EMD: it reads the encoder and the lm_predictions head as trained, and
    # matches our model with the decoder switched off.
    theirs = transformers.DebertaV2ForMaskedLM.from_pretrained(tmp_path).eval()
    without = kd.TFDebertaV2ForMaskedLM.from_pretrained(tmp_path, enhanced_mask_decoder=False)
    assert_close(to_numpy(without(ids).logits), hf_forward(theirs, ids).logits.numpy(), tol=1e-5, what="logits")
    assert np.abs(to_numpy(without(ids).logits) - to_numpy(gen(ids).logits)).max() > 1e-2


def test_emd_is_the_last_layer_when_positions_enter_the_input(rng):
    # The original skips the decoder passes when position_biased_input is true.
    config = _config(position_biased_input=True, legacy=False)
    plain = perturb_variables(kd.TFDebertaV2ForMaskedLM(config))
    emd = kd.TFDebertaV2ForMaskedLM(_config(position_biased_input=True, enhanced_mask_decoder=True))
    for a, b in zip(emd.weights, plain.weights):
        a.assign(b)
    ids = rng.randint(5, 99, size=(2, 9)).astype("int32")
    np.testing.assert_array_equal(to_numpy(emd(ids).logits), to_numpy(plain(ids).logits))


def test_emd_on_deberta_v1_uses_the_fused_projection_queries(rng):
    from hf_reference import TINY_V1, V1_VARIANTS

    config = kd.DebertaConfig(**TINY_V1, **V1_VARIANTS["relative_whole_length"], enhanced_mask_decoder=True)
    model = perturb_variables(kd.TFDebertaForMaskedLM(config))
    assert not model.legacy and "deberta.embeddings.position_embeddings.weight" in model.hf_weight_specs()
    ids = rng.randint(5, 99, size=(2, 9)).astype("int32")
    # Queries of the decoder passes come from the query stream: a change of the position table
    # (read only there) changes the predictions.
    before = to_numpy(model(ids).logits)
    table = model.enhanced_mask_decoder.position_embeddings.embeddings
    table.assign(table + 0.5)
    assert np.abs(to_numpy(model(ids).logits) - before).max() > 1e-3


def test_emd_needs_two_layers():
    with pytest.raises(ValueError, match="num_hidden_layers >= 2"):
        kd.TFDebertaV2ForMaskedLM(_config(num_hidden_layers=1, enhanced_mask_decoder=True))


# --- the pretrainer ----------------------------------------------------------------------------
def test_pretrainer_refuses_bad_settings():
    gen, disc = _pair()
    for bad in (0.0, -1.0, True, "50"):
        with pytest.raises(ValueError, match="rtd_lambda"):
            kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, rtd_lambda=bad)
    with pytest.raises(ValueError, match="embedding_sharing"):
        kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, embedding_sharing="shared")
    narrow = kd.TFDebertaV2ForReplacedTokenDetection(_config(embedding_size=16, position_biased_input=False))
    for sharing in ("gdes", "es"):
        with pytest.raises(ValueError, match="generator's are \\(99, 32\\) and the discriminator's \\(99, 16\\)"):
            kd.DebertaV3RTDPretrainer(generator=gen, discriminator=narrow, embedding_sharing=sharing)
    kd.DebertaV3RTDPretrainer(generator=gen, discriminator=narrow, embedding_sharing="none")
    with pytest.raises(TypeError, match="discriminator"):
        kd.DebertaV3RTDPretrainer(generator=gen, discriminator=gen)


def test_pretrainer_refuses_batches_it_cannot_learn_from(rng):
    gen, disc = _pair()
    pretrainer = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc)
    batch = _masked_batch(rng)
    before = [to_numpy(v) for v in pretrainer.weights]
    with pytest.raises(ValueError, match="all padding"):
        pretrainer({**batch, "attention_mask": np.concatenate([batch["attention_mask"][:2], 0 * batch[
            "attention_mask"][2:]])})
    with pytest.raises(ValueError, match="no masked token"):
        pretrainer({**batch, "labels": np.full_like(batch["labels"], -100)})
    with pytest.raises(ValueError, match="replacement_ids must hold one id per masked token \\(4\\)"):
        pretrainer({**batch, "replacement_ids": np.array([5, 6], "int32")})
    pretrainer.compile(optimizer="adam")
    with pytest.raises(ValueError, match="all padding"):
        pretrainer.fit({**batch, "attention_mask": np.zeros_like(batch["attention_mask"])}, epochs=1, verbose=0)
    for b, a in zip(before, pretrainer.weights):  # nothing was damaged
        np.testing.assert_array_equal(b, to_numpy(a))


def test_all_padding_batch_in_a_compiled_step_gives_a_finite_loss(rng):
    gen, disc = _pair()
    pretrainer = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, seed=3)
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = _masked_batch(rng)
    empty = {"input_ids": np.zeros_like(batch["input_ids"]), "attention_mask": np.zeros_like(batch["input_ids"]),
             "labels": np.full_like(batch["labels"], -100)}
    import tensorflow as tf

    data = tf.data.Dataset.from_tensors(empty)
    if keras.backend.backend() == "torch":  # torch steps run eagerly: the batch's values are checked
        with pytest.raises(ValueError, match="all padding"):
            pretrainer.fit(data, epochs=1, verbose=0)
        return
    history = pretrainer.fit(data, epochs=1, verbose=0)  # traced: only the loss can guard
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] == 0.0


def test_sampling_is_seeded_and_only_at_masked_positions(rng):
    gen, disc = _pair()
    batch = _masked_batch(rng)
    outs = [to_numpy(kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, seed=7)(batch)["corrupted_ids"])
            for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    masked = batch["labels"] != -100
    np.testing.assert_array_equal(outs[0][~masked], batch["input_ids"][~masked])
    assert (outs[0][masked] != 4).any()  # samples were written in place of [MASK]


def test_gdes_delta_starts_as_the_embedding_difference_and_folds_when_saved(tmp_path):
    import transformers

    gen, disc = _pair()
    e_gen = to_numpy(gen.deberta.embeddings.word_embeddings.embeddings)
    e_disc = to_numpy(disc.deberta.embeddings.word_embeddings.embeddings)
    pretrainer = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc)
    np.testing.assert_allclose(to_numpy(pretrainer.embedding_delta), e_disc - e_gen, atol=1e-7)
    pretrainer.embedding_delta.assign(pretrainer.embedding_delta + 1.0)  # as training would move it
    pretrainer.discriminator.save_pretrained(tmp_path)
    theirs = transformers.DebertaV2Model.from_pretrained(tmp_path)
    np.testing.assert_allclose(theirs.embeddings.word_embeddings.weight.detach().numpy(), e_disc + 1.0, atol=1e-6)


def _text_batches(vocab_limit=None):
    """Real WikiText-2 lines with the real v3 SentencePiece vocabulary -> (ids, mask) [B, L]."""
    tok = kd.DebertaV2Tokenizer.from_pretrained(SPM_DIR)
    with open(WIKITEXT, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if len(ln.split()) > 12][:16]
    enc = tok(lines, truncation=True, max_length=24, padding="max_length", return_tensors="np")
    return tok, enc["input_ids"].astype("int32"), enc["attention_mask"].astype("int32")


def _compact(tok, ids):
    """The ids of these lines renumbered 0..K-1 (special ids first): a model of K rows instead of
    128,100 keeps the test small; text and tokenisation stay the real ones."""
    keep = np.unique(np.concatenate([np.array(sorted(tok.all_special_ids)), ids.ravel()]))
    lookup = {int(v): i for i, v in enumerate(keep)}
    remap = np.vectorize(lookup.__getitem__)
    return remap(ids).astype("int32"), len(keep), [lookup[i] for i in tok.all_special_ids], lookup[tok.mask_token_id]


@needs_text
@pytest.mark.parametrize("mode", ["coupled", "decoupled", "mixed_bfloat16"])
def test_fit_on_real_text_lowers_the_loss(mode):
    import tensorflow as tf

    tok, ids, mask = _text_batches()
    ids, vocab, special, mask_id = _compact(tok, ids)
    dtype = "mixed_bfloat16" if mode == "mixed_bfloat16" else None
    gen, disc = _pair(vocab_size=vocab, dtype=dtype)
    pretrainer = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, seed=0)
    if mode == "decoupled":
        pretrainer.compile(generator_optimizer=keras.optimizers.Adam(2e-3),
                           discriminator_optimizer=keras.optimizers.Adam(1e-3))
    else:
        pretrainer.compile(optimizer=keras.optimizers.Adam(2e-3))
    masker = kd.DynamicMasking(mask_id, vocab, special_ids=special, seed=0)
    data = tf.data.Dataset.from_tensor_slices({"input_ids": ids, "attention_mask": mask}).batch(8).map(masker)
    history = pretrainer.fit(data.repeat(), steps_per_epoch=2, epochs=6, verbose=0).history
    losses = history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    assert history["rtd_loss"][-1] < history["rtd_loss"][0] and "mlm_loss" in history
    if mode == "decoupled":
        assert int(to_numpy(pretrainer.optimizer.generator_optimizer.iterations)) == 12
        assert int(to_numpy(pretrainer.optimizer.discriminator_optimizer.iterations)) == 12


def test_decoupled_optimizers_step_their_own_models(rng):
    gen, disc = _pair()
    pretrainer = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, seed=1)
    # The discriminator's optimizer does nothing: only generator variables may move.
    pretrainer.compile(generator_optimizer=keras.optimizers.SGD(0.1),
                       discriminator_optimizer=keras.optimizers.SGD(0.0))
    disc_before = [to_numpy(v) for v in disc.trainable_variables] + [to_numpy(pretrainer.embedding_delta)]
    gen_before = [to_numpy(v) for v in gen.trainable_variables]
    pretrainer.fit(_masked_batch(rng), epochs=1, batch_size=3, verbose=0)
    for b, v in zip(disc_before, disc.trainable_variables + [pretrainer.embedding_delta]):
        np.testing.assert_array_equal(b, to_numpy(v))
    assert any(np.abs(b - to_numpy(v)).max() > 0 for b, v in zip(gen_before, gen.trainable_variables))


# --- dynamic masking ---------------------------------------------------------------------------
def test_dynamic_masking_rates_labels_and_whole_words():
    rng = np.random.RandomState(0)
    ids = rng.randint(10, 500, size=(64, 40)).astype("int32")
    ids[:, 0], ids[:, -1] = 1, 2
    mask = np.ones_like(ids)
    masker = kd.DynamicMasking(4, 500, special_ids=[0, 1, 2, 3], seed=0)
    out = {k: np.asarray(v) for k, v in masker({"input_ids": ids, "attention_mask": mask}).items()}
    selected = out["labels"] != -100
    np.testing.assert_array_equal(out["labels"][selected], ids[selected])
    assert not selected[:, 0].any() and not selected[:, -1].any()
    assert 0.12 < selected[:, 1:-1].mean() < 0.18
    as_mask = (out["input_ids"] == 4)[selected].mean()
    kept = (out["input_ids"] == ids)[selected].mean()
    assert 0.74 < as_mask < 0.86 and 0.05 < kept < 0.16
    np.testing.assert_array_equal(out["input_ids"][~selected], ids[~selected])
    # Whole words: every piece of a word shares the decision (odd ids start words here).
    starts = np.zeros(500, bool)
    starts[1::2] = True
    starts[:5] = True
    whole = kd.DynamicMasking(4, 500, special_ids=[0, 1, 2, 3], word_starts=starts, seed=1)
    labels = np.asarray(whole({"input_ids": ids, "attention_mask": mask})["labels"])
    for row, lab in zip(ids, labels):
        word = np.cumsum(starts[row])[1:-1]  # [CLS] / [SEP] excluded
        for w in np.unique(word):
            chosen = lab[1:-1][word == w] != -100
            assert chosen.all() or not chosen.any()
    assert (labels != -100).any()


def test_dynamic_masking_bad_inputs():
    with pytest.raises(ValueError, match="no \\[MASK\\] token"):
        kd.DynamicMasking(None, 100)

    class NoMask:
        mask_token_id = None

    with pytest.raises(ValueError, match="no \\[MASK\\] token"):
        kd.DynamicMasking.from_tokenizer(NoMask())
    masker = kd.DynamicMasking(4, 100, special_ids=[0, 1, 2])
    only_special = np.array([[1, 2, 0, 0], [1, 2, 0, 0]], "int32")
    with pytest.raises(Exception, match="no token of this batch can be masked"):
        masker({"input_ids": only_special, "attention_mask": (only_special > 0).astype("int32")})


@needs_text
def test_dynamic_masking_whole_words_from_the_v3_vocabulary():
    tok = kd.DebertaV2Tokenizer.from_pretrained(SPM_DIR)
    masker = kd.DynamicMasking.from_tokenizer(tok, whole_word=True, seed=0)
    ids = tok(["unbelievably tokenization-heavy sentences"] * 8)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids[0])
    starts = masker.word_starts[np.array(ids[0])]
    assert [p.startswith("\u2581") for p in pieces[1:-1]] == list(starts[1:-1])
    assert not starts[1:-1].all()  # a word split into several pieces


def test_predictions_only_at_masked_positions_equal_the_full_head(rng):
    gen, disc = _pair()
    batch = {**_masked_batch(rng), "replacement_ids": np.array([7, 8, 9, 10], "int32")}
    full = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc)(batch)
    capped = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, max_predictions_per_seq=2)(batch)
    positions = to_numpy(capped["mlm_positions"])
    # Row 0 has 2 masks, the others 1 (their second slot is filler, any unmasked position).
    np.testing.assert_array_equal(positions[:, 0], [2, 2, 2])
    assert positions[0, 1] == 5 and all(batch["labels"][r, positions[r, 1]] == -100 for r in (1, 2))
    picked = np.take_along_axis(to_numpy(full["mlm_logits"]), positions[..., None], axis=1)
    np.testing.assert_allclose(to_numpy(capped["mlm_logits"])[0], picked[0], atol=1e-5)
    np.testing.assert_allclose(to_numpy(capped["mlm_logits"])[1:, 0], picked[1:, 0], atol=1e-5)
    for name in ("loss", "mlm_loss", "rtd_loss"):
        np.testing.assert_allclose(to_numpy(capped[name]), to_numpy(full[name]), rtol=1e-6, err_msg=name)
    np.testing.assert_array_equal(to_numpy(capped["corrupted_ids"]), to_numpy(full["corrupted_ids"]))
    masker = kd.DynamicMasking(4, 99, special_ids=[0, 1, 2, 3], mask_prob=0.5, max_predictions=3, seed=0)
    ids = rng.randint(5, 99, size=(16, 30)).astype("int32")
    labels = np.asarray(masker({"input_ids": ids})["labels"])
    assert (labels != -100).sum(axis=1).max() == 3


def test_mlm_only_pretrainer_loss_is_the_masked_lm_loss(rng):
    from keras_deberta.pretraining import MaskedLMPretrainer

    gen, _ = _pair()
    batch = _masked_batch(rng)
    full = gen({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": batch["labels"]})
    out = MaskedLMPretrainer(gen, max_predictions_per_seq=2)(batch)
    np.testing.assert_allclose(to_numpy(out["loss"]), to_numpy(full.loss)[0], rtol=1e-6)
    pretrainer = MaskedLMPretrainer(gen, max_predictions_per_seq=2)
    pretrainer.compile(optimizer=keras.optimizers.Adam(5e-3))
    losses = pretrainer.fit({k: np.tile(v, (4, 1)) for k, v in batch.items()}, epochs=4, batch_size=12,
                            verbose=0).history["loss"]
    assert losses[-1] < losses[0], losses


def test_sampling_follows_the_generator_distribution():
    gen, disc = _pair()
    pretrainer = kd.DebertaV3RTDPretrainer(generator=gen, discriminator=disc, seed=5)
    probs = np.array([0.5, 0.3, 0.2, 0.0] + [0.0] * 95)
    logits = np.log(np.maximum(probs, 1e-30))[None, None].repeat(4000, axis=1).astype("float32")  # [1, 4000, 99]
    draws = to_numpy(pretrainer._sample(keras.ops.convert_to_tensor(logits)))[0]
    counts = np.bincount(draws, minlength=99) / draws.size
    np.testing.assert_allclose(counts[:3], probs[:3], atol=0.03)
    assert counts[3:].sum() == 0
