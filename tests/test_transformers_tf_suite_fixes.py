"""What transformers' own 4.x TF DeBERTa suites (benchmarks/transformers_tf_suite.py) found missing,
each checked here on every backend: configs holding any common size set to 0 or 1 (ConfigTester)
and refusing it where a model is built, `can_generate()`, `build_in_name_scope()`, `dummy_inputs`
as the backend's int32 tensors, and `get_bias()` in transformers' form (the tf.Variable on
TensorFlow); tokenizers that pickle, take transformers 4's `replace_additional_special_tokens=`,
have settable `additional_special_tokens_ids` and read None for extra special tokens set to None."""

import json
import pickle

import keras
import numpy as np
import pytest
from keras import ops

import keras_deberta as kd
import keras_deepseek as ks
from harness import DEBERTA_V1_CLASSES, DEBERTA_V2_CLASSES, class_id, example_inputs, tiny_config, to_numpy

# The tokenizer suite's own toy byte-level BPE (a vocabulary with [UNK], a few merges).
TOY_VOCAB = ["l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "\u0120", "\u0120l", "\u0120n", "\u0120lo",
             "\u0120low", "er", "\u0120lowest", "\u0120newer", "\u0120wider", "[UNK]"]
TOY_MERGES = ["#version: 0.2", "\u0120 l", "\u0120l o", "\u0120lo w", "e r", ""]
COMMON_SIZES = ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "intermediate_size")


@pytest.mark.parametrize("config_class, model_class", [(kd.DebertaV2Config, kd.TFDebertaV2Model),
                                                       (kd.DebertaConfig, kd.TFDebertaModel)],
                         ids=["v2", "v1"])
@pytest.mark.parametrize("field", COMMON_SIZES)
def test_config_holds_a_zero_size_and_the_model_build_refuses_it(config_class, model_class, field):
    config = config_class(**{field: 0})  # transformers' ConfigTester builds these
    assert getattr(config, field) == 0
    with pytest.raises(ValueError, match=field):
        model_class(config)


def test_can_generate_only_where_generate_exists():
    for cls in DEBERTA_V2_CLASSES + DEBERTA_V1_CLASSES + (ks.TFDeepseekV2Model,):
        assert cls.can_generate() is False, cls.__name__
    assert ks.TFDeepseekV2ForCausalLM.can_generate() is True


@pytest.mark.parametrize("cls", [kd.TFDebertaV2ForMaskedLM, kd.TFDebertaForMultipleChoice], ids=class_id)
def test_dummy_inputs_are_int32_backend_tensors_and_build_in_name_scope_is_a_no_op(cls):
    model = cls(tiny_config(cls))
    before = [to_numpy(w) for w in model.weights]
    model.build_in_name_scope()
    assert [w.shape for w in model.weights] == [b.shape for b in before]
    for name, tensor in model.dummy_inputs.items():
        assert ops.is_tensor(tensor) and not isinstance(tensor, np.ndarray), name
        assert keras.backend.standardize_dtype(tensor.dtype) == "int32", name
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            assert isinstance(tensor, tf.Tensor), name
    assert model(model.dummy_inputs)[0] is not None


@pytest.mark.parametrize("cls", [kd.TFDebertaV2ForMaskedLM, kd.TFDebertaForMaskedLM], ids=class_id)
def test_get_bias_is_transformers_form_and_assigning_it_changes_the_logits(cls):
    model = cls(tiny_config(cls))
    inputs = example_inputs(model)
    bias = model.get_bias()
    assert isinstance(bias, dict) and bias
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        assert all(isinstance(v, tf.Variable) for v in bias.values())
    else:
        assert all(isinstance(v, keras.Variable) for v in bias.values())
    before = to_numpy(model(inputs).logits)
    name, variable = next(iter(bias.items()))
    variable.assign(np.full(tuple(variable.shape), 3.0, dtype="float32"))  # TF code writes through it
    np.testing.assert_allclose(to_numpy(model(inputs).logits), before + 3.0, rtol=1e-5, atol=1e-5)
    model.set_bias({name: np.zeros(tuple(variable.shape), dtype="float32")})
    np.testing.assert_allclose(to_numpy(model(inputs).logits), before, rtol=1e-5, atol=1e-5)


