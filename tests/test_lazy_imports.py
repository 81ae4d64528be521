"""`import keras_deberta, keras_deepseek` on JAX and PyTorch loads neither TensorFlow nor keras-hub
(seconds of start-up and ~700 MB of memory, plus TensorFlow's log lines on stderr): they are imported
when an in-graph preprocessor or an export is used. Each check runs in a fresh interpreter, whatever
the backend of this test run."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

PROBE = """
import sys

def loaded():
    return ",".join(name for name in ("tensorflow", "keras_hub") if name in sys.modules) or "none"

import keras_deberta, keras_deepseek
print("after import:", loaded())
{then}
print("after that:", loaded())
"""


def _run(backend, then):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # TensorFlow's C++ log lines would show on stderr
    return subprocess.run([sys.executable, "-c", PROBE.format(then=then)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_import_and_one_text_through_the_command_line_load_no_tensorflow_and_log_nothing(backend):
    done = _run(backend, then="from keras_deberta.cli import main\n"
                              "assert main(['run', '--task', 'sentiment-analysis', 'A delight.']) == 0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "after import: none" and lines[-1] == "after that: none"
    assert '"label": "POSITIVE"' in lines[1]
    assert done.stderr == ""


def test_the_in_graph_preprocessor_loads_what_it_needs_when_it_is_built():
    tokenizer_dir = os.path.join(ROOT, "keras_deberta", "assets", "sst2-tiny")
    done = _run("jax", then="from keras_deberta import DebertaV2Preprocessor, DebertaV2Tokenizer\n"
                            f"layer = DebertaV2Preprocessor(DebertaV2Tokenizer.from_pretrained({tokenizer_dir!r}))\n"
                            "print(layer(['a fine film'])['input_ids'].tolist())")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "after import: none" and lines[-1] == "after that: tensorflow,keras_hub"
    assert lines[1].startswith("[[1, ") and lines[1].endswith(", 2]]")
