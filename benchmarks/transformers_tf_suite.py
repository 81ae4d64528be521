"""Run transformers' own 4.x TF DeBERTa test suites against keras_deberta, only the imports changed.

transformers deleted its TF classes (and their tests) in 5.0; the last 4.x releases still have
tests/models/deberta{,_v2}/test_modeling_tf_*.py, the tokenizer suites and the mixins they use.
Given a directory holding those files (transformers' layout: <dir>/tests/...), this script copies
them to a scratch directory, rewrites every `from transformers... import` so that each name comes
from keras_deberta when keras_deberta exports it, else from the installed transformers when it
still has it, else from benchmarks/transformers_tf_shims.py, and runs pytest on each test file
with the chosen Keras backend. Test bodies are not touched.

It lives in benchmarks/ (outside pytest's testpaths) because it runs third-party code fetched by
hand and reports counts; `make test` never collects it.

    python benchmarks/transformers_tf_suite.py /tmp/tf-suite [--backend tensorflow] [-k EXPR]

Prints, per test file, passed / failed / set aside (tests no Keras 3 model can pass offline; each
with its reason) / skipped by transformers itself (@slow Hub downloads, unittest.skip), then every
failure with the first line of its error.
"""

import argparse
import ast
import collections
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHIM_MODULE = "tests._keras_shims"
TEST_FILES = (
    "tests/models/deberta/test_modeling_tf_deberta.py",
    "tests/models/deberta_v2/test_modeling_tf_deberta_v2.py",
    "tests/models/deberta/test_tokenization_deberta.py",
    "tests/models/deberta_v2/test_tokenization_deberta_v2.py",
)
# Tests set aside because no Keras 3 model can pass them offline; matched on the test's name
# (node id suffix). Each reason is printed with its count.
SET_ASIDE = {
    "test_pipeline_": "transformers' own pipeline classes (they run transformers' PyTorch/TF models)",
    "test_pt_tf_model_equivalence": "PT<->TF cross-loading (transformers' PyTorch classes against TF ones)",
    # It reads each embedding table with `table.value()`, TF-Keras 2's tf.Variable method; in Keras 3
    # `Variable.value` is a property, so any Keras 3 Embedding fails it (resizing itself is tested in
    # tests/test_hf_tf_conventions.py).
    "test_resize_token_embeddings": "TF-Keras 2 variable API (`Variable.value()`; a property in Keras 3)",
    # These look the tokenizer class up in transformers' TOKENIZER_MAPPING (whose entries 5.x changed)
    # to build transformers' own PyTorch / TF / Flax model for it.
    "test_tf_encode_plus_sent_to_model": "transformers' TOKENIZER_MAPPING and its own model classes",
    "test_torch_encode_plus_sent_to_model": "transformers' TOKENIZER_MAPPING and its own model classes",
    "test_np_encode_plus_sent_to_model": "transformers' TOKENIZER_MAPPING and its own model classes",
    # `functional_model.save(directory)`: a Keras-2 SavedModel; Keras 3 saves only .keras / .h5 files
    # (`model.export(dir)` writes the SavedModel, tested in tests/test_export.py).
    "test_compile_tf_model": "TF-Keras 2 SavedModel through `model.save(dir)` (Keras 3: .keras files; export() instead)",
}


