"""TFRecord files: reading (plain, GZIP, ZLIB), indexes, writing, and the
DareBlopy yielders and dataset iterators.

Indexes are text, one ``offset length`` line per record (length counts the
12-byte header and 4-byte footer), as the ``tfrecord`` package and DALI's
tfrecord2idx write them.  They give plain files random access, ``len()``
and ``reader[i]``.  A compressed file cannot seek: its index (offsets in
the decompressed stream) still gives ``len()``, but reading record i means
inflating from the start, so random access raises UnsupportedError and the
randomized yielders shuffle compressed files through a buffer instead."""
from __future__ import annotations

import operator
import os
import threading
import time
import zlib
from typing import List, Optional, Sequence

import numpy as np

from ._atomic import AtomicFile, atomic_write
from ._buffers import ArrayRecycler, encode_path, new_bytes
from ._errors import DbrError, InvalidArgumentError, UnsupportedError, check, error_from_code
from ._example import RecordParser
from ._enums import LegacyIntEnum
from ._ffi import ffi, lib
from ._files import File
from ._index_cache import index_locations, store_index
from ._order import EpochOrder
from ._shuffle import SplitMix64, permutation

INDEX_SUFFIX = ".idx"


class Compression(LegacyIntEnum):
    """TFRecord compression.  The integer values are DareBlopy 0.0.5's
    (``Compression(2)`` is GZIP); ``c_code`` is libdbr's constant."""

    NONE = 0
    ZLIB = 1
    GZIP = 2

    @property
    def c_code(self) -> int:
        return _C_CODES[self]


_C_CODES = {Compression.NONE: lib.DBR_TFRECORD_NONE, Compression.GZIP: lib.DBR_TFRECORD_GZIP,
            Compression.ZLIB: lib.DBR_TFRECORD_ZLIB}


def _compression(value) -> Compression:
    if value is None or value == "":
        return Compression.NONE
    if isinstance(value, str):
        try:
            return Compression[value.upper()]
        except KeyError:
            raise InvalidArgumentError(
                f"compression {value!r} is not NONE, GZIP or ZLIB") from None
    return Compression(int(value))


def _as_file(path_or_file) -> File:
    return path_or_file if isinstance(path_or_file, File) else File.open(path_or_file)


def _raise(rc):
    if rc < 0:
        raise error_from_code(rc)


# ---- indexes --------------------------------------------------------------


def build_index(path_or_file, compression=None, verify_crc: bool = False,
                max_record_size: int = 0) -> np.ndarray:
    """Scans a file: an ``[N, 2]`` uint64 array of (offset, frame length).
    For plain files without ``verify_crc`` only the 12-byte headers are
    read (their length CRC is always checked)."""
    f = _as_file(path_or_file)
    pairs = ffi.new("uint64_t **")
    count = ffi.new("size_t *")
    check(lib.dbr_tfrecord_index(f._h(), _compression(compression).c_code, int(verify_crc),
                                 max_record_size, pairs, count))
    try:
        n = count[0]
        data = ffi.buffer(pairs[0], n * 16)[:] if n else b""
    finally:
        lib.dbr_free(pairs[0])
    return np.frombuffer(data, np.uint64).reshape(-1, 2).copy()


def write_index(index: np.ndarray, index_path) -> None:
    """Writes an index as text, atomically."""
    text = "".join(f"{int(o)} {int(n)}\n" for o, n in index)
    with atomic_write(index_path, "w", fsync=False) as fh:  # a cache: rebuilt if lost
        fh.write(text)


def read_index(index_path) -> np.ndarray:
    """Reads a text index (``offset length`` per line)."""
    with open(index_path, "rb") as fh:
        data = fh.read()
    if not data.strip():
        return np.zeros((0, 2), np.uint64)
    try:
        values = np.array(data.split(), dtype=np.uint64)
    except ValueError:
        raise InvalidArgumentError(f"index '{index_path}' is not lines of 'offset length'") from None
    if values.size % 2:
        raise InvalidArgumentError(f"index '{index_path}' has an odd number of values")
    return values.reshape(-1, 2)


def index_path_for(path, cache_dir: Optional[str] = None) -> str:
    """Where the cached index of ``path`` lives: beside it (``FILE.idx``),
    or in ``cache_dir`` under a name derived from the absolute path."""
    return index_locations(path, INDEX_SUFFIX, cache_dir)[0]


