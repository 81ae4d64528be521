"""DeBERTa-v3 RTD pretraining against Microsoft's own code: the fixture in ../shared/data/rtd-reference
(its README says how each number was produced) reproduced by our generator (EMD), discriminator
(RTD head), GDES pretrainer and converter of the original's states: logits, each loss, the total,
every parameter's gradient and the stop-gradient of GDES."""

import json
import os

import keras
import numpy as np
import pytest

from harness import to_numpy
from presets.mapping import TRANSFORMS
from rtd_reference import FIXTURE, gradients, load_fixture, needs_fixture

pytestmark = needs_fixture

ATOL = 1e-5  # activations, logits, losses (the fixture README's float32 tolerance)
GRAD_RTOL = 1e-5  # gradients, relative to each tensor's largest magnitude (fixture README: 1e-4 is safe; we hold 1e-5)


@pytest.fixture(scope="module")
def fixture():
    return load_fixture()


def _pretrainer(fixture, embedding_sharing=None):
    from keras_deberta.pretraining import load_original_pretrainer

    configs = fixture["configs"]
    pretrainer = load_original_pretrainer(fixture["generator"], fixture["discriminator"], configs["generator"],
                                          configs["discriminator"], rtd_lambda=50.0)
    if embedding_sharing is not None and embedding_sharing != pretrainer.embedding_sharing:
        from keras_deberta import DebertaV3RTDPretrainer

        pretrainer = DebertaV3RTDPretrainer(pretrainer.generator, pretrainer.discriminator_model, rtd_lambda=50.0,
                                            embedding_sharing=embedding_sharing)
    return pretrainer


def _batch(fixture):
    i = fixture["inputs"]
    return {"input_ids": i["input_ids"], "attention_mask": i["attention_mask"], "labels": i["mlm_labels_minus100"],
            "replacement_ids": i["replacement_ids"]}


def _close(got, ref, what, atol=ATOL):
    got, ref = np.asarray(got, "float64"), np.asarray(ref, "float64")
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    err = np.abs(got - ref).max()
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol}"


def test_fixture_logits_losses_and_corrupted_ids(fixture):
    pretrainer = _pretrainer(fixture)
    assert pretrainer.embedding_sharing == "gdes"
    out = pretrainer(_batch(fixture))
    i, o = fixture["inputs"], fixture["outputs"]
    rows, cols = i["masked_positions"][:, 0], i["masked_positions"][:, 1]
    np.testing.assert_array_equal(to_numpy(out["corrupted_ids"]), i["corrupted_ids"])
    _close(to_numpy(out["mlm_logits"])[rows, cols], o["mlm_logits"], "mlm_logits at the masked positions")
    valid = i["attention_mask"] == 1
    _close(to_numpy(out["rtd_logits"])[valid], o["rtd_logits"][valid], "rtd_logits (non-padding)")
    _close(to_numpy(out["mlm_loss"]), o["mlm_loss"], "mlm_loss")
    _close(to_numpy(out["rtd_loss"]), o["rtd_loss"], "rtd_loss")
    _close(to_numpy(out["loss"]), o["total_loss"], "total loss")


def _named_variables(pretrainer):
    """{fixture name: (variable, transform from the fixture's layout)} for both models."""
    gen = {n: (v, t) for n, (v, t) in pretrainer.generator.hf_weight_specs().items()}
    disc = {n: (v, t) for n, (v, t) in pretrainer.discriminator_model.hf_weight_specs().items()}
    disc.pop("deberta.embeddings.word_embeddings.weight")  # not read under GDES: the delta is
    disc["deberta.embeddings.word_embeddings._weight"] = (pretrainer.embedding_delta, "identity")
    return gen, disc


def _grad_error(got, ref):
    """max |got - ref| relative to the reference tensor's largest magnitude."""
    scale = max(np.abs(ref).max(), 1e-30)
    return np.abs(np.asarray(got, "float64") - ref).max() / scale


def test_fixture_gradients_of_every_parameter(fixture):
    pretrainer = _pretrainer(fixture)
    gen, disc = _named_variables(pretrainer)
    batch = _batch(fixture)
    names = [("generator", n) for n in fixture["grads_generator"]] + \
            [("discriminator", n) for n in fixture["grads_discriminator"]]
    specs = [(gen if side == "generator" else disc)[n] for side, n in names]
    grads, _ = gradients(lambda: (pretrainer(batch)["loss"], None), [v for v, _ in specs])
    assert len(names) == len(fixture["grads_generator"]) + len(fixture["grads_discriminator"]) > 60
    failures = []
    for (side, name), (variable, transform), got in zip(names, specs, grads):
        ref = TRANSFORMS[transform](fixture[f"grads_{side}"][name]).astype("float64")
        err = _grad_error(got, ref)
        if not err <= GRAD_RTOL:
            failures.append(f"{side} {name}: relative error {err:.3g}")
    assert not failures, failures
    # The headline gradients the fixture repeats in outputs.npz, by their own names.
    o = fixture["outputs"]
    by_name = {name: got for (side, name), got in zip(names, grads) if side == "generator"}
    assert _grad_error(by_name["deberta.embeddings.word_embeddings.weight"], o["grad_gen_word_embeddings"]) <= GRAD_RTOL
    delta = [g for (side, n), g in zip(names, grads) if n.endswith("word_embeddings._weight")][0]
    assert _grad_error(delta, o["grad_disc_word_embedding_delta"]) <= GRAD_RTOL


def test_gdes_rtd_loss_gives_no_gradient_to_the_generator(fixture):
    pretrainer = _pretrainer(fixture)
    gen_vars = list(pretrainer.generator.trainable_variables)
    batch = _batch(fixture)
    grads, _ = gradients(lambda: (pretrainer(batch)["rtd_loss"], None),
                         gen_vars + [pretrainer.embedding_delta])
    for variable, grad in zip(gen_vars, grads[:-1]):
        assert not np.any(grad), f"the RTD loss reached the generator's {variable.path}"
    o = fixture["outputs"]
    assert _grad_error(grads[-1], o["rtd_only_grad_disc_word_embedding_delta"]) <= GRAD_RTOL
    assert np.abs(grads[-1]).max() > 0.05  # the delta does learn from it (fixture: 0.0968)


def test_plain_sharing_lets_the_rtd_gradient_reach_the_generator_embeddings(fixture):
    # The fixture's control: the same hook switched to "es" (discriminator reads E_G itself).
    pretrainer = _pretrainer(fixture, embedding_sharing="es")
    table = pretrainer.generator.deberta.embeddings.word_embeddings.embeddings
    grads, _ = gradients(lambda: (pretrainer(_batch(fixture))["rtd_loss"], None), [table])
    with open(os.path.join(FIXTURE, "config.json")) as f:
        expected = json.load(f)["checks"]["control_es_rtd_only_generator_word_emb_grad_absmax"]
    np.testing.assert_allclose(np.abs(grads[0]).max(), expected, rtol=GRAD_RTOL)


def test_converter_folds_the_gdes_delta_into_the_discriminator(fixture, tmp_path):
    pretrainer = _pretrainer(fixture)
    disc = pretrainer.discriminator  # folded
    table = to_numpy(disc.deberta.embeddings.word_embeddings.embeddings)
    _close(table, fixture["outputs"]["disc_effective_word_embeddings"], "discriminator word embeddings", atol=1e-6)
    np.testing.assert_array_equal(to_numpy(pretrainer.embedding_delta),
                                  fixture["discriminator"]["deberta.embeddings.word_embeddings._weight"])
