"""A training script written for transformers' TF classes (examples/hf_tf_style_finetune.py:
`tokenizer(...)` through `datasets.map`, `prepare_tf_dataset`, `compile(optimizer)` without a loss,
`fit`, `save_pretrained`) runs unchanged except for its import line, and transformers' PyTorch
class loads what it saved with the same logits."""

import importlib.util
import os

import pytest

from harness import shared_data_path, to_numpy
from hf_reference import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("datasets")
pytest.importorskip("tensorflow")


def _example():
    spec = importlib.util.spec_from_file_location(
        "hf_tf_style_finetune", os.path.join(ROOT, "examples", "hf_tf_style_finetune.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shared_data_path("sentiment", "SST-2", "train.tsv") is None,
                    reason="needs ../shared/data/sentiment/SST-2")
def test_hf_tf_training_script_runs_unchanged_and_transformers_loads_the_result(tmp_path):
    import torch
    import transformers

    from keras_deberta import DebertaV2Tokenizer, TFDebertaV2ForSequenceClassification

    output = str(tmp_path / "finetuned")
    accuracy = _example().main(["--output", output, "--train-rows", "32", "--eval-rows", "32",
                                "--batch-size", "16", "--learning-rate", "1e-4"])
    assert 0.0 <= accuracy <= 1.0
    tokenizer = DebertaV2Tokenizer.from_pretrained(output)
    ours = TFDebertaV2ForSequenceClassification.from_pretrained(output)
    theirs = transformers.DebertaV2ForSequenceClassification.from_pretrained(output).eval()
    batch = tokenizer(["A delight from start to finish.", "Tedious, overlong and joyless."], padding=True,
                      return_tensors="np")
    with torch.no_grad():
        want = theirs(**{k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}).logits.numpy()
    got = to_numpy(ours(dict(batch)).logits)
    assert_close(got, want, what="logits of the saved fine-tuned model")
