"""Exceptions built from libdbr status codes.

Each class also subclasses the builtin people already catch, so
``except FileNotFoundError`` or ``except ValueError`` keeps working, and
RuntimeError where DareBlopy 0.0.5 raised RuntimeError for the same
failure (a missing file or entry, a missing or mistyped feature, corrupt
data, a failed read), so code written for 0.0.5 keeps catching them.
"""
from __future__ import annotations

from ._ffi import ffi, lib


class DbrError(Exception):
    """Base of every error raised by libdbr.  ``code`` is the C status."""

    code = None


class InvalidArgumentError(DbrError, ValueError, RuntimeError):
    code = lib.DBR_E_ARG


class OutOfMemoryError(DbrError, MemoryError):
    code = lib.DBR_E_NOMEM


class ReadError(DbrError, OSError, RuntimeError):
    code = lib.DBR_E_IO


class NotFoundError(DbrError, FileNotFoundError, RuntimeError):
    code = lib.DBR_E_NOT_FOUND


class CorruptDataError(DbrError, ValueError, RuntimeError):
    code = lib.DBR_E_CORRUPT


class UnsupportedError(DbrError, NotImplementedError):
    code = lib.DBR_E_UNSUPPORTED


class BufferTooSmallError(DbrError, ValueError, RuntimeError):
    code = lib.DBR_E_TOO_SMALL


class LimitExceededError(DbrError, ValueError, RuntimeError):
    code = lib.DBR_E_LIMIT


class IsADirectoryDbrError(DbrError, IsADirectoryError, RuntimeError):
    code = lib.DBR_E_IS_DIR


class PermissionDbrError(DbrError, PermissionError, RuntimeError):
    code = lib.DBR_E_PERMISSION


class EndOfStreamError(DbrError, EOFError):
    code = lib.DBR_E_EOF


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type (a path that is an int or None): a
    TypeError as in Python (and in DareBlopy 0.0.5), and still an
    InvalidArgumentError, the class dareblopy raised for it before."""


_BY_CODE = {cls.code: cls for cls in DbrError.__subclasses__()}


def error_from_code(code: int, detail: str = None) -> DbrError:
    """The exception for a status code, with this thread's error detail."""
    if detail is None:
        detail = ffi.string(lib.dbr_last_error()).decode("utf-8", "replace")
    cls = _BY_CODE.get(code, DbrError)
    generic = ffi.string(lib.dbr_strerror(code)).decode()
    err = cls(detail or generic)
    err.code = code
    return err


def check(code: int) -> int:
    """Raises for a negative status, returns non-negative values unchanged."""
    if code < 0:
        raise error_from_code(code)
    return code
