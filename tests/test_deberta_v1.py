"""DeBERTa v1: encoder and heads equal transformers' on perturbed random checkpoints."""

import keras
import numpy as np
import pytest

import keras_deberta as kd
from hf_reference import V1_VARIANTS, assert_close, build_hf_model, hf_v1_config
from harness import to_numpy

B, L = 3, 20


def _batch(config, rng, shape=(B, L)):
    ids = rng.randint(1, config.vocab_size, size=shape).astype("int32")
    mask = np.ones_like(ids)
    mask[..., 1, L - 5:] = 0
    mask[..., 2, :4] = 0
    ids[mask == 0] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if config.type_vocab_size:
        inputs["token_type_ids"] = (np.arange(L) >= L // 2).astype("int32") * np.ones_like(ids)
    return inputs


def _torch(batch):
    import torch

    return {k: torch.tensor(v, dtype=torch.float32 if v.dtype.kind == "f" else torch.long) for k, v in batch.items()}


@pytest.fixture(scope="module", params=sorted(V1_VARIANTS))
def encoder_checkpoint(request, tmp_path_factory):
    model = build_hf_model(hf_v1_config(**V1_VARIANTS[request.param]), cls_name="DebertaModel", seed=4)
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    return request.param, model, str(directory)


def test_encoder_matches_transformers(encoder_checkpoint, rng):
    import torch

    name, hf_model, directory = encoder_checkpoint
    inputs = _batch(hf_model.config, rng)
    with torch.no_grad():
        ref = hf_model(**_torch(inputs), output_hidden_states=True, output_attentions=True)
    model = kd.TFDebertaModel.from_pretrained(directory)
    out = model(**inputs, output_hidden_states=True, output_attentions=True)
    valid = inputs["attention_mask"].astype(bool)
    for i, (got, want) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_close(to_numpy(got), want.numpy(), valid, what=f"{name} hidden_states[{i}]")
    assert_close(to_numpy(out.last_hidden_state), ref.last_hidden_state.numpy(), valid, what=f"{name} last")
    pair = np.broadcast_to(valid[:, None, :, None] & valid[:, None, None, :], ref.attentions[0].shape)
    for i, (got, want) in enumerate(zip(out.attentions, ref.attentions)):
        assert_close(to_numpy(got), want.numpy(), pair, what=f"{name} attentions[{i}]")


HEADS = {
    "mlm_legacy": ("TFDebertaForMaskedLM", "DebertaForMaskedLM", dict(legacy=True)),
    "mlm_lm_predictions": ("TFDebertaForMaskedLM", "DebertaForMaskedLM", dict(legacy=False)),
    "sequence_classification": ("TFDebertaForSequenceClassification", "DebertaForSequenceClassification",
                                dict(num_labels=3)),
    "token_classification": ("TFDebertaForTokenClassification", "DebertaForTokenClassification", dict(num_labels=4)),
    "question_answering": ("TFDebertaForQuestionAnswering", "DebertaForQuestionAnswering", {}),
}


def _labels(name, config, inputs, rng):
    ids = inputs["input_ids"]
    if name.startswith("mlm") or name == "token_classification":
        n = config.vocab_size if name.startswith("mlm") else config.num_labels
        labels = rng.randint(0, n, size=ids.shape).astype("int32")
        labels[inputs["attention_mask"] == 0] = -100
        return {"labels": labels}
    if name == "sequence_classification":
        return {"labels": np.array([2, 0, 1], dtype="int32")}
    return {"start_positions": np.array([1, 5, 3], "int32"), "end_positions": np.array([3, 9, 30], "int32")}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_heads_match_transformers(name, rng, tmp_path):
    import torch

    ours, theirs, overrides = HEADS[name]
    arch = V1_VARIANTS["talking_heads" if name == "sequence_classification" else "span_shorter_than_sequence"]
    hf_model = build_hf_model(hf_v1_config(**arch, **overrides), cls_name=theirs, seed=9)
    hf_model.save_pretrained(tmp_path)
    inputs = _batch(hf_model.config, rng)
    labels = _labels(name, hf_model.config, inputs, rng)
    with torch.no_grad():
        ref = hf_model(**_torch({**inputs, **labels}))
    model = getattr(kd, ours).from_pretrained(str(tmp_path))
    out = model(**inputs, **labels)
    for key in model.primary_output_names:
        want = ref[key].numpy()
        where = inputs["attention_mask"].astype(bool) if want.shape[:2] == (B, L) else None
        assert_close(to_numpy(out[key]), want, where, what=f"{name} {key}")
    assert_close(to_numpy(out.loss), ref.loss.numpy().reshape(1), what=f"{name} loss")  # HF TF: loss shape [1]
    # save_pretrained -> transformers: the same parameters come back.
    import transformers

    model.save_pretrained(str(tmp_path / "out"))
    back = getattr(transformers, theirs).from_pretrained(str(tmp_path / "out")).state_dict()
    for key, value in hf_model.state_dict().items():
        assert torch.equal(back[key], value), key


def test_multiple_choice_equals_the_sequence_classification_head_per_choice(rng, tmp_path):
    """transformers has no DebertaForMultipleChoice; ours is its v2 head on v1. Reference: HF's
    DebertaForSequenceClassification with one label (the same pooler + classifier) on every
    choice, reshaped to [batch, choices]."""
    import torch

    config = hf_v1_config(**V1_VARIANTS["relative_whole_length"], num_labels=1)
    scorer = build_hf_model(config, cls_name="DebertaForSequenceClassification", seed=6)
    scorer.save_pretrained(tmp_path)
    inputs = _batch(config, rng, shape=(B, 4, L))
    flat = {k: v.reshape(-1, L) for k, v in inputs.items()}
    with torch.no_grad():
        want = scorer(**_torch(flat)).logits.numpy().reshape(B, 4)
    labels = np.array([0, 3, 1], "int32")
    want_loss = torch.nn.functional.cross_entropy(torch.tensor(want), torch.tensor(labels, dtype=torch.long)).numpy()
    model = kd.TFDebertaForMultipleChoice.from_pretrained(str(tmp_path))
    out = model(**inputs, labels=labels)
    assert_close(to_numpy(out.logits), want, what="v1 multiple choice logits")
    assert_close(to_numpy(out.loss), want_loss.reshape(1), what="v1 multiple choice loss")


def test_v1_config_round_trip_and_fixed_architecture(tmp_path):
    import transformers

    config = kd.DebertaConfig(relative_attention=True, pos_att_type="c2p|p2c", talking_head=True,
                              position_buckets=256)  # a v2-only key: kept, never used
    assert config.position_buckets == -1 and config.fused_qkv
    config.save_pretrained(tmp_path)
    again = kd.DebertaConfig.from_pretrained(str(tmp_path))
    assert again == config and again.to_dict()["position_buckets"] == 256
    theirs = transformers.DebertaConfig.from_pretrained(str(tmp_path))
    assert theirs.pos_att_type == ["c2p", "p2c"] and theirs.talking_head is True
    with pytest.raises(kd.CheckpointError, match="model_type 'deberta-v2'"):
        kd.TFDebertaModel.from_pretrained  # noqa: B018 - the class exists
        kd.DebertaConfig.from_dict({"model_type": "deberta-v2"})


def test_v1_fit_on_own_loss():
    config = kd.DebertaConfig(**hf_v1_config(**V1_VARIANTS["talking_heads"], num_labels=2).to_dict())
    model = kd.TFDebertaForSequenceClassification(config)
    ids = np.random.RandomState(0).randint(5, 99, size=(16, 10)).astype("int32")
    labels = (ids[:, 0] % 2).astype("int32")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(ids, labels, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
