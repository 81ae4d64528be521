"""Executes the notebooks (CI: `make notebooks`) and checks that git holds them without outputs.

    python notebooks/run_notebooks.py                      # every notebooks/*.ipynb
    python notebooks/run_notebooks.py --backend torch X.ipynb

Each notebook runs in a fresh kernel of this interpreter with notebooks/ as working directory;
the first failing cell's error ends the run with a non-zero status.
"""

import argparse
import glob
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = os.path.dirname(os.path.abspath(__file__))


def unstripped(nb):
    """Cells that carry outputs or execution counts (notebooks are committed stripped)."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="default: every notebook in notebooks/")
    parser.add_argument("--backend", help="KERAS_BACKEND for the kernels (default: the notebooks' own, jax)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(glob.glob(os.path.join(HERE, "*.ipynb")))
    if not paths:
        sys.exit("no notebooks found")
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend  # the kernel inherits this environment
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    failed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        name = os.path.basename(path)
        dirty = unstripped(nb)
        if dirty:
            failed.append(name)
            print(f"FAIL {name}: outputs committed in cells {dirty}; run make_notebooks.py or strip them")
            continue
        start = time.time()
        client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                                resources={"metadata": {"path": HERE}})
        try:
            client.execute()
        except CellExecutionError as error:
            failed.append(name)
            print(f"FAIL {name} after {time.time() - start:.0f} s:\n{error}")
            continue
        print(f"ok   {name} in {time.time() - start:.0f} s ({os.environ.get('KERAS_BACKEND', 'jax')})")
    if failed:
        sys.exit(f"{len(failed)} notebook(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
