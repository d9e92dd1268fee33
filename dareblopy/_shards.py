"""Shard readers: numbered samples stored in a directory, a zip archive or
an indexed TFRecord file, read several at a time.

The protocol (:class:`ShardReader`; subclassing is optional):

- ``len(shard)`` and ``shard.name(i)``: the sample count and each sample's
  name (the key that labels are looked up by);
- ``shard.read(indices, threads=1)``: each sample's bytes, or the exception
  that reading it raised, in the order asked, so one bad sample never hides
  the others; ``threads`` is the share of the dataset's thread budget this
  call may use (readers that take no ``threads`` argument still work);
- optional: ``read_samples(indices, threads)`` (:class:`Sample` s that carry
  their own name and label, as TFRecord Examples do), ``decode_jpegs``
  (entries decoded straight into a batch array, see
  :mod:`dareblopy._pipeline`), ``labels_of(indices)`` (the labels a shard
  that decodes directly carries, as tar shards' ``cls`` members do), ``sort_key`` (the canonical order of shards),
  ``damage`` (the error that cut the shard short, see below) and
  ``close()`` (releases handles; the reader reopens them on demand).

A reader must be picklable (torch sends it to worker processes) and usable
from several threads at once.

Damage: a TFRecord file whose framing breaks part-way keeps the records
before the break; ``damage`` then holds the error (naming the file and the
offset) and the dataset decides, by its ``on_error``, whether to raise or
to skip the rest of the shard with that one reason.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from ._errors import CorruptDataError, DbrError, error_from_code
from ._ffi import ffi, lib
from ._files import read_files
from ._remote import file_name
from ._source import resolve as resolve_sources

__all__ = ["ShardReader", "ArchiveShard", "Sample", "DirectoryShard", "ZipShard", "TFRecordShard",
           "directory_shards", "zip_shards", "tfrecord_shards"]

PathLike = Union[str, os.PathLike]


class Sample(NamedTuple):
    """One sample as a shard delivers it: its name, its data, and the label
    the shard itself knows (None when the shard has none)."""

    name: str
    data: Any
    label: Optional[int] = None


class ShardReader:
    """The protocol a shard implements (see the module docstring)."""

    #: The error that cut this shard short (records after it are unreadable).
    damage: Optional[BaseException] = None

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, index: int) -> str:
        raise NotImplementedError

    def read(self, indices: Sequence[int], threads: int = 1) -> List[Union[bytes, Exception]]:
        raise NotImplementedError

    def read_samples(self, indices: Sequence[int],
                     threads: int = 1) -> List[Union[Sample, Exception]]:
        """Names and data of samples (no labels): :meth:`read` plus
        :meth:`name`."""
        raws = call_read(self, indices, threads)
        return [r if isinstance(r, BaseException) else Sample(self.name(i), r)
                for i, r in zip(indices, raws)]

    def describe(self, index: int) -> str:
        """Where sample ``index`` lives, for error messages."""
        return f"sample {index} of {self!r}"

    @property
    def sort_key(self) -> Optional[str]:
        """The shard's place in the canonical order (None: no canonical
        place; datasets then keep the order they were given)."""
        return None

    def close(self) -> None:
        pass


_takes_threads = {}


def call_read(shard, indices, threads):
    """shard.read(indices, threads=threads), or shard.read(indices) for
    readers written before the thread budget existed."""
    cls = type(shard)
    takes = _takes_threads.get(cls)
    if takes is None:
        import inspect
        try:
            takes = "threads" in inspect.signature(shard.read).parameters
        except (TypeError, ValueError):
            takes = False
        _takes_threads[cls] = takes
    return shard.read(indices, threads=threads) if takes else shard.read(indices)


def read_samples(shard, indices, threads) -> List[Union[Sample, Exception]]:
    """shard.read_samples, or the generic one for readers without it."""
    own = getattr(shard, "read_samples", None)
    if own is not None:
        return own(indices, threads)
    return ShardReader.read_samples(shard, indices, threads)


def read_grouped(parts, threads) -> List[Union[Sample, Exception]]:
    """read_samples of several (shard, indices) parts, in order.  Plain
    files of several directory shards are read in one batch of C calls
    (a shuffled batch touches many such shards, and each call has a fixed
    cost: starting its threads, releasing the GIL)."""
    if len(parts) > 1 and all(type(shard) is DirectoryShard for shard, _ in parts):
        places = [(shard, i) for shard, indices in parts for i in indices]
        raws = read_files([shard.paths[i] for shard, i in places], threads=threads,
                          errors="return")
        return [raw if isinstance(raw, BaseException) else Sample(shard.files[i], raw)
                for (shard, i), raw in zip(places, raws)]
    out: List[Union[Sample, Exception]] = []
    for shard, indices in parts:
        out += read_samples(shard, indices, threads)
    return out


class _Handle:
    """A handle a reader opens on first use in each process and reopens
    after close(); opening is serialised so two threads never both open.
    Picklable: only the reader's settings travel."""

    def __init__(self):
        self._value = None
        self._pid = None
        self._lock = threading.Lock()

    def get(self, opener):
        value, pid = self._value, self._pid
        if value is not None and pid == os.getpid():
            return value
        if pid != os.getpid():  # a forked child: the parent's lock may be held
            self._lock = threading.Lock()
        with self._lock:
            if self._value is None or self._pid != os.getpid():
                self._value = opener()
                self._pid = os.getpid()
            return self._value

    def drop(self):
        """Forgets the handle and returns it (None if there was none in this
        process); the caller closes it."""
        with self._lock:
            value, self._value = self._value, None
            mine = self._pid == os.getpid()
        return value if mine else None

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


