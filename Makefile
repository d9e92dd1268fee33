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

# manylinux2014 (glibc 2.17) wheels for x86_64 and aarch64, built without
# containers by .ci/wheels/build: zig cc (PyPI's ziglang) as the compiler for
# both, libjpeg-turbo, zlib and lz4 from Debian's source packages linked
# statically into libdbr.  The binding uses cffi's ABI mode (no extension
# module), so one wheel per architecture serves every CPython >= 3.9: py3-none.
WHEEL_ARCHS ?= x86_64 aarch64
wheel: setup
	DBR_WITH_RELEASE_TOOLS=1 ./.ci/install-system-deps
	rm -rf wheelhouse
	.ci/wheels/build $(WHEEL_ARCHS)

sdist: setup
	$(PY) -m pip install -q build
	$(PY) -m build --sdist -o dist .

# This machine's wheel on Python 3.9 and 3.13; every architecture's C tests
# (foreign ones under qemu-user); the foreign wheels on Debian's CPython
# under qemu-user.
test-wheel: wheel
	tests/wheel/check_wheel.sh
	for arch in $(WHEEL_ARCHS); do tests/wheel/check_c_tests.sh $$arch || exit 1; done
	for arch in $(filter-out $(shell uname -m),$(WHEEL_ARCHS)); do \
	  tests/wheel/check_foreign_wheel.sh $$arch || exit 1; done

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
	rm -rf $(BUILD) $(VENV) build-asan build-sdist build-wheels dist wheelhouse
