"""Where a shard's bytes come from when it is named by a URL: the resolver
that shard readers hold instead of a local path.

A :class:`RemoteSource` gives a reader either the local path of the whole
shard, downloaded through a :class:`~dareblopy.ShardCache` on first use
(streaming epochs), or, without a cache, a :class:`RemoteArchive` that
fetches only the bytes of the entries read (random access).
"""
from __future__ import annotations

import hashlib
import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ._remote import RemoteObject, is_url, shard_locations, stat_many

PathLike = Union[str, os.PathLike]

_HASH_LINE = "# sha256\t"


class RemoteSource:
    """One remote shard: its object, the cache it goes through (or None),
    and the sha256 the pack manifest records for it (or None)."""

    def __init__(self, obj: RemoteObject, cache=None, sha256: Optional[str] = None):
        self.obj = obj
        self.cache = cache
        self.sha256 = sha256
        self._pin = None
        self._pid = None
        self._lock = threading.Lock()  # two threads opening the shard pin it once

    @property
    def url(self) -> str:
        return self.obj.url

    def local_path(self) -> str:
        """The cached copy, downloaded first if needed (waiting for another
        process already downloading it); pinned until :meth:`release`."""
        if self.cache is None:
            raise ValueError(f"{self.url}: reading the whole shard needs a cache "
                             f"(pass cache=ShardCache(directory, limit_bytes))")
        self._after_fork()
        with self._lock:
            if self._pin is None:
                path, self._pin = self.cache.acquire(self.obj, self.sha256)
                self._pid = os.getpid()
                return path
            return self.cache.path(self.cache.key(self.url))

    def index_dir(self) -> str:
        """Where readers keep indexes of cached shards (tar members,
        TFRecord offsets): beside the cache, outside its byte limit."""
        return self.cache.index_directory

    def readable_tar(self):
        """readable_tar() of the cached shard (a context): a compressed
        tar's decompressed copy lives in the cache, inside its limit."""
        from ._tar_decompress import readable_tar
        return readable_tar(self.local_path(), place=self.cache.plain_copy(self.obj))

    def open_zip(self, **options):
        """The shard as an Archive: the cached file, or range reads."""
        from ._zip import open_zip_archive
        if self.cache is not None:
            return open_zip_archive(self.local_path(), **options)
        return self.open_zip_ranges(**options)

    def open_zip_ranges(self, **options):
        from ._remote_zip import RemoteArchive
        return RemoteArchive(self.obj, **options)

    def zip_namelist(self) -> List[str]:
        """The entry names, from the central directory alone (one range
        read of the tail): counting a shard downloads nothing."""
        with self.open_zip_ranges() as listing:
            return listing.namelist()

    @staticmethod
    def before_read(archive, entries: Sequence[int]) -> None:
        """Fetches the entries' bytes when the archive is read by ranges
        (C calls on its handle cannot ask for them)."""
        fetch = getattr(archive, "fetch_entries", None)
        if fetch is not None:
            fetch(entries)

    def release(self) -> None:
        self._after_fork()
        with self._lock:
            if self._pin is not None:
                self.cache.release(self._pin)
                self._pin = None

    def _after_fork(self) -> None:
        """In a forked child the parent's pin (and maybe its held lock) are
        not ours: start afresh."""
        if self._pid is not None and self._pid != os.getpid():
            self._lock, self._pin, self._pid = threading.Lock(), None, None

    def __getstate__(self):
        return {"obj": self.obj, "cache": self.cache, "sha256": self.sha256}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"RemoteSource({self.url!r})"


def manifest_hash_lines(paths: Sequence[str]) -> List[str]:
    """``# sha256<TAB>shard file name<TAB>size<TAB>hex`` for each shard, the
    lines a pack manifest records (comments to readers of its items)."""
    lines = []
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(4 << 20), b""):
                digest.update(block)
        lines.append(f"{_HASH_LINE}{os.path.basename(path)}\t{os.path.getsize(path)}\t"
                     f"{digest.hexdigest()}\n")
    return lines


def read_manifest_hashes(manifest: PathLike, storage_options: Optional[Dict[str, Any]] = None
                         ) -> Dict[str, str]:
    """{shard file name: sha256} from a pack manifest's ``# sha256`` lines
    (a path or a URL)."""
    manifest = os.fspath(manifest)
    if is_url(manifest):
        obj = RemoteObject(manifest, storage_options)
        text = obj.read_range(0, obj.known_size()).decode("utf-8", "surrogateescape")
    else:  # (pack writes names that are not UTF-8 with surrogateescape)
        with open(manifest, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    hashes = {}
    for line in text.splitlines():
        if line.startswith(_HASH_LINE):
            name, _size, digest = line[len(_HASH_LINE):].split("\t")[:3]
            hashes[name] = digest
    return hashes


def resolve(paths: Union[PathLike, Sequence[PathLike]], cache=None,
            storage_options: Optional[Dict[str, Any]] = None,
            manifest: Optional[PathLike] = None
            ) -> List[Tuple[Union[str, os.PathLike], Optional[RemoteSource]]]:
    """(path or URL, source) per shard, brace ranges expanded; the source
    is None for local paths.  Remote shards are asked for their size and
    version here (one listing per folder where the backend lists), so a
    cache limit smaller than a shard is refused now."""
    locations = shard_locations(paths)
    remote = [RemoteObject(p, storage_options) for p in locations if is_url(p)]
    if not remote:
        return [(p, None) for p in locations]
    stat_many(remote)
    if cache is not None:
        for obj in remote:
            cache.check_fits(obj)
    hashes = read_manifest_hashes(manifest, storage_options) if manifest is not None else {}
    objs = iter(remote)
    out = []
    for p in locations:
        if is_url(p):
            obj = next(objs)
            out.append((p, RemoteSource(obj, cache, hashes.get(obj.name))))
        else:
            out.append((p, None))
    return out
