"""ZIP archives: reading (libdbr's zip.c), VFS mounting and writing.

Names are ``str``: entries flagged UTF-8 and entries whose bytes are valid
UTF-8 decode as UTF-8 (zipfile would show the latter as cp437); any other
bytes decode with ``surrogateescape``, so every name round-trips to the
exact bytes stored."""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Union

import numpy as np

from ._buffers import as_uint8_out, cells, encode_path, new_bytes, resolve_shape
from ._batch import Outcomes, check_errors_mode
from ._errors import DbrError, InvalidArgumentError, NotFoundError, check, error_from_code
from ._ffi import ffi, lib
from ._archive import ArchiveBase, ArchiveFunctions
from ._files import File, PathLike

STORED = lib.DBR_ZIP_STORED
DEFLATED = lib.DBR_ZIP_DEFLATE
LZ4 = lib.DBR_ZIP_LZ4
METHODS = {"stored": STORED, "deflate": DEFLATED, "lz4": LZ4}

_entry_size = lib.dbr_zip_entry_size
_read = lib.dbr_zip_read


class ZipInfo:
    """One entry, with zipfile.ZipInfo's attribute names."""

    __slots__ = ("filename", "file_size", "compress_size", "compress_type", "CRC",
                 "date_time", "header_offset", "flag_bits", "external_attr", "mtime",
                 "index")

    @property
    def method(self) -> int:
        return self.compress_type

    def is_dir(self) -> bool:
        return self.filename.endswith("/")

    def __repr__(self) -> str:
        return (f"<ZipInfo {self.filename!r} method={self.compress_type} "
                f"size={self.file_size} compressed={self.compress_size} CRC={self.CRC:08x}>")


def _entry_dtype() -> np.dtype:
    """A numpy view of dbr_zip_entry, with offsets taken from cffi."""
    fields = [("size", "<u8"), ("compressed_size", "<u8"), ("header_offset", "<u8"),
              ("mtime", "<i8"), ("crc32", "<u4"), ("external_attr", "<u4"),
              ("method", "<u2"), ("flags", "<u2"), ("dos_date", "<u2"), ("dos_time", "<u2")]
    return np.dtype({"names": [f for f, _ in fields], "formats": [t for _, t in fields],
                     "offsets": [ffi.offsetof("dbr_zip_entry", f) for f, _ in fields],
                     "itemsize": ffi.sizeof("dbr_zip_entry")})


_ENTRY_DTYPE = _entry_dtype()


def _options(verify_crc: bool, mmap: bool, max_entry_size: Optional[int],
             max_entries: Optional[int]):
    opts = ffi.new("dbr_zip_options *")
    lib.dbr_zip_options_init(opts)
    opts.verify_crc = 1 if verify_crc else 0
    opts.use_pread = 0 if mmap else 1
    if max_entry_size is not None:
        opts.max_entry_size = max_entry_size
    if max_entries is not None:
        opts.max_entries = max_entries
    return opts