def _toy_tokenizer(cls, directory):
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(TOY_VOCAB)}), encoding="utf-8")
    (directory / "merges.txt").write_text("\n".join(TOY_MERGES), encoding="utf-8")
    return cls(str(directory / "vocab.json"), str(directory / "merges.txt"), unk_token="[UNK]")


@pytest.mark.parametrize("cls", [kd.DebertaTokenizer, kd.DebertaTokenizerFast], ids=lambda c: c.__name__)
def test_tokenizer_pickles_and_keeps_its_tokens(cls, tmp_path):
    tokenizer = _toy_tokenizer(cls, tmp_path)
    text = "lower newer wider"
    again = pickle.loads(pickle.dumps(tokenizer))
    assert again.tokenize(text) == tokenizer.tokenize(text) and again(text)["input_ids"] == tokenizer(text)["input_ids"]


@pytest.mark.parametrize("cls", [kd.DebertaTokenizer, kd.DebertaTokenizerFast], ids=lambda c: c.__name__)
def test_extra_special_tokens_in_transformers_4_spelling(cls, tmp_path):
    tokenizer = _toy_tokenizer(cls, tmp_path)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<a>"]})
    tokenizer.add_special_tokens({"additional_special_tokens": ["<b>"]}, replace_additional_special_tokens=False)
    assert tokenizer.additional_special_tokens == ["<a>", "<b>"]
    tokenizer.add_special_tokens({"additional_special_tokens": ["<c>"]}, replace_additional_special_tokens=True)
    assert tokenizer.additional_special_tokens == ["<c>"]
    low = tokenizer.convert_tokens_to_ids("\u0120low")
    tokenizer.additional_special_tokens_ids = [low]
    assert tokenizer.additional_special_tokens == ["\u0120low"] and tokenizer.additional_special_tokens_ids == [low]
    tokenizer.additional_special_tokens_ids = []
    assert tokenizer.additional_special_tokens == [] and tokenizer.additional_special_tokens_ids == []
    tokenizer.additional_special_tokens = None  # unset, as transformers' suite does
    assert tokenizer.additional_special_tokens is None
    assert tokenizer.init_inputs == () and tokenizer.init_kwargs["vocab_file"] == str(tmp_path / "vocab.json")


@pytest.mark.parametrize("cls", [kd.TFDebertaV2ForQuestionAnswering, kd.TFDebertaForSequenceClassification],
                         ids=class_id)
def test_fit_with_labels_as_y_dict_sample_weight_and_a_flat_metrics_list(cls):
    """transformers' test_keras_fit: labels separate as {name: tensor}, one per-example weight
    (Keras maps it onto the labels dict) and `metrics=[one metric]` on every head, QA's two outputs
    included; the weighted loss equals the one with the labels inside the input dict."""
    model = cls(tiny_config(cls, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    data = example_inputs(model, batch=4, with_labels=True)
    names = [n for n in model.label_names if n in data]
    labels = {n: data[n] for n in names}
    inputs = {k: v for k, v in data.items() if k not in names}
    weight = np.array([1.0, 0.5, 0.25, 0.0], dtype="float32")
    model.compile(optimizer=keras.optimizers.SGD(0.0), metrics=[keras.metrics.SparseCategoricalAccuracy()])
    separate = model.fit(inputs, labels, sample_weight=weight, epochs=1, batch_size=4, verbose=0).history
    inside = model.fit(data, sample_weight=weight, epochs=1, batch_size=4, verbose=0).history
    np.testing.assert_allclose(separate["loss"][0], inside["loss"][0], rtol=1e-5)
    assert [k for k in separate if k.endswith("accuracy")], separate.keys()


@pytest.mark.parametrize("cls", [kd.DebertaTokenizer, kd.DebertaTokenizerFast], ids=lambda c: c.__name__)
def test_tokenizer_argument_named_like_a_method_is_refused(cls, tmp_path):
    tokenizer = _toy_tokenizer(cls, tmp_path)
    tokenizer.save_pretrained(str(tmp_path / "saved"))
    for key in ("add_special_tokens", "get_vocab"):
        with pytest.raises(AttributeError, match=f"{key} conflicts with the method"):
            cls.from_pretrained(str(tmp_path / "saved"), **{key: True})
    assert cls.from_pretrained(str(tmp_path / "saved"), model_max_length=9).model_max_length == 9
