"""Random access to a zip archive at a URL without downloading it.

The archive is mirrored into a *sparse* local file of the same size: at
open, one range read of the tail brings the end records and the central
directory; each read brings only the byte spans of the entries asked for
(an entry's span runs from its local header to the next local header or
the central directory, as libdbr bounds it).  libdbr then reads the sparse
file like any other archive, so all zip parsing stays in C; Python only
finds where the central directory starts (the end-of-central-directory
record, and its zip64 form) to know which bytes to fetch.

The sparse file is unlinked as soon as it is open and lives as long as the
archive; it holds the fetched bytes only (holes take no disk).

The archive is one version of the object: the one its size and ETag were
first seen at (a shard's listing).  Opening checks that version after
reading the directory, and a read that fails (a CRC mismatch, a short
object) asks the server again, so that bytes of a replaced object raise
ShardChangedError instead of passing for damage, or for the old entries.
"""
from __future__ import annotations

import bisect
import os
import struct
import tempfile
import threading
from typing import Dict, List, Optional, Sequence, Tuple

from ._errors import DbrError
from ._remote import RemoteError, RemoteObject, ShardChangedError
from ._zip import Archive

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_ZIP64_RECORD = 56  # the zip64 end record without its extensible data
# What one read of the tail must hold: the end record (22 bytes) with the
# longest comment (65535), the zip64 locator (20) and the zip64 record.
_TAIL = 22 + 0xFFFF + 20 + _ZIP64_RECORD


def _directory_start(obj: RemoteObject, tail: bytes, size: int) -> int:
    """Offset of the central directory, from the end records in tail
    (the last len(tail) bytes of the object)."""
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise RemoteError(obj.url, f"not a zip archive (no end of central directory record "
                                   f"in the last {len(tail)} bytes)")
    cd_size, cd_offset = struct.unpack_from("<II", tail, at + 12)
    if cd_offset != 0xFFFFFFFF and cd_size != 0xFFFFFFFF:
        return cd_offset
    # zip64: the locator just before the end record points at the zip64 record.
    if at < 20 or tail[at - 20:at - 16] != _ZIP64_LOCATOR:
        raise RemoteError(obj.url, "damaged zip64 archive (no zip64 locator)")
    (record_at,) = struct.unpack_from("<Q", tail, at - 12)
    tail_start = size - len(tail)
    end = record_at + _ZIP64_RECORD
    record = (tail[record_at - tail_start:end - tail_start]
              if record_at >= tail_start else obj.read_range(record_at, min(end, size)))
    if record[:4] != _ZIP64_EOCD or len(record) < _ZIP64_RECORD:
        raise RemoteError(obj.url, "damaged zip64 archive (no zip64 end record)")
    return struct.unpack_from("<Q", record, 48)[0]


def _changed_since(obj: RemoteObject, exc: BaseException) -> BaseException:
    """What to raise for exc, a failed read of obj: ShardChangedError
    when the server now holds another version (the likely cause), else exc
    with a note naming the URL (libdbr's errors name the sparse file)."""
    if isinstance(exc, ShardChangedError):
        return exc
    try:
        obj.stat()
    except ShardChangedError as changed:
        changed.__cause__ = exc
        return changed
    except RemoteError:
        pass  # the server is out of reach: exc says what failed
    if isinstance(exc, DbrError) and hasattr(exc, "add_note"):
        exc.add_note(f"dareblopy: in the remote archive {obj.url}")
    return exc


