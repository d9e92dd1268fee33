"""Loads libdbr through cffi's ABI mode.

One source of truth: the declarations come from ``dbr.h`` itself (the block
between ``DBR_CDEF_BEGIN`` and ``DBR_CDEF_END``), so the binding cannot drift
from the C API.  ABI mode (``ffi.dlopen``) needs no compiler and no
per-Python build, so one wheel serves every CPython; every call still drops
the GIL.
"""
from __future__ import annotations

import os
import re
import sys

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE_ROOT = os.path.dirname(_HERE)


def _find_header() -> str:
    for candidate in (os.path.join(_HERE, "dbr.h"),  # installed wheel
                      os.path.join(_SOURCE_ROOT, "include", "dbr.h")):  # checkout
        if os.path.exists(candidate):
            return candidate
    raise ImportError("dareblopy: dbr.h not found next to the package or in include/")


def _find_library() -> str:
    explicit = os.environ.get("DAREBLOPY_LIBDBR")
    if explicit:
        return explicit
    candidates = [os.path.join(_HERE, "libdbr.so")]
    # A source checkout built with `make build` (meson's build/ directory).
    candidates.append(os.path.join(_SOURCE_ROOT, "build", "libdbr", "libdbr.so"))
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    # A system install (meson install): libdbr.so.1 on the loader's path.
    import ctypes.util
    system = ctypes.util.find_library("dbr")
    if system:
        return system
    raise ImportError(
        "dareblopy: libdbr.so not found. Install the package (pip install .), "
        "build it in the checkout (make build), or set DAREBLOPY_LIBDBR.")


_INT_DEFINE = re.compile(r"^\s*#\s*define\s+\w+\s+-?\d+\s*$")


def cdefs_from_header(text: str) -> str:
    """The cffi declarations in dbr.h: the marked block, with preprocessor
    lines other than integer #defines removed and DBR_API dropped."""
    try:
        block = text.split("/* DBR_CDEF_BEGIN */", 1)[1].split("/* DBR_CDEF_END */", 1)[0]
    except IndexError:
        raise ImportError("dareblopy: dbr.h lacks the DBR_CDEF_BEGIN/END markers") from None
    lines = []
    for line in block.splitlines():
        if line.lstrip().startswith("#") and not _INT_DEFINE.match(line):
            continue
        lines.append(line.replace("DBR_API ", ""))
    return "\n".join(lines)


ffi = FFI()
with open(_find_header(), encoding="utf-8") as _fh:
    ffi.cdef(cdefs_from_header(_fh.read()))
lib = ffi.dlopen(_find_library())



def compatible(header: int, library: int) -> bool:
    """Whether a library of version number ``library`` serves a binding
    built from a dbr.h of version ``header``: libdbr only appends to its ABI
    within a major version, so any library of the same major that is at
    least as new has every function the header declares."""
    return library // 10000 == header // 10000 and library >= header


if not compatible(lib.DBR_VERSION_NUMBER, lib.dbr_version_number()):
    raise ImportError(
        "dareblopy: header dbr.h is version %d but the loaded libdbr is %d; it needs a "
        "libdbr of the same major version, at least as new: reinstall, or point "
        "DAREBLOPY_LIBDBR at a newer build" % (lib.DBR_VERSION_NUMBER, lib.dbr_version_number()))

__all__ = ["ffi", "lib", "cdefs_from_header", "compatible"]
if sys.version_info < (3, 9):  # pragma: no cover
    raise ImportError("dareblopy needs Python 3.9 or newer")
