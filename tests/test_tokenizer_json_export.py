"""Export with the in-graph tokenizer from a directory holding only tokenizer.json (what
transformers 5 saves for DeBERTa-v3) is refused before any work, with a message saying what to
provide, from the API and the CLI; `make demo MODEL=` falls back to an ids-in export. CLI errors
stay one line with their cause."""

import os

import pytest

import keras_deberta as kd
import tokenizer_cases as cases
import tokenizer_reference as ref
from presets.cli import one_line

pytestmark = pytest.mark.skipif(not os.path.isfile(cases.SPM_V3), reason="needs ../shared/data/vocab/deberta-v3")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def json_only_checkpoint(tmp_path_factory):
    """A tiny v3-vocabulary classifier whose tokenizer is tokenizer.json (+ its config) only."""
    directory = tmp_path_factory.mktemp("json_only")
    transformers.DebertaV2Tokenizer.from_pretrained(ref.write_v3_dir(tmp_path_factory.mktemp("v3"))).save_pretrained(
        str(directory))
    if os.path.exists(directory / "spm.model"):
        os.remove(directory / "spm.model")
    assert os.path.isfile(directory / "tokenizer.json")
    config = kd.DebertaV2Config(vocab_size=128100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=64, num_labels=2)
    kd.TFDebertaV2ForSequenceClassification(config).save_pretrained(str(directory))
    return str(directory)


def test_api_refuses_before_exporting(json_only_checkpoint, tmp_path):
    tokenizer = kd.DebertaV2Tokenizer.from_pretrained(json_only_checkpoint)
    assert tokenizer("Hello")["input_ids"]  # the Python tokenizer itself works
    model = kd.TFDebertaV2ForSequenceClassification.from_pretrained(json_only_checkpoint)
    target = tmp_path / "saved"
    with pytest.raises(NotImplementedError, match="needs the SentencePiece model \\(spm.model\\)"):
        model.export(str(target), preprocessor=tokenizer)
    assert not target.exists()


def test_cli_refuses_in_one_line_before_loading_the_model(json_only_checkpoint, tmp_path, capsys, monkeypatch):
    from keras_deberta import cli

    def no_model_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the tokenizer was refused")

    monkeypatch.setattr(cli.FAMILY, "load_model", no_model_load)
    status = cli.main(["export", "--model", json_only_checkpoint, "--task", "text-classification",
                       "--output", str(tmp_path / "saved"), "--with-tokenizer"])
    err = capsys.readouterr().err
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and "spm.model" in err, err


@pytest.mark.slow
def test_demo_falls_back_to_an_ids_in_export(json_only_checkpoint, tmp_path):
    from keras_deberta.demo import export_and_reload

    tokenizer = kd.DebertaV2Tokenizer.from_pretrained(json_only_checkpoint)
    model = kd.TFDebertaV2ForSequenceClassification.from_pretrained(json_only_checkpoint)
    signature, logits, note = export_and_reload(model, tokenizer, str(tmp_path / "saved"), "A delight.")
    assert signature == "serving_default" and logits.shape == (1, 2) and "spm.model" in note


def test_graph_errors_show_their_cause_in_one_line():
    error = ValueError("in user code:\n\n    File \"x.py\", line 3, in f\n        y = g(x)\n\n"
                       "    ValueError: No vocabulary has been set for SentencePieceTokenizer.\n")
    line = one_line(error, known=True)
    assert line.startswith("ValueError: No vocabulary has been set") and "\n" not in line


def test_convert_to_hf_writes_the_tokenizer_too(json_only_checkpoint, tmp_path, capsys):
    from keras_deberta import cli

    out = str(tmp_path / "hf")
    assert cli.main(["convert", "--model", json_only_checkpoint, "--task", "text-classification",
                     "--output", out, "--format", "hf"]) == 0
    text = "A delight from start to finish."
    want = transformers.AutoTokenizer.from_pretrained(json_only_checkpoint)(text)["input_ids"]
    assert transformers.AutoTokenizer.from_pretrained(out)(text)["input_ids"] == want
    assert kd.DebertaV2Tokenizer.from_pretrained(out)(text)["input_ids"] == want
