# Cortex: two commands do all set-up on a fresh machine with Python 3.11 and pip.
#   make demo   creates .venv, installs Cortex, runs the demo
#   make test   creates .venv, installs Cortex with test extras and system packages, runs every test

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python builds from source; a native build crashes on some CPUs, so build portable.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_OPENMP=OFF
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test install install-test system-deps build bench clean

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel 'Cython>=3.0'
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -e '.[local]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -e '.[local,test]'
	touch $@

# mcp-server-sqlite only runs with mcp<2, so it lives in a venv of its own (used by tests and the demo).
MCP_SQLITE_VENV := .venv-mcp-sqlite
$(MCP_SQLITE_VENV)/.installed:
	$(PYTHON) -m venv $(MCP_SQLITE_VENV)
	$(MCP_SQLITE_VENV)/bin/pip install --quiet 'mcp<2' mcp-server-sqlite
	touch $@

install: $(VENV)/.installed

# The protocol parser's modules are compiled with Cython (setup.py); pip builds them on install,
# this rebuilds the ones whose .py or .pxd changed since (a no-op when nothing did).
build: install
	$(PY) setup.py -q build_ext --inplace

install-test: $(VENV)/.installed-test $(MCP_SQLITE_VENV)/.installed system-deps

# System packages the tests need: bubblewrap for the sandboxed tool runtime.
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }

demo: build $(MCP_SQLITE_VENV)/.installed
	bash examples/demo.sh

test: install-test build
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install-test
	$(PY) bench/bus.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info build
	rm -f cortex/kernel/protocol/*.so cortex/kernel/protocol/*.c
