"""Files and the virtual file system (the VFS of libdbr).

Lifetimes (the rule for every wrapper of a libdbr handle: File, FileSystem,
Archive, the TFRecord reader).  libdbr counts references to its objects; a
wrapper holds one through an ``ffi.gc`` cdata whose destructor drops it.
Every method first takes that cdata into a local variable (``h =
self._h()``) and passes the local to C, so a call in flight holds a Python
reference to the cdata, and so a C reference, until it returns.
``close()`` only drops the wrapper's own attribute: no lock, no ``ffi.release``
(which would free the handle under a running call).  The handle closes
when the last running call returns; a call that starts after ``close()``
finds ``None`` and raises ValueError.  What a handle was made from (an
archive, a mount's archive, a reader's file) is held by libdbr itself."""
from __future__ import annotations

import os
import threading
from typing import List, Optional, Sequence, Union

import numpy as np

from ._buffers import as_uint8_out, cells, encode_path, new_bytes, resolve_shape
from ._batch import Outcomes, check_errors_mode
from ._errors import UnsupportedError, check, error_from_code
from ._enums import LegacyIntEnum
from ._ffi import ffi, lib
from ._status import Status

PathLike = Union[str, bytes, os.PathLike]


class Mode(LegacyIntEnum):
    """Open modes, as in DareBlopy.  libdbr reads; only ``read`` is accepted."""

    read = 0
    write = 1
    append = 2
    read_update = 3
    write_update = 4
    append_update = 5


class Location(os.PathLike):
    """A path for :meth:`FileSystem.open` (DareBlopy's ``Location``)."""

    def __init__(self, path: PathLike):
        self.path = os.fsdecode(os.fspath(path))

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"Location({self.path!r})"


class _CallablePath(str):
    """A path string that can also be called: DareBlopy 0.0.5's ``File.path``
    was a method (``f.path()``), ours is a property (``f.path``); both work."""

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)