def _shims():
    spec = importlib.util.spec_from_file_location("_transformers_tf_shims", os.path.join(HERE, "transformers_tf_shims.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has(module_name, name):
    try:
        return hasattr(importlib.import_module(module_name), name)
    except ImportError:
        return False


def _source_for(module_name, name, ours, shims):
    """Where the rewritten suite imports `name` (that `module_name` used to provide) from."""
    if module_name == "transformers.modeling_tf_utils" or module_name.startswith("transformers.generation"):
        return SHIM_MODULE if hasattr(shims, name) else module_name
    if module_name.startswith("transformers") and name in ours:
        return "keras_deberta"
    if _has(module_name, name):
        return module_name
    if hasattr(shims, name):
        return SHIM_MODULE
    return module_name  # let it fail loudly: a name nobody provides is a gap to report


def rewrite_imports(source, ours, shims):
    """`source` with each `from X import a, b` replaced by imports from where each name now lives
    (unchanged where X still has it), and the pipeline mixin's import pointed at its shim."""
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level == 0 and module != "__future__":
            targets = [(_source_for(module, a.name, ours, shims), a) for a in node.names]
        elif node.level > 0 and module == "test_pipeline_mixin":
            targets = [(SHIM_MODULE, a) for a in node.names]
        else:
            continue
        indent = lines[node.lineno - 1][:node.col_offset]
        grouped = collections.defaultdict(list)
        for target, alias in targets:
            grouped[target].append(alias.name + (f" as {alias.asname}" if alias.asname else ""))
        replacement = "".join(f"{indent}from {target} import {', '.join(names)}  # rewritten\n"
                              for target, names in grouped.items())
        edits.append((node.lineno - 1, node.end_lineno, replacement))
    for start, end, replacement in sorted(edits, reverse=True):
        lines[start:end] = [replacement]
    return "".join(lines)


HUB_LIST_REASON = "Hub download (the mixin's `tokenizers_list` loads `from_pretrained_id`, e.g. microsoft/deberta-base)"
HUB_ID_REASON = "Hub download (a checkpoint or tokenizer named by Hub id, e.g. microsoft/deberta-base)"
HUB_ID = re.compile(r"^[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$")


def _names_a_hub_id(node):
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) and HUB_ID.match(n.value)
               and not n.value.startswith(("fixtures/", "tests/")) for n in ast.walk(node))


def hub_tests(tests_dir):
    """{test name: reason} for the tests that need the Hub: those that iterate `self.tokenizers_list`
    (each entry is `from_pretrained(<Hub id>)`) and those whose body names a Hub id ("owner/name").
    Offline they test the network, not the model or tokenizer."""
    found = {}
    for root, _, files in os.walk(tests_dir):
        if os.path.relpath(root, tests_dir).startswith("utils"):
            continue  # transformers' own config-utility tests: never run here, and their names would collide
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(root, name), encoding="utf-8") as handle:
                source = handle.read()
            for node in ast.walk(ast.parse(source)):
                if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                    continue
                if "self.tokenizers_list" in ast.get_source_segment(source, node):
                    found[node.name] = HUB_LIST_REASON
                elif _names_a_hub_id(node):
                    found[node.name] = HUB_ID_REASON
    return found


CONFTEST = '''
import pytest

SET_ASIDE = {set_aside!r}  # name prefix -> reason
SET_ASIDE_EXACT = {exact!r}  # test name -> reason


def pytest_collection_modifyitems(items):
    for item in items:
        reason = SET_ASIDE_EXACT.get(item.name)
        reason = reason or next((r for prefix, r in SET_ASIDE.items() if item.name.startswith(prefix)), None)
        if reason:
            item.add_marker(pytest.mark.skip(reason="set aside: " + reason))
'''


def prepare(suite_dir, work_dir):
    """Copy the suite's tests/ into work_dir with rewritten imports, the shims and a conftest."""
    ours, shims = set(__import__("keras_deberta").__all__), _shims()
    # utils/test_module is transformers' custom-config fixture that tests/utils/ imports by path.
    for tree in ("tests", "utils"):
        if os.path.isdir(os.path.join(suite_dir, tree)):
            shutil.copytree(os.path.join(suite_dir, tree), os.path.join(work_dir, tree))
    for root, _, files in os.walk(os.path.join(work_dir, "tests")):
        for name in files:
            if name.endswith(".py") and name != "test_pipeline_mixin.py":
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(rewrite_imports(text, ours, shims))
    shutil.copy(os.path.join(HERE, "transformers_tf_shims.py"), os.path.join(work_dir, "tests", "_keras_shims.py"))
    # The pipeline mixin imports every transformers pipeline test module; it is read by the shim only.
    with open(os.path.join(work_dir, "tests", "conftest.py"), "w", encoding="utf-8") as handle:
        handle.write(CONFTEST.format(set_aside=SET_ASIDE, exact=hub_tests(os.path.join(work_dir, "tests"))))
    with open(os.path.join(work_dir, "pytest.ini"), "w", encoding="utf-8") as handle:
        handle.write("[pytest]\naddopts = -p no:cacheprovider\n")