class RemoteArchive(Archive):
    """A zip at a URL read by range requests (see the module docstring):
    the :class:`Archive` interface, where each read first fetches the
    spans of the entries it needs (coalescing neighbours into one request).
    ``scratch_dir`` holds the sparse file (default: the temp folder)."""

    def __init__(self, obj: RemoteObject, scratch_dir: Optional[str] = None, **options):
        self.remote = obj
        size = obj.known_size()
        fd, tmp = tempfile.mkstemp(prefix="dareblopy-remote-", suffix=".zip", dir=scratch_dir)
        try:
            os.ftruncate(fd, size)
            try:
                tail_start = max(0, size - _TAIL)
                tail = obj.read_range(tail_start, size)
                cd_start = _directory_start(obj, tail, size)
                if not 0 <= cd_start <= size:
                    raise RemoteError(obj.url, f"damaged zip (central directory at {cd_start} "
                                               f"beyond the end, {size})")
                self._write(fd, tail, tail_start)
                if cd_start < tail_start:
                    self._write(fd, obj.read_range(cd_start, tail_start), cd_start)
                options.setdefault("mmap", False)  # pread: later writes are seen at once
                super().__init__(tmp, **options)
            except (RemoteError, DbrError) as exc:
                raise _changed_since(obj, exc)
            obj.stat()  # the directory read is of the version first seen
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.unlink(tmp)
        self._fd = fd
        self._fetched = set()
        self._fetch_lock = threading.Lock()
        infos = self.infolist()
        starts = sorted({i.header_offset for i in infos} | {cd_start})
        # entry index -> [span start, span end): up to the next header or the directory
        self._spans: Dict[int, Tuple[int, int]] = {
            i.index: (i.header_offset,
                      starts[bisect.bisect_right(starts, i.header_offset)]
                      if i.header_offset < cd_start else i.header_offset)
            for i in infos}

    @staticmethod
    def _write(fd: int, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.pwrite(fd, view, offset + len(data) - len(view)):]

    def fetch_entries(self, indices: Sequence[int]) -> None:
        """Brings the bytes of the entries with these central-directory
        indices (those not fetched before), coalescing neighbours into one
        range request.  Called by every read here; C calls that take the
        archive's handle directly (``decode_jpeg_entries``) need it first."""
        wanted = sorted(set(int(i) for i in indices) - self._fetched)
        if not wanted:
            return
        with self._fetch_lock:
            spans = sorted(self._spans[i] for i in wanted if i not in self._fetched)
            runs: List[List[int]] = []
            for lo, hi in spans:
                if runs and lo <= runs[-1][1]:
                    runs[-1][1] = max(runs[-1][1], hi)
                else:
                    runs.append([lo, hi])
            for lo, hi in runs:
                self._write(self._fd, self.remote.read_range(lo, hi), lo)
            self._fetched.update(wanted)

    def _fetch(self, names: Sequence) -> None:
        indices = []
        for n in names:
            try:
                indices.append(self._slot(n)[0])
            except DbrError:
                pass  # the read itself reports a missing name
        self.fetch_entries(indices)

    @property
    def path(self) -> str:
        return self.remote.url

    def _reading(self, names, read):
        """read() after fetching names' spans; a failure is explained by
        :func:`_changed_since`."""
        try:
            self._fetch(names)
            return read()
        except (RemoteError, DbrError) as exc:
            raise _changed_since(self.remote, exc)

    def open_as_bytes(self, name) -> bytes:
        return self._reading([name], lambda: super(RemoteArchive, self).open_as_bytes(name))

    read = open_as_bytes

    def open_as_numpy_ubyte(self, name, shape=None, out=None):
        return self._reading([name], lambda: super(RemoteArchive, self).open_as_numpy_ubyte(
            name, shape, out))

    def read_many(self, names: Sequence, threads: int = 0, **options) -> List[bytes]:
        return self._reading(names, lambda: super(RemoteArchive, self).read_many(
            names, threads, **options))

    def read_entries(self, indices: Sequence[int], threads: int = 0, **options):
        try:
            self.fetch_entries(indices)
            out = super().read_entries(indices, threads, **options)
        except (RemoteError, DbrError) as exc:
            raise _changed_since(self.remote, exc)
        if options.get("errors") == "return" and any(isinstance(o, DbrError) for o in out):
            first = next(o for o in out if isinstance(o, DbrError))
            changed = _changed_since(self.remote, first)
            if isinstance(changed, ShardChangedError):  # no entry of a new version passes
                return [changed] * len(out)
        return out

    def open(self, name):
        return self._reading([name], lambda: super(RemoteArchive, self).open(name))

    def close(self) -> None:
        super().close()
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"<dareblopy.RemoteArchive {self.remote.url!r}>"
