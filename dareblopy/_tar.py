"""Tar archives (libdbr's tar.c) and WebDataset tar shards.

:class:`TarArchive` reads the members of a tar by name, like
:class:`Archive` reads a zip: the headers are scanned once and the member
index is cached beside the shard (``SHARD.tar.dbridx``, or in the per-user
cache when the folder is read-only), so later opens skip the scan; the
cached index records the shard's size and modification time and is rebuilt
when the shard changes.

:class:`TarShard` is a WebDataset shard as a :class:`ShardReader`: its
samples are the members grouped by key, exactly as ``webdataset`` groups
them (``000123.jpg``, ``000123.cls`` -> sample ``000123`` with fields
``jpg`` and ``cls``): the key is the name up to the first dot of its last
path component, the field the rest, lower-cased; consecutive members with
one key form a sample; ``__*__`` metadata members and names without a dot
are skipped.  Names are ``str`` (UTF-8, undecodable bytes kept with
``surrogateescape``, as tarfile does)."""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._batch import Outcomes, check_errors_mode
from ._buffers import cells, encode_path, new_bytes
from ._errors import (CorruptDataError, DbrError, InvalidArgumentError, NotFoundError, check,
                      error_from_code)
from ._ffi import ffi, lib
from ._archive import ArchiveBase, ArchiveFunctions
from ._files import File, PathLike
from ._remote import file_name
from ._shards import ArchiveShard, Sample
from ._tar_decompress import readable_tar

INDEX_SUFFIX = ".dbridx"

_entry_size = lib.dbr_tar_entry_size


def _options(mmap: bool, max_members: Optional[int], max_header_size: Optional[int],
             keep_intact_prefix: bool = False):
    opts = ffi.new("dbr_tar_options *")
    lib.dbr_tar_options_init(opts)
    opts.use_pread = 0 if mmap else 1
    opts.keep_intact_prefix = 1 if keep_intact_prefix else 0
    if max_members is not None:
        opts.max_members = max_members
    if max_header_size is not None:
        opts.max_header_size = max_header_size
    return opts


def _open_cached(path: str, opts, cache_dir: Optional[str], use_cache: bool):
    """A dbr_tar handle, opened with a cached index when a fresh one exists;
    otherwise scanned, with the index stored where the rules of
    ``_index_cache`` put it (a cache: failing to store it is not an
    error)."""
    from ._index_cache import index_locations
    raw = encode_path(path)
    out = ffi.new("dbr_tar **")
    locations = index_locations(path, INDEX_SUFFIX, cache_dir) if use_cache else []
    for location in locations:
        try:
            with open(location, "rb") as fh:
                blob = fh.read()
        except OSError:
            continue
        if lib.dbr_tar_open_indexed(raw, opts, blob, len(blob), out) == 0:
            return out[0]
    check(lib.dbr_tar_open(raw, opts, out))
    handle = out[0]
    if locations and lib.dbr_tar_damage(handle) == ffi.NULL:  # a damaged tar keeps no index
        _save_index(handle, locations)
    return handle


def _save_index(handle, locations: Sequence[str]) -> None:
    from ._index_cache import store_index
    blob = ffi.new("void **")
    size = ffi.new("size_t *")
    if lib.dbr_tar_save_index(handle, blob, size) < 0:
        return
    try:
        data = ffi.buffer(blob[0], size[0])[:]
    finally:
        lib.dbr_free(blob[0])
    store_index(locations, lambda location: _write_atomically(location, data))


def _write_atomically(path: str, data: bytes) -> None:
    from ._atomic import atomic_write
    with atomic_write(path, "wb", fsync=False) as fh:  # a cache: rebuilt if lost
        fh.write(data)


