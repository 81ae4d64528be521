"""The house's floors, read from the source (an AST walk, nothing imported): `layers` imports nothing
of ours; `presets` imports `layers` but never a model family; the families import `presets` and
`layers` but never each other; module-level imports between our modules form no cycle; and an
import of our own code inside a function exists only where an entry point defers a heavy stack
(listed below with the reason), never to dodge an import cycle."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("layers", "presets", "keras_deberta", "keras_deepseek")
ALLOWED = {
    "layers": {"layers"},
    "presets": {"layers", "presets"},
    "keras_deberta": {"layers", "presets", "keras_deberta"},
    "keras_deepseek": {"layers", "presets", "keras_deepseek"},
}
# Modules that may import our own code inside a function: command-line and demo entry points load
# the model stack (and TensorFlow) only for the subcommand that needs it, so `--help` and argument
# errors answer at once.
DEFERRED_IMPORTS_ALLOWED = {
    "keras_deberta.cli", "keras_deepseek.cli", "keras_deberta.demo", "keras_deberta.pipelines",
}


def _modules():
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield module.removesuffix(".__init__"), path


def _imports(path):
    """(imported module, line, at module level?) for every import statement, and importlib calls
    with a literal name (so a family cannot be reached by name at run time either)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from package import submodule` imports the submodule (not the package's __init__ alone).
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                name = full if full in _MODULE_NAMES else node.module
                found.append((name, node.lineno, id(node) in top_level))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((str(node.args[0].value), node.lineno, False))
    return found


MODULES = dict(_modules())
_MODULE_NAMES = set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_floors(module):
    package = module.split(".")[0]
    for imported, line, _ in _imports(MODULES[module]):
        target = imported.split(".")[0]
        if target in PACKAGES:
            assert target in ALLOWED[package], (
                f"{module} (line {line}) imports {imported}: {package} may import only {sorted(ALLOWED[package])}")


def test_our_imports_inside_functions_are_only_entry_points_deferring_work():
    offenders = []
    for module, path in MODULES.items():
        for imported, line, top in _imports(path):
            if not top and imported.split(".")[0] in PACKAGES and module not in DEFERRED_IMPORTS_ALLOWED:
                offenders.append(f"{module}:{line} imports {imported} inside a function")
    assert not offenders, "\n".join(offenders)


def test_module_level_imports_have_no_cycle():
    graph = {}
    for module, path in MODULES.items():
        edges = set()
        for imported, _, top in _imports(path):
            if top and imported.split(".")[0] in PACKAGES:
                # `from package import name` may name a submodule or an attribute: resolve to the
                # longest of our modules that the dotted name starts with.
                candidates = [m for m in MODULES if imported == m or imported.startswith(m + ".")]
                if candidates:
                    edges.add(max(candidates, key=len))
        graph[module] = edges - {module}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_check_sees_a_forbidden_arrow(tmp_path):
    """The walk itself: a presets module importing a family is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom keras_deberta import TFDebertaV2Model\n\ndef f():\n    import layers.moe\n")
    found = _imports(str(bad))
    assert ("keras_deberta", 2, True) in found and ("layers.moe", 5, False) in found