def _fresh(index_path, path, size) -> Optional[np.ndarray]:
    """A cached index, if it still describes the file.  It must be newer
    than the file's last change: its ctime, which every rewrite, copy with
    preserved mtime or rename over the file sets to now (unlike the mtime,
    which ``cp -p``, rsync or tar set to anything).  Its frames must tile
    the file, and the first and last must start with valid headers of the
    recorded lengths."""
    try:
        data = os.stat(path)
        if os.stat(index_path).st_mtime_ns <= max(data.st_mtime_ns, data.st_ctime_ns):
            return None
        index = read_index(index_path)
    except (OSError, InvalidArgumentError):
        return None
    end = int(index[-1, 0] + index[-1, 1]) if len(index) else 0
    if end != size:  # plain files: the frames tile the file
        return None
    return index if _frames_match(path, index[[0, -1]] if len(index) else index) else None


def _frames_match(path, entries) -> bool:
    """True when each (offset, frame length) holds a record header (its
    length CRC checked) of that length."""
    try:
        f = File.open(path)
    except (OSError, DbrError):
        return False
    with f:
        size = ffi.new("size_t *")
        for offset, length in entries.tolist():
            rc = lib.dbr_tfrecord_read_at(f._h(), offset, 0, ffi.NULL, 0, size)
            if rc not in (0, lib.DBR_E_TOO_SMALL) or size[0] + 16 != length:
                return False
    return True


def load_index(path, compression=None, cache_dir: Optional[str] = None,
               rebuild: bool = False) -> np.ndarray:
    """The index of an OS file, built on demand and cached beside it, or in
    ``cache_dir``, or, when the file's folder is not writable, in the user
    cache directory (see ``_index_cache``)."""
    compression = _compression(compression)
    path = os.fspath(path)
    candidates = index_locations(path, INDEX_SUFFIX, cache_dir)
    if not rebuild and compression == Compression.NONE:
        size = os.path.getsize(path)
        for c in candidates:
            index = _fresh(c, path, size)
            if index is not None:
                return index
    index = build_index(path, compression)
    store_index(candidates, lambda location: write_index(index, location))
    return index


# ---- reading --------------------------------------------------------------


class RecordReader:
    """Reads the records of one TFRecord file (a path or a dareblopy.File,
    so files inside a mounted zip work too) as ``bytes``.

    Iterating streams the file (GZIP and ZLIB are inflated a window at a
    time).  ``read_record(offset)``, ``len()`` and ``reader[i]`` use random
    access and need a plain file; ``len`` and ``[]`` build the index on
    first use.  CRCs are verified unless ``verify_crc=False``."""

    def __init__(self, file=None, compression=None, verify_crc: bool = True,
                 max_record_size: int = 0, *, filename=None):
        if (file is None) == (filename is None):
            raise TypeError("RecordReader needs one of file or filename (a path or a File)")
        self._file = _as_file(file if filename is None else filename)
        self._cursor = None  # the stream next() reads from, once next() is used
        self.compression = _compression(compression)
        self.verify_crc = bool(verify_crc)
        self.max_record_size = int(max_record_size)
        self._index = None

    @property
    def file(self) -> File:
        return self._file

    @property
    def path(self) -> str:
        return self._file.path

    def __iter__(self):
        # DareBlopy 0.0.5's reader was its own iterator, so 0.0.5 code may
        # call next(reader) (to skip a header record, say) and then loop over
        # the rest.  Once next() has been used, loops go on from its cursor;
        # a reader never stepped with next() starts a fresh pass per loop.
        return self._stream() if self._cursor is None else self._cursor

    def __next__(self) -> bytes:
        if self._cursor is None:
            self._cursor = self._stream()
        return next(self._cursor)

    def _stream(self):
        handle = ffi.new("dbr_tfrecord_reader **")
        check(lib.dbr_tfrecord_reader_open(self._file._h(), self.compression.c_code,
                                           int(self.verify_crc), self.max_record_size, handle))
        reader = ffi.gc(handle[0], lib.dbr_tfrecord_reader_close)
        data = ffi.new("void **")
        size = ffi.new("size_t *")
        nxt = lib.dbr_tfrecord_reader_next
        eof = lib.DBR_E_EOF
        try:
            while True:
                rc = nxt(reader, data, size, ffi.NULL)
                if rc == eof:
                    return
                if rc < 0:
                    raise error_from_code(rc)
                yield ffi.buffer(data[0], size[0])[:]
        finally:
            ffi.release(reader)

    def read_record(self, offset: int) -> bytes:
        """The record whose header starts at ``offset`` (plain files)."""
        self._need_plain("read_record")
        size = ffi.new("size_t *")
        h = self._file._h()
        rc = lib.dbr_tfrecord_read_at(h, offset, 0, ffi.NULL, 0, size)
        if rc not in (0, lib.DBR_E_TOO_SMALL):
            raise error_from_code(rc)
        obj = new_bytes(size[0])
        _raise(lib.dbr_tfrecord_read_at(h, offset, int(self.verify_crc), obj, size[0], size))
        return obj

    def _need_plain(self, what):
        if self.compression != Compression.NONE:
            raise UnsupportedError(
                f"{what}: '{self.path}' is {self.compression.name}-compressed and cannot seek; "
                "iterate over it, or write it uncompressed for random access")

    @property
    def index(self) -> np.ndarray:
        """``[N, 2]`` (offset, frame length); loaded from or cached beside an
        OS file when possible."""
        if self._index is None:
            path = self.path
            if self.compression == Compression.NONE and os.path.isfile(path) and \
                    os.path.getsize(path) == self._file.size():
                self._index = load_index(path)
            else:
                self._index = build_index(self._file, self.compression,
                                          max_record_size=self.max_record_size)
        return self._index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> bytes:
        self._need_plain("reader[i]")
        index = self.index
        return self.read_record(int(index[i, 0]))

    def get_metadata(self):
        """(file_size, data_size, entries), checking every CRC."""
        index = build_index(self._file, self.compression, verify_crc=True,
                            max_record_size=self.max_record_size)
        entries = len(index)
        data = int(index[:, 1].sum()) - 16 * entries if entries else 0
        return self._file.size(), data, entries


