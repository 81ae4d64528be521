"""DeBERTa-v2/v3 task heads: logits and losses equal transformers', HF TF calling conventions,
Keras-native training and saving, and clear errors for bad labels."""


import keras
import numpy as np
import pytest

import keras_deberta as kd
from hf_reference import V2_VARIANTS, assert_close, build_hf_model, hf_config
from harness import to_numpy

B, L, C = 3, 12, 4  # batch, length, choices

# (our class, transformers class, config overrides)
HEADS = {
    "mlm_legacy": ("TFDebertaV2ForMaskedLM", "DebertaV2ForMaskedLM", dict(legacy=True)),
    "mlm_lm_predictions": ("TFDebertaV2ForMaskedLM", "DebertaV2ForMaskedLM", dict(legacy=False)),
    "sequence_classification": ("TFDebertaV2ForSequenceClassification", "DebertaV2ForSequenceClassification",
                                dict(num_labels=3, cls_dropout=0.2)),
    "regression": ("TFDebertaV2ForSequenceClassification", "DebertaV2ForSequenceClassification", dict(num_labels=1)),
    "multi_label": ("TFDebertaV2ForSequenceClassification", "DebertaV2ForSequenceClassification",
                    dict(num_labels=3, problem_type="multi_label_classification")),
    "single_label": ("TFDebertaV2ForSequenceClassification", "DebertaV2ForSequenceClassification",
                     dict(num_labels=3, problem_type="single_label_classification")),
    "token_classification": ("TFDebertaV2ForTokenClassification", "DebertaV2ForTokenClassification",
                             dict(num_labels=5)),
    "question_answering": ("TFDebertaV2ForQuestionAnswering", "DebertaV2ForQuestionAnswering", {}),
    "multiple_choice": ("TFDebertaV2ForMultipleChoice", "DebertaV2ForMultipleChoice", {}),
}


