"""A serving soak: 200 random requests, valid and hostile mixed, against one model per backend and
against one exported SavedModel. Every hostile request (ids at and past the table's edges, negative
ids, 64-bit ids, float ids, wrong ranks, masks and token types of another shape, zero length) gets a clear error; every valid request gets the same answer it got before the stream
started; resident memory stays within a stated bound."""

import resource

import keras
import numpy as np
import pytest

import keras_deberta as kd
from harness import perturb_variables, tiny_config, to_numpy

REQUESTS = 200
# Growth of peak RSS allowed over the whole stream, after the first pass compiled each valid shape.
RSS_BOUND_MB = 150
VALID_SHAPES = ((2, 7), (3, 12))


def _errors():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return (ValueError, TypeError, tf.errors.InvalidArgumentError)
    return (ValueError, TypeError)


def _valid(rng, config, shape):
    ids = rng.randint(0, config.vocab_size, size=shape).astype("int32")
    mask = (rng.rand(*shape) > 0.2).astype("int32")
    mask[:, 0] = 1
    types = rng.randint(0, config.type_vocab_size, size=shape).astype("int32")
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _hostile(rng, config, good):
    """One edit of a valid request that must be refused."""
    ids = good["input_ids"]
    bad = dict(good)
    kind = rng.randint(10)
    if kind == 0:
        bad["input_ids"] = ids.copy()
        bad["input_ids"].flat[rng.randint(ids.size)] = config.vocab_size  # one past the table
    elif kind == 1:
        bad["input_ids"] = ids.copy()
        bad["input_ids"].flat[rng.randint(ids.size)] = -1
    elif kind == 2:
        bad["input_ids"] = ids.astype("int64")
        bad["input_ids"].flat[0] = 2**32 + 3  # wraps to a valid id in int32
    elif kind == 3:
        bad["input_ids"] = ids.copy()
        bad["input_ids"].flat[0] = 2**31 - 1
    elif kind == 4:
        bad["input_ids"] = ids.astype("float32") + 0.5
    elif kind == 5:
        bad["input_ids"] = ids[0]  # rank 1
    elif kind == 6:
        bad["attention_mask"] = good["attention_mask"][:, :-1]
    elif kind == 7:
        bad["token_type_ids"] = np.full_like(ids, config.type_vocab_size)
    elif kind == 8:
        bad = {k: v[:, :0] for k, v in good.items()}  # zero length
    else:
        bad = {k: v[:, None] for k, v in good.items()}  # rank 3 for a rank-2 model
    return kind, bad


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_two_hundred_mixed_requests_leave_answers_and_memory_unchanged():
    cls = kd.TFDebertaV2ForSequenceClassification
    config = tiny_config(cls, type_vocab_size=2, max_position_embeddings=16, position_biased_input=True)
    model = perturb_variables(cls(config))
    rng = np.random.RandomState(0)
    requests = {shape: _valid(rng, config, shape) for shape in VALID_SHAPES}
    # Answers before any hostile request, through both routes a server uses.
    want = {shape: to_numpy(model.predict_on_batch(r)["logits"]) for shape, r in requests.items()}
    for shape, r in requests.items():
        np.testing.assert_allclose(to_numpy(model(r).logits), want[shape], rtol=1e-5, atol=1e-6)
    baseline = _peak_rss_mb()
    refused = np.zeros(10, dtype=int)
    for i in range(REQUESTS):
        shape = VALID_SHAPES[rng.randint(len(VALID_SHAPES))]
        call = (lambda r: to_numpy(model.predict_on_batch(r)["logits"])) if i % 4 else \
            (lambda r: to_numpy(model(r).logits))
        if rng.rand() < 0.5:
            kind, bad = _hostile(rng, config, requests[shape])
            with pytest.raises(_errors()):
                call(bad)
            refused[kind] += 1
        else:
            np.testing.assert_allclose(call(requests[shape]), want[shape], rtol=1e-5, atol=1e-6,
                                       err_msg=f"request {i} after {refused.sum()} refused ones")
    assert refused.min() > 0, f"every kind of hostile request was tried: {refused}"
    growth = _peak_rss_mb() - baseline
    assert growth < RSS_BOUND_MB, f"peak RSS grew by {growth:.0f} MB over {REQUESTS} requests"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="one SavedModel for all backends; exported and soaked in the tensorflow run")
def test_exported_saved_model_refuses_hostile_requests_and_keeps_answering(tmp_path):
    import tensorflow as tf

    cls = kd.TFDebertaV2ForSequenceClassification
    config = tiny_config(cls, type_vocab_size=2, max_position_embeddings=16, position_biased_input=True)
    model = perturb_variables(cls(config))
    model.export(str(tmp_path / "serving"))
    serve = tf.saved_model.load(str(tmp_path / "serving")).signatures["serving_default"]
    rng = np.random.RandomState(1)
    requests = {shape: _valid(rng, config, shape) for shape in VALID_SHAPES}
    want = {shape: to_numpy(model.predict_on_batch(r)["logits"]) for shape, r in requests.items()}
    baseline = _peak_rss_mb()
    refused = 0
    for i in range(REQUESTS):
        shape = VALID_SHAPES[rng.randint(len(VALID_SHAPES))]
        if rng.rand() < 0.5:
            kind, bad = _hostile(rng, config, requests[shape])
            if kind in (2, 4, 5, 9):  # the signature's dtype and rank refuse these before the graph runs
                bad = {k: tf.constant(v) for k, v in bad.items()}
                errors = (TypeError, ValueError, tf.errors.InvalidArgumentError)
            else:
                errors = (tf.errors.InvalidArgumentError,)
            with pytest.raises(errors):
                serve(**bad)
            refused += 1
        else:
            got = serve(**{k: tf.constant(v) for k, v in requests[shape].items()})["logits"].numpy()
            np.testing.assert_allclose(got, want[shape], rtol=1e-5, atol=1e-6, err_msg=f"request {i}")
    assert refused > REQUESTS // 4
    growth = _peak_rss_mb() - baseline
    assert growth < RSS_BOUND_MB, f"peak RSS grew by {growth:.0f} MB over {REQUESTS} requests"
