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
it was noticed, so such a shard raises as a whole."""
from __future__ import annotations

import bz2
import contextlib
import fcntl
import glob
import gzip
import hashlib
import lzma
import os
import tempfile
import zlib
from typing import Iterator, Optional, Tuple

from ._errors import CorruptDataError, UnsupportedError
from ._index_cache import cached_path, user_cache_dir

__all__ = ["compression_of", "readable_tar"]

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
          (b"\x28\xb5\x2f\xfd", "zstd"))
_OPENERS = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}


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
def readable_tar(path: str, cache_dir: Optional[str] = None
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
    if kind not in _OPENERS:
        raise UnsupportedError(f"tar '{path}' is {kind}-compressed, which dareblopy cannot "
                               f"decompress (gzip, bzip2 and xz it can): decompress it first")
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


def _decompress(path: str, kind: str, fd: int) -> Optional[CorruptDataError]:
    """Decompresses ``path`` into the open file ``fd`` (closing it); None
    when the whole stream came out, the error when it was cut short.
    Raises CorruptDataError for damage inside the stream."""
    with _OPENERS[kind](path, "rb") as src, os.fdopen(fd, "wb") as dst:
        try:
            # read1: whatever one step decompresses, so a cut loses nothing
            # that came out before it (read(n) drops its partial chunk).
            for block in iter(lambda: src.read1(1 << 16), b""):
                dst.write(block)
        except EOFError as exc:  # the stream ends early: what came out is sound
            return CorruptDataError(f"tar '{path}': its {kind} stream is cut off after "
                                    f"{dst.tell()} decompressed bytes (truncated?): {exc}")
        except (OSError, zlib.error, lzma.LZMAError) as exc:
            raise CorruptDataError(f"tar '{path}': its {kind} stream is damaged ({exc}); "
                                   f"nothing of it is read") from None
    return None


def _remove_older_copies(copy: str, version: str) -> None:
    """Copies of earlier versions of the same shard (and their indexes)."""
    stem = copy[:-len(f".{version}.tar")]
    for old in glob.glob(glob.escape(stem) + ".*.tar*"):
        if not old.startswith(copy) and not old.endswith(".part"):  # not in the making
            with contextlib.suppress(OSError):
                os.unlink(old)
