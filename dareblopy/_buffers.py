"""Turning Python objects into C buffers, and back, without copies."""
from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading

import numpy as np

from ._errors import ArgumentTypeError, InvalidArgumentError
from ._ffi import ffi

_FS_ENCODING = sys.getfilesystemencoding()

if platform.python_implementation() == "CPython":
    _bytes_new = ctypes.pythonapi.PyBytes_FromStringAndSize
    _bytes_new.restype = ctypes.py_object
    _bytes_new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)

    def new_bytes(size: int) -> bytes:
        """An uninitialised ``bytes`` of ``size`` for C to fill in place.

        CPython's PyBytes_FromStringAndSize(NULL, n) returns a fresh object
        (never a cached one, even for n == 1); nobody else holds it and its
        hash is not computed yet, so C may write into it.  cffi passes a
        ``bytes`` argument as a pointer to its own storage, so results are
        read straight into the object: no second copy of the data."""
        return _bytes_new(None, size)
else:  # pragma: no cover - other interpreters get zeroed memory
    def new_bytes(size: int) -> bytes:
        return bytes(size)


class _Cells(threading.local):
    """Per-thread out-parameters, reused so hot calls skip ffi.new."""

    def __init__(self):
        self.size = ffi.new("size_t *")
        self.file = ffi.new("dbr_file **")


cells = _Cells()


def as_uint8_out(out, nbytes: int, what: str):
    """Checks a caller's array for ``nbytes`` of writable, C-contiguous uint8
    storage and returns a cffi pointer into it."""
    if not isinstance(out, np.ndarray):
        view = memoryview(out)
        if view.readonly or not view.c_contiguous or view.nbytes < nbytes:
            raise InvalidArgumentError(
                f"{what}: out= must be a writable, C-contiguous buffer of at least "
                f"{nbytes} bytes")
        return ffi.from_buffer(out, require_writable=True)
    if out.dtype != np.uint8:
        raise InvalidArgumentError(f"{what}: out= must have dtype uint8, not {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidArgumentError(f"{what}: out= must be C-contiguous and writable")
    if out.nbytes != nbytes:
        raise InvalidArgumentError(
            f"{what}: out= holds {out.nbytes} bytes but {nbytes} are needed")
    return ffi.from_buffer(out, require_writable=True)


def resolve_shape(shape, size: int, what: str):
    """DareBlopy's shape rule: None is (size,); one entry may be -1."""
    if shape is None:
        return (size,)
    shape = tuple(int(s) for s in shape)
    unknown = [i for i, s in enumerate(shape) if s < 0]
    known = 1
    for s in shape:
        if s >= 0:
            known *= s
    if len(unknown) > 1:
        raise InvalidArgumentError(f"{what}: shape {shape} has more than one -1")
    if unknown:
        if known == 0 or size % known:
            raise InvalidArgumentError(
                f"{what}: {size} bytes cannot be reshaped to {shape}")
        shape = shape[:unknown[0]] + (size // known,) + shape[unknown[0] + 1:]
    elif known != size:
        raise InvalidArgumentError(
            f"{what}: {size} bytes do not fill shape {shape} ({known} bytes)")
    return shape


def encode_path(path) -> bytes:
    """os.fspath + filesystem encoding, refusing NUL bytes (C would silently
    cut the path there)."""
    if type(path) is str:  # the common case, without os.fspath's dispatch
        raw = path.encode(_FS_ENCODING, "surrogateescape")
    else:
        try:
            raw = os.fsencode(os.fspath(path))
        except TypeError:
            raise ArgumentTypeError(
                f"expected a str, bytes or os.PathLike path, not {type(path).__name__}") from None
    if b"\0" in raw:
        raise InvalidArgumentError(f"path {path!r} contains a NUL byte")
    return raw


class ArrayRecycler:
    """Makes output arrays, reusing one handed out before once nothing but
    the recycler refers to it any more (no variable, view, tensor or buffer
    of the caller's): a batch the caller still holds, or anything made from
    it without a copy, is never overwritten.

    Why: a fresh multi-megabyte array is fresh memory, which the kernel
    zero-fills page by page on first touch; for 200 KB images that costs as
    much as the copy out of the page cache.  Reuse keeps the pages mapped
    and warm, as ``readinto`` into one preallocated buffer does.  At most
    ``keep`` arrays are held; on interpreters without reference counts
    (``sys.getrefcount``) every array is new."""

    def __init__(self, keep: int = 4):
        self._keep = max(1, int(keep))
        self._arrays: list = []
        self._lock = threading.Lock()  # two threads must never get one array
        self._enabled = hasattr(sys, "getrefcount")
        # References that an unreferenced array shows in the loop below
        # (the list, the loop variable, getrefcount's argument): measured,
        # not assumed, because interpreters differ.
        probe = [np.empty(0)]
        self._idle = min(sys.getrefcount(a) for a in probe) if self._enabled else 0

    def __call__(self, shape, dtype) -> np.ndarray:
        if not self._enabled:
            return np.empty(shape, dtype)
        with self._lock:
            for i in range(len(self._arrays)):
                a = self._arrays[i]  # (enumerate's tuple would add a reference)
                if sys.getrefcount(a) <= self._idle and a.shape == shape and a.dtype == dtype:
                    # Handed out again: move it to the end, so the list
                    # keeps the most recently used arrays.
                    self._arrays.append(self._arrays.pop(i))
                    return a
            arr = np.empty(shape, dtype)
            self._arrays.append(arr)
            if len(self._arrays) > self._keep:
                self._arrays.pop(0)
            return arr