# ---- writing --------------------------------------------------------------


class TFRecordWriter:
    """Writes records (NONE, GZIP or ZLIB), readable by TensorFlow.  The file
    appears atomically at ``close()`` (see ``AtomicFile``: written under a
    temporary name in the same folder, then renamed; a failed close removes
    the temporary file); leaving a ``with`` block by an exception discards
    it."""

    def __init__(self, path, compression=None, level: int = 6):
        self.path = os.fspath(path)
        encode_path(self.path)
        self.compression = _compression(compression)
        self._z = None
        if self.compression != Compression.NONE:
            wbits = 31 if self.compression == Compression.GZIP else 15
            self._z = zlib.compressobj(level, zlib.DEFLATED, wbits)
        self._framer = _Framer()
        self._out = AtomicFile(self.path)

    def write(self, record) -> None:
        """Appends one record: a bytes-like object (bytes, bytearray,
        memoryview, a contiguous numpy array's buffer)."""
        if self._out.closed:
            raise ValueError("write to a closed TFRecordWriter")
        try:
            data = memoryview(record).cast("B")
        except TypeError:
            raise TypeError(f"TFRecordWriter.write takes a bytes-like object, "
                            f"not {type(record).__name__}") from None
        self._framer.frame(data)
        out, z = self._out.file, self._z
        for part in (self._framer.header, data, self._framer.footer):
            out.write(z.compress(part) if z else part)

    def flush(self) -> None:
        if self._z:
            self._out.file.write(self._z.flush(zlib.Z_SYNC_FLUSH))
        self._out.file.flush()

    def close(self) -> None:
        if self._out.closed:
            return
        try:
            if self._z:
                self._out.file.write(self._z.flush())
        except BaseException:
            self._out.discard()
            raise
        self._out.commit()

    def discard(self) -> None:
        self._out.discard()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.discard()


class _Framer:
    """Header and footer of records from libdbr's dbr_tfrecord_frame (the one
    place that knows the framing); the data itself is never copied."""

    def __init__(self):
        self._header = ffi.new("unsigned char[12]")
        self._footer = ffi.new("unsigned char[4]")
        self.header = ffi.buffer(self._header)
        self.footer = ffi.buffer(self._footer)

    def frame(self, data: memoryview) -> None:
        check(lib.dbr_tfrecord_frame(ffi.from_buffer(data), data.nbytes, self._header,
                                     self._footer))


