"""prepare_tf_dataset pads batches to a few length buckets by default, so that a fit over rows of
many lengths compiles a bounded number of train steps (on JAX, one per input shape); transformers'
per-batch padding remains available (bucket_lengths=False, pad_to_multiple_of=)."""

import os

import keras
import numpy as np
import pytest

import keras_deberta as kd
import tokenizer_cases as cases
import tokenizer_reference as ref
from harness import tiny_config

pytestmark = pytest.mark.skipif(not os.path.isfile(cases.SPM_V3), reason="needs ../shared/data/vocab/deberta-v3")
pytest.importorskip("tensorflow")
# Two rows a batch, not shuffled: batch i's longest row has LONGEST[i] tokens, eight lengths.
LONGEST = [9, 11, 13, 15, 17, 19, 21, 23]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return kd.DebertaV2Tokenizer.from_pretrained(ref.write_v3_dir(tmp_path_factory.mktemp("v3")))


def _table():
    rng = np.random.RandomState(0)
    lengths = [n for longest in LONGEST for n in (longest - 4, longest)]
    ids = [rng.randint(3, 99, size=n).tolist() for n in lengths]
    return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids], "label": [i % 3 for i in range(len(ids))]}


def _widths(dataset):
    return sorted({int(x["input_ids"].shape[1]) for x, _ in dataset.as_numpy_iterator()})


def test_batches_are_padded_to_buckets_unless_asked_otherwise(tokenizer):
    model = kd.TFDebertaV2ForSequenceClassification(tiny_config(kd.TFDebertaV2ForSequenceClassification))
    prepare = lambda **kw: model.prepare_tf_dataset(_table(), batch_size=2, shuffle=False,  # noqa: E731
                                                    tokenizer=tokenizer, **kw)
    assert _widths(prepare()) == [16, 24]
    assert _widths(prepare(bucket_lengths=False)) == LONGEST  # transformers' DataCollatorWithPadding
    assert _widths(prepare(pad_to_multiple_of=8)) == [16, 24]
    first = next(prepare().as_numpy_iterator())[0]
    assert (first["attention_mask"].sum(axis=1) == [5, 9]).all()  # padding is masked, rows intact


def test_fit_over_varied_lengths_compiles_once_per_bucket(tokenizer):
    if keras.backend.backend() == "torch":
        pytest.skip("PyTorch runs the train step eagerly: nothing is compiled per shape")
    model = kd.TFDebertaV2ForSequenceClassification(tiny_config(kd.TFDebertaV2ForSequenceClassification))
    traces = []
    call = model.call

    def counting_call(*args, **kwargs):  # runs once per trace of the compiled train step
        traces.append(1)
        return call(*args, **kwargs)

    model.call = counting_call
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(model.prepare_tf_dataset(_table(), batch_size=2, shuffle=False, tokenizer=tokenizer), epochs=1,
              verbose=0)
    assert len(traces) <= 2, f"{len(traces)} traces of the train step for two length buckets"