def run_file(work_dir, test_file, backend, extra):
    report = os.path.join(work_dir, os.path.basename(test_file) + f".{backend}.xml")
    # RUN_SLOW: transformers marks test_keras_fit, test_compile_tf_model, test_saved_model_creation
    # and others @slow though they need no download; the ones that do are set aside by name.
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join([work_dir, REPO]),
               TF_CPP_MIN_LOG_LEVEL="3", RUN_SLOW="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x" if "-x" in extra else "", test_file,
               f"--junitxml={report}", "-c", os.path.join(work_dir, "pytest.ini"), "--rootdir", work_dir]
    command += [e for e in extra if e != "-x"]
    subprocess.run([c for c in command if c], cwd=work_dir, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return parse_report(report)


def _first_line(problem):
    """The error's own line: junit's message, or for a collection error the last `E ` line."""
    message = (problem.get("message") or "").strip()
    errors = [line[1:].strip() for line in (problem.text or "").splitlines() if line.startswith("E ")]
    if errors and (not message or message == "collection failure"):
        message = errors[-1]
    return message.splitlines()[0][:220] if message else ""


def parse_report(report):
    counts = collections.Counter()
    failures, set_aside = [], collections.Counter()
    if not os.path.exists(report):
        counts["collection error"] += 1
        return counts, [("<file>", "no report written")], set_aside
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            counts["failed"] += 1
            failures.append((name, _first_line(problem)))
        elif skipped is not None:
            reason = skipped.get("message") or ""
            reason = reason.split("set aside: ", 1)
            if len(reason) == 2:
                counts["set aside"] += 1
                set_aside[reason[1].strip()] += 1
            else:
                counts["skipped by transformers"] += 1
        else:
            counts["passed"] += 1
    return counts, failures, set_aside


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite_dir", help="directory holding transformers' tests/ tree (4.x, with the TF suites)")
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--files", nargs="*", default=list(TEST_FILES), help="test files, relative to suite_dir")
    parser.add_argument("--keep", help="rewrite into this directory and keep it (to rerun by hand)")
    args, extra = parser.parse_known_args(argv)
    work_dir = args.keep or tempfile.mkdtemp(prefix="transformers-tf-suite-")
    if args.keep and os.path.exists(work_dir):
        shutil.rmtree(work_dir)
    prepare(args.suite_dir, work_dir)
    total, reasons, all_failures = collections.Counter(), collections.Counter(), []
    print(f"KERAS_BACKEND={args.backend}; suite from {args.suite_dir}; rewritten into {work_dir}")
    print(f"{'file':58s} {'passed':>6s} {'failed':>6s} {'set aside':>9s} {'skipped':>7s}")
    for test_file in args.files:
        counts, failures, set_aside = run_file(work_dir, test_file, args.backend, extra)
        total.update(counts)
        reasons.update(set_aside)
        all_failures += [(os.path.basename(test_file), *f) for f in failures]
        print(f"{test_file:58s} {counts['passed']:6d} {counts['failed'] + counts['collection error']:6d} "
              f"{counts['set aside']:9d} {counts['skipped by transformers']:7d}", flush=True)
    print(f"{'total':58s} {total['passed']:6d} {total['failed'] + total['collection error']:6d} "
          f"{total['set aside']:9d} {total['skipped by transformers']:7d}")
    print("\nset aside:")
    for reason, count in reasons.most_common():
        print(f"  {count:4d}  {reason}")
    print("\nfailures:")
    for test_file, name, message in all_failures:
        print(f"  {test_file}::{name}: {message}")
    if not args.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if total["failed"] or total["collection error"] else 0


if __name__ == "__main__":
    sys.exit(main())
