"""TensorFlow imported without its C++ log lines on stderr, unless the user asks for them.

TensorFlow 2.21 writes 5-10 lines to stderr while it is imported and when it first probes for
devices (absl's "All log messages before absl::InitializeLog()", oneDNN's notice, "Could not find
cuda drivers", CPU instruction flags, an E-level "failed call to cuInit" on machines without a GPU),
before its logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not hide them. Whoever imports
TensorFlow first (Keras on the TensorFlow backend, tf.data, an export), a finder installed on
`sys.meta_path` runs that one import, and the device probe, with file descriptor 2 pointed at
/dev/null, and TF_CPP_MIN_LOG_LEVEL=3 hides the lines TensorFlow logs later; Python exceptions still
propagate. Setting TF_CPP_MIN_LOG_LEVEL before importing this package keeps every line.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Gives "tensorflow" its real spec with a loader that runs TensorFlow's own loading silenced.
    A mere `importlib.util.find_spec("tensorflow")` (availability checks) imports nothing."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = _SilencedLoader(spec.loader, self)
                return spec
        return None


class _SilencedLoader(importlib.abc.Loader):
    def __init__(self, loader, finder):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)  # one import; later ones find TensorFlow in sys.modules
        module.__spec__.loader = self.loader
        module.__loader__ = self.loader
        with _stderr_silenced():
            self.loader.exec_module(module)
            with contextlib.suppress(Exception):  # the first device probe logs cuInit errors
                module.config.list_physical_devices()


# Set beside TF_CPP_MIN_LOG_LEVEL when this module sets it, so that a child process (the TensorFlow
# export subprocess) tells our setting from the user's and stays quiet too.
_MARKER = "PRESETS_QUIET_TENSORFLOW"


def install():
    """Installs the finder and sets TF_CPP_MIN_LOG_LEVEL=3 (TensorFlow's log lines after its
    logging starts: the E-level oneDNN / cuInit notices), unless TensorFlow is already imported
    or the user set TF_CPP_MIN_LOG_LEVEL (then they asked to see its logs)."""
    user_set = "TF_CPP_MIN_LOG_LEVEL" in os.environ and os.environ.get(_MARKER) != "1"
    if "tensorflow" in sys.modules or user_set:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ[_MARKER] = "3", "1"
    if not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
