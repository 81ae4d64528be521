"""DebertaV2Config: HF field names and defaults, round trips, registry configs."""

import json

import pytest

from keras_deberta import CheckpointError, DebertaV2Config
from presets import KNOWN_CHECKPOINTS, list_known


def test_defaults_equal_transformers():
    import transformers

    ours, theirs = DebertaV2Config(), transformers.DebertaV2Config()
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                "type_vocab_size", "initializer_range", "layer_norm_eps", "relative_attention",
                "max_relative_positions", "pad_token_id", "position_biased_input", "pos_att_type",
                "pooler_dropout", "pooler_hidden_act", "legacy", "pooler_hidden_size", "num_labels"):
        assert getattr(ours, key) == getattr(theirs, key), key


def test_pos_att_type_string_or_list():
    assert DebertaV2Config(pos_att_type="p2c|c2p").pos_att_type == ["p2c", "c2p"]
    assert DebertaV2Config(pos_att_type=["c2p"]).pos_att_type == ["c2p"]
    assert DebertaV2Config(pos_att_type=" C2P | p2c ").pos_att_type == ["c2p", "p2c"]


def test_round_trip_keeps_unknown_keys_and_transformers_reads_it(tmp_path):
    import transformers

    config = DebertaV2Config(hidden_size=64, num_attention_heads=4, position_buckets=16, share_att_key=True,
                             norm_rel_ebd="layer_norm", conv_kernel_size=3, conv_act="gelu",
                             id2label={0: "neg", 1: "pos"}, my_custom_field={"a": [1, 2]})
    config.save_pretrained(tmp_path)
    again = DebertaV2Config.from_pretrained(str(tmp_path))
    assert again == config
    assert again.my_custom_field == {"a": [1, 2]}
    assert again.id2label == {0: "neg", 1: "pos"} and again.label2id == {"neg": 0, "pos": 1}
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "deberta-v2" and raw["id2label"] == {"0": "neg", "1": "pos"}
    theirs = transformers.DebertaV2Config.from_pretrained(str(tmp_path))
    for key in ("hidden_size", "position_buckets", "share_att_key", "norm_rel_ebd", "conv_kernel_size",
                "conv_act", "id2label", "pooler_hidden_size", "attention_head_size", "embedding_size"):
        assert getattr(theirs, key) == getattr(again, key), key


def test_transformers_config_reads_back(tmp_path):
    import transformers

    theirs = transformers.DebertaV2Config(hidden_size=48, num_attention_heads=6, pos_att_type="c2p",
                                          position_buckets=32, num_labels=5)
    theirs.save_pretrained(tmp_path)
    ours = DebertaV2Config.from_pretrained(str(tmp_path))
    assert ours.hidden_size == 48 and ours.pos_att_type == ["c2p"] and ours.position_buckets == 32
    assert ours.num_labels == 5 and ours.attention_head_size == 8


def test_num_labels_override_replaces_label_maps(tmp_path):
    DebertaV2Config(id2label={0: "a", 1: "b"}).save_pretrained(tmp_path)
    config = DebertaV2Config.from_pretrained(str(tmp_path), num_labels=3)
    assert config.num_labels == 3 and config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_other_model_type_is_refused():
    with pytest.raises(CheckpointError, match="model_type 'deepseek_v2'"):
        DebertaV2Config.from_dict({"model_type": "deepseek_v2", "hidden_size": 8})


def test_invalid_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        DebertaV2Config.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("name", list_known("deberta-v2"))
def test_registry_configs_build_without_download(name):
    import transformers

    config = DebertaV2Config.from_pretrained(name)
    theirs = transformers.DebertaV2Config(**KNOWN_CHECKPOINTS[name])
    assert config.hidden_size == theirs.hidden_size and config.pos_att_type == theirs.pos_att_type
    assert config.relative_table_rows == 512
    assert config.hidden_size == config.num_attention_heads * config.attention_head_size


def test_registry_covers_the_known_checkpoints():
    for name in ("microsoft/deberta-v3-xsmall", "microsoft/deberta-v3-small", "microsoft/deberta-v3-base",
                 "microsoft/deberta-v3-large", "microsoft/mdeberta-v3-base", "microsoft/deberta-v2-xlarge",
                 "microsoft/deberta-v2-xxlarge", "microsoft/deberta-v2-xlarge-mnli",
                 "microsoft/deberta-v2-xxlarge-mnli", "microsoft/deberta-base", "microsoft/deberta-large"):
        assert name in KNOWN_CHECKPOINTS