class File:
    """A readable file: an OS file or an entry of a mounted archive.

    ``read``/``seek``/``tell`` move this object's own position; ``pread`` and
    the whole-file reads do not, and are safe from several threads.
    ``close()`` is safe while other threads read (see the module's note on
    lifetimes)."""

    __slots__ = ("_handle", "__weakref__")

    def __init__(self, handle):
        self._handle = ffi.gc(handle, lib.dbr_file_close)

    @classmethod
    def open(cls, path: PathLike) -> "File":
        """Opens an OS path for reading."""
        return cls(_open_os(encode_path(path)))

    def _h(self):
        if self._handle is None:
            raise ValueError("I/O operation on a closed dareblopy.File")
        return self._handle

    def close(self) -> None:
        self._handle = None  # the C reference goes with the last user

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"{self.size()} bytes"
        return f"<dareblopy.File {self.path!r} {state}>"

    @property
    def path(self) -> str:
        return _CallablePath(
            ffi.string(lib.dbr_file_path(self._h())).decode("utf-8", "surrogateescape"))

    def size(self) -> int:
        return lib.dbr_file_size(self._h())

    def __len__(self) -> int:
        return self.size()

    def get_last_write_time(self) -> int:
        """Modification time, in seconds since the Unix epoch."""
        return lib.dbr_file_mtime(self._h())

    def tell(self) -> int:
        return lib.dbr_file_tell(self._h())

    def seek(self, offset: int, origin: int = os.SEEK_SET) -> int:
        """Moves the position and returns it; ``origin`` as in ``os.SEEK_*``."""
        pos = ffi.new("uint64_t *")
        check(lib.dbr_file_seek(self._h(), offset, origin, pos))
        return pos[0]

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the position (all that is left if < 0)."""
        h = self._h()
        left = max(0, lib.dbr_file_size(h) - lib.dbr_file_tell(h))
        size = left if size is None or size < 0 else min(size, left)
        obj = new_bytes(size)
        got = cells.size
        check(lib.dbr_file_read(h, obj, size, got))
        return obj if got[0] == size else obj[:got[0]]

    def readinto(self, buffer) -> int:
        """Fills a writable buffer from the position; returns the count."""
        dst = ffi.from_buffer(buffer, require_writable=True)
        got = ffi.new("size_t *")
        check(lib.dbr_file_read(self._h(), dst, len(dst), got))
        return got[0]

    def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` without moving the position."""
        h = self._h()
        size = max(0, min(size, lib.dbr_file_size(h) - offset))
        obj = new_bytes(size)
        got = cells.size
        check(lib.dbr_file_pread(h, obj, size, offset, got))
        return obj if got[0] == size else obj[:got[0]]

    def read_all(self) -> bytes:
        """The whole file as ``bytes``, read straight into the result."""
        return read_whole_as_bytes(self._h())

    def read_as_numpy_ubyte(self, shape=None, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The whole file as a uint8 array (``shape`` may contain one -1), or
        into ``out``."""
        return read_whole_as_numpy(self._h(), shape, out)


# Bound once: the hot paths below skip the attribute lookup on lib.
_file_open = lib.dbr_file_open
_file_close = lib.dbr_file_close
_file_size = lib.dbr_file_size
_file_read_all = lib.dbr_file_read_all
_vfs_open = lib.dbr_vfs_open
_vfs_mount_count = lib.dbr_vfs_mount_count


def _open_os(raw_path: bytes):
    out = cells.file
    rc = _file_open(raw_path, out)
    if rc < 0:
        raise error_from_code(rc)
    return out[0]


def _bytes_then_close(rc: int, cell) -> bytes:
    """The whole file just opened into ``cell`` (status ``rc``), as bytes;
    the handle is closed either way."""
    if rc < 0:
        raise error_from_code(rc)
    handle = cell[0]
    try:
        return read_whole_as_bytes(handle)
    finally:
        _file_close(handle)


def read_whole_as_bytes(handle) -> bytes:
    size = _file_size(handle)
    obj = new_bytes(size)
    rc = _file_read_all(handle, obj, size, cells.size)
    if rc < 0:
        raise error_from_code(rc)
    return obj


def read_whole_as_numpy(handle, shape, out) -> np.ndarray:
    size = lib.dbr_file_size(handle)
    path = ffi.string(lib.dbr_file_path(handle)).decode("utf-8", "surrogateescape")
    if out is None:
        out = np.empty(resolve_shape(shape, size, path), dtype=np.uint8)
    dst = as_uint8_out(out, size, path)
    check(lib.dbr_file_read_all(handle, dst, size, cells.size))
    return out


def open_as_bytes(path: PathLike) -> bytes:
    """Reads an OS file into ``bytes`` with no intermediate copy."""
    out = cells.file
    return _bytes_then_close(_file_open(encode_path(path), out), out)


def open_as_numpy_ubyte(filename: PathLike, shape=None,
                        out: Optional[np.ndarray] = None) -> np.ndarray:
    """Reads an OS file into a uint8 array of ``shape`` (one entry may be
    -1), or into the caller's ``out`` array.  (``filename``: 0.0.5's
    keyword.)"""
    handle = _open_os(encode_path(filename))
    try:
        return read_whole_as_numpy(handle, shape, out)
    finally:
        lib.dbr_file_close(handle)


def readinto(path: PathLike, buffer) -> int:
    """Reads a whole OS file into a writable buffer; returns the size."""
    handle = _open_os(encode_path(path))
    try:
        dst = ffi.from_buffer(buffer, require_writable=True)
        got = ffi.new("size_t *")
        check(lib.dbr_file_read_all(handle, dst, len(dst), got))
        return got[0]
    finally:
        lib.dbr_file_close(handle)


def read_files(paths: Sequence[PathLike], filesystem: Optional["FileSystem"] = None,
               threads: int = 1, errors: str = "raise") -> List[Union[bytes, Exception]]:
    """Reads many whole files into ``bytes`` in three C calls (open all, read
    all on ``threads`` threads, close all), so the GIL is released once per
    step instead of several times per file.  Paths are OS paths, or paths
    in ``filesystem`` when it has mounts.  errors="raise" raises the first
    failure; errors="return" puts each failure's exception in its place."""
    check_errors_mode(errors)
    raws = [ffi.new("char[]", encode_path(p)) for p in paths]  # alive until return
    n = len(raws)
    if n == 0:
        return []
    vfs = ffi.NULL
    if filesystem is not None and filesystem.mount_count:
        vfs = filesystem._v()
    files = ffi.new("dbr_file *[]", n)
    sizes = ffi.new("uint64_t[]", n)
    # One outcome per item across both steps: a failed open keeps its
    # message, since the read skips that item.
    outcomes = Outcomes(n) if errors == "return" else None
    items = outcomes.args if outcomes else (ffi.NULL, ffi.NULL, 0)
    rc = lib.dbr_file_open_many_ex(vfs, raws, n, files, sizes, *items)
    try:
        if rc < 0 and outcomes is None:
            raise error_from_code(rc)
        out: List[Union[bytes, Exception]] = [None] * n
        dsts = ffi.new("void *[]", n)
        caps = ffi.new("size_t[]", n)
        for i in range(n):
            if files[i]:
                out[i] = new_bytes(sizes[i])
                dsts[i] = ffi.from_buffer(out[i])
                caps[i] = sizes[i]
        lens = ffi.new("size_t[]", n)
        rc = lib.dbr_file_read_many_ex(files, n, dsts, caps, lens, threads, *items)
        if rc < 0 and outcomes is None:
            raise error_from_code(rc)
    finally:
        lib.dbr_file_close_many(files, n)
    if outcomes is not None:
        for i, exc in outcomes.errors().items():
            out[i] = exc
    return out


