"""Quiet and quick: `python -m keras_deberta --help` (and keras_deepseek) answers without importing
Keras or any backend, and nothing of ours lets TensorFlow's C++ log lines reach stderr unless the
user sets TF_CPP_MIN_LOG_LEVEL. Each check runs in a fresh interpreter, whatever the test run's
backend."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

# TensorFlow's C++ logging: "I0000 00:00:... port.cc:153] ...", absl's preamble, oneDNN's notice.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d|WARNING: All log messages before absl)|oneDNN|cuda drivers")
HEAVY = ("keras", "tensorflow", "jax", "torch")


def _run(args, backend="tensorflow"):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1")
    for name in ("TF_CPP_MIN_LOG_LEVEL", "PRESETS_QUIET_TENSORFLOW"):  # as a user's shell has them
        env.pop(name, None)
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("package", ["keras_deberta", "keras_deepseek"])
def test_help_imports_no_keras_and_logs_nothing(package):
    done = _run(["-m", package, "--help"])
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stderr
    assert done.stderr == ""
    timed = _run(["-X", "importtime", "-m", package, "--help"])  # every import, one stderr line each
    imported = {line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines() if line.startswith("import time")}
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY)
    assert not heavy, f"--help imported {heavy[:5]}"


def test_a_model_on_tensorflow_leaves_no_tensorflow_log_line():
    probe = ("import numpy as np\nimport keras_deberta as kd\n"
             "model = kd.TFDebertaV2Model(kd.DebertaV2Config(vocab_size=50, hidden_size=8, num_hidden_layers=1, "
             "num_attention_heads=2, intermediate_size=16, max_position_embeddings=32))\n"
             "print(model(np.ones((1, 4), 'int32')).last_hidden_state.shape)\n")
    done = _run(["-c", probe], backend="tensorflow")
    assert done.returncode == 0, done.stderr
    assert "(1, 4, 8)" in done.stdout
    noisy = [line for line in done.stderr.splitlines() if TF_LOG_LINE.search(line)]
    assert not noisy, noisy
