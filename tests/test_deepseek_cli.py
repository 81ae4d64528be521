"""`python -m keras_deepseek run | convert | export` in a subprocess on a tiny checkpoint directory,
checked against transformers; the generic layer (presets/cli.py) with a stub family in-process."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_deepseek_tokenizer import shared_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEW = 5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return shared_tiny_checkpoint(tmp_path_factory)


def cli(*args, stdin=None):
    """Runs `python -m keras_deepseek ARGS` with this process's backend, offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "keras_deepseek", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def _hf_logits(hf_model, ids):
    from deepseek_reference import hf_forward

    return hf_forward(hf_model, ids).logits.numpy()


def test_run_reads_stdin_and_prints_transformers_results(checkpoint):
    import transformers

    directory, hf_model, hf_tok = checkpoint
    prompts = ["The quick brown fox", "Who art thou? I am a tokenizer", "Keras"]
    # One batch (one compiled loop); batching of stdin lines is tested with the stub family below. A
    # blank line gets an error record in its place, so output line n answers input line n.
    done = cli("run", "--task", "text-generation", "--model", directory, "--max-new-tokens", str(NEW), "--greedy",
               "--batch-size", "4", stdin="\n".join(prompts[:2]) + "\n\n" + prompts[2] + "\n")
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ref = transformers.pipeline("text-generation", model=hf_model, tokenizer=hf_tok)(
        prompts, do_sample=False, max_new_tokens=NEW)
    assert lines == ref[:2] + [{"error": "empty line", "line": 3}] + ref[2:]
    assert "keras_deepseek: error: 1 input(s) failed" in done.stderr


def test_convert_writes_a_keras_file_holding_the_checkpoint(checkpoint, tmp_path):
    import keras

    import keras_deepseek  # noqa: F401  (registers the classes for load_model)
    from presets.mapping import collect_tensors
    from presets.readers import read_checkpoint

    directory = checkpoint[0]
    out = str(tmp_path / "tiny.keras")
    done = cli("convert", "--model", directory, "--output", out)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path)) == ["tiny.keras"]  # no staging leftovers
    model = keras.saving.load_model(out)
    # Every tensor, in transformers' names and layout, equals the one transformers saved.
    saved = collect_tensors(model.hf_weight_specs())
    reference = {k: np.asarray(v) for k, v in read_checkpoint(directory)[0].items()}
    assert sorted(saved) == sorted(reference)
    for name, value in saved.items():
        np.testing.assert_array_equal(value, reference[name], err_msg=name)
    # (That these tensors give transformers' logits in this class is test_deepseek_parity's job;
    # an eager forward here would cost seconds per backend.)
    assert model.config.to_dict() == type(model.config).from_pretrained(directory).to_dict()


def test_convert_to_a_sharded_bf16_hf_checkpoint(checkpoint, tmp_path):
    import torch
    import transformers

    directory, hf_model, _ = checkpoint
    out = str(tmp_path / "hf")
    done = cli("convert", "--model", directory, "--output", out, "--format", "hf", "--dtype", "bfloat16",
               "--max-shard-size", "30KB")
    assert done.returncode == 0, done.stderr
    assert os.path.exists(os.path.join(out, "model.safetensors.index.json"))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert theirs.dtype == torch.bfloat16
    for name, value in hf_model.state_dict().items():  # float32 -> bf16 rounds as torch rounds
        assert torch.equal(theirs.state_dict()[name], value.to(torch.bfloat16)), name
    bad = cli("convert", "--model", directory, "--output", str(tmp_path / "x"), "--format", "hf",
              "--max-shard-size", "lots")
    assert bad.returncode == 1 and "max_shard_size must be" in bad.stderr




def test_export_writes_a_saved_model_with_transformers_outputs(checkpoint, tmp_path):
    import tensorflow as tf

    directory, hf_model, _ = checkpoint
    out = str(tmp_path / "saved")
    done = cli("export", "--model", directory, "--output", out)
    assert done.returncode == 0, done.stderr[-3000:]
    serve = tf.saved_model.load(out).signatures["serving_default"]
    ids = np.random.RandomState(1).randint(3, 100, size=(2, 6)).astype("int32")
    got = serve(input_ids=tf.constant(ids), attention_mask=tf.ones_like(ids))["logits"].numpy()
    ref = _hf_logits(hf_model, ids)
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=0)


