"""transformers' TF test conventions (tests/test_modeling_tf_common.py in transformers 4.x), run on
every task class: output shapes, hidden states and attentions via the config and via the call,
`return_dict=False`, `inputs_embeds` equal to ids, `model.build()`, `resize_token_embeddings`,
embedding accessors, `dummy_inputs`, `fit` with labels in the input dict (with sample weights and
metrics), functional models and saved main layers. Each bug the drop-in issue lists has a test
here that failed before the fix."""

import keras
import numpy as np
import pytest

import keras_deberta as kd
import keras_deepseek as ks
from harness import (ALL_TASK_CLASSES, DEBERTA_V1_CLASSES, DEBERTA_V2_CLASSES, DEEPSEEK_CLASSES, class_id,
                     example_inputs, perturb_variables, tiny_config, to_numpy)
from hf_reference import V2_VARIANTS, assert_close

DEBERTA_CLASSES = DEBERTA_V2_CLASSES + DEBERTA_V1_CLASSES
B, L = 2, 7


def _model(cls, **overrides):
    return perturb_variables(cls(tiny_config(cls, **overrides)))


def _expected_shapes(model, batch, length):
    config = model.config
    name = type(model).__name__
    if name.endswith("Model"):
        return {"last_hidden_state": (batch, length, config.hidden_size)}
    if "MaskedLM" in name or "CausalLM" in name:
        return {"logits": (batch, length, config.vocab_size)}
    if "TokenClassification" in name:
        return {"logits": (batch, length, config.num_labels)}
    if "ReplacedTokenDetection" in name:
        return {"logits": (batch, length)}
    if "QuestionAnswering" in name:
        return {"start_logits": (batch, length), "end_logits": (batch, length)}
    if "MultipleChoice" in name:
        return {"logits": (batch, 2)}
    return {"logits": (batch, config.num_labels)}


@pytest.mark.parametrize("cls", ALL_TASK_CLASSES, ids=class_id)
def test_output_shapes_hidden_states_and_attentions(cls):
    model = _model(cls)
    inputs = example_inputs(model, B, L)
    out = model(inputs)
    for name, shape in _expected_shapes(model, B, L).items():
        assert tuple(out[name].shape) == shape, name
    assert out.hidden_states is None and out.attentions is None
    flat_batch = B * 2 if model.input_rank == 3 else B
    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads

    def check(result):
        assert len(result.hidden_states) == layers + 1
        assert all(tuple(h.shape) == (flat_batch, L, model.config.hidden_size) for h in result.hidden_states)
        assert len(result.attentions) == layers
        assert all(tuple(a.shape) == (flat_batch, heads, L, L) for a in result.attentions)

    check(model(inputs, output_hidden_states=True, output_attentions=True))  # via the call
    check(model({**inputs, "output_hidden_states": True, "output_attentions": True}))  # inside the dict
    model.config.output_hidden_states = model.config.output_attentions = True  # via the config
    check(model(inputs))
    model.config.return_dict = False
    as_tuple = model(inputs)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(_expected_shapes(model, B, L)) + 2


@pytest.mark.parametrize("cls", ALL_TASK_CLASSES, ids=class_id)
def test_build_is_a_no_op_and_dummy_inputs_run(cls):
    model = _model(cls)
    before = [to_numpy(w) for w in model.weights]
    model.build()
    model.build((B, L))
    assert len(model.weights) == len(before)
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(to_numpy(w), b)
    out = model(model.dummy_inputs)
    assert model.main_input_name == "input_ids"
    assert set(model.dummy_inputs) == set(model.export_input_names)
    assert out[0] is not None


