"""The in-graph preprocessing layers bound their rows: `max_length` truncates (transformers'
strategies) and pads only to the batch's longest row; with truncation off a longer row is an error,
never a silent cut (inside tf.data or a SavedModel an InvalidArgumentError; in an eager call on any
backend a ValueError carrying the same message). Checked against the Python tokenizer on the
built-in classifier's vocabulary."""

import os

import keras
import numpy as np
import pytest

from conftest import ROOT

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_text")
pytest.importorskip("keras_hub")

DEFAULT = os.path.join(ROOT, "keras_deberta", "assets", "sst2-tiny")
TEXTS = ["a warm , funny and moving film that never lets up for a single minute", "dull"]


@pytest.fixture(scope="module")
def tokenizer():
    from keras_deberta import DebertaV2Tokenizer

    return DebertaV2Tokenizer.from_pretrained(DEFAULT)


def _numpy(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


@pytest.mark.parametrize("truncation", ["longest_first", "only_first"])
def test_max_length_truncates_as_the_python_tokenizer_and_pads_to_the_longest_row(tokenizer, truncation):
    from keras_deberta import DebertaV2Preprocessor

    layer = DebertaV2Preprocessor(tokenizer, max_length=8, truncation=truncation)
    got = _numpy(layer(TEXTS))
    want = tokenizer(TEXTS, truncation=truncation, max_length=8, padding=True, return_tensors="np")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(got[key], want[key])
    assert got["input_ids"].shape == (2, 8)
    short = _numpy(layer(["dull", "ok"]))
    longest = max(len(ids) for ids in tokenizer(["dull", "ok"])["input_ids"])
    assert short["input_ids"].shape == (2, longest) and longest < 8  # padded to the longest row, not to 8
    pairs = _numpy(layer((TEXTS, ["a film", "about nothing at all"])))
    want = tokenizer(TEXTS, ["a film", "about nothing at all"], truncation=truncation, max_length=8, padding=True,
                     return_tensors="np")
    np.testing.assert_array_equal(pairs["input_ids"], want["input_ids"])


@pytest.mark.parametrize("bound", [{"max_length": 8}, {"sequence_length": 8}])
def test_without_truncation_a_longer_row_is_an_error_not_a_silent_cut(tokenizer, bound):
    from keras_deberta import DebertaV2Preprocessor

    layer = DebertaV2Preprocessor(tokenizer, truncation=None, **bound)
    assert _numpy(layer(["dull"]))["input_ids"][0, :3].tolist() == tokenizer("dull")["input_ids"]
    with pytest.raises(ValueError, match="text too long: more than 8 tokens and truncation is off"):
        layer(TEXTS)


def test_bad_bounds_are_named(tokenizer):
    from keras_deberta import DebertaV2Preprocessor

    with pytest.raises(ValueError, match="not both"):
        DebertaV2Preprocessor(tokenizer, sequence_length=8, max_length=8)
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        DebertaV2Preprocessor(tokenizer, max_length=0)
