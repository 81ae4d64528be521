# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=
# Test files run on this many processes (pytest-xdist; one file stays on one worker so its
# module fixtures are built once). The tests are tiny models: Python-bound, one core each.
PYTEST_WORKERS ?= 2

.PHONY: venv demo test notebooks bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly: the CPU wheel of this version lies on the project machine's disk.
	$(PY) -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[tensorflow,jax,torch,test,notebooks,serving]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m keras_deberta.demo $(if $(MODEL),--model $(MODEL),)

# pytest once per backend; every backend runs even if one fails, then the target fails.
test: venv
	@status=0; for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b ==="; \
	  KERAS_BACKEND=$$b $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) || status=1; \
	done; exit $$status

# Execute every Colab notebook on its small CPU settings (CI runs this after the tests).
notebooks: venv
	$(PY) notebooks/run_notebooks.py

bench: venv
	$(PY) benchmarks/encoder.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
