# dareblopy - the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
export DAREBLOPY_LIBDBR := $(CURDIR)/$(BUILD)/libdbr/libdbr.so

.PHONY: all setup build test test-c test-python demo bench peers wheel sdist test-wheel test-sdist clean

all: build

# System packages (apt) and a virtualenv with the Python tools.
$(VENV)/.ready: requirements-dev.txt .ci/install-system-deps
	./.ci/install-system-deps
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.ready

$(BUILD)/build.ninja: $(VENV)/.ready meson.build meson.options
	if [ -d $(BUILD) ]; then PATH=$(CURDIR)/$(VENV)/bin:$$PATH meson setup --reconfigure $(BUILD); \
	else PATH=$(CURDIR)/$(VENV)/bin:$$PATH meson setup $(BUILD); fi

build: $(BUILD)/build.ninja
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH ninja -C $(BUILD)

test-c: build
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH meson test -C $(BUILD) --print-errorlogs

test-python: build peers
	$(PY) -m pytest -q tests/python

test: test-c test-python

# DareBlopy 0.0.5, the original, for side-by-side benchmarks: it ships
# wheels for CPython <= 3.8 only, so it lives in its own venv (optional:
# benchmarks print n/a when no Python 3.8 is available).
PY38 ?= $(shell ls $$HOME/.pyenv/versions/3.8*/bin/python3.8 2>/dev/null | head -1 || command -v python3.8)
.venv38/.ready:
	@if [ -n "$(PY38)" ]; then \
	  $(PY38) -m venv .venv38 && .venv38/bin/pip install -q dareblopy numpy pillow && touch $@; \
	else echo "no Python 3.8 found: DareBlopy 0.0.5 columns will read n/a"; fi

peers: .venv38/.ready

demo: build peers
	$(PY) benchmarks/run_all.py

bench: demo

# A manylinux wheel with libjpeg-turbo, zlib and lz4 vendored by auditwheel.
# The binding uses cffi's ABI mode (no extension module), so one wheel serves
# every CPython >= 3.9: it is tagged py3-none.
wheel: setup
	rm -rf dist wheelhouse
	$(PY) -m pip wheel -q --no-deps -w dist .
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m auditwheel repair -w wheelhouse dist/*.whl
	$(PY) -m wheel tags --remove --python-tag py3 --abi-tag none wheelhouse/*.whl
	@ls wheelhouse

sdist: setup
	$(PY) -m pip install -q build
	$(PY) -m build --sdist -o dist .

test-wheel: wheel
	tests/wheel/check_wheel.sh

# The sdist builds from source against the Debian packages of
# .ci/install-system-deps, and the result imports and reads a zip.
test-sdist: sdist
	rm -rf build-sdist && mkdir -p build-sdist
	$(PY) -m pip wheel -q --no-deps -w build-sdist dist/dareblopy-*.tar.gz
	$(PYTHON) -m venv build-sdist/venv
	build-sdist/venv/bin/pip install -q build-sdist/*.whl
	cd build-sdist && venv/bin/python -c "import dareblopy as db, zipfile; \
	  z = zipfile.ZipFile('t.zip', 'w'); z.writestr('a', b'sdist'); z.close(); \
	  assert db.open_zip_archive('t.zip').read('a') == b'sdist'; print('sdist: ok', db.__version__)"

clean:
	rm -rf $(BUILD) $(VENV) build-asan build-sdist dist wheelhouse
