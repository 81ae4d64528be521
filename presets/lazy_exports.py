"""Package exports that can wait: `python -m keras_deberta --help` (or keras_deepseek) answers
without importing Keras, TensorFlow or JAX (seconds of start-up).

Run as `python -m <package>`, a package's public names are imported from their modules on first
use (PEP 562 `__getattr__`). Imported as a library, they are all imported at once, as before:
Keras' `load_model` finds our classes by their registration, which happens when their modules
are imported, so a plain `import keras_deberta` must import them.
"""

import importlib
import sys


def started_by_dash_m():
    """True while Python imports the parents of a `python -m` target: runpy keeps sys.argv[0] at
    "-m" until the target module itself starts (Python's documented behaviour), so this holds only
    for the package being run as a command, never for one imported by a script or by pytest."""
    return sys.argv[:1] == ["-m"]


def export(module_globals, exports):
    """Makes `exports` ({public name: defining module}) the names of the package whose globals
    are `module_globals`: imported now, or on first use when the package runs as a command."""
    if not started_by_dash_m():
        for name, module in exports.items():
            module_globals[name] = getattr(importlib.import_module(module), name)
        return

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {module_globals['__name__']!r} has no attribute {name!r}")
        value = module_globals[name] = getattr(importlib.import_module(exports[name]), name)
        return value

    def __dir__():
        return sorted(set(module_globals) | set(exports))

    module_globals["__getattr__"], module_globals["__dir__"] = __getattr__, __dir__