class FileVersion:
    """Which version of a local shard file its samples were listed from.
    A shard reopened after eviction, or in a worker process, must read that
    same file: a file replaced (a repack renames new shards over old ones)
    or rewritten in place would have its entries read under the old
    listing's names and numbers.  Picklable (it travels to workers)."""

    def __init__(self):
        self.identity: Optional[tuple] = None

    @staticmethod
    def of(path: str) -> tuple:
        """A rename over the file changes the inode, a rewrite in place the
        size or mtime."""
        st = os.stat(path)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def open(self, path: str, opener: Callable[[], Any], forget: Callable[[], None]):
        """``opener()``, unless the file at ``path`` is no longer the one
        first opened (ShardChangedError; on a first open that raced with a
        change, ``forget()`` drops what the opener listed)."""
        before = self.of(path)
        listed = self.identity is not None
        value = opener()
        now = self.of(path)
        if now != before or (listed and now != self.identity):
            if not listed:
                forget()
            from ._remote import ShardChangedError
            raise ShardChangedError(path, "the file changed since its samples were listed "
                                          "(replaced or rewritten during the run); start a "
                                          "new dataset to read the new file")
        self.identity = now
        return value


# ---- directories -----------------------------------------------------------


class DirectoryShard(ShardReader):
    """A shard made of plain files.  Names are the paths relative to
    ``root`` (or the paths as given when there is no root)."""

    def __init__(self, files: Sequence[PathLike], root: Optional[PathLike] = None):
        self.root = os.fspath(root) if root is not None else None
        self.files = [os.fspath(f) for f in files]
        # Joined once: the read loop below is the per-sample hot path.
        self.paths = (self.files if self.root is None else
                      [os.path.join(self.root, f) for f in self.files])

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return self.files[index]

    def describe(self, index: int) -> str:
        return f"file '{self.paths[index]}'"

    @property
    def sort_key(self) -> Optional[str]:
        return self.files[0] if self.files else ""

    def read(self, indices: Sequence[int], threads: int = 1) -> List[Union[bytes, Exception]]:
        # One batch of C calls; failures are reported per sample.
        return read_files([self.paths[i] for i in indices], threads=threads, errors="return")

    def decode_jpegs(self, indices: Sequence[int], **options):
        """Decodes the files straight into a batch: each C worker reads and
        decodes its own file (see :func:`dareblopy.decode_jpeg_files`)."""
        from ._jpeg import decode_jpeg_files
        return decode_jpeg_files([self.paths[i] for i in indices], errors="return", **options)

    def __repr__(self) -> str:
        return f"DirectoryShard({len(self.files)} files, root={self.root!r})"


