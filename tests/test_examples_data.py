"""The transformers-style example without ../shared/data: SST-2 comes from the Hub's `datasets`
when online, and offline the script stops with one message naming what is missing."""

import pytest

datasets = pytest.importorskip("datasets")
pytest.importorskip("tensorflow")
from test_hf_tf_script import _example  # noqa: E402  (a fresh module each call)


def test_sst2_from_the_hub_then_a_clear_message_offline(tmp_path, monkeypatch):
    example = _example()
    monkeypatch.setattr(example, "SST2", str(tmp_path / "absent"))
    asked = []

    def hub(name, config, split):  # stands in for the Hub: no network in tests
        asked.append((name, config, split))
        return datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]})

    monkeypatch.setattr(example.datasets, "load_dataset", hub)
    rows = example.read_sst2("dev.tsv", 2)
    assert asked == [("glue", "sst2", "validation")] and rows["sentence"] == ["good", "bad"]

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(example.datasets, "load_dataset", offline)
    with pytest.raises(SystemExit, match="SST-2 is neither at .*absent.* nor downloadable from the Hub"):
        example.read_sst2("train.tsv", 10)