class TarArchive(ArchiveBase):
    """A tar archive opened for reading.

    Immutable once open: any number of threads may read from one archive,
    and it keeps working in forked children.  ``cache_index`` (default
    True) keeps the member index beside the file (or in ``cache_dir``, or
    the per-user cache when the folder is read-only).  ``mmap=True`` serves
    reads from a mapping of the file (it must then not be truncated in
    place while open); ``mmap=False`` uses pread.  ``max_members`` and
    ``max_header_size`` (pax / long name records) bound what a hostile file
    can make libdbr allocate.

    A tar whose structure breaks part-way (cut off, or a damaged header)
    raises CorruptDataError naming the file, the offset and the member
    before the break.  ``keep_intact_prefix=True`` opens it with the members
    before the break instead (as tarfile and webdataset read them), and
    :attr:`damage` holds that error; a tar broken before its first member
    raises either way.

    A compressed tar (``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``,
    recognised by its content) is decompressed once into ``cache_dir``, else
    into the per-user cache, and read from there (see
    :mod:`dareblopy._tar_decompress`); :attr:`path` is then that copy."""

    _c = ArchiveFunctions(lib.dbr_tar_find, lib.dbr_tar_entry_size, lib.dbr_tar_count,
                          lib.dbr_tar_path, lib.dbr_tar_names, lib.dbr_tar_read)
    _what = "members"

    def __init__(self, path: PathLike, *, cache_index: bool = True,
                 cache_dir: Optional[str] = None, mmap: bool = True,
                 max_members: Optional[int] = None, max_header_size: Optional[int] = None,
                 keep_intact_prefix: bool = False):
        path = os.fsdecode(encode_path(path))
        opts = _options(mmap, max_members, max_header_size, keep_intact_prefix)
        with readable_tar(path, cache_dir) as (plain, cut):
            if cut is not None and not keep_intact_prefix:
                raise cut
            try:
                handle = _open_cached(plain, opts, cache_dir, cache_index and cut is None)
            except DbrError as exc:
                if cut is not None:  # nothing whole before the cut
                    raise cut from exc
                raise
        self._hold(ffi.gc(handle, lib.dbr_tar_close))
        damage = lib.dbr_tar_damage(handle)
        #: None, or the CorruptDataError that ended the member index
        #: (only with keep_intact_prefix=True).
        self.damage: Optional[CorruptDataError] = cut or (
            None if damage == ffi.NULL else CorruptDataError(ffi.string(damage).decode(
                "utf-8", "replace")))

    def entries(self) -> np.ndarray:
        """A structured array of every member: ``size``, ``offset`` (of the
        data), ``header_offset``, ``mtime``, ``mode`` and ``is_dir``."""
        h = self._h()
        count = lib.dbr_tar_count(h)
        raw = ffi.new("dbr_tar_entry[]", max(count, 1))
        check(lib.dbr_tar_entries(h, 0, count, raw))
        return np.frombuffer(ffi.buffer(raw), dtype=_ENTRY_DTYPE, count=count).copy()

    contains = ArchiveBase.__contains__

    # ---- reading

    def read_indices(self, indices: Sequence[int], threads: int = 1,
                     errors: str = "raise") -> List[Union[bytes, Exception]]:
        """Members by position (as in :meth:`namelist`), read in one C call
        on ``threads`` threads (0 = one per CPU).  errors="raise" raises the
        first failure; "return" puts each failed member's exception (from
        libdbr's per-item outcome) in its place."""
        check_errors_mode(errors)
        h = self._h()
        n = len(indices)
        if n == 0:
            return []
        count = lib.dbr_tar_count(h)
        out: List = [None] * n
        c_indices = ffi.new("size_t[]", n)
        dsts = ffi.new("void *[]", n)
        caps = ffi.new("size_t[]", n)
        for i, index in enumerate(indices):
            index = int(index)
            if not 0 <= index < count:
                raise IndexError(f"tar '{self.path}': no member {index} (it has {count})")
            size = _entry_size(h, index)
            obj = new_bytes(size)
            out[i] = obj
            c_indices[i] = index
            dsts[i] = ffi.from_buffer(obj)
            caps[i] = size
        outcomes = Outcomes(n) if errors == "return" else None
        rc = lib.dbr_tar_read_many(h, c_indices, n, dsts, caps, ffi.NULL, threads,
                                   *(outcomes.args if outcomes else (ffi.NULL, ffi.NULL, 0)))
        if rc < 0 and outcomes is None:
            raise error_from_code(rc)
        if rc < 0:
            for k, exc in outcomes.errors().items():
                out[k] = exc
        return out

    def read_many(self, names: Sequence[PathLike], threads: int = 1) -> List[bytes]:
        """Reads many members in one C call; raises for the first that
        fails."""
        return self.read_indices([self._slot(n)[0] for n in names], threads)

    def open(self, name: PathLike) -> File:
        """The member as a :class:`dareblopy.File` (a window onto the tar)."""
        out = ffi.new("dbr_file **")
        check(lib.dbr_tar_open_entry(self._h(), self._slot(name)[0], out))
        return File(out[0])

    def _mount_into(self, vfs) -> None:
        check(lib.dbr_vfs_mount_tar(vfs, self._h()))


