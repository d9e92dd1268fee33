"""A node-local cache of remote shards with a hard byte limit, shared by
every process of the node (ranks, DataLoader workers) through file locks.

Files in the cache directory, per shard (``KEY`` = a hash of the URL plus
the shard's file name):

- ``KEY.shard``: a complete, checked download;
- ``KEY.part``: a download in progress, pre-allocated to the full size, so
  it counts against the limit (and a full disk fails) before any byte
  arrives.  It is renamed to ``KEY.shard`` only once its size, its hash
  (when the manifest records one) and the server's version were checked, so
  a process killed mid-download leaves only a ``.part``, which the next
  process that wants the shard deletes and downloads again;
- ``KEY.plain``: a file made from the complete shard (a compressed tar's
  decompressed copy), counted against the limit like the shard and evicted
  with it; ``KEY.plain-part`` while it is being made (its bytes reserved
  as they are written), ``KEY.plain-note`` a note about it (why a
  decompressed copy stops early) and ``KEY.plain-lock`` the lock its
  makers take;
- ``index/``: the indexes readers build of cached shards (tar members,
  TFRecord offsets: a few bytes per sample, one file per shard URL), kept
  outside the limit so that a reader never writes unreserved bytes into it;
- ``KEY.lock``: the shard's lock, holding a few hundred bytes of metadata
  (URL, size, version, hash) of the complete file.  Lock files are never
  deleted and are not counted in the limit.

Locks (``flock``, so they are released by the kernel when a process dies,
and two opens in one process exclude each other like two processes):

- shared on ``KEY.lock``: a *pin*.  A reader holds one while the shard is
  open; the prefetcher holds one on each shard it fetched for upcoming use.
  A pinned shard is never evicted.
- exclusive on ``KEY.lock``: downloading, or evicting.  A second process
  that wants the shard waits for the first one's download.
- exclusive on ``.dir.lock``: reserving space (measure, evict, allocate) is
  one step for the whole node, so two processes never both see the same
  free bytes.

The limit counts the bytes of ``.shard``, ``.part``, ``.plain`` and
``.plain-part`` files;
shards are reserved under the directory lock before a byte is written.
Eviction deletes only unpinned files: first stale downloads, then shards
whose next use is furthest away in the plan the dataset gave (shards the
epoch has finished, which are not needed again, come first).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._remote import RemoteError, RemoteObject

_SHARD, _PART, _LOCK = ".shard", ".part", ".lock"
_PLAIN, _PLAIN_PART, _PLAIN_NOTE, _PLAIN_LOCK = ".plain", ".plain-part", ".plain-note", ".plain-lock"
# The files the limit counts, and the files that go with a shard (eviction,
# a new version), in the order eviction prefers: unfinished work first.
_COUNTED = (_PART, _PLAIN_PART, _SHARD, _PLAIN)
_OF_A_SHARD = _COUNTED + (_PLAIN_NOTE,)
_DIR_LOCK = ".dir.lock"


# Pins held by this process: fd -> (cache directory, key).  Space that only
# this process pins cannot be freed by waiting (see ShardCache._reserve).
_HELD: Dict[int, Tuple[str, str]] = {}
_HELD_LOCK = threading.Lock()


def _drop_inherited_pins() -> None:
    """In a forked child (DataLoader workers): close the parent's pin fds,
    so that the parent's release frees its shards (a flock lives while any
    fd of it is open).  The child pins what it reads itself."""
    global _HELD_LOCK
    _HELD_LOCK = threading.Lock()
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited_pins)


@contextlib.contextmanager
def _touching(path: str, interval: float = 0.25):
    """Touches path every interval while the block runs: a download's
    heartbeat, so that processes waiting for it (see ShardCache.acquire)
    see it move even while one long range read is arriving; every such read
    is itself bounded by the remote object's timeout and retries."""
    stop = threading.Event()

    def beat():
        while not stop.wait(interval):
            with contextlib.suppress(OSError):
                os.utime(path)
    thread = threading.Thread(target=beat, name="dareblopy-download-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class CacheLimitError(OSError):
    """The cache cannot make room: everything in it is pinned."""


class CacheDiskFullError(OSError):
    """The disk under the cache ran out of space (ENOSPC)."""


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class ShardCache:
    """A directory on local disk that holds at most ``limit_bytes`` of
    downloaded shards (see the module docstring for the layout and locks).

    Pass it as ``cache=`` to :func:`zip_shards` or :func:`tfrecord_shards`
    with URLs.  A limit smaller than one shard is refused when the shards are
    bound to the cache, naming both sizes.  ``stall_timeout`` bounds every
    wait (for another process's download that stopped making progress, or
    for space held by pinned shards) before an error is raised.
    ``chunk_bytes`` is the size of each range request of a download."""

    def __init__(self, directory: str, limit_bytes: int, *, stall_timeout: float = 120.0,
                 chunk_bytes: int = 16 << 20, poll_interval: float = 0.02):
        self.directory = os.path.abspath(os.fspath(directory))
        self.limit_bytes = int(limit_bytes)
        if self.limit_bytes <= 0:
            raise ValueError(f"ShardCache: limit_bytes must be positive, not {limit_bytes}")
        self.stall_timeout = float(stall_timeout)
        self.chunk_bytes = int(chunk_bytes)
        self.poll_interval = float(poll_interval)
        self.index_directory = os.path.join(self.directory, "index")
        os.makedirs(self.index_directory, exist_ok=True)
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._plan: Dict[str, int] = {}     # key -> next use (plan position), this process
        self._pins: Dict[str, int] = {}     # prefetch pins: key -> lock fd
        self._state_lock = threading.Lock()
        self._prefetcher: Optional["_Prefetcher"] = None

    def __getstate__(self):
        return {k: getattr(self, k) for k in ("directory", "index_directory", "limit_bytes",
                                              "stall_timeout", "chunk_bytes", "poll_interval")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_process_state()

    def _own(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's pins are not ours
            self._init_process_state()

    def __repr__(self) -> str:
        return f"ShardCache({self.directory!r}, limit_bytes={self.limit_bytes})"

    # ---- names and measures

    @staticmethod
    def key(url: str) -> str:
        digest = hashlib.sha1(url.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in url.rsplit("/", 1)[-1])
        return f"{base[:80]}-{digest}"

    def path(self, key: str, suffix: str = _SHARD) -> str:
        return os.path.join(self.directory, key + suffix)

    def usage(self) -> int:
        """Bytes the limit counts right now (complete shards, downloads in
        progress, decompressed copies made or in the making)."""
        total = 0
        with os.scandir(self.directory) as it:
            for entry in it:
                if entry.name.endswith(_COUNTED):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:
                        pass
        return total

    def _present_keys(self) -> set:
        with os.scandir(self.directory) as it:
            return {e.name[:-len(suf)] for e in it for suf in _COUNTED
                    if e.name.endswith(suf)}

    def check_fits(self, obj: RemoteObject) -> None:
        size = obj.known_size()
        if size > self.limit_bytes:
            raise ValueError(f"ShardCache limit {self.limit_bytes} bytes is smaller than the "
                             f"shard {obj.url} ({size} bytes): make the limit at least the "
                             f"largest shard (better: several shards, see the README)")

    # ---- metadata kept in the lock file

    def _read_meta(self, lock_fd: int) -> Dict[str, Any]:
        try:
            raw = os.pread(lock_fd, 4096, 0)
            return json.loads(raw.decode()) if raw else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, lock_fd: int, meta: Dict[str, Any]) -> None:
        raw = json.dumps(meta).encode()
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, raw, 0)

    def _valid(self, key: str, lock_fd: int, obj: RemoteObject) -> bool:
        try:
            st = os.stat(self.path(key))
        except FileNotFoundError:
            return False
        meta = self._read_meta(lock_fd)
        return (st.st_size == obj.size and meta.get("size") == obj.size
                and meta.get("url") == obj.url
                and (obj.version is None or meta.get("version") == obj.version))

    # ---- getting a shard

    def acquire(self, obj: RemoteObject, sha256: Optional[str] = None, *,
                demand: bool = True) -> Optional[Tuple[str, int]]:
        """(local path, pin) of the shard, downloading it first if needed;
        the pin (a lock fd) keeps it from eviction until :meth:`release`.
        With demand=False (prefetch) returns None instead of waiting for
        space or for another process's download."""
        self._own()
        obj.known_size()
        key = self.key(obj.url)
        fd = os.open(self.path(key, _LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            last_progress, last_mark = time.monotonic(), None
            while True:
                if _try_lock(fd, fcntl.LOCK_SH):
                    if self._valid(key, fd, obj):
                        return self._pinned(key, fd)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                if _try_lock(fd, fcntl.LOCK_EX):
                    try:
                        fetched = (self._valid(key, fd, obj)
                                   or self._download(key, fd, obj, sha256, demand))
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_SH)  # not atomic: re-checked below
                    if not fetched:  # prefetch found no room
                        os.close(fd)
                        return None
                    if self._valid(key, fd, obj):
                        return self._pinned(key, fd)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    continue
                if not demand:
                    os.close(fd)
                    return None
                # Another process is downloading it: wait while its .part moves.
                try:
                    mark = os.stat(self.path(key, _PART)).st_mtime_ns
                except FileNotFoundError:
                    mark = None
                now = time.monotonic()
                if mark != last_mark:
                    last_progress, last_mark = now, mark
                elif now - last_progress > self.stall_timeout:
                    raise TimeoutError(f"{obj.url}: another process's download into "
                                       f"{self.directory} made no progress for "
                                       f"{self.stall_timeout:.0f} s")
                time.sleep(self.poll_interval)
        except BaseException:
            os.close(fd)
            raise

    def _pinned(self, key: str, fd: int) -> Tuple[str, int]:
        with _HELD_LOCK:
            _HELD[fd] = (self.directory, key)
        return self.path(key), fd

    @staticmethod
    def release(pin: Optional[int]) -> None:
        if pin is not None:
            with _HELD_LOCK:
                _HELD.pop(pin, None)
            os.close(pin)  # closing drops the flock

    def _held_here(self) -> set:
        """Keys this process pins (readers and prefetch)."""
        with _HELD_LOCK:
            return {k for d, k in _HELD.values() if d == self.directory}

    def _download(self, key: str, lock_fd: int, obj: RemoteObject, sha256: Optional[str],
                  demand: bool) -> bool:
        """Downloads under the shard's exclusive lock; False when prefetch
        finds no room."""
        part = self.path(key, _PART)
        self._remove(key)  # a killed download, or an outdated version (and what was made of it)
        pfd = self._reserve(key, part, obj, demand)
        if pfd is None:
            return False
        try:
            digest = hashlib.sha256() if sha256 else None
            with _touching(part):
                obj.download_into(pfd, self.chunk_bytes,
                                  digest.update if digest is not None else None)
            if digest is not None and digest.hexdigest() != sha256.lower():
                raise RemoteError(obj.url, f"sha256 {digest.hexdigest()} does not match the "
                                           f"manifest's {sha256}")
            os.fsync(pfd)
            self._write_meta(lock_fd, {"url": obj.url, "size": obj.size,
                                       "version": obj.version, "sha256": sha256})
            os.rename(part, self.path(key))
        except BaseException as exc:
            try:
                os.unlink(part)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise CacheDiskFullError(errno.ENOSPC, f"{obj.url}: the disk under the cache "
                                                       f"{self.directory} is full") from exc
            raise
        finally:
            os.close(pfd)
        return True

    def _reserve(self, key: str, part: str, obj: RemoteObject, demand: bool) -> Optional[int]:
        """Makes room (evicting), then creates and pre-allocates the .part.
        Demand waits for pinned space to be released (bounded by
        stall_timeout); prefetch returns None."""
        return self._make_room(key, obj.size, demand, f"this shard ({obj.size} bytes)", obj.url,
                               lambda room: self._allocate(part, obj.size, obj))

    def _make_room(self, key: str, size: int, demand: bool, what: str, url: str, allocate):
        """allocate(room) under the directory lock once size more bytes fit
        (room: the bytes free beyond those); None when they do not and not
        demand."""
        dir_fd = os.open(os.path.join(self.directory, _DIR_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            start, last_used = time.monotonic(), None
            while True:
                fcntl.flock(dir_fd, fcntl.LOCK_EX)
                try:
                    used = self.usage()
                    if used + size > self.limit_bytes:
                        limit_next = None if demand else self._plan.get(key)
                        used -= self._evict(used + size - self.limit_bytes, key, limit_next)
                    if used + size <= self.limit_bytes:
                        return allocate(self.limit_bytes - used - size)
                finally:
                    fcntl.flock(dir_fd, fcntl.LOCK_UN)
                if not demand:
                    return None
                if self._drop_prefetch_pin():
                    continue  # our own look-ahead held the room: it gives way
                present = self._present_keys() - {key}
                mine = present & self._held_here()
                now = time.monotonic()
                if used != last_used:
                    start, last_used = now, used
                if present == mine or now - start > self.stall_timeout:
                    # Waiting cannot help when this process pins everything.
                    raise CacheLimitError(
                        f"{url}: the cache {self.directory} (limit {self.limit_bytes} "
                        f"bytes) cannot fit {what}: {used} bytes are held "
                        f"by shards in use ({len(mine)} by this process: "
                        f"{', '.join(sorted(mine)) or 'none'}); raise limit_bytes, or lower "
                        f"queue_size / shuffle_buffer so fewer shards are read at once "
                        f"(see the README on sizing the cache)")
                time.sleep(self.poll_interval)
        finally:
            os.close(dir_fd)

    def _allocate(self, part: str, size: int, obj: RemoteObject) -> int:
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if size:
                os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            os.unlink(part)
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise CacheDiskFullError(exc.errno, f"{obj.url}: no room for {size} bytes on the "
                                                    f"disk under the cache {self.directory} "
                                                    f"({os.strerror(exc.errno)})") from exc
            raise
        return fd

    def _evict(self, need: int, keep: str, limit_next: Optional[int]) -> int:
        """Deletes unpinned files until need bytes are freed; returns the
        bytes freed.  With limit_next (prefetch), only shards whose next use
        comes after limit_next may go."""
        candidates = {}
        with os.scandir(self.directory) as it:
            for entry in it:
                name = entry.name
                for rank, suffix in enumerate(_COUNTED):
                    if name.endswith(suffix) and name[:-len(suffix)] != keep:
                        k = name[:-len(suffix)]
                        nxt = self._plan.get(k, float("inf"))
                        # unfinished work first, then the furthest next use
                        order = (0 if suffix in (_PART, _PLAIN_PART) else 1, -nxt)
                        candidates[k] = min(candidates.get(k, order), order)
        freed = 0
        for k in sorted(candidates, key=candidates.get):
            if freed >= need:
                break
            nxt = self._plan.get(k, float("inf"))
            if limit_next is not None and nxt <= limit_next:
                continue
            fd = os.open(self.path(k, _LOCK), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd, fcntl.LOCK_EX):
                    continue  # pinned, or being downloaded
                freed += self._remove(k)
            finally:
                os.close(fd)
        return freed

    def _remove(self, key: str) -> int:
        """Deletes the shard's files (its lock held exclusively); returns
        the bytes the limit counted of them."""
        freed = 0
        for suffix in _OF_A_SHARD:
            try:
                size = os.stat(self.path(key, suffix)).st_size
                os.unlink(self.path(key, suffix))
                freed += size if suffix in _COUNTED else 0
            except FileNotFoundError:
                pass
        return freed

    # ---- files made from a cached shard

    def plain_copy(self, obj: RemoteObject) -> "PlainCopy":
        """Where a file made from obj's cached shard goes (a compressed
        tar's decompressed copy): see :class:`PlainCopy`.  The caller pins
        the shard (:meth:`acquire`) while it makes or reads the copy."""
        return PlainCopy(self, self.key(obj.url), obj.url)

    def _grow(self, key: str, url: str, fd: int, size: int) -> int:
        """Pre-allocates fd (a .plain-part) to at least size bytes, room
        made first as for a download (waiting while others pin it); a
        little more when it is free, so that a growing file asks seldom.
        Returns the size allocated."""
        current = os.fstat(fd).st_size

        def allocate(room: int) -> int:
            target = size + min(room, 4 << 20)
            os.posix_fallocate(fd, 0, target)
            return target

        try:
            return self._make_room(key, max(0, size - current), True,
                                   f"the decompressed copy of this shard ({size} bytes so far)",
                                   url, allocate)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise CacheDiskFullError(exc.errno, f"{url}: no room for {size} bytes on the "
                                                    f"disk under the cache {self.directory} "
                                                    f"({os.strerror(exc.errno)})") from exc
            raise

    # ---- the plan: prefetch in the epoch's order

    def follow(self, plan: Sequence[Tuple[RemoteObject, Optional[str]]]) -> None:
        """Sets the order in which this process will need shards (the
        rest of this epoch, then the next): a background thread downloads
        them in that order as far as the limit allows, and eviction
        prefers shards needed late or never."""
        self._own()
        entries = [(pos, obj, sha) for pos, (obj, sha) in enumerate(plan)]
        with self._state_lock:
            self._plan = {}
            for pos, obj, _ in entries:
                self._plan.setdefault(self.key(obj.url), pos)
            for k in [k for k in self._pins if k not in self._plan]:
                self.release(self._pins.pop(k))
            if self._prefetcher is None or not self._prefetcher.is_alive():
                self._prefetcher = _Prefetcher(self)
                self._prefetcher.start()
            self._prefetcher.set_plan(entries)

    def finished(self, obj: RemoteObject) -> None:
        """This process is done with the shard for now: its prefetch pin
        goes, and it becomes the first to evict unless the plan needs it
        again."""
        self._own()
        key = self.key(obj.url)
        with self._state_lock:
            nxt = self._prefetcher.done(obj) if self._prefetcher is not None else None
            if nxt is None:
                self._plan.pop(key, None)
            else:
                self._plan[key] = nxt
            pin = self._pins.pop(key, None)
        self.release(pin)

    def _drop_prefetch_pin(self) -> bool:
        """Releases the prefetch pin needed last; True if there was one."""
        with self._state_lock:
            if not self._pins:
                return False
            key = max(self._pins, key=lambda k: self._plan.get(k, float("inf")))
            pin = self._pins.pop(key)
        self.release(pin)
        return True

    def stop(self) -> None:
        """Stops prefetching (after the download in progress, if any) and
        drops this process's prefetch pins."""
        if self._prefetcher is not None and self._pid == os.getpid():
            self._prefetcher.stop()
            self._prefetcher.join()
            self._prefetcher = None
        with self._state_lock:
            pins, self._pins = self._pins, {}
        for pin in pins.values():
            self.release(pin)


class PlainCopy:
    """A file made from a cached shard, inside the cache's limit: ``path``
    (complete), ``part`` (in the making; :meth:`reserve` grows its
    allocation before bytes are written past it), ``note`` (a few words
    kept about the copy) and ``lock`` (taken by its makers).  All of them
    go when the shard is evicted or replaced by a new version."""

    def __init__(self, cache: ShardCache, key: str, url: str):
        self.cache, self.key, self.url = cache, key, url
        self.path = cache.path(key, _PLAIN)
        self.part = cache.path(key, _PLAIN_PART)
        self.note = cache.path(key, _PLAIN_NOTE)
        self.lock = cache.path(key, _PLAIN_LOCK)

    def reserve(self, fd: int, size: int) -> int:
        """Makes fd hold at least size bytes within the limit (evicting
        other shards, waiting for pinned ones, or CacheLimitError); returns
        the size now allocated."""
        return self.cache._grow(self.key, self.url, fd, size)


class _Prefetcher(threading.Thread):
    """Downloads the plan's shards in order while the limit allows; waits
    for the plan to advance when it does not.  Errors are left for the
    reader's own (demand) fetch to report; a shard that failed is not
    tried again by the prefetcher."""

    def __init__(self, cache: ShardCache):
        super().__init__(name="dareblopy-prefetch", daemon=True)
        self.cache = cache
        self._plan: List[Tuple[int, RemoteObject, Optional[str]]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self.failed: Dict[str, BaseException] = {}

    def set_plan(self, entries) -> None:
        with self._cond:
            self._plan = list(entries)
            self._cond.notify()

    def done(self, obj: RemoteObject) -> Optional[int]:
        """Drops obj's first entry from the plan; returns the position of
        its next entry, if it comes again."""
        with self._cond:
            hits = [i for i, (_, o, _) in enumerate(self._plan) if o.url == obj.url]
            if hits:
                del self._plan[hits[0]]
            self._cond.notify()
            return self._plan[hits[1] - 1][0] if len(hits) > 1 else None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def run(self) -> None:
        cache = self.cache
        while True:
            with self._cond:
                if self._stopped:
                    return
                plan = list(self._plan)
            progressed = False
            for _, obj, sha in plan:
                key = cache.key(obj.url)
                with cache._state_lock:
                    if key in cache._pins:
                        continue
                if self._stopped:
                    return
                if key in self.failed:
                    continue
                try:
                    got = cache.acquire(obj, sha, demand=False)
                except Exception as exc:
                    self.failed[key] = exc
                    break
                if got is None:
                    break  # no room yet, or another process is on it: keep the order
                with cache._state_lock:
                    if key in cache._plan and key not in cache._pins:
                        cache._pins[key] = got[1]
                        progressed = True
                        continue
                cache.release(got[1])
            with self._cond:
                if not self._stopped and not progressed:
                    self._cond.wait(timeout=0.1)
