import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")

# The suite runs hundreds of tiny models, each compiled once: on JAX most of its time is LLVM
# optimising XLA code that then runs a few times. Level 0 keeps XLA's graph optimisations and
# numerics (the parity tests hold the same tolerances) and skips LLVM's optimisation passes: the
# JAX suite went from 794 s to 614 s on the project machine (TensorFlow's suite did not change). Set before
# any backend starts; subprocesses the tests launch inherit it. Benchmarks do not set it.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

# Tests never reach the network: the Hub client must answer from the cache or fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow; run with RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def rng():
    return np.random.RandomState(1234)