def _entry_dtype() -> np.dtype:
    fields = [("size", "<u8"), ("offset", "<u8"), ("header_offset", "<u8"), ("mtime", "<i8"),
              ("mode", "<u4"), ("is_dir", "<u4")]
    return np.dtype({"names": [f for f, _ in fields], "formats": [t for _, t in fields],
                     "offsets": [ffi.offsetof("dbr_tar_entry", f) for f, _ in fields],
                     "itemsize": ffi.sizeof("dbr_tar_entry")})


_ENTRY_DTYPE = _entry_dtype()


def open_tar_archive(path: PathLike, **options) -> TarArchive:
    """Opens a tar archive (see :class:`TarArchive` for the options)."""
    return TarArchive(path, **options)


# ---- WebDataset samples ---------------------------------------------------

# webdataset's rules (tariterators.py), so samples match it exactly.
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_SKIP_META = re.compile(r"__[^/]*__($|/)")


def split_key(name: str) -> Tuple[Optional[str], Optional[str]]:
    """(key, extension) of a member name, as webdataset splits it: the key
    runs to the first dot of the last path component; (None, None) when
    that component has no dot."""
    match = _KEY_EXT.match(name)
    if not match:
        return None, None
    return match.group(1), match.group(2)


def group_samples(names: Sequence[str], regular: Sequence[bool], where: str = ""
                  ) -> List[Tuple[str, Dict[str, int]]]:
    """WebDataset samples of a member list: ``(key, {extension: member
    position})`` for each run of consecutive members sharing a key, with
    webdataset's skips (non-files, ``__*__`` metadata, names without an
    extension).  Extensions are lower-cased; a repeated extension within
    a sample is CorruptDataError, as webdataset raises for it."""
    samples: List[Tuple[str, Dict[str, int]]] = []
    key: Optional[str] = None
    fields: Dict[str, int] = {}
    for i, name in enumerate(names):
        if not regular[i]:
            continue
        if "/" not in name and name.startswith("__") and name.endswith("__"):
            continue
        if _SKIP_META.match(name):
            continue
        prefix, ext = split_key(name)
        if prefix is None:
            continue
        ext = ext.lower()
        if key is None or prefix != key:
            if key is not None:
                samples.append((key, fields))
            key, fields = prefix, {}
        if ext in fields:
            raise CorruptDataError(f"{where}member '{name}': sample '{key}' already has a "
                                   f"'{ext}' member (duplicate file name in the tar)")
        fields[ext] = i
    if key is not None:
        samples.append((key, fields))
    return samples


IMAGE_EXTENSIONS = ("jpg", "jpeg")
LABEL_EXTENSION = "cls"


def decode_jpeg_members(archive: TarArchive, members: Sequence[int], *, errors: str = "raise",
                        **kwargs):
    """Like :func:`dareblopy.decode_jpeg_entries`, for members of a
    :class:`TarArchive` by position: each C worker decodes its member where
    it lies in the tar's mapping, so the bytes never become Python objects
    and are not even copied."""
    from ._jpeg import _batch_options, _displayed_size, _run_batch
    options = _batch_options("decode_jpeg_members", kwargs, errors)
    h = archive._h()
    indices = [int(m) for m in members]
    n = len(indices)
    if min(indices, default=0) < 0:
        raise InvalidArgumentError(f"decode_jpeg_members: negative member {min(indices)}")
    cindices = ffi.new("size_t[]", indices) if n else ffi.NULL

    def first_size():
        return _displayed_size(archive.read_indices(indices[:1])[0],
                               options["apply_orientation"])

    def call(opts, c, first, dst, cap, nthreads, statuses, results, messages, message_cap):
        return lib.dbr_jpeg_decode_tar(h, n, cindices, opts, c, first, dst, cap, nthreads,
                                       statuses, results, messages, message_cap)

    return _run_batch(call, n, first_size, **options)


