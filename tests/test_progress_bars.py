"""Checkpoint loads and saves over a size threshold show a tqdm bar over their bytes (as transformers
does); small ones show none."""

import pytest

import keras_deberta as kd
import presets.progress as progress
from harness import tiny_config, to_numpy


@pytest.fixture
def bars(monkeypatch):
    made = []

    class Bar:  # stands in for tqdm: records what a user would see
        def __init__(self, total, desc, **kwargs):
            self.total, self.desc, self.done, self.closed = total, desc, 0, False
            made.append(self)

        def update(self, n):
            self.done += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(progress, "_tqdm", Bar)
    return made


def test_small_checkpoints_show_no_bar(bars, tmp_path):
    cls = kd.TFDebertaV2Model
    cls(tiny_config(cls)).save_pretrained(str(tmp_path))
    cls.from_pretrained(str(tmp_path))
    assert bars == []


def test_large_saves_and_loads_count_every_byte(bars, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_MIN_BYTES", 1)  # the tiny model counts as large
    cls = kd.TFDebertaV2Model
    model = cls(tiny_config(cls))
    model.save_pretrained(str(tmp_path), max_shard_size="20KB")  # several shards, one bar
    cls.from_pretrained(str(tmp_path))
    size = sum(to_numpy(v).nbytes for v in model.weights)
    assert [b.desc.split()[0] for b in bars] == ["Saving", "Loading"]
    for bar in bars:
        assert bar.closed and bar.done == bar.total == size