# ---- yielders -------------------------------------------------------------


def _seed(seed):
    return int(time.time() * 1000) if seed is None else int(seed)


def _batch_size(n) -> int:
    """``next_n``'s count: 0 asks for nothing, a negative count is an error."""
    n = operator.index(n)
    if n < 0:
        raise InvalidArgumentError(f"next_n: the count must be >= 0, not {n}")
    return n


def _filename_list(filenames, who: str) -> List:
    """The list of files a yielder reads; one path alone is a mistake that
    would otherwise read each character as a file name."""
    if isinstance(filenames, (str, bytes, os.PathLike)):
        raise TypeError(f"{who}: filenames must be a list of paths, not one path "
                        f"({filenames!r}); pass [{filenames!r}]")
    return list(filenames)


class RecordYielderBasic:
    """Records of several files in order; ``next_n(n)`` returns up to n and
    raises StopIteration when none are left.  Several threads may call it
    (as ``data_loader`` workers do): each record goes to one of them."""

    def __init__(self, filenames: Sequence, compression=None):
        filenames = _filename_list(filenames, "RecordYielderBasic")
        self._records = (r for name in filenames
                         for r in RecordReader(name, compression))
        self._lock = threading.Lock()

    def next_n(self, n: int) -> List[bytes]:
        if _batch_size(n) == 0:
            return []
        batch = []
        with self._lock:
            for r in self._records:
                batch.append(r)
                if len(batch) == n:
                    break
        if not batch:
            raise StopIteration
        return batch

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        with self._lock:
            return next(self._records)


class _Plan:
    """The records of plain files in the order of an epoch, as the dataset
    orders samples (``EpochOrder``: the files permuted, their records laid
    end to end, each window of ``window`` positions permuted on its own),
    handed out a batch at a time: which file, offset and frame length."""

    def __init__(self, filenames, seed, epoch, window):
        self.files = [File.open(n) for n in filenames]
        self.handles = [f._h() for f in self.files]
        indexes = [load_index(n) for n in filenames]
        lengths = np.array([len(ix) for ix in indexes], np.int64)
        self._first = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else lengths
        self._pairs = np.concatenate(indexes) if indexes else np.zeros((0, 2), np.uint64)
        self._order = EpochOrder(lengths, seed, epoch, shuffle=True, window=window)
        self._pos = 0
        self._lock = threading.Lock()

    def take(self, n):
        """The next (up to) n records: (file numbers, offsets, frame
        lengths); thread-safe."""
        with self._lock:
            start = self._pos
            self._pos = min(start + n, self._order.total)
            which, local = self._order.samples(np.arange(start, self._pos))
        pairs = self._pairs[self._first[which] + local]
        return which, np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])


class _BufferShuffle:
    """For compressed files: files in a shuffled order, records drawn at
    random from a buffer of ``buffer_size`` (like tf.data's shuffle)."""

    def __init__(self, filenames, buffer_size, seed, epoch, compression):
        order = permutation(len(filenames), seed, epoch)
        self._rng = SplitMix64(seed, epoch + 0x5EED)
        self._source = (r for k in order for r in RecordReader(filenames[k], compression))
        self._buffer = []
        self._size = max(1, int(buffer_size))
        self._lock = threading.Lock()

    def next_n(self, n):
        with self._lock:
            return self._draw(n)

    def _draw(self, n):
        out = []
        while len(out) < n:
            for r in self._source:
                self._buffer.append(r)
                if len(self._buffer) >= self._size:
                    break
            if not self._buffer:
                break
            j = self._rng.below(len(self._buffer))
            self._buffer[j], self._buffer[-1] = self._buffer[-1], self._buffer[j]
            out.append(self._buffer.pop())
        return out


