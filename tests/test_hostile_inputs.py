"""The hostile-input corpus of issue 31: configs and `.keras` files that claim huge sizes, wrong
field types, overlapping or gapped safetensors bytes, killed saves, tokenizer arguments that would
allocate without bound, raw errors of models, `generate` and the exported signatures.

Each case is one test. They run in a subprocess (tests/hostile_worker.py) under an address-space
cap of 4 GiB (RLIMIT_AS: importing TF, JAX or torch with Keras fits well under it, so no
per-backend tuning is needed), so a regression that allocates without bound is a failed test, not
a killed CI; a case that runs past 20 s is interrupted. Importing a backend costs seconds, so the
cases share one process per backend run (plus one for the SavedModel cases on TensorFlow), which
reports each case separately (JSON). Every case
must answer in well under a second of its own time (fixtures are built before its clock starts).

The SavedModel cases run on the TensorFlow backend only (the artifact and its checks are the same
whichever backend exported it; tests/test_export.py exports from each).
"""

import json
import os
import subprocess
import sys

import keras
import pytest

import hostile_worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()
CASE_SECONDS = 1.0  # "well under a second": a passing case takes milliseconds

CASES = hostile_worker.list_cases()
# One process per backend runs the corpus; on TensorFlow a second one exports and serves a
# SavedModel (in the first, after dozens of models, TF's reserved address space would leave the
# export too little of the cap).
GROUPS = {"corpus": [c for c in CASES if not c.startswith("serving_")],
          "serving": [c for c in CASES if c.startswith("serving_")] if BACKEND == "tensorflow" else []}
_RESULTS = {}


def _run_group(group, tmp_path_factory):
    """(results per case, the worker's exit status, the end of its stderr), once per group."""
    if group not in _RESULTS:
        out = str(tmp_path_factory.mktemp("hostile") / f"{group}.json")
        done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "hostile_worker.py"), REPO, out,
                               ",".join(GROUPS[group])], capture_output=True, text=True, timeout=900,
                              env=dict(os.environ, KERAS_BACKEND=BACKEND))
        results = {}
        if os.path.exists(out):
            with open(out) as f:
                results = json.load(f)
        _RESULTS[group] = (results, done.returncode, done.stderr[-3000:])
    return _RESULTS[group]


@pytest.mark.parametrize("case", CASES)
def test_hostile_input(case, tmp_path_factory):
    group = next((g for g, cases in GROUPS.items() if case in cases), None)
    if group is None:
        pytest.skip("SavedModel signature cases run on the TensorFlow backend")
    results, returncode, stderr = _run_group(group, tmp_path_factory)
    if case not in results:
        pytest.fail(f"the worker did not report {case} (exit status {returncode}); its stderr ends:\n{stderr}")
    result = results[case]
    assert result["error"] is None, result["error"]
    assert result["seconds"] < CASE_SECONDS, f"{case} took {result['seconds']:.2f} s"
