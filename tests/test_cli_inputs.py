"""The generic command line (presets/cli.py) under real traffic, with a stub family (no model):
output line n answers input line n, a bad input gets an error record (or stops the run), stdin is
read as bytes with a bound per line, every error is one line, and an unwritable output is refused
before the model loads. One test goes through a real `python -m keras_deberta` process."""

import io
import json
import os
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT


def _stub_family(calls, fail_on="bad", crash_on="crash"):
    """A family whose pipeline upper-cases texts, refuses any containing `fail_on` (ValueError) and
    has a bug on `crash_on` (ZeroDivisionError); loading a model always fails, naming the model."""
    from presets.cli import CliFamily

    def make_pipeline(task, model, tokenizer=None):
        def run(texts, **options):
            calls.append(list(texts))
            for text in texts:
                if fail_on in text:
                    raise ValueError(f"cannot take {text!r}")
                if crash_on in text:
                    return [1 / 0]
            return [{"upper": text.upper()} for text in texts]
        return run

    def load_model(task, name):
        raise ValueError(f"no model at {name}")

    return CliFamily(prog="stub", description="a stub", tasks=("shout",), make_pipeline=make_pipeline,
                     load_model=load_model)


def _run(argv, stdin, calls=None):
    from presets.cli import main

    out = io.StringIO()
    status = main(_stub_family([] if calls is None else calls), argv, stdin=stdin, stdout=out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_input_line_gets_one_output_line_and_a_bad_one_an_error_record(capsys):
    calls = []
    stdin = io.BytesIO(b"ab\n\nok bad one\n  \nc d\r\n\xff\xfeoops\n\xc3\xa9\xc3\xa9\n")
    status, lines = _run(["run", "--task", "shout", "--model", "m", "--batch-size", "3"], stdin, calls)
    assert lines == [
        {"upper": "AB"},
        {"error": "empty line", "line": 2},
        {"error": "cannot take 'ok bad one'", "line": 3},
        {"upper": "  "},  # whitespace is text: the family's pipeline decides what it takes
        {"upper": "C D"},
        {"error": "not UTF-8: byte 0xff at byte 1", "line": 6},
        {"upper": "ÉÉ"},
    ]
    # The batch with the bad line ran again one text at a time; the others ran whole.
    assert calls == [["ab", "ok bad one"], ["ab"], ["ok bad one"], ["  ", "c d"], ["éé"]]
    err = capsys.readouterr().err
    assert status == 1 and err == ("stub: error: 3 input(s) failed (error records on stdout); the first: "
                                   "line 2: empty line\n")


def test_text_streams_and_arguments_number_their_inputs_too(capsys):
    status, lines = _run(["run", "--task", "shout", "--model", "m"], io.StringIO("x\n\ny"))
    assert status == 1 and lines == [{"upper": "X"}, {"error": "empty line", "line": 2}, {"upper": "Y"}]
    status, lines = _run(["run", "--task", "shout", "--model", "m", "fine", "", "a bad one"], io.StringIO())
    assert status == 1 and lines == [{"upper": "FINE"}, {"error": "empty text argument", "line": 2},
                                     {"error": "cannot take 'a bad one'", "line": 3}]
    capsys.readouterr()


def test_on_error_stop_prints_what_came_before_and_names_the_line(capsys):
    stdin = io.BytesIO(b"one\ntwo\nthree bad\nfour\n")
    status, lines = _run(["run", "--task", "shout", "--model", "m", "--on-error", "stop"], stdin)
    assert status == 1 and lines == [{"upper": "ONE"}, {"upper": "TWO"}]
    assert capsys.readouterr().err == "stub: error: line 3: cannot take 'three bad'\n"


def test_a_line_longer_than_the_bound_is_skipped_without_reading_it_whole(capsys):
    stdin = io.BytesIO(b"short\n" + b"x" * 100 + b"\nafter\n" + b"y" * 11)
    status, lines = _run(["run", "--task", "shout", "--model", "m", "--max-line-bytes", "10"], stdin)
    too_long = "line longer than 10 bytes (--max-line-bytes)"
    assert lines == [{"upper": "SHORT"}, {"error": too_long, "line": 2}, {"upper": "AFTER"},
                     {"error": too_long, "line": 4}]
    assert status == 1
    capsys.readouterr()


def test_no_input_is_an_error_before_any_model_loads(capsys):
    calls = []
    status, lines = _run(["run", "--task", "shout", "--model", "m"], io.BytesIO(b""), calls)
    assert status == 1 and lines == [] and calls == []
    assert capsys.readouterr().err == "stub: error: no input: give TEXT arguments or pipe one text per line on stdin\n"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(capsys):
    status, _ = _run(["run", "--task", "shout", "--model", "m", "crash"], io.StringIO())
    assert status == 1
    assert capsys.readouterr().err == ("stub: error: ZeroDivisionError: division by zero "
                                       "(--debug shows the traceback)\n")
    with pytest.raises(ZeroDivisionError):
        _run(["--debug", "run", "--task", "shout", "--model", "m", "crash"], io.StringIO())


def test_argument_errors_are_one_line_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(["run", "--task", "shout", "--model", "m", "--on-error", "ignore", "x"], io.StringIO())
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("stub run: error: argument --on-error: invalid choice: 'ignore'") and err.count("\n") == 1


def _unwritable_directory(tmp_path):
    """A directory that takes no new file: read-only permissions, or (as root, whom permissions do
    not stop) sysfs, which refuses new files to everyone."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        return str(directory)
    return "/sys"


@pytest.mark.parametrize("command", [["convert"], ["export"], ["convert", "--format", "saved_model"]])
def test_an_unwritable_output_is_refused_before_the_model_loads(tmp_path, capsys, command):
    from presets.cli import main

    directory = _unwritable_directory(tmp_path)
    output = os.path.join(directory, "new", "model.keras" if command == ["convert"] else "saved")
    status = main(_stub_family([]), [*command, "--model", "m", "--output", output])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith(f"stub: error: cannot write {output}: {directory} does not take new files")
    assert "no model at" not in err  # the stub's loader was never called
    assert not os.path.exists(os.path.join(directory, "new"))


def test_a_real_process_reads_bytes_and_answers_every_line():
    """`python -m keras_deberta run` on the built-in classifier: stdin with a byte that is not UTF-8
    and a blank line between good lines."""
    from keras_deberta import pipeline

    good = ["a warm and funny film", "dull and lifeless"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "keras_deberta", "run", "--task", "sentiment-analysis"],
                          input=good[0].encode() + b"\n\xe9t\xe9\n\n" + good[1].encode() + b"\n",
                          capture_output=True, env=env, cwd=ROOT, timeout=300)
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    want = pipeline("text-classification")(good)
    assert lines[1:3] == [{"error": "not UTF-8: byte 0xe9 at byte 1", "line": 2}, {"error": "empty line", "line": 3}]
    assert [line["label"] for line in (lines[0], lines[3])] == [w["label"] for w in want]
    assert done.returncode == 1
    stderr = done.stderr.decode()  # TensorFlow, when it is the backend, logs a few lines of its own
    assert [line for line in stderr.splitlines() if line.startswith("keras_deberta")] == [
        "keras_deberta: error: 2 input(s) failed (error records on stdout); the first: line 2: not UTF-8: "
        "byte 0xe9 at byte 1"] and "Traceback" not in stderr