class Archive(ArchiveBase):
    """A ZIP archive opened for reading (see :func:`open_zip_archive`).

    Immutable once open: any number of threads may read from one Archive at
    once, and it keeps working in forked children (DataLoader workers).
    ``verify_crc=False`` skips the CRC-32 check of each read (it runs during
    the copy of stored entries, so it costs little); damaged entries are then
    returned silently.  ``mmap=True`` (default) maps the archive and serves
    reads from the page cache without a system call; the file must then not
    be truncated or rewritten in place while open (a process reading a page
    cut off by truncation dies of SIGBUS).  ``mmap=False`` reads with pread,
    and a shrunken file raises an error instead.  ``max_entry_size`` caps
    the declared size of compressed entries (default 1 GiB) and
    ``max_entries`` the number of entries, against hostile archives."""

    _c = ArchiveFunctions(lib.dbr_zip_find, lib.dbr_zip_entry_size, lib.dbr_zip_count,
                          lib.dbr_zip_path, lib.dbr_zip_names, lib.dbr_zip_read)

    def __init__(self, source: Union[PathLike, File], *, verify_crc: bool = True,
                 mmap: bool = True, max_entry_size: Optional[int] = None,
                 max_entries: Optional[int] = None):
        out = ffi.new("dbr_zip **")
        opts = _options(verify_crc, mmap, max_entry_size, max_entries)
        if isinstance(source, File):
            check(lib.dbr_zip_open_file(source._h(), opts, out))
        else:
            check(lib.dbr_zip_open(encode_path(source), opts, out))
        self._hold(ffi.gc(out[0], lib.dbr_zip_close))

    @property
    def comment(self) -> bytes:
        n = cells.size
        p = lib.dbr_zip_comment(self._h(), n)
        return ffi.unpack(p, n[0])

    def infolist(self) -> List[ZipInfo]:
        """A ZipInfo per entry: sizes, method, CRC, date_time and more."""
        h = self._h()
        count = lib.dbr_zip_count(h)
        names = self.namelist()
        raw = ffi.new("dbr_zip_entry[]", max(count, 1))
        check(lib.dbr_zip_entries(h, 0, count, raw))
        table = np.frombuffer(ffi.buffer(raw), dtype=_ENTRY_DTYPE, count=count)
        cols = {name: table[name].tolist() for name in _ENTRY_DTYPE.names}
        infos = []
        for i in range(count):
            info = ZipInfo()
            info.index = i
            info.filename = names[i]
            info.file_size = cols["size"][i]
            info.compress_size = cols["compressed_size"][i]
            info.compress_type = cols["method"][i]
            info.CRC = cols["crc32"][i]
            info.header_offset = cols["header_offset"][i]
            info.flag_bits = cols["flags"][i]
            info.external_attr = cols["external_attr"][i]
            info.mtime = cols["mtime"][i]
            d, t = cols["dos_date"][i], cols["dos_time"][i]
            info.date_time = ((d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F,
                              t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2)
            infos.append(info)
        return infos

    def getinfo(self, name: str) -> ZipInfo:
        return self.infolist()[self._index(name)]

    def _slot(self, name: PathLike):
        """(index, size) of the entry called name, or of the entry a ZipInfo
        of this archive describes (as zipfile takes one: it tells apart
        entries that share a name)."""
        if isinstance(name, ZipInfo):
            h = self._h()
            entry = ffi.new("dbr_zip_entry *")
            names = self._names if self._names is not None else self.namelist()
            if (name.index >= len(names) or names[name.index] != name.filename
                    or lib.dbr_zip_entries(h, name.index, 1, entry) != 0
                    or entry.header_offset != name.header_offset):
                raise NotFoundError(f"ZipInfo {name.filename!r} (header at offset "
                                    f"{name.header_offset}) is not an entry of archive "
                                    f"'{self.path}'")
            return name.index, _entry_size(h, name.index)
        return super()._slot(name)

    # ---- reading

    def open_as_numpy_ubyte(self, name: PathLike, shape=None,
                            out: Optional[np.ndarray] = None) -> np.ndarray:
        """The entry as a uint8 array of ``shape`` (one -1 allowed), or read
        into the caller's ``out``."""
        h = self._h()
        index, size = self._slot(name)
        what = f"{self.path}:{os.fsdecode(name)}"
        if out is None:
            out = np.empty(resolve_shape(shape, size, what), dtype=np.uint8)
        check(_read(h, index, as_uint8_out(out, size, what), size, cells.size))
        return out

    def read_many(self, names: Sequence[PathLike], threads: int = 0,
                  errors: str = "raise") -> List[Union[bytes, Exception]]:
        """Reads many entries in one C call on ``threads`` threads (0 = one
        per CPU).  errors="raise" raises for the first entry that fails;
        errors="return" puts each failed entry's exception (from libdbr's
        per-item outcome: nothing is read twice) in its place."""
        check_errors_mode(errors)
        slots, missing = [], {}
        for k, name in enumerate(names):
            try:
                slots.append(self._slot(name))
            except DbrError as exc:
                if errors == "raise":
                    raise
                missing[k] = exc
                slots.append((0, 0))  # read nothing; replaced below
        objs = self._read_slots(slots, threads, errors)
        for k, exc in missing.items():
            objs[k] = exc
        return objs

    def read_entries(self, indices: Sequence[int], threads: int = 0,
                     errors: str = "raise") -> List[Union[bytes, Exception]]:
        """Like :meth:`read_many`, by central-directory index (as
        ``infolist()`` numbers the entries; duplicates of a name too)."""
        check_errors_mode(errors)
        h = self._h()
        return self._read_slots([(i, _entry_size(h, i)) for i in indices], threads, errors)

    def _read_slots(self, slots, threads, errors):
        """(index, size) pairs read in one C call; each failure from the
        item's own outcome when errors="return"."""
        h = self._h()
        count = len(slots)
        sizes = [s for _, s in slots]
        objs = [new_bytes(s) for s in sizes]
        bufs = [ffi.from_buffer(o) for o in objs]
        outcomes = Outcomes(count) if errors == "return" else None
        rc = lib.dbr_zip_read_many_ex(
            h, ffi.new("size_t[]", [i for i, _ in slots]), count, ffi.new("void *[]", bufs),
            ffi.new("size_t[]", sizes), ffi.new("size_t[]", max(count, 1)), threads,
            *(outcomes.args if outcomes else (ffi.NULL, ffi.NULL, 0)))
        if rc < 0 and outcomes is None:
            raise error_from_code(rc)
        if rc < 0:
            for k, exc in outcomes.errors().items():
                objs[k] = exc
        return objs

    def open(self, name: PathLike) -> Optional[File]:
        """The entry as a :class:`dareblopy.File` (seekable, pread-able);
        None when there is no such entry, as in DareBlopy 0.0.5
        (``open_as_bytes`` and ``read`` raise NotFoundError instead)."""
        try:
            index = self._index(name)
        except NotFoundError:
            return None
        out = ffi.new("dbr_file **")
        check(lib.dbr_zip_open_entry(self._h(), index, out))
        return File(out[0])

    def read_jpg_as_numpy(self, filename: PathLike, use_turbo: bool = False,
                          **options) -> np.ndarray:
        """Decodes a JPEG entry to an HxWxC uint8 array; ``options`` are
        ``decode_jpeg``'s.  The signature is DareBlopy 0.0.5's (``use_turbo``
        is accepted and ignored: libjpeg-turbo's SIMD is always on)."""
        from ._jpeg import decode_jpeg  # the JPEG module is optional here
        return decode_jpeg(self.open_as_bytes(filename), **options)

    def _mount_into(self, vfs) -> None:
        check(lib.dbr_vfs_mount_zip(vfs, self._h()))


def open_zip_archive(source: Union[PathLike, File], **options) -> Archive:
    """Opens a ZIP archive from a path or an open :class:`dareblopy.File`
    (DareBlopy's name for ``Archive(source)``)."""
    return Archive(source, **options)


class ZipWriter:
    """Writes a ZIP archive atomically (temporary file, then rename): if the
    ``with`` block raises, or :meth:`close` is never reached, no archive
    appears.  ZIP64 is used where needed."""

    def __init__(self, path: PathLike, method: str = "deflate", level: int = 0):
        out = ffi.new("dbr_zip_writer **")
        check(lib.dbr_zip_writer_open(encode_path(path), out))
        self._w = ffi.gc(out[0], lib.dbr_zip_writer_free)
        self.method, self.level = self._method(method), level

    @staticmethod
    def _method(method) -> int:
        if isinstance(method, int):
            return method
        try:
            return METHODS[method]
        except KeyError:
            raise InvalidArgumentError(
                f"method {method!r}: choose one of {', '.join(METHODS)}") from None

    def _h(self):
        if self._w is None:
            raise ValueError("operation on a closed dareblopy.ZipWriter")
        return self._w

    def write(self, name: str, data=b"", method=None, level: Optional[int] = None,
              mtime: Optional[float] = None) -> None:
        """Adds an entry from a bytes-like object.  ``mtime`` is Unix
        seconds (default: now), stored as a local-time DOS timestamp."""
        import calendar
        import time
        buf = ffi.from_buffer(data)
        local = calendar.timegm(time.localtime(time.time() if mtime is None else mtime))
        check(lib.dbr_zip_writer_add(
            self._h(), encode_path(name), buf, len(buf),
            self.method if method is None else self._method(method),
            self.level if level is None else level, int(local)))

    writestr = write

    def mkdir(self, name: str, mtime: Optional[float] = None) -> None:
        self.write(name.rstrip("/") + "/", b"", method="stored", mtime=mtime)

    def close(self) -> None:
        """Finishes the archive and renames it into place."""
        if self._w is not None:
            try:
                check(lib.dbr_zip_writer_finish(self._w))
            finally:
                self.abort()

    def abort(self) -> None:
        """Drops the archive: nothing appears at the target path."""
        if self._w is not None:
            ffi.release(self._w)
            self._w = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()


__all__ = ["Archive", "ZipInfo", "ZipWriter", "open_zip_archive", "STORED", "DEFLATED",
           "LZ4", "METHODS"]
