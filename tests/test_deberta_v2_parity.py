"""DebertaV2Model parity with transformers 5.x on perturbed random checkpoints (every backend)."""

import keras
import numpy as np
import pytest

from hf_reference import V2_VARIANTS, assert_close, build_hf_model, hf_config, hf_forward
from keras_deberta import DebertaV2Config, TFDebertaV2Model

LENGTH = 20


@pytest.fixture(scope="module", params=sorted(V2_VARIANTS))
def checkpoint(request, tmp_path_factory):
    config = hf_config(**V2_VARIANTS[request.param])
    model = build_hf_model(config)
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    return request.param, model, str(directory)


def _batch(rng, config, length=LENGTH):
    ids = rng.randint(1, config.vocab_size, size=(3, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, length - 6:] = 0  # right padding
    mask[2, :5] = 0  # left padding
    ids[mask == 0] = 0
    types = None
    if config.type_vocab_size > 0:
        types = rng.randint(0, config.type_vocab_size, size=ids.shape).astype("int32")
    return ids, mask, types


def test_last_hidden_state_and_hidden_states_match(checkpoint, rng):
    name, hf_model, directory = checkpoint
    ids, mask, types = _batch(rng, hf_model.config)
    ref = hf_forward(hf_model, ids, mask, types, output_hidden_states=True, output_attentions=True)
    model = TFDebertaV2Model.from_pretrained(directory)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types,
                output_hidden_states=True, output_attentions=True)
    valid = mask.astype(bool)
    assert_close(keras.ops.convert_to_numpy(out.last_hidden_state), ref.last_hidden_state.numpy(), valid,
                 what=f"{name} last_hidden_state")
    assert len(out.hidden_states) == len(ref.hidden_states) == hf_model.config.num_hidden_layers + 1
    for i, (got, want) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_close(keras.ops.convert_to_numpy(got), want.numpy(), valid, what=f"{name} hidden_states[{i}]")
    pair = valid[:, None, :, None] & valid[:, None, None, :]
    pair = np.broadcast_to(pair, ref.attentions[0].shape)
    for i, (got, want) in enumerate(zip(out.attentions, ref.attentions)):
        assert_close(keras.ops.convert_to_numpy(got), want.numpy(), pair, what=f"{name} attentions[{i}]")


def test_unpadded_longer_sequence_matches(checkpoint, rng):
    """Length 40 > max_relative_positions (6 or 8 buckets): clamped and bucketed distances."""
    name, hf_model, directory = checkpoint
    ids = rng.randint(1, hf_model.config.vocab_size, size=(2, 40)).astype("int32")
    types = np.ones_like(ids) if hf_model.config.type_vocab_size > 0 else None
    ref = hf_forward(hf_model, ids, token_type_ids=types).last_hidden_state.numpy()
    model = TFDebertaV2Model.from_pretrained(directory)
    got = model(ids, token_type_ids=types).last_hidden_state
    assert_close(keras.ops.convert_to_numpy(got), ref, what=f"{name} length 40")


def test_log_buckets_equal_transformers():
    import torch
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    from layers.relative_position import log_bucket_position, relative_position_rows

    distances = np.arange(-3000, 3001)
    for buckets, max_position in [(256, 512), (8, 64), (32, 100), (256, 1024), (6, 7)]:
        ref = make_log_bucket_position(torch.tensor(distances), buckets, max_position).long().numpy()
        np.testing.assert_array_equal(log_bucket_position(distances, buckets, max_position), ref)
        # The clipped row map over [-D, D] must agree with the reference's clamp at any distance.
        rows, max_distance = relative_position_rows(buckets, buckets, max_position)
        want = np.clip(ref + buckets, 0, 2 * buckets - 1)
        got = rows[np.clip(distances, -max_distance, max_distance) + max_distance]
        np.testing.assert_array_equal(got, want)


def test_calling_conventions_agree(checkpoint, rng):
    name, hf_model, directory = checkpoint
    ids, mask, types = _batch(rng, hf_model.config)
    model = TFDebertaV2Model.from_pretrained(directory)
    kwargs = {"token_type_ids": types} if types is not None else {}
    as_keywords = model(input_ids=ids, attention_mask=mask, **kwargs)
    as_dict = model({"input_ids": ids, "attention_mask": mask, **kwargs})
    as_list = model([ids, mask] + ([types] if types is not None else []))
    as_tuple = model(ids, attention_mask=mask, return_dict=False, **kwargs)
    want = keras.ops.convert_to_numpy(as_keywords.last_hidden_state)
    for out in (as_dict["last_hidden_state"], as_list[0], as_tuple[0]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), want)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    assert as_keywords.hidden_states is None and as_keywords.attentions is None


def test_random_init_model_runs_and_config_round_trips(tmp_path):
    config = DebertaV2Config(**hf_config(**V2_VARIANTS["v3_like"]).to_dict())
    model = TFDebertaV2Model(config)
    out = model(np.array([[5, 6, 7, 8]], dtype="int32"))
    assert tuple(out.last_hidden_state.shape) == (1, 4, 32)
    assert np.isfinite(keras.ops.convert_to_numpy(out.last_hidden_state)).all()
