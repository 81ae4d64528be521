"""Start-up cost of the packages and of the command line, per Keras backend, each in a fresh process.

    python benchmarks/startup.py [--repeats 3] [--backends jax torch tensorflow] [--root DIR]

For each backend: `import keras` alone (the floor), `import keras_deberta, keras_deepseek` (wall
time, peak RSS, whether TensorFlow / keras-hub were imported, stderr lines), and one sentence through
`python -m keras_deberta run --task sentiment-analysis` on the built-in classifier (wall time of the
whole process). Medians over `--repeats` fresh processes. `--root` measures another checkout (e.g.
the main branch) with this same script, for before / after figures.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "A delight from start to finish."

# Runs in the child: imports, then reports what it cost.
PROBE = r"""
import json, resource, sys, time
start = time.perf_counter()
for name in sys.argv[1:]:
    __import__(name)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tensorflow": "tensorflow" in sys.modules, "keras_hub": "keras_hub" in sys.modules}),
      file=sys.__stdout__)
"""


def _env(root, backend):
    return dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=root, HF_HUB_OFFLINE="1")


def measure_import(root, backend, modules):
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], env=_env(root, backend), cwd=root,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr_lines"] = len(done.stderr.splitlines())
    return result


def measure_cli(root, backend):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "keras_deberta", "run", "--task", "sentiment-analysis", SENTENCE],
                   env=_env(root, backend), cwd=root, capture_output=True, check=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["jax", "torch", "tensorflow"])
    parser.add_argument("--root", default=ROOT, help="the checkout to measure (default: this one)")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"{root}; {cpu}, {os.cpu_count()} cores; median of {args.repeats} fresh processes")
    print(f"{'backend':<11}{'import keras':>13}{'import ours':>12}{'peak RSS MB':>12}{'TF loaded':>10}"
          f"{'keras-hub':>10}{'stderr':>7}{'CLI 1 text':>11}")
    for backend in args.backends:
        floor = statistics.median(measure_import(root, backend, ["keras"])["seconds"] for _ in range(args.repeats))
        ours = [measure_import(root, backend, ["keras_deberta", "keras_deepseek"]) for _ in range(args.repeats)]
        cli = statistics.median(measure_cli(root, backend) for _ in range(args.repeats))
        print(f"{backend:<11}{floor:>12.2f}s{statistics.median(r['seconds'] for r in ours):>11.2f}s"
              f"{statistics.median(r['peak_rss_mb'] for r in ours):>12.0f}{str(ours[0]['tensorflow']):>10}"
              f"{str(ours[0]['keras_hub']):>10}{ours[0]['stderr_lines']:>7}{cli:>10.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
