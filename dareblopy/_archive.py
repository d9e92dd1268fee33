"""What the zip and tar readers share in Python: the handle's lifetime, name
lookups (cached per name), mapping-style access and directory queries.

A subclass opens its C handle, passes it to :meth:`ArchiveBase._hold`, and
names its C functions in ``_c`` (find, entry size, count, path); the rest is
here.  Lifetimes belong to C (see dareblopy._files): :meth:`close` drops this
object's reference, so reads running in other threads finish first and
files and mounts made from the archive stay readable."""
from __future__ import annotations

import threading
from typing import Iterator, List, NamedTuple

from ._buffers import cells, encode_path, new_bytes
from ._errors import NotFoundError, check, error_from_code
from ._files import FileSystem, PathLike


class ArchiveFunctions(NamedTuple):
    """The C functions of one archive kind."""

    find: object   # (handle, char *name, size_t *index) -> status
    size: object   # (handle, index) -> uint64 size
    count: object  # (handle) -> size_t
    path: object   # (handle) -> const char *
    names: object  # (handle, char **out, size_t *len) -> status; NUL after each name
    read: object   # (handle, index, void *dst, size_t cap, size_t *len) -> status


class ArchiveBase:
    """Lifetime, lookups, mapping-style access and directories of an open
    archive; see the module docstring."""

    _c: ArchiveFunctions
    _what = "entries"  # what the repr counts

    def _hold(self, handle) -> None:
        self._handle = handle
        self._names = None   # built on first use: opening stays cheap
        # name as passed -> (index, size), filled by lookups, so repeated
        # reads skip encoding and two C calls (entries never change)
        self._slots = {}
        self._vfs = None     # a private VFS for directory queries, on first use
        self._lock = threading.Lock()

    # ---- lifetime

    def _h(self):
        handle = self._handle
        if handle is None:
            raise ValueError(f"operation on a closed dareblopy.{type(self).__name__}")
        return handle

    def close(self) -> None:
        """Drops this object's hold on the archive: reads running in other
        threads finish first, files and mounts made from it stay readable,
        later calls raise."""
        self._handle = None
        self._vfs = None

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        name = f"dareblopy.{type(self).__name__}"
        if self._handle is None:
            return f"<{name} closed>"
        return f"<{name} {self.path!r} {len(self)} {self._what}>"

    @property
    def path(self) -> str:
        from ._ffi import ffi
        return ffi.string(self._c.path(self._h())).decode("utf-8", "surrogateescape")

    def __len__(self) -> int:
        return self._c.count(self._h())

    def namelist(self) -> List[str]:
        """Entry names in archive order (duplicates included).  Names are
        UTF-8; other bytes decode with ``surrogateescape``, so every name
        round-trips to the bytes stored."""
        if self._names is None:
            from ._ffi import ffi, lib
            blob = ffi.new("char **")
            length = ffi.new("size_t *")
            check(self._c.names(self._h(), blob, length))
            try:
                data = ffi.unpack(blob[0], length[0])
            finally:
                lib.dbr_free(blob[0])
            try:
                names = data.decode("utf-8").split("\0")[:-1]
            except UnicodeDecodeError:
                names = [n.decode("utf-8", "surrogateescape") for n in data.split(b"\0")[:-1]]
            self._names = names
        return list(self._names)

    # ---- lookups

    def _slot(self, name: PathLike):
        """(index, size) of the entry called name."""
        try:
            return self._slots[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            pass
        h = self._h()
        idx = cells.size
        rc = self._c.find(h, encode_path(name), idx)
        if rc < 0:
            raise error_from_code(rc)
        slot = (idx[0], self._c.size(h, idx[0]))
        try:
            self._slots[name] = slot
        except TypeError:
            pass
        return slot

    def _index(self, name: PathLike) -> int:
        return self._slot(name)[0]

    # ---- reading

    def read(self, name: PathLike) -> bytes:
        """The entry's contents (for zip, CRC-checked), read straight into a
        new ``bytes`` object."""
        h = self._h()
        try:  # the hot path: a name read before
            index, size = self._slots[name]
        except (KeyError, TypeError):
            index, size = self._slot(name)
        obj = new_bytes(size)
        rc = self._c.read(h, index, obj, size, cells.size)
        if rc < 0:
            raise error_from_code(rc)
        return obj

    open_as_bytes = read

    def _dirs(self) -> FileSystem:
        with self._lock:
            fs = self._vfs
            if fs is None:
                fs = FileSystem()
                fs.mount_archive(self)
                self._vfs = fs
            return fs

    def exists(self, name: PathLike) -> bool:
        """True for an entry, or a directory that holds entries."""
        return name in self or self._dirs().exists(name)

    def list_directory(self, path: PathLike = "") -> List[str]:
        """Names directly in ``path`` (sorted; directories end with '/')."""
        return self._dirs().list_directory(path)

    # ---- mapping-style access

    def __contains__(self, name) -> bool:
        return self._c.find(self._h(), encode_path(name), cells.size) == 0

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self.namelist()))

    def keys(self) -> List[str]:
        return list(dict.fromkeys(self.namelist()))

    def __getitem__(self, name) -> bytes:
        try:
            return self.read(name)
        except NotFoundError as e:
            raise KeyError(name) from e

    def get(self, name, default=None):
        return self[name] if name in self else default
