# Two entry points: `make demo` and `make test`. Both create .venv and install what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
DEMO_DIR ?= runs/demo

.PHONY: demo test test-all lint bench clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PIP) -e ".[onnx,plot,digits]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PIP) -e ".[dev]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/repvit demo --output-dir $(DEMO_DIR)

test: $(VENV)/.test-installed
	$(PY) -m pytest -q

test-all: $(VENV)/.test-installed
	$(PY) -m pytest -q -m ""

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.test-installed
	$(PY) benchmarks/latency_fused.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/onnx_vs_bound.py
	$(VENV)/bin/repvit bench --out-dir benchmarks/results

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
