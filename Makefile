# dareblopy - the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
export DAREBLOPY_LIBDBR := $(CURDIR)/$(BUILD)/libdbr/libdbr.so

.PHONY: all setup build test test-c test-python demo bench clean

all: build

# System packages (apt) and a virtualenv with the Python tools.
$(VENV)/.ready: requirements-dev.txt .ci/install-system-deps
	./.ci/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.ready

$(BUILD)/build.ninja: $(VENV)/.ready meson.build meson.options
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH meson setup $(BUILD) --reconfigure || \
	  PATH=$(CURDIR)/$(VENV)/bin:$$PATH meson setup $(BUILD)

build: $(BUILD)/build.ninja
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH ninja -C $(BUILD)

test-c: build
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH meson test -C $(BUILD) --print-errorlogs

test-python: build
	$(PY) -m pytest -q tests/python

test: test-c test-python

demo: build
	$(PY) benchmarks/run_all.py

bench: demo

clean:
	rm -rf $(BUILD) $(VENV)