class FileSystem:
    """DareBlopy's virtual file system: search paths (directories) and
    mounted archives, looked up in the order they were added.

    With nothing mounted, paths are plain OS paths (as in DareBlopy).  Once
    something is mounted, paths are relative to the mounts and can never
    escape them (``..`` above a root, absolute paths and NUL bytes are
    refused or confined)."""

    def __init__(self):
        out = ffi.new("dbr_vfs **")
        check(lib.dbr_vfs_create(out))
        self._vfs = ffi.gc(out[0], lib.dbr_vfs_free)
        self._lock = threading.Lock()  # serialises mount changes only

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Drops this object's hold on the VFS; lookups running in other
        threads finish first, files opened from it stay readable."""
        self._vfs = None

    def _v(self):
        if self._vfs is None:
            raise ValueError("operation on a closed dareblopy.FileSystem")
        return self._vfs

    def push_search_path(self, path: PathLike, follow_symlinks: bool = False) -> None:
        """Adds an OS directory, searched after everything added before.
        A symlink that leads out of the directory is refused
        (PermissionError) unless ``follow_symlinks`` is true."""
        opts = ffi.new("dbr_mount_options *")
        opts.follow_symlinks = 1 if follow_symlinks else 0
        with self._lock:
            check(lib.dbr_vfs_mount_dir_ex(self._v(), encode_path(path), opts))

    mount_directory = push_search_path

    def _unmount_dirs(self, limit: Optional[int]) -> int:
        """Removes up to ``limit`` (None: all) directory mounts, newest
        first; returns how many went."""
        removed = 0
        with self._lock:
            v = self._v()
            for index in reversed(range(lib.dbr_vfs_mount_count(v))):
                if limit is not None and removed == limit:
                    break
                if lib.dbr_vfs_mount_is_dir(v, index) == 1:
                    check(lib.dbr_vfs_unmount(v, index))
                    removed += 1
        return removed

    def pop_search_path(self) -> None:
        """Removes the most recently added search path (directory)."""
        if not self._unmount_dirs(1):
            raise IndexError("pop_search_path: no search path to pop")

    def clear_search_paths(self) -> None:
        """Removes every search path (directories); mounted archives stay."""
        self._unmount_dirs(None)

    def mount_archive(self, archive) -> Status:
        """Mounts an archive (see :func:`open_zip_archive`) after the
        current mounts; returns a true Status (0.0.5's return value),
        raises when the archive cannot be mounted."""
        mount = getattr(archive, "_mount_into", None)
        if mount is None:
            raise UnsupportedError(f"cannot mount {type(archive).__name__}: not an archive")
        with self._lock:
            mount(self._v())  # the mount holds the archive in libdbr
        return Status()

    @property
    def mount_count(self) -> int:
        return lib.dbr_vfs_mount_count(self._v())

    def _plain(self) -> bool:
        return lib.dbr_vfs_mount_count(self._v()) == 0

    def open(self, location: PathLike, mode: Mode = Mode.read,
             lockable: bool = False) -> Optional[File]:
        """Opens a file for reading; None when it does not exist (as in
        DareBlopy 0.0.5; ``open_as_bytes`` and ``File.open`` raise
        NotFoundError instead).  ``lockable`` is accepted for 0.0.5's sake:
        every File here is safe to share between threads (reads use
        pread), so there is nothing to lock."""
        if mode != Mode.read:
            raise UnsupportedError(f"dareblopy opens files for reading only, not {Mode(mode).name}")
        raw = encode_path(location)
        out = cells.file
        rc = _file_open(raw, out) if self._plain() else _vfs_open(self._v(), raw, out)
        if rc == lib.DBR_E_NOT_FOUND:
            return None
        if rc < 0:
            raise error_from_code(rc)
        return File(out[0])

    def exists(self, location: PathLike) -> bool:
        raw = encode_path(location)
        if self._plain():
            return os.path.exists(raw)
        return bool(check(lib.dbr_vfs_exists(self._v(), raw)))

    def list_directory(self, location: PathLike = "") -> List[str]:
        """Names in a directory across all mounts, sorted; directories end
        with '/'."""
        raw = encode_path(location)
        if self._plain():
            names = os.listdir(raw or b".")
            return sorted(os.fsdecode(n) + ("/" if os.path.isdir(os.path.join(raw or b".", n)) else "")
                          for n in names)
        blob = ffi.new("char **")
        length = ffi.new("size_t *")
        count = ffi.new("size_t *")
        check(lib.dbr_vfs_list(self._v(), raw, blob, length, count))
        try:
            data = ffi.unpack(blob[0], length[0])
        finally:
            lib.dbr_free(blob[0])
        return [os.fsdecode(n) for n in data.split(b"\0")[:-1]]

    listdir = list_directory

    def open_as_bytes(self, location: PathLike) -> bytes:
        """A whole file as ``bytes``, read straight into the result."""
        raw = encode_path(location)
        out = cells.file
        v = self._v()
        if _vfs_mount_count(v) == 0:
            return _bytes_then_close(_file_open(raw, out), out)
        return _bytes_then_close(_vfs_open(v, raw, out), out)

    def read_many(self, locations: Sequence[PathLike], threads: int = 1) -> List[bytes]:
        """Whole files as ``bytes``, in one batch (see :func:`read_files`)."""
        return read_files(locations, self, threads)

    def open_as_numpy_ubyte(self, location: PathLike, shape=None, out=None) -> np.ndarray:
        raw = encode_path(location)
        cell = cells.file
        rc = _file_open(raw, cell) if self._plain() else _vfs_open(self._v(), raw, cell)
        if rc < 0:
            raise error_from_code(rc)
        handle = cell[0]
        try:
            return read_whole_as_numpy(handle, shape, out)
        finally:
            _file_close(handle)

    # ---- DareBlopy 0.0.5's calls that change the OS file system.  They take
    # OS paths (mounts are read-only) and return a Status, as 0.0.5 did:
    # false, with the OSError in ``status.error``, when the call failed.

    def create_directory(self, location: PathLike) -> Status:
        """Creates a directory and any missing parents."""
        return Status.of(os.makedirs, os.fspath(location), 0o777, True)

    def remove(self, location: PathLike) -> Status:
        """Removes a file or an empty directory."""
        path = os.fspath(location)
        return Status.of(os.rmdir if os.path.isdir(path) and not os.path.islink(path)
                         else os.remove, path)

    def rename(self, source: PathLike, target: PathLike) -> Status:
        """Renames (moves) a file or directory."""
        return Status.of(os.rename, os.fspath(source), os.fspath(target))