def test_errors_are_one_line_without_traceback(checkpoint, tmp_path, capsys):
    from keras_deepseek.cli import main

    not_a_checkpoint = cli("run", "--task", "text-generation", "--model", str(tmp_path), "hello")
    assert not_a_checkpoint.returncode == 1 and not_a_checkpoint.stdout == ""
    assert f"keras_deepseek: error: no config.json in {tmp_path}" in not_a_checkpoint.stderr
    assert "Traceback" not in not_a_checkpoint.stderr
    # The same entry point in-process (a subprocess each costs seconds of imports).
    assert main(["run", "--task", "summarization", "--model", checkpoint[0], "hello"]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("keras_deepseek: error: unknown task 'summarization'; keras_deepseek supports: "
                            "text-generation\n") and captured.out == ""
    existing = tmp_path / "model.keras"
    existing.write_text("not a model")
    assert main(["convert", "--model", checkpoint[0], "--output", str(existing)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["convert", "--model", checkpoint[0], "--output", str(tmp_path / "model.h5")]) == 1
    assert "must end in .keras" in capsys.readouterr().err
    assert existing.read_text() == "not a model"


# --- the generic layer, with a stub family (no model) ---------------------------------------------
def _stub_family(calls):
    from presets.cli import CliFamily

    def make_pipeline(task, model, tokenizer=None):
        def run(texts, **options):
            calls.append((list(texts), options))
            return [[{"upper": t.upper(), "n": np.int64(len(t))}] for t in texts]
        return run

    def add_run_arguments(parser):
        parser.add_argument("--shout", action="store_true")

    return CliFamily(prog="stub", description="a stub", tasks=("shout", "whisper"), make_pipeline=make_pipeline,
                     load_model=lambda task, name: (_ for _ in ()).throw(ValueError(f"no model at {name}")),
                     add_run_arguments=add_run_arguments, call_options=lambda args: {"shout": args.shout})


def test_generic_cli_batches_stdin_and_prints_json_lines(capsys):
    from presets.cli import main

    calls = []
    out = io.StringIO()
    status = main(_stub_family(calls), ["run", "--task", "shout", "--model", "m", "--batch-size", "2", "--shout"],
                  stdin=io.StringIO("ab\n  \nc d\r\néé\n"), stdout=out)
    assert status == 0
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        [{"upper": "AB", "n": 2}], [{"upper": "  ", "n": 2}], [{"upper": "C D", "n": 3}], [{"upper": "ÉÉ", "n": 2}]]
    assert calls == [(["ab", "  "], {"shout": True}), (["c d", "éé"], {"shout": True})]
    # Positional texts go in one call, stdin unread.
    calls.clear()
    assert main(_stub_family(calls), ["run", "--task", "shout", "--model", "m", "x", "y"],
                stdin=io.StringIO("never read\n"), stdout=io.StringIO()) == 0
    assert calls == [(["x", "y"], {"shout": False})]


def test_generic_cli_errors(capsys, tmp_path):
    from presets.cli import main

    family = _stub_family([])
    assert main(family, ["run", "--task", "sing", "--model", "m", "x"]) == 1
    assert capsys.readouterr().err.strip() == "stub: error: unknown task 'sing'; stub supports: shout, whisper"
    assert main(family, ["run", "--task", "shout", "--model", "m"], stdin=io.StringIO("")) == 1
    assert "no input" in capsys.readouterr().err
    assert main(family, ["convert", "--model", "nowhere", "--output", str(tmp_path / "x.keras")]) == 1
    assert capsys.readouterr().err.strip() == "stub: error: no model at nowhere"
    with pytest.raises(SystemExit) as exit_info:  # argparse's own usage errors: status 2
        main(family, ["run", "--task", "shout", "--model", "m", "--batch-size", "0", "x"])
    assert exit_info.value.code == 2