def directory_shards(root: PathLike, files_per_shard: int = 1024,
                     extensions: Optional[Sequence[str]] = None) -> List[DirectoryShard]:
    """Every file under ``root`` (recursively, in sorted order; only those
    ending in one of ``extensions`` if given), cut into shards of
    ``files_per_shard`` files."""
    if files_per_shard < 1:
        raise ValueError(f"files_per_shard must be >= 1, not {files_per_shard}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise NotADirectoryError(f"directory_shards: {root!r} is not a directory")
    ext = tuple(e.lower() for e in extensions) if extensions else None
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for f in sorted(filenames):
            if ext is None or f.lower().endswith(ext):
                files.append(f if rel == "." else os.path.join(rel, f))
    return [DirectoryShard(files[i:i + files_per_shard], root)
            for i in range(0, len(files), files_per_shard)]


# ---- zip archives ----------------------------------------------------------


class ArchiveShard(ShardReader):
    """What a shard over one archive file (zip, tar) shares: the archive is
    opened by the subclass's ``_open`` on first use in each process,
    reopens after :meth:`close`, stays behind when the reader is pickled,
    and shards order by file name."""

    def __init__(self, path: PathLike, source=None):
        self.path = os.fspath(path)
        self.source = source  # a URL's RemoteSource: a cache, or range reads (_source.py)
        self._archive = _Handle()
        self._version = FileVersion()

    def archive(self):
        """The open archive (opened in this process on first use)."""
        return self._archive.get(self._open_unchanged)

    def _open(self):
        raise NotImplementedError

    def _forget_listing(self) -> None:
        """Drops what ``_open`` learnt about the samples (names, members)."""
        raise NotImplementedError

    def _open_unchanged(self):
        """``_open()`` of the same file version as the first open (remote
        shards check their version in their source)."""
        if self.source is not None:
            return self._open()
        return self._version.open(self.path, self._open, self._forget_listing)

    @property
    def sort_key(self) -> Optional[str]:
        return file_name(self.path) + "\0" + self.path

    def close(self) -> None:
        archive = self._archive.drop()
        if archive is not None:
            archive.close()
        if self.source is not None:
            self.source.release()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_archive"] = _Handle()
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class ZipShard(ArchiveShard):
    """A zip archive as a shard: its file entries, in central-directory
    order.  The archive is opened on first use in each process, reads a
    batch with one C call, and names samples ``<archive file name>/<entry>``.

    ``mmap=False`` (the default) reads with pread, so a shard truncated
    while open gives an error for the entries it lost instead of killing
    the process with SIGBUS; in the image pipeline it measured as fast as
    ``mmap=True``, which serves reads from a mapping of the archive (see
    :class:`dareblopy.Archive` and README, "Data loading").  Other keywords
    (``verify_crc``, ``max_entry_size``, ...) go to
    :func:`dareblopy.open_zip_archive`."""

    def __init__(self, path: PathLike, *, mmap: bool = False, source=None, **archive_options):
        super().__init__(path, source)
        self.options = dict(archive_options, mmap=bool(mmap))
        self._names: Optional[List[str]] = None
        self._indices: Optional[List[int]] = None  # central-directory index of each sample

    def _open(self):
        try:
            from ._zip import open_zip_archive
        except ImportError as exc:  # the zip layer is not built in
            raise ImportError(f"ZipShard({self.path!r}) needs dareblopy's zip support") from exc
        archive = (open_zip_archive(self.path, **self.options) if self.source is None
                   else self.source.open_zip(**self.options))
        if self._names is None:
            self._list(archive.namelist())
        return archive

    def _forget_listing(self) -> None:
        self._names = self._indices = None

    def _list(self, namelist: List[str]) -> None:
        pairs = [(i, n) for i, n in enumerate(namelist) if not n.endswith("/")]
        self._indices = [i for i, _ in pairs]
        self._names = [n for _, n in pairs]

    def _entries(self) -> List[str]:
        if self._names is None:
            if self.source is not None:  # counting a remote shard downloads nothing
                self._list(self.source.zip_namelist())
            else:
                self.archive()
        return self._names

    def _archive_for(self, entries: List[int]):
        archive = self.archive()
        if self.source is not None:
            self.source.before_read(archive, entries)
        return archive

    def __len__(self) -> int:
        return len(self._entries())

    def name(self, index: int) -> str:
        return file_name(self.path) + "/" + self._entries()[index]

    def entry(self, index: int) -> int:
        """The central-directory index of sample ``index``."""
        self._entries()
        return self._indices[index]

    def describe(self, index: int) -> str:
        return f"entry '{self._entries()[index]}' of '{self.path}'"

    def read(self, indices: Sequence[int], threads: int = 1) -> List[Union[bytes, Exception]]:
        self._entries()
        entries = [self._indices[i] for i in indices]
        try:
            archive = self._archive_for(entries)
        except OSError as exc:  # a remote shard out of reach: each sample says so
            return [exc] * len(entries)
        return archive.read_entries(entries, threads=threads, errors="return")

    def decode_jpegs(self, indices: Sequence[int], **options):
        """Decodes the entries straight into a batch: C workers read each
        entry from the archive and decode it (see
        :func:`dareblopy.decode_jpeg_entries`)."""
        from ._jpeg import decode_jpeg_entries
        self._entries()
        entries = [self._indices[i] for i in indices]
        try:
            archive = self._archive_for(entries)
        except OSError as exc:  # a remote shard out of reach: each sample says so
            return None, [exc] * len(entries)
        return decode_jpeg_entries(archive, entries, errors="return", **options)


def zip_shards(paths: Union[PathLike, Sequence[PathLike]], *, cache=None,
               storage_options: Optional[Dict[str, Any]] = None,
               manifest: Optional[PathLike] = None, **options) -> List[ZipShard]:
    """One :class:`ZipShard` per archive; ``options`` (``mmap``,
    ``verify_crc``, ...) go to each.  Paths may be URLs and brace patterns
    (``s3://bucket/train-{00000..00099}.zip``), read through ``cache`` (a
    :class:`dareblopy.ShardCache`) or, without one, by range reads; see
    :func:`dareblopy._source.resolve`."""
    return [ZipShard(p, source=s, **options)
            for p, s in resolve_sources(paths, cache, storage_options, manifest)]


# ---- TFRecord files --------------------------------------------------------


class TFRecordShard(ShardReader):
    """An uncompressed TFRecord file of tf.train.Example records as a shard,
    found through the file's index (``FILE.idx``, built and cached on first
    use; see :func:`dareblopy.load_index`).

    By default the records are those ``dareblopy pack --format tfrecord``
    writes: the sample's data is the bytes feature ``data``, its name the
    bytes feature ``path``, its label the int64 feature ``label`` (when
    present).  Other layouts name their features: ``data="image/encoded"``,
    ``key="image/filename"``, ``label="image/class/label"``; ``key=None``
    names samples ``<file name>/<record number>``, ``label=None`` reads no
    label, and ``data=None`` makes each sample the whole serialized record
    (give the dataset a ``transform`` that parses it, see RecordParser).

    A file whose framing breaks part-way keeps the records before the break
    (:attr:`damage` says where it broke).  Compressed files cannot seek, so
    they cannot be shards."""

    def __init__(self, path: PathLike, *, data: Optional[str] = "data",
                 key: Optional[str] = "path", label: Optional[str] = "label",
                 verify_crc: bool = True, source=None):
        self.path = os.fspath(path)
        self.source = source  # a URL's RemoteSource: read from its cached download
        self.features = (data, key if data else None, label if data else None)
        self.verify_crc = bool(verify_crc)
        self._reader = _Handle()
        self._count: Optional[int] = None
        self.damage: Optional[BaseException] = None
        self._partial_index: Optional[np.ndarray] = None  # a damaged file's readable records
        self._version = FileVersion()

    def _open(self):
        from ._tfrecord import RecordReader, load_index
        path, index_dir = ((self.path, None) if self.source is None else
                           (self.source.local_path(), self.source.index_dir()))
        reader = RecordReader(path, verify_crc=self.verify_crc)
        index = self._partial_index
        if index is None:
            try:
                index = load_index(path, cache_dir=index_dir)
            except CorruptDataError as exc:
                # Kept, so reopening (after eviction) never rescans the file.
                index = self._partial_index = _index_before_damage(reader.file)
                self.damage = exc
        self._count = len(index)
        return reader, index, _parser(*self.features)

    def _handles(self):
        if self.source is not None:
            return self._reader.get(self._open)
        return self._reader.get(lambda: self._version.open(self.path, self._open,
                                                           self._forget_listing))

    def _forget_listing(self) -> None:
        self._count = self._partial_index = self.damage = None

    def __len__(self) -> int:
        if self._count is None:
            self._handles()
        return self._count

    def _fallback_name(self, index: int) -> str:
        return f"{file_name(self.path)}/{index}"

    def name(self, index: int) -> str:
        if self.features[1] is None:
            return self._fallback_name(index)
        got = self.read_samples([index])[0]
        if isinstance(got, BaseException):
            raise got
        return got.name

    def describe(self, index: int) -> str:
        return f"record {index} of '{self.path}'"

    def failed_name(self, index: int) -> str:
        """The name of a record that could not be read or parsed."""
        return self._fallback_name(index)

    @property
    def sort_key(self) -> Optional[str]:
        return file_name(self.path) + "\0" + self.path

    def read(self, indices: Sequence[int], threads: int = 1) -> List[Union[bytes, Exception]]:
        return [s if isinstance(s, BaseException) else s.data
                for s in self.read_samples(indices, threads)]

    def read_samples(self, indices: Sequence[int],
                     threads: int = 1) -> List[Union[Sample, Exception]]:
        try:
            reader, index, parser = self._handles()
        except OSError as exc:  # a remote shard out of reach: each sample says so
            return [exc] * len(indices)
        data_name, key_name, label_name = self.features
        out: List[Union[Sample, Exception]] = []
        for i in indices:
            i = int(i)
            try:
                record = reader.read_record(int(index[i, 0]))
                if parser is None:
                    out.append(Sample(self._fallback_name(i), record))
                    continue
                values = parser.parse_single_example(record)
            except DbrError as exc:
                hint = _layout_hint(exc, self)
                out.append(type(exc)(f"{exc}{hint}") if hint else exc)
                continue
            data = values[0].item()
            name = values[1].item().decode("utf-8", "surrogateescape") if key_name else \
                self._fallback_name(i)
            label = int(values[-1][0]) if label_name and len(values[-1]) else None
            out.append(Sample(name, data, label))
        return out

    def close(self) -> None:
        self._reader.drop()  # the File closes when its last user lets go
        if self.source is not None:
            self.source.release()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_reader"] = _Handle()
        return state

    def __repr__(self) -> str:
        return f"TFRecordShard({self.path!r})"


def _parser(data, key, label):
    """A RecordParser for the named features (None for whole records)."""
    if data is None:
        return None
    from ._example import DataType, FixedLenFeature, RecordParser, VarLenFeature
    features = {data: FixedLenFeature([], DataType.string)}
    if key:
        features[key] = FixedLenFeature([], DataType.string)
    if label:
        features[label] = VarLenFeature(DataType.int64)  # absent: no label
    return RecordParser(features, run_parallel=False)


def _layout_hint(exc, shard) -> str:
    if "missing" in str(exc) or "not found" in str(exc).lower():
        return (f" (tfrecord_shards names the features data={shard.features[0]!r}, "
                f"key={shard.features[1]!r}, label={shard.features[2]!r}; pass other names "
                f"for other layouts, or data=None for whole records)")
    return ""


def _index_before_damage(file) -> np.ndarray:
    """(offset, frame length) of every record before the framing breaks,
    from one sequential pass (only run when the index cannot be built)."""
    handle = ffi.new("dbr_tfrecord_reader **")
    rc = lib.dbr_tfrecord_reader_open(file._h(), lib.DBR_TFRECORD_NONE, 0, 0, handle)
    if rc < 0:
        raise error_from_code(rc)
    reader = ffi.gc(handle[0], lib.dbr_tfrecord_reader_close)
    data, size, offset = ffi.new("void **"), ffi.new("size_t *"), ffi.new("uint64_t *")
    pairs = []
    try:
        while lib.dbr_tfrecord_reader_next(reader, data, size, offset) == 0:
            pairs.append((offset[0], size[0] + 16))  # header 12 + footer 4
    finally:
        ffi.release(reader)
    return np.array(pairs, dtype=np.uint64).reshape(-1, 2)


def tfrecord_shards(paths: Union[PathLike, Sequence[PathLike]], *, cache=None,
                    storage_options: Optional[Dict[str, Any]] = None,
                    manifest: Optional[PathLike] = None, **options) -> List[TFRecordShard]:
    """One :class:`TFRecordShard` per file; ``options`` (``data``, ``key``,
    ``label``, ``verify_crc``) go to each.  URLs and brace patterns as for
    :func:`zip_shards`; URLs need a ``cache`` (records are read from the
    downloaded file)."""
    return [TFRecordShard(p, source=s, **options)
            for p, s in resolve_sources(paths, cache, storage_options, manifest)]
