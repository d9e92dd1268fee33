"""Atomic file writing: the one helper every dareblopy writer uses.

A file is written under a temporary name in its target's folder and renamed
over the target only once it is complete, so a reader never sees half a
file and a failure leaves the old file (or none) in place.  The temporary
file is created with mode 0666 and the process umask applied by the kernel,
like any file ``open(path, "w")`` creates; a failure at any step removes
it."""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager

__all__ = ["AtomicFile", "atomic_write"]


def _create_temp(target: str):
    """An fd and path of a new file beside ``target`` (O_EXCL, mode 0666
    minus the umask, like ``open(..., "w")``; mkstemp would force 0600)."""
    folder, base = os.path.split(os.path.abspath(target))
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                           0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside '{target}'")


class AtomicFile:
    """A file that appears at ``path`` when ``commit()`` succeeds.

    ``file`` is the open temporary file (binary unless ``mode="w"``).
    ``commit()`` flushes, optionally fsyncs, closes and renames it into
    place; ``discard()`` (also run when commit fails) closes and removes it.
    Used as a context manager it commits on success and discards when the
    block raises."""

    def __init__(self, path, mode: str = "wb", encoding: str = None, fsync: bool = True,
                 errors: str = None):
        if mode not in ("wb", "w"):
            raise ValueError(f"AtomicFile mode {mode!r} is not 'wb' or 'w'")
        self.path = os.fspath(path)
        self._fsync = fsync
        fd, self.temp_path = _create_temp(self.path)
        try:
            text = mode == "w"
            self.file = os.fdopen(fd, mode, encoding=encoding if text else None,
                                  errors=errors if text else None)
        except BaseException:
            os.close(fd)
            os.unlink(self.temp_path)
            raise
        self._done = False

    @property
    def closed(self) -> bool:
        return self._done

    def commit(self) -> None:
        """Makes the file appear at ``path``; on any failure the temporary
        file is removed and the error re-raised."""
        if self._done:
            return
        try:
            self.file.flush()
            if self._fsync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp_path, self.path)
        except BaseException:
            self.discard()
            raise
        self._done = True

    def discard(self) -> None:
        """Drops the temporary file; ``path`` is left as it was."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        except OSError:
            pass  # the data is being thrown away; a failed flush does not matter
        finally:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def __del__(self):
        try:
            self.discard()
        except Exception:
            pass


@contextmanager
def atomic_write(path, mode: str = "wb", encoding: str = None, fsync: bool = True,
                 errors: str = None):
    """``with atomic_write(path, "w") as fh: fh.write(...)``: the file
    appears complete at ``path`` when the block ends, or not at all."""
    with AtomicFile(path, mode, encoding, fsync, errors) as af:
        yield af.file