class TarShard(ArchiveShard):
    """A WebDataset tar shard as a :class:`ShardReader`: sample ``i`` is
    the ``i``-th group of members sharing a key, read as a dict
    ``{"__key__": key, ext: bytes, ...}`` (only the extensions in
    ``extensions``, when given) and named ``<shard file name>/<key>``; its
    label is its ``cls`` member (an integer, as webdataset decodes it), when
    it has one.  One C call reads every member of a batch; the image
    pipeline decodes the ``jpg``/``jpeg`` members straight from the tar's
    mapping (:meth:`decode_jpegs`).  The archive is opened on first use in
    each process, with the cached index.

    ``mmap=False`` (the default, as for zip shards) reads with pread, so a
    shard truncated in place while open gives an error for what it lost
    instead of killing the process with SIGBUS; ``mmap=True`` serves reads,
    and the image pipeline's decodes, straight from a mapping of the
    file.

    A shard whose tar structure breaks part-way (a truncated download, say)
    keeps the samples before the break, and :attr:`damage` says where it
    broke; the dataset then raises or, in skip mode, skips the rest of the
    shard with that one reason (as for TFRecord shards).  The last sample
    before the break may have lost members; reading what it lacks fails for
    that sample alone."""

    def __init__(self, path: PathLike, extensions: Optional[Sequence[str]] = None, *,
                 cache_dir: Optional[str] = None, mmap: bool = False, source=None):
        super().__init__(path, source)
        self.extensions = tuple(e.lower() for e in extensions) if extensions else None
        self.cache_dir = cache_dir
        self.mmap = bool(mmap)
        self._samples: Optional[List[Tuple[str, Dict[str, int]]]] = None
        self._images: Optional[List[int]] = None
        self._labels: Optional[List[Union[int, None, Exception]]] = None

    def _open(self) -> TarArchive:
        if self.source is None:
            archive = TarArchive(self.path, cache_dir=self.cache_dir, mmap=self.mmap,
                                 keep_intact_prefix=True)
            self.damage = archive.damage
        else:  # a compressed one is decompressed inside the cache's limit
            with self.source.readable_tar() as (path, cut):
                archive = TarArchive(path, cache_dir=self.cache_dir or self.source.index_dir(),
                                     mmap=self.mmap, keep_intact_prefix=True)
            self.damage = cut or archive.damage
        if self._samples is None:
            regular = (archive.entries()["is_dir"] == 0).tolist()
            self._samples = group_samples(archive.namelist(), regular,
                                          f"tar shard '{self.path}': ")
        return archive

    def _forget_listing(self) -> None:
        self._samples = self._images = self._labels = None

    def _table(self) -> List[Tuple[str, Dict[str, int]]]:
        if self._samples is None:
            self.archive()
        return self._samples

    def __len__(self) -> int:
        return len(self._table())

    def key(self, index: int) -> str:
        return self._table()[index][0]

    def name(self, index: int) -> str:
        return file_name(self.path) + "/" + self._table()[index][0]

    def fields(self, index: int) -> List[str]:
        """The extensions sample ``index`` has, in archive order."""
        return list(self._table()[index][1])

    def describe(self, index: int) -> str:
        return f"sample '{self.key(index)}' of tar '{self.path}'"

    def read(self, indices: Sequence[int], threads: int = 1) -> List[Union[dict, Exception]]:
        table = self._table()
        wanted = self.extensions
        plan: List[Tuple[int, str]] = []  # (sample slot, extension) per member read
        members: List[int] = []
        for slot, i in enumerate(indices):
            for ext, member in table[i][1].items():
                if wanted is None or ext in wanted:
                    plan.append((slot, ext))
                    members.append(member)
        try:
            archive = self.archive()
        except OSError as exc:  # gone, changed, or a remote shard out of reach
            return [exc] * len(indices)
        raws = archive.read_indices(members, threads=threads, errors="return")
        out: List[Union[dict, Exception]] = [{"__key__": table[i][0]} for i in indices]
        for (slot, ext), raw in zip(plan, raws):
            if isinstance(out[slot], BaseException):
                continue  # the sample already failed on another member
            if isinstance(raw, BaseException):
                out[slot] = raw
            else:
                out[slot][ext] = raw
        return out

    def read_samples(self, indices: Sequence[int],
                     threads: int = 1) -> List[Union[Sample, Exception]]:
        out: List[Union[Sample, Exception]] = []
        for i, got in zip(indices, self.read(indices, threads)):
            if isinstance(got, BaseException):
                out.append(got)
                continue
            try:
                label = self._label(i, got[LABEL_EXTENSION]) if LABEL_EXTENSION in got else None
            except CorruptDataError as exc:
                out.append(exc)
                continue
            out.append(Sample(self.name(i), got, label))
        return out

    def _label(self, index: int, raw: bytes) -> int:
        try:
            return int(raw)  # webdataset decodes .cls with int()
        except ValueError:
            raise CorruptDataError(f"{self.describe(index)}: its '{LABEL_EXTENSION}' member "
                                   f"{raw[:40]!r} is not an integer") from None

    def labels_of(self, indices: Sequence[int]) -> List[Union[int, None, Exception]]:
        """The label of each sample (its ``cls`` member), None for samples
        without one, or the exception reading it raised.  Every label of
        the shard is read in one C call on first use and kept, so batches
        cost a lookup."""
        if self._labels is None:
            table = self._table()
            has = [i for i, (_, f) in enumerate(table) if LABEL_EXTENSION in f]
            raws = self.archive().read_indices([table[i][1][LABEL_EXTENSION] for i in has],
                                               errors="return")
            labels: List[Union[int, None, Exception]] = [None] * len(table)
            for i, raw in zip(has, raws):
                try:
                    labels[i] = raw if isinstance(raw, BaseException) else self._label(i, raw)
                except CorruptDataError as exc:
                    labels[i] = exc
            self._labels = labels
        return [self._labels[i] for i in indices]

    def _image_members(self) -> List[int]:
        if self._images is None:
            self._images = [next((f[e] for e in IMAGE_EXTENSIONS if e in f), -1)
                            for _, f in self._table()]
        return self._images

    def decode_jpegs(self, indices: Sequence[int], **options):
        """Decodes each sample's ``jpg`` (or ``jpeg``) member straight into
        the batch (see :func:`decode_jpeg_members`): the array and each
        item's exception or None.  A sample without one fails alone."""
        try:
            archive = self.archive()
        except OSError as exc:  # gone, changed, or a remote shard out of reach
            return None, [exc] * len(indices)
        images = self._image_members()
        members = [images[i] for i in indices]
        missing = len(archive)  # an index past the end: that item fails alone
        out, errors = decode_jpeg_members(archive, [m if m >= 0 else missing for m in members],
                                          errors="return", **options)
        errors = [NotFoundError(f"{self.describe(i)} has no {' or '.join(IMAGE_EXTENSIONS)} "
                                f"member") if m < 0 else err
                  for i, m, err in zip(indices, members, errors)]
        return out, errors



def tar_shards(paths: Union[PathLike, Sequence[PathLike]],
               extensions: Optional[Sequence[str]] = None, *,
               cache_dir: Optional[str] = None, mmap: bool = False, cache=None,
               storage_options: Optional[Dict[str, Any]] = None,
               manifest: Optional[PathLike] = None) -> List[TarShard]:
    """One :class:`TarShard` per WebDataset tar file, in the order given.
    URLs and brace patterns as for :func:`dareblopy.zip_shards`; URLs need a
    ``cache`` (a tar has no directory to read by ranges, so counting a
    shard's samples downloads it).  Compressed shards are decompressed once
    into ``cache_dir`` (else the per-user cache; see
    :mod:`dareblopy._tar_decompress`)."""
    from ._source import resolve
    return [TarShard(p, extensions, cache_dir=cache_dir, mmap=mmap, source=s)
            for p, s in resolve(paths, cache, storage_options, manifest)]


__all__ = ["TarArchive", "open_tar_archive", "TarShard", "tar_shards", "split_key",
           "group_samples", "decode_jpeg_members"]
