# One-command setup: every target that needs the environment depends on .venv/.installed.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
TORCH   ?= torch==2.13.0

.PHONY: setup system-deps run test lint bench experiments clean

setup: $(VENV)/.installed

# `pip install -e .` also compiles the row store (ps/server/native, pybind11 from the build deps).
# torch goes in first and explicitly: a plain `torch` requirement resolves to a CUDA build here.
$(VENV)/.installed: pyproject.toml setup.py ps/server/native/rowstore.cpp
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e '.[dev]'
	touch $@

run: setup
	$(VENV)/bin/psctl run examples/digits.yaml --output runs/digits --overwrite

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Real binaries some tests use (openssl, prometheus), installed where the machine allows it.
system-deps:
	@.ci/system-deps

# Two xdist workers: the tests with clusters of their own beside the rest (tests/conftest.py).
test: setup system-deps lint
	$(PY) -m pytest -q -n 2 --dist loadgroup

# The deep-learning practice as jobs with plots (docs/experiments.md): runs/experiments/<name>/.
experiments: setup
	$(PY) examples/experiments/run.py

# Every benchmark prints ratios against a baseline measured in the same run (see docs/benchmarks.md).
bench: setup
	$(PY) benchmarks/optim.py
	$(PY) benchmarks/transport.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/time_to_accuracy.py
	$(PY) benchmarks/scaling.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/profile_step.py
	$(PY) benchmarks/sparse.py
	$(PY) benchmarks/rowstore.py
	$(PY) benchmarks/criteo.py
	$(PY) benchmarks/streaming.py
	$(PY) benchmarks/evaluation.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