@pytest.mark.parametrize("cls", ALL_TASK_CLASSES, ids=class_id)
def test_inputs_embeds_equal_ids(cls):
    model = _model(cls)
    inputs = example_inputs(model, B, L)
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    from_ids = model(inputs)
    from_embeds = model({**{k: v for k, v in inputs.items() if k != "input_ids"}, "inputs_embeds": embeds})
    for key in from_ids:
        np.testing.assert_allclose(to_numpy(from_embeds[key]), to_numpy(from_ids[key]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        model({**inputs, "inputs_embeds": embeds})


@pytest.mark.parametrize("cls", ALL_TASK_CLASSES, ids=class_id)
def test_embedding_accessors(cls):
    model = _model(cls)
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, keras.layers.Embedding)
    assert tuple(embedding.embeddings.shape)[0] == model.config.vocab_size
    head = model.get_output_embeddings()
    is_lm = "MaskedLM" in cls.__name__ or "CausalLM" in cls.__name__
    assert (head is not None) == is_lm and (model.get_lm_head() is not None) == is_lm
    bias = model.get_bias()
    assert (bias is not None) == ("MaskedLM" in cls.__name__)
    table = to_numpy(embedding.embeddings) * 0.5
    model.set_input_embeddings(table)
    np.testing.assert_allclose(to_numpy(model.get_input_embeddings().embeddings), table, rtol=1e-6)


@pytest.mark.parametrize("cls", [c for c in ALL_TASK_CLASSES if "Model" in c.__name__[-5:] or "LM" in c.__name__],
                         ids=class_id)
@pytest.mark.parametrize("change", [+5, -4])
def test_resize_token_embeddings(cls, change):
    model = _model(cls)
    old_vocab = model.config.vocab_size
    new_vocab = old_vocab + change
    inputs = example_inputs(model, B, L)
    old_table = to_numpy(model.get_input_embeddings().embeddings)
    old_bias = {k: to_numpy(v) for k, v in (model.get_bias() or {}).items()}
    old_head = model.get_output_embeddings()
    old_head_kernel = to_numpy(old_head.kernel) if isinstance(old_head, keras.layers.Dense) else None
    before = model(inputs)
    layer = model.resize_token_embeddings(new_vocab)
    keep = min(old_vocab, new_vocab)
    assert model.config.vocab_size == new_vocab and layer is model.get_input_embeddings()
    table = to_numpy(layer.embeddings)
    assert table.shape == (new_vocab, old_table.shape[1])
    np.testing.assert_array_equal(table[:keep], old_table[:keep])
    for name, value in (model.get_bias() or {}).items():
        assert value.shape == (new_vocab,)
        np.testing.assert_array_equal(to_numpy(value)[:keep], old_bias[name][:keep])
    if old_head_kernel is not None:  # an untied lm_head resizes its output axis
        kernel = to_numpy(model.get_output_embeddings().kernel)
        assert kernel.shape[-1] == new_vocab
        np.testing.assert_array_equal(kernel[:, :keep], old_head_kernel[:, :keep])
    after = model(inputs)  # ids below min(old, new): every kept output is unchanged
    name = model.primary_output_names[0]
    if name == "logits":
        np.testing.assert_allclose(to_numpy(after[name])[..., :keep], to_numpy(before[name])[..., :keep], atol=1e-5)
        assert after[name].shape[-1] == new_vocab
    else:
        np.testing.assert_allclose(to_numpy(after[name]), to_numpy(before[name]), atol=1e-5)
    with pytest.raises(ValueError, match="input_ids"):
        model({**inputs, "input_ids": np.full_like(inputs["input_ids"], new_vocab)})


def _fit_data(model, n=4):
    inputs = example_inputs(model, n, L, with_labels=True)
    labels = {k: inputs.pop(k) for k in model.label_names}
    return inputs, labels


# Every head kind of DeBERTa-v2 and DeepSeek. The v1 heads route labels through the same task
# protocol with the same label names (test_deberta_v1.py fits v1 on labels given as y); each fit
# here compiles two train functions, so the duplicates would cost CI about a minute.
@pytest.mark.parametrize("cls", [c for c in ALL_TASK_CLASSES if not c.__name__.endswith("Model")
                                 and not c.__name__.startswith("TFDebertaFor")], ids=class_id)
def test_keras_fit_with_labels_as_y_and_in_the_dict(cls):
    model = _model(cls)
    x, labels = _fit_data(model)
    y = labels["labels"] if len(labels) == 1 else (labels["start_positions"], labels["end_positions"])
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
    as_y = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"]
    in_dict = model.fit({**x, **labels}, batch_size=4, epochs=1, verbose=0).history["loss"]
    assert np.isfinite(as_y).all() and np.isfinite(in_dict).all()


@pytest.mark.parametrize("cls", [kd.TFDebertaV2ForSequenceClassification, kd.TFDebertaForSequenceClassification,
                                 kd.TFDebertaV2ForTokenClassification, kd.TFDebertaV2ForMultipleChoice,
                                 ks.TFDeepseekV2ForSequenceClassification], ids=class_id)
def test_metrics_with_labels_in_the_dict(cls):
    """Bug: compile(optimizer, metrics=["accuracy"]) with labels inside the input dict crashed fit."""
    model = _model(cls)
    x, labels = _fit_data(model)
    model.compile(optimizer=keras.optimizers.SGD(1e-2), metrics=["accuracy"])
    history = model.fit({**x, **labels}, batch_size=4, epochs=1, verbose=0).history
    assert 0.0 <= history["accuracy"][0] <= 1.0
    logits = to_numpy(model(x).logits)
    want = float(np.mean(np.argmax(logits, -1) == labels["labels"]))
    assert model.evaluate({**x, **labels}, batch_size=4, verbose=0, return_dict=True)["accuracy"] == pytest.approx(want)


@pytest.mark.parametrize("cls", [kd.TFDebertaV2ForSequenceClassification, kd.TFDebertaV2ForMaskedLM,
                                 ks.TFDeepseekV2ForCausalLM, ks.TFDeepseekV2ForSequenceClassification],
                         ids=class_id)
def test_sample_weight_applies_with_labels_in_the_dict(cls):
    """Bug: with labels inside the input dict, sample_weight was ignored (DeepSeek: always)."""
    model = _model(cls)
    x, labels = _fit_data(model)
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
    weights = np.array([1.0, 1.0, 0.0, 0.0], "float32")
    weighted = model.evaluate({**x, **labels}, sample_weight=weights, batch_size=4, verbose=0)
    half = {k: v[:2] for k, v in {**x, **labels}.items()}
    first_half = model.evaluate(half, batch_size=2, verbose=0)
    np.testing.assert_allclose(weighted, first_half, rtol=1e-5)
    weighted_y = model.evaluate(x, labels["labels"], sample_weight=weights, batch_size=4, verbose=0)
    np.testing.assert_allclose(weighted_y, first_half, rtol=1e-5)
    unweighted = model.evaluate({**x, **labels}, batch_size=4, verbose=0)
    assert abs(unweighted - first_half) > 1e-4  # the weights changed something


def test_functional_model_with_a_symbolic_length():
    """Bug: JAX failed the absolute-position length check on a symbolic length."""
    cls = kd.TFDebertaV2ForSequenceClassification
    # Keras' PyTorch backend infers shapes by running the model with unknown lengths set to 83 and
    # 89, so the position table must hold that many rows (real checkpoints have 512).
    model = _model(cls, **V2_VARIANTS["absolute_token_types"], max_position_embeddings=128)
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    mask = keras.Input((None,), dtype="int32", name="attention_mask")
    functional = keras.Model([ids, mask], model({"input_ids": ids, "attention_mask": mask}).logits)
    inputs = example_inputs(model, B, L)
    np.testing.assert_allclose(to_numpy(functional([inputs["input_ids"], inputs["attention_mask"]])),
                               to_numpy(model(inputs).logits), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_main_layer_in_a_functional_model_saves(tmp_path, version):
    """Bug: the main layers had no get_config, so a functional model around one could not be saved."""
    config = tiny_config(kd.TFDebertaV2Model if version == "v2" else kd.TFDebertaModel)
    main = kd.DebertaV2MainLayer(config, name="deberta")
    ids = keras.Input((None,), dtype="int32")
    pooled = keras.layers.Dense(2, name="head")(main(ids)["last_hidden_state"][:, 0])
    functional = keras.Model(ids, pooled)
    functional.set_weights([w + 0.01 * np.random.RandomState(0).randn(*w.shape).astype(w.dtype)
                            for w in functional.get_weights()])
    path = str(tmp_path / "functional.keras")
    functional.save(path)
    reloaded = keras.saving.load_model(path)
    sample = np.random.RandomState(1).randint(3, config.vocab_size, size=(B, L)).astype("int32")
    np.testing.assert_array_equal(to_numpy(reloaded(sample)), to_numpy(functional(sample)))


def test_model_output_names_unknown_attributes():
    """Bug: out.logit (a typo) returned None instead of raising."""
    model = _model(kd.TFDebertaV2ForSequenceClassification)
    out = model(example_inputs(model, B, L))
    assert out.hidden_states is None  # a known output this call did not produce
    with pytest.raises(AttributeError, match="logit"):
        out.logit


def test_serving_output_stacks_layer_tuples():
    model = _model(kd.TFDebertaV2Model)
    model.config.output_hidden_states = True
    out = model.serving(example_inputs(model, B, L))
    assert tuple(out.hidden_states.shape) == (model.config.num_hidden_layers + 1, B, L, model.config.hidden_size)


def test_deepseek_classification_ignores_minus_100_and_checks_labels(tmp_path):
    """Bug: DeepSeek classification neither ignored label -100 nor range-checked labels (JAX clamped)."""
    import torch

    from deepseek_reference import build_hf_model, hf_config

    reference = build_hf_model(hf_config("lite", num_labels=3), "DeepseekV2ForSequenceClassification")
    reference.save_pretrained(str(tmp_path))
    model = ks.TFDeepseekV2ForSequenceClassification.from_pretrained(str(tmp_path))
    ids = np.random.RandomState(0).randint(3, model.config.vocab_size, size=(3, L)).astype("int32")
    labels = np.array([1, -100, 2], "int32")
    with torch.no_grad():
        want = reference(input_ids=torch.tensor(ids, dtype=torch.long), labels=torch.tensor(labels, dtype=torch.long))
    got = model(ids, labels=labels)
    assert_close(to_numpy(got.logits), want.logits.numpy(), what="logits")
    assert_close(to_numpy(got.loss), want.loss.numpy().reshape(1), what="loss with an ignored label")
    with pytest.raises(ValueError, match="labels must lie in"):
        model(ids, labels=np.array([1, 3, 0], "int32"))


def test_config_api(tmp_path):
    config = kd.DebertaV2Config(**tiny_config(kd.TFDebertaV2Model).to_dict())
    assert config.use_return_dict is True and config.is_encoder_decoder is False and not config.is_composition
    config.torch_dtype = "bfloat16"
    assert config.dtype == "bfloat16"
    path = tmp_path / "config.json"
    config.to_json_file(str(path))
    assert kd.DebertaV2Config.from_json_file(str(path)) == config
    assert config.to_json_string() == kd.DebertaV2Config.from_dict(config.to_dict()).to_json_string()
    (tmp_path / "sub").mkdir()
    config.save_pretrained(str(tmp_path / "sub"))
    assert kd.DebertaV2Config.from_pretrained(str(tmp_path), subfolder="sub") == config
    # transformers checks hidden_size % num_attention_heads when the attention layer is built.
    odd = kd.DebertaV2Config(**{**config.to_dict(), "hidden_size": 30})
    with pytest.raises(ValueError, match="multiple of the number of attention heads"):
        kd.TFDebertaV2Model(odd)
    # A size no model can use is held by the config (as transformers allows) and refused, by name,
    # where a model is built from it (tests/test_transformers_tf_suite_fixes.py).
    with pytest.raises(ValueError, match="num_attention_heads"):
        kd.TFDebertaV2Model(kd.DebertaV2Config(**{**config.to_dict(), "num_attention_heads": 0}))
    with pytest.raises(ValueError, match="layer_norm_eps"):
        kd.DebertaConfig(layer_norm_eps=0.0)


@pytest.mark.parametrize("cls", DEEPSEEK_CLASSES, ids=class_id)
def test_deepseek_config_rejects_impossible_values(cls):
    base = tiny_config(cls).to_dict()
    for change, pattern in ((dict(num_attention_heads=0), "num_attention_heads"),
                            (dict(num_experts_per_tok=base["n_routed_experts"] + 1), "num_experts_per_tok"),
                            (dict(rms_norm_eps=0.0), "rms_norm_eps"),
                            (dict(rope_scaling={"type": "warp", "factor": 2.0}, rope_parameters=None), "rope")):
        with pytest.raises(ValueError, match=pattern):
            ks.DeepseekV2Config(**{**base, **change})