def _arch(name):
    # One head on the nGiE architecture with token types; the rest on the v3 architecture.
    if name in ("sequence_classification", "token_classification"):
        return dict(V2_VARIANTS["v2_xlarge_like_ngie"], type_vocab_size=2)
    if name == "mlm_legacy":
        return V2_VARIANTS["embedding_size"]  # the legacy transform maps to embedding_size
    return V2_VARIANTS["v3_like"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    for name, (ours, theirs, overrides) in HEADS.items():
        config = hf_config(**_arch(name), **overrides)
        model = build_hf_model(config, cls_name=theirs, seed=11)
        directory = tmp_path_factory.mktemp(name)
        model.save_pretrained(directory)
        out[name] = (getattr(kd, ours), model, str(directory))
    return out


def _inputs(name, config, rng):
    shape = (B, C, L) if name == "multiple_choice" else (B, L)
    ids = rng.randint(1, config.vocab_size, size=shape).astype("int32")
    mask = np.ones_like(ids)
    mask[..., 1, L - 4:] = 0 if name == "multiple_choice" else 1
    if name != "multiple_choice":
        mask[1, L - 4:] = 0
        mask[2, :3] = 0
    ids[mask == 0] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if config.type_vocab_size:
        inputs["token_type_ids"] = (np.arange(L)[None, :] >= L // 2).astype("int32") * np.ones_like(ids)
    return inputs


def _labels(name, config, inputs, rng):
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if name.startswith("mlm") or name == "token_classification":
        n = config.vocab_size if name.startswith("mlm") else config.num_labels
        labels = rng.randint(0, n, size=ids.shape).astype("int32")
        labels[mask == 0] = -100
        labels[0, :2] = -100
        return {"labels": labels}
    if name == "sequence_classification":
        return {"labels": np.array([2, -1, 0], dtype="int32")}  # negative: ignored, as HF does
    if name == "single_label":
        return {"labels": np.array([2, 1, 0], dtype="int32")}
    if name == "regression":
        return {"labels": rng.randn(B).astype("float32")}
    if name == "multi_label":
        return {"labels": (rng.rand(B, 3) > 0.5).astype("float32")}
    if name == "question_answering":
        return {"start_positions": np.array([1, 5, 40], dtype="int32"),  # 40 > L: ignored, as HF
                "end_positions": np.array([3, 7, 2], dtype="int32")}
    return {"labels": np.array([3, 0, 1], dtype="int32")}  # multiple choice


def _torch(batch):
    import torch

    return {k: torch.tensor(v, dtype=torch.float32 if v.dtype.kind == "f" else torch.long) for k, v in batch.items()}


def _valid(name, inputs, array):
    """Compare token-level outputs only where the token exists; sequence-level ones everywhere."""
    if array.ndim >= 2 and name not in ("multiple_choice",) and array.shape[:2] == inputs["input_ids"].shape:
        return inputs["attention_mask"].astype(bool)
    return None


@pytest.mark.parametrize("name", sorted(HEADS))
def test_logits_and_loss_match_transformers(name, checkpoints, rng):
    import torch

    cls, hf_model, directory = checkpoints[name]
    config = hf_model.config
    inputs = _inputs(name, config, rng)
    labels = _labels(name, config, inputs, rng)
    with torch.no_grad():
        ref = hf_model(**_torch({**inputs, **labels}))
    model = cls.from_pretrained(directory)
    out = model(**inputs, **labels)
    output_names = ("start_logits", "end_logits") if name == "question_answering" else ("logits",)
    for key in output_names:
        want, got = ref[key].numpy(), to_numpy(out[key])
        if name == "regression":
            # transformers flattens regression logits to [B] only when labels are given; ours
            # keep [B, 1] either way (one output shape for Keras). The values must agree.
            assert got.shape == (B, 1)
            got = got.reshape(want.shape)
        assert_close(got, want, _valid(name, inputs, want), what=f"{name} {key}")
    assert_close(to_numpy(out.loss), ref.loss.numpy().reshape(1), what=f"{name} loss")  # HF TF: loss shape [1]
    assert list(out.keys())[0] == "loss"


def test_soft_labels_loss_matches_transformers(checkpoints, rng):
    import torch

    cls, hf_model, directory = checkpoints["sequence_classification"]
    inputs = _inputs("sequence_classification", hf_model.config, rng)
    soft = rng.dirichlet(np.ones(3), size=B).astype("float32")
    with torch.no_grad():
        ref = hf_model(**_torch(inputs), labels=torch.tensor(soft)).loss.numpy()
    got = cls.from_pretrained(directory)(**inputs, labels=soft).loss
    assert_close(to_numpy(got), ref.reshape(1), what="soft-label loss")


@pytest.mark.parametrize("name", ["sequence_classification", "question_answering", "multiple_choice", "mlm_legacy"])
def test_calling_conventions(name, checkpoints, rng):
    cls, hf_model, directory = checkpoints[name]
    inputs = _inputs(name, hf_model.config, rng)
    labels = _labels(name, hf_model.config, inputs, rng)
    model = cls.from_pretrained(directory)
    first = model.primary_output_names[0]
    want = to_numpy(model(**inputs)[first])
    ordered = [inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in inputs]
    np.testing.assert_array_equal(to_numpy(model(inputs)[first]), want)
    np.testing.assert_array_equal(to_numpy(model(ordered)[0]), want)
    np.testing.assert_array_equal(to_numpy(model(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                            token_type_ids=inputs.get("token_type_ids"))[first]), want)
    # Labels inside the input dict, as HF's TF models allowed; tuple output puts the loss first.
    with_labels = model({**inputs, **labels})
    as_tuple = model(**inputs, **labels, return_dict=False)
    np.testing.assert_array_equal(to_numpy(as_tuple[0]), to_numpy(with_labels.loss))
    np.testing.assert_array_equal(to_numpy(as_tuple[1]), want)
    full = model(**inputs, output_hidden_states=True, output_attentions=True)
    assert len(full.hidden_states) == hf_model.config.num_hidden_layers + 1
    assert len(full.attentions) == hf_model.config.num_hidden_layers
    assert full.loss is None and "loss" not in full


def test_base_model_has_no_loss_and_refuses_labels(checkpoints):
    config = kd.DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"]).to_dict())
    with pytest.raises(ValueError, match="takes no labels"):
        kd.TFDebertaV2Model(config)(np.ones((1, 4), "int32"), labels=np.ones((1,), "int32"))


# --- Keras-native training -----------------------------------------------------------------------


def _classifier(num_labels=3):
    config = kd.DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"], num_labels=num_labels).to_dict())
    return kd.TFDebertaV2ForSequenceClassification(config)


def _toy_data(n=32):
    rng = np.random.RandomState(0)
    ids = rng.randint(5, 99, size=(n, 10)).astype("int32")
    labels = (ids[:, 1] % 3).astype("int32")  # learnable from the tokens
    return ids, labels


def test_fit_on_the_models_own_loss_decreases_it():
    keras.utils.set_random_seed(0)
    model = _classifier()
    ids, labels = _toy_data()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit({"input_ids": ids}, labels, epochs=4, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    # Labels inside the input dict work the same way (no y).
    more = model.fit({"input_ids": ids, "labels": labels}, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(more.history["loss"]).all()


def test_fit_with_a_keras_loss_and_metrics_on_logits():
    keras.utils.set_random_seed(0)
    model = _classifier()
    ids, labels = _toy_data()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    weights = np.ones(len(ids), dtype="float32")
    history = model.fit(ids, labels, sample_weight=weights, epochs=4, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(ids, labels, verbose=0, return_dict=True)
    assert 0.0 <= result["accuracy"] <= 1.0
    predicted = model.predict(ids, batch_size=8, verbose=0)
    np.testing.assert_allclose(np.asarray(predicted["logits"]), to_numpy(model(ids).logits), atol=1e-5)


def test_fit_with_tf_data():
    import tensorflow as tf

    model = _classifier()
    ids, labels = _toy_data()
    dataset = tf.data.Dataset.from_tensor_slices(({"input_ids": ids}, labels)).batch(8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_qa_fit_on_own_loss():
    config = kd.DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"]).to_dict())
    model = kd.TFDebertaV2ForQuestionAnswering(config)
    ids, _ = _toy_data(16)
    y = {"start_positions": np.full(16, 2, "int32"), "end_positions": np.full(16, 4, "int32")}
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(ids, y, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_keras_file_round_trip(name, checkpoints, rng, tmp_path):
    cls, hf_model, directory = checkpoints[name]
    inputs = _inputs(name, hf_model.config, rng)
    model = cls.from_pretrained(directory)
    first = model.primary_output_names[0]
    model.save(str(tmp_path / "m.keras"))
    reloaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(to_numpy(reloaded(**inputs)[first]), to_numpy(model(**inputs)[first]))


@pytest.mark.parametrize("name", sorted(HEADS))
def test_save_pretrained_loads_in_transformers(name, checkpoints, rng, tmp_path):
    import torch
    import transformers

    cls, hf_model, directory = checkpoints[name]
    inputs = _inputs(name, hf_model.config, rng)
    cls.from_pretrained(directory).save_pretrained(str(tmp_path))
    reloaded = getattr(transformers, HEADS[name][1]).from_pretrained(str(tmp_path)).eval()
    # Exact: every parameter transformers loads back is bit-identical to the original's.
    want_state, got_state = hf_model.state_dict(), reloaded.state_dict()
    assert set(got_state) == set(want_state)
    for key, value in want_state.items():
        assert torch.equal(got_state[key], value), key
    with torch.no_grad():
        want, got = hf_model(**_torch(inputs)), reloaded(**_torch(inputs))
    # Outputs agree to float32 rounding (two torch instances of equal weights may differ by an
    # ulp: oneDNN kernels depend on memory alignment).
    for key in ("start_logits", "end_logits") if name == "question_answering" else ("logits",):
        assert_close(got[key].numpy(), want[key].numpy(), tol=1e-6, what=f"{name} {key} after round trip")


# --- heads of another size, bad labels -----------------------------------------------------------


def test_other_num_labels_needs_ignore_mismatched_sizes(checkpoints, rng):
    cls, hf_model, directory = checkpoints["sequence_classification"]
    with pytest.raises(kd.CheckpointError, match="classifier.weight has shape.*ignore_mismatched_sizes"):
        cls.from_pretrained(directory, num_labels=5)
    model = cls.from_pretrained(directory, num_labels=5, ignore_mismatched_sizes=True)
    assert sorted(model.load_info["mismatched"]) == ["classifier.bias", "classifier.weight"]
    inputs = _inputs("sequence_classification", hf_model.config, rng)
    assert tuple(model(**inputs).logits.shape) == (B, 5)


def test_task_model_from_a_base_checkpoint_gets_a_new_head(tmp_path, rng):
    config = hf_config(**V2_VARIANTS["v3_like"])
    base = build_hf_model(config, seed=2)
    base.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="newly initialised"):
        model = kd.TFDebertaV2ForTokenClassification.from_pretrained(str(tmp_path), num_labels=4)
    ids = rng.randint(1, 99, size=(2, 7)).astype("int32")
    import torch

    with torch.no_grad():
        want = base(input_ids=torch.tensor(ids, dtype=torch.long)).last_hidden_state.numpy()
    encoder = kd.TFDebertaV2Model.from_pretrained(str(tmp_path))
    np.testing.assert_array_equal(to_numpy(encoder(ids).last_hidden_state), to_numpy(model.deberta(ids)["last_hidden_state"]))
    assert_close(to_numpy(encoder(ids).last_hidden_state), want)


def test_labels_out_of_range():
    model = _classifier()
    ids = np.ones((2, 5), "int32")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model(ids, labels=np.array([0, 3], "int32"))
    config = kd.DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"], num_labels=4).to_dict())
    ner = kd.TFDebertaV2ForTokenClassification(config)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) \(or -100 to ignore\)"):
        ner(ids, labels=np.array([[0, 1, 2, 3, -5]] * 2, "int32"))


def test_label_array_of_the_wrong_shape():
    model = _classifier()
    ids = np.ones((2, 5), "int32")
    with pytest.raises(ValueError, match="labels have batch size 3"):
        model(ids, labels=np.array([0, 1, 2], "int32"))
    config = kd.DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"], num_labels=4).to_dict())
    with pytest.raises(ValueError, match="labels has shape"):
        kd.TFDebertaV2ForTokenClassification(config)(ids, labels=np.zeros((2, 4), "int32"))


def test_multiple_choice_mismatches():
    config = kd.DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"]).to_dict())
    model = kd.TFDebertaV2ForMultipleChoice(config)
    ids = np.ones((2, 3, 5), "int32")
    with pytest.raises(ValueError, match=r"index of the right choice\) must lie in \[0, 3\)"):
        model(ids, labels=np.array([0, 3], "int32"))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(ids, attention_mask=np.ones((2, 4, 5), "int32"))
    with pytest.raises(ValueError, match=r"\[batch, num_choices, length\]"):
        model(np.ones((2, 5), "int32"))


def test_sample_weights_weight_the_models_own_loss():
    model = _classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ids, labels = _toy_data(16)
    weights = np.array([1.0] * 8 + [0.0] * 8, dtype="float32")
    weighted = model.evaluate(ids, labels, sample_weight=weights, batch_size=16, verbose=0)
    first_half = model.evaluate(ids[:8], labels[:8], batch_size=8, verbose=0)
    np.testing.assert_allclose(weighted, first_half, rtol=1e-5)
    direct = model(ids[:8], labels=labels[:8]).loss
    np.testing.assert_allclose([first_half], to_numpy(direct), rtol=1e-5)
