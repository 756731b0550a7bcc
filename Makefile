# connector_nb: `make lab` (JupyterLab on the quickstart), `make test` (the whole suite), `make bench`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8888
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: venv lab test test-fast lint bench chromium flytekit-venv flyte2-venv inproc-venvs clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,lab]"
	touch $@

# Debian's Chromium for the browser tests (never a downloaded browser build).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y --no-install-recommends chromium fonts-liberation; \
	  else echo "chromium is missing: run 'sudo apt-get update && sudo apt-get install -y chromium'" >&2; exit 1; fi; \
	fi

# flytekit lives in its own virtualenv: the interop tests run its `pyflyte serve connector`.
flytekit-venv: venv
	$(PY) -c "import sys; sys.path.insert(0, 'tests/integration'); import flytekit_env; print(flytekit_env.flytekit_python())"

# Flyte 2 (flyte[connector]) likewise: the interop tests run its connector service `c0` (flyteidl2 protocol).
flyte2-venv: venv
	$(PY) tests/integration/flyte2_env.py

# connector_nb installed next to each framework (.venv-flytekit-nb, .venv-flyte2-nb) for the in-process adapter
# tests and the flytekit tutorial notebook.
FLYTEKIT_NB_VENV ?= .venv-flytekit-nb
ADAPTER_NOTEBOOK := notebooks/06_your_flytekit_or_flyte2_connector.ipynb
inproc-venvs: venv
	$(PY) tests/integration/inproc_env.py flytekit flyte

# Root (containers, CI machines) needs --allow-root; nobody else gets it.
lab: venv
	$(VENV)/bin/jupyter lab notebooks/01_quickstart.ipynb --ServerApp.ip=127.0.0.1 --port=$(PORT) \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

test: venv chromium flytekit-venv flyte2-venv inproc-venvs
	$(PY) -m ruff check connector_nb tests benchmarks
	$(PY) -m mypy --strict connector_nb
	$(PY) -m pytest -p no:cacheprovider tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with notebooks/sanitize.cfg --ignore=$(ADAPTER_NOTEBOOK) -ra $(PYTEST_ARGS)
	# The flytekit tutorial runs in the venv that has flytekit, with a scratch journal home.
	CONNECTOR_NB_HOME=$$(mktemp -d) $(FLYTEKIT_NB_VENV)/bin/python -m pytest -p no:cacheprovider $(ADAPTER_NOTEBOOK) \
	  --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg -ra

test-fast: venv
	$(PY) -m pytest -p no:cacheprovider tests/unit -q $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check connector_nb tests benchmarks
	$(PY) -m mypy --strict connector_nb

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-flytekit .venv-flyte2 .venv-flytekit-nb .venv-flyte2-nb test-artifacts build *.egg-info
