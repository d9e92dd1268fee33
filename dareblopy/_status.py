"""DareBlopy 0.0.5's ``Status``: what its FileSystem calls that change the
file system return instead of raising."""
from __future__ import annotations

from typing import Optional


class Status:
    """The outcome of a call: true when it succeeded.  ``error`` is the
    exception that describes a failure (None on success); ``raise_for_error()``
    raises it, for code that prefers exceptions."""

    __slots__ = ("error",)

    def __init__(self, error: Optional[BaseException] = None):
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None

    def __bool__(self) -> bool:
        return self.error is None

    def is_eof(self) -> bool:
        """True when the failure was reaching the end of a file."""
        return isinstance(self.error, EOFError)

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error

    def __repr__(self) -> str:
        return "Status(ok)" if self.error is None else f"Status(error={self.error!r})"

    @classmethod
    def of(cls, fn, *args) -> "Status":
        """Runs ``fn(*args)``; an OSError becomes a failed Status."""
        try:
            fn(*args)
        except OSError as exc:
            return cls(exc)
        return cls()