class RecordYielderRandomized:
    """Records of several files in a random order fixed by (seed, epoch).

    As in DareBlopy 0.0.5, the files come in a random order and a record
    moves about ``buffer_size`` positions from its place in them: plain
    files through their indexes, with the dataset's epoch order (each
    window of ``buffer_size`` positions permuted; a window as large as the
    data shuffles everything), compressed files through a buffer of
    ``buffer_size`` records.  A ``buffer_size`` of 1 cannot shuffle
    records: each file is read in order."""

    def __init__(self, filenames: Sequence, buffer_size: int = 1000, seed: int = None,
                 epoch: int = 0, compression=None):
        compression = _compression(compression)
        filenames = [os.fspath(n) for n in _filename_list(filenames, "RecordYielderRandomized")]
        seed = _seed(seed)
        if compression == Compression.NONE:
            self._plan = _Plan(filenames, seed, epoch, window=int(buffer_size))
            self._shuffle = None
        else:
            self._plan = None
            self._shuffle = _BufferShuffle(filenames, buffer_size, seed, epoch, compression)

    def next_n(self, n: int) -> List[bytes]:
        if _batch_size(n) == 0:
            return []
        if self._plan is None:
            batch = self._shuffle.next_n(n)
        else:
            p = self._plan
            which, offsets, _ = p.take(n)
            batch = [_read_frame(p.handles[w], o) for w, o in
                     zip(which.tolist(), offsets.tolist())]
        if not batch:
            raise StopIteration
        return batch

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return self.next_n(1)[0]


def _read_frame(handle, offset):
    size = ffi.new("size_t *")
    rc = lib.dbr_tfrecord_read_at(handle, offset, 0, ffi.NULL, 0, size)
    if rc not in (0, lib.DBR_E_TOO_SMALL):
        raise error_from_code(rc)
    obj = new_bytes(size[0])
    _raise(lib.dbr_tfrecord_read_at(handle, offset, 1, obj, size[0], size))
    return obj


class ParsedRecordYielderRandomized:
    """Like RecordYielderRandomized, but ``next_n`` returns parsed arrays
    (one ``[n, ...]`` per feature): for plain files one C call reads,
    checks and parses the whole batch, on several threads, with large uint8
    values read from the file straight into the arrays.

    Each batch gets fresh arrays.  ``reuse_arrays=True`` reuses the arrays
    of a batch once the caller has dropped every reference to them (see
    ``ArrayRecycler``); measured here it did not pay (batches of several MB
    get transparent huge pages, so fresh memory faults in cheaply), but it
    may where page faults are dear."""

    def __init__(self, parser: RecordParser, filenames: Sequence, buffer_size: int = 1000,
                 seed: int = None, epoch: int = 0, compression=None,
                 reuse_arrays: bool = False):
        self.parser = parser
        self._yielder = RecordYielderRandomized(filenames, buffer_size, seed, epoch, compression)
        self._alloc = ArrayRecycler() if reuse_arrays else np.empty

    def next_n(self, n: int) -> list:
        p = self._yielder._plan
        if p is None or _batch_size(n) == 0:
            return self.parser.parse_example(self._yielder.next_n(n))
        which, offsets, lengths = p.take(n)
        if not len(which):
            raise StopIteration
        handles = [p.handles[w] for w in which.tolist()]
        return self.parser._parse_at(handles, offsets, lengths, alloc=self._alloc)

    def __iter__(self):
        return self

    def __next__(self) -> list:
        """One record, parsed: one array per feature, shaped like it."""
        return [a[0] for a in self.next_n(1)]


class TFRecordsDatasetIterator:
    """Batches of raw records (lists of bytes) in a random order."""

    def __init__(self, filenames, batch_size, buffer_size=1000, seed=None, epoch=0,
                 compression=None):
        self.record_yielder = RecordYielderRandomized(filenames, buffer_size, _seed(seed), epoch,
                                                      compression)
        self.batch_size = batch_size

    def __iter__(self):
        return self

    def __next__(self):
        return self.record_yielder.next_n(self.batch_size)


class ParsedTFRecordsDatasetIterator:
    """Batches of parsed arrays in a random order: one C call per batch.
    ``reuse_arrays``: see ParsedRecordYielderRandomized."""

    def __init__(self, filenames, features, batch_size, buffer_size=1000, seed=None, epoch=0,
                 compression=None, reuse_arrays: bool = False):
        self.parser = features if isinstance(features, RecordParser) else \
            RecordParser(features, True)
        self.record_yielder = ParsedRecordYielderRandomized(
            self.parser, filenames, buffer_size, _seed(seed), epoch, compression, reuse_arrays)
        self.batch_size = batch_size

    def __iter__(self):
        return self

    def __next__(self):
        return self.record_yielder.next_n(self.batch_size)
