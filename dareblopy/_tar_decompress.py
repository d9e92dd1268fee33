"""Compressed tar shards (``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``),
which webdataset reads as well as plain ones.

libdbr reads tar members in place, which a compressed stream does not
allow, so a compressed tar is decompressed once into a cache and read from
there.  The copy lives in ``cache_dir`` when one is given, else in
``<user cache>/tar`` (see :mod:`dareblopy._index_cache`); its name carries
the shard's file name, a digest of its absolute path and a digest of its
size and modification time, so a changed shard gets a fresh copy (and the
older copy is removed).  Processes and DataLoader workers opening one shard
together decompress it once (a lock file beside the copy), and a copy only
ever appears complete (a temporary file, then a rename).

A stream cut short (an interrupted download) keeps what came before the
cut, as webdataset keeps the samples before it: that prefix is read from a
temporary file, deleted once open and never cached, and the error naming
the shard becomes the archive's damage.  Damage inside the stream (a bad
CRC or bad compressed data) may already have spoiled what came out before
it was noticed, so such a shard raises as a whole.

A shard at a URL keeps its copy inside its :class:`~dareblopy.ShardCache`
instead (``place``, a :class:`~dareblopy._cache.PlainCopy`): the copy's
bytes are reserved against the cache's limit as they are written, it goes
when the shard is evicted, and a cut-off prefix is kept too, with its
damage in a note beside it (the download stays what it is until the server
holds a new version, which replaces both)."""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import tempfile
from typing import Iterator, Optional, Tuple

from ._errors import CorruptDataError, UnsupportedError
from ._index_cache import cached_path, user_cache_dir

__all__ = ["compression_of", "readable_tar"]

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
          (b"\x28\xb5\x2f\xfd", "zstd"))
_MODULES = {"gzip": "gzip", "bzip2": "bz2", "xz": "lzma"}  # imported when needed: a
# Python built without libbz2 or liblzma still imports dareblopy


def _opener(kind: str, path: str):
    import importlib
    try:
        return importlib.import_module(_MODULES[kind]).open
    except ImportError as exc:
        raise UnsupportedError(f"tar '{path}' is {kind}-compressed, and this Python has no "
                               f"{_MODULES[kind]} module ({exc})") from None


def compression_of(path: str) -> Optional[str]:
    """"gzip", "bzip2", "xz" or "zstd" when the file starts with that
    format's magic number, else None (a plain tar, or not a tar at all)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError:
        return None  # libdbr's open then reports it, in its words
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


@contextlib.contextmanager
def readable_tar(path: str, cache_dir: Optional[str] = None, place=None
                 ) -> Iterator[Tuple[str, Optional[CorruptDataError]]]:
    """``(path of a plain tar, damage)`` for the block's duration: ``path``
    itself when it is not compressed, else its decompressed copy (see the
    module docstring); ``damage`` is None, or the error that cut the stream
    short when only a prefix could be decompressed (that copy is deleted
    when the block ends, so open it inside)."""
    kind = compression_of(path)
    if kind is None:
        yield path, None
        return
    if kind not in _MODULES:
        raise UnsupportedError(f"tar '{path}' is {kind}-compressed, which dareblopy cannot "
                               f"decompress (gzip, bzip2 and xz it can): decompress it first")
    if place is not None:
        yield _made_in_place(path, kind, place)
        return
    directory = cache_dir if cache_dir is not None else os.path.join(user_cache_dir(), "tar")
    os.makedirs(directory, exist_ok=True)
    st = os.stat(path)
    version = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    copy = cached_path(path, f".{version}.tar", directory)
    if os.path.exists(copy):
        yield copy, None
        return
    with open(copy + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one decompression per node
        if os.path.exists(copy):
            yield copy, None
            return
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(copy) + ".", suffix=".part",
                                   dir=directory)
        try:
            damage = _decompress(path, kind, fd)
            if damage is None:
                os.rename(tmp, copy)
                _remove_older_copies(copy, version)
                tmp = None
                yield copy, None
            else:
                yield tmp, damage
        finally:
            if tmp is not None:
                os.unlink(tmp)


def _made_in_place(path: str, kind: str, place) -> Tuple[str, Optional[CorruptDataError]]:
    """(copy, damage) of a cached shard's copy in its PlainCopy place,
    made first when missing (once per node: its lock)."""
    if not os.path.exists(place.path):
        with open(place.lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(place.path):
                for stale in (place.part, place.note):  # a maker killed half-way
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(stale)
                fd = os.open(place.part, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    damage = _decompress(path, kind, fd, place.reserve)
                    if damage is not None:
                        with open(place.note, "w", encoding="utf-8") as note:
                            note.write(str(damage))
                    os.rename(place.part, place.path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(place.part)
                    raise
    try:
        with open(place.note, encoding="utf-8") as note:
            return place.path, CorruptDataError(note.read())
    except FileNotFoundError:
        return place.path, None


def _decompress(path: str, kind: str, fd: int, reserve=None) -> Optional[CorruptDataError]:
    """Decompresses ``path`` into the open file ``fd`` (closing it); None
    when the whole stream came out, the error when it was cut short.
    Raises CorruptDataError for damage inside the stream.  ``reserve(fd,
    size)``, when given, is asked for room before the file grows past what
    it allocated last (it returns the size it allocated)."""
    damage, allocated = None, 0
    with _opener(kind, path)(path, "rb") as src, os.fdopen(fd, "wb") as dst:
        while True:
            try:
                # read1: whatever one step decompresses, so a cut loses nothing
                # that came out before it (read(n) drops its partial chunk).
                block = src.read1(1 << 16)
            except EOFError as exc:  # the stream ends early: what came out is sound
                damage = CorruptDataError(f"tar '{path}': its {kind} stream is cut off after "
                                          f"{dst.tell()} decompressed bytes (truncated?): {exc}")
                break
            except Exception as exc:  # OSError, zlib.error, lzma.LZMAError
                raise CorruptDataError(f"tar '{path}': its {kind} stream is damaged ({exc}); "
                                       f"nothing of it is read") from None
            if not block:
                break
            if reserve is not None and dst.tell() + len(block) > allocated:
                dst.flush()
                allocated = reserve(dst.fileno(), dst.tell() + len(block))
            dst.write(block)
        dst.flush()
        os.ftruncate(dst.fileno(), dst.tell())  # drop what was reserved beyond the end
    return damage


def _remove_older_copies(copy: str, version: str) -> None:
    """Copies of earlier versions of the same shard (and their indexes)."""
    stem = copy[:-len(f".{version}.tar")]
    for old in glob.glob(glob.escape(stem) + ".*.tar*"):
        if not old.startswith(copy) and not old.endswith(".part"):  # not in the making
            with contextlib.suppress(OSError):
                os.unlink(old)
