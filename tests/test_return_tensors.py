"""`return_tensors="np" | "tf" | "pt" | "jax"` (and transformers' `TensorType`) on every tokenizer and
every Keras backend, and transformers 4's `pad_to_max_length=`: code written for transformers' TF
classes runs with only its import line changed."""

import os

import numpy as np
import pytest

import tokenizer_cases as cases
import tokenizer_reference as ref
from harness import to_numpy

needs_vocab = pytest.mark.skipif(not (os.path.isfile(cases.SPM_V3) and os.path.isdir(cases.GPT2_DIR)),
                                 reason="needs ../shared/data/vocab (deberta-v3 spm.model and gpt2)")
TEXTS = ["A delight from start to finish.", "Tedious."]


def _tensor_checks():
    """{return_tensors: (is_that_framework's_tensor, to_numpy)} for the frameworks installed."""
    checks = {"np": (lambda x: isinstance(x, np.ndarray), np.asarray)}
    try:
        import tensorflow as tf
        checks["tf"] = (lambda x: isinstance(x, tf.Tensor), lambda x: x.numpy())
    except ImportError:
        pass
    try:
        import torch
        checks["pt"] = (lambda x: isinstance(x, torch.Tensor), lambda x: x.numpy())
    except ImportError:
        pass
    try:
        import jax
        checks["jax"] = (lambda x: isinstance(x, jax.Array), np.asarray)
    except ImportError:
        pass
    return checks


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from keras_deberta import DebertaTokenizer, DebertaV2Tokenizer
    from keras_deepseek import DeepseekV2Tokenizer
    from test_deepseek_tokenizer import SMALL_CORPUS, build_deepseek_like_tokenizer

    deepseek_dir = str(tmp_path_factory.mktemp("deepseek_tok"))
    build_deepseek_like_tokenizer(deepseek_dir, SMALL_CORPUS)
    return {"v2": DebertaV2Tokenizer.from_pretrained(ref.write_v3_dir(tmp_path_factory.mktemp("v3"))),
            "v1": DebertaTokenizer.from_pretrained(ref.write_deberta_layout_dir(tmp_path_factory.mktemp("v1"))),
            "deepseek": DeepseekV2Tokenizer.from_pretrained(deepseek_dir)}


@needs_vocab
@pytest.mark.parametrize("kind", ["v2", "v1", "deepseek"])
def test_each_framework_gets_its_own_tensors_with_the_numpy_values(kind, tokenizers):
    tok = tokenizers[kind]
    want = tok(TEXTS, padding=True, return_tensors="np")
    checks = _tensor_checks()
    assert len(checks) == 4, f"the pinned environment has all four frameworks, got {sorted(checks)}"
    for name, (is_tensor, as_numpy) in checks.items():
        got = tok(TEXTS, padding=True, return_tensors=name)
        assert set(got) == set(want)
        for key in want:
            assert is_tensor(got[key]), (name, key, type(got[key]))
            np.testing.assert_array_equal(as_numpy(got[key]), want[key])


@needs_vocab
def test_transformers_tensor_type_enum_and_pad_and_prepare_for_model(tokenizers):
    transformers = pytest.importorskip("transformers")
    import torch

    tok = tokenizers["v2"]
    got = tok(TEXTS, padding=True, return_tensors=transformers.TensorType.PYTORCH)
    assert isinstance(got["input_ids"], torch.Tensor)
    rows = [tok(t) for t in TEXTS]
    padded = tok.pad([dict(r) for r in rows], return_tensors="pt")
    assert isinstance(padded["input_ids"], torch.Tensor)
    np.testing.assert_array_equal(padded["input_ids"].numpy(), got["input_ids"].numpy())
    one = tok.prepare_for_model(tok.convert_tokens_to_ids(tok.tokenize(TEXTS[0])), return_tensors="pt",
                                prepend_batch_axis=True)
    np.testing.assert_array_equal(one["input_ids"].numpy(), tok(TEXTS[:1], return_tensors="np")["input_ids"])
    with pytest.raises(ValueError, match="return_tensors='mlx'"):
        tok(TEXTS, return_tensors="mlx")


@needs_vocab
@pytest.mark.parametrize("kind", ["v2", "v1", "deepseek"])
def test_pad_to_max_length_is_transformers_4s_padding(kind, tokenizers):
    tok = tokenizers[kind]
    fixed = tok(TEXTS, pad_to_max_length=True, max_length=16, truncation=True, return_tensors="np")
    assert fixed["input_ids"].shape == (2, 16)
    np.testing.assert_array_equal(
        fixed["input_ids"], tok(TEXTS, padding="max_length", max_length=16, truncation=True,
                                return_tensors="np")["input_ids"])
    longest = tok(TEXTS, pad_to_max_length=True, return_tensors="np")  # no max_length: the longest row
    np.testing.assert_array_equal(longest["input_ids"], tok(TEXTS, padding=True, return_tensors="np")["input_ids"])


@needs_vocab
def test_transformers_tf_inference_script_runs_unchanged_but_for_the_import(tokenizers):
    """The usual transformers TF snippet, on whichever Keras backend runs the tests."""
    tf = pytest.importorskip("tensorflow")
    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    tokenizer = tokenizers["v2"]
    model = TFDebertaV2ForSequenceClassification(DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, relative_attention=True, position_buckets=16,
        pos_att_type=["p2c", "c2p"], num_labels=2))
    # --- as written for transformers' TFDebertaV2ForSequenceClassification -----------------------
    inputs = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="tf")
    outputs = model(inputs)
    probabilities = tf.nn.softmax(outputs.logits, axis=-1)
    predicted = tf.math.argmax(outputs.logits, axis=-1)
    single = model(**tokenizer(TEXTS[0], return_tensors="tf"))
    # ----------------------------------------------------------------------------------------------
    want = to_numpy(model(dict(tokenizer(TEXTS, padding=True, return_tensors="np"))).logits)
    np.testing.assert_allclose(to_numpy(outputs.logits), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities.numpy().sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(predicted.numpy(), want.argmax(-1))
    np.testing.assert_allclose(to_numpy(single.logits)[0], want[0], rtol=1e-4, atol=1e-5)
