"""Shards named by URL: brace ranges, and byte access to one remote object
through fsspec (s3fs for ``s3://``, gcsfs for ``gs://``, aiohttp for
``https://``, or any other fsspec protocol).

libdbr reads local files only; this module is where bytes cross the
network.  Every request is retried a bounded number of times with
exponential backoff, then fails with an error that names the URL; a
server that stops answering fails an attempt after ``timeout`` seconds of
silence (connecting, or between two reads of a body).  A
missing object or refused credentials are not retried: asking again gives
the same answer.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_RANGE = re.compile(r"(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?")


# botocore's names for credentials it could not find: asking again cannot help.
_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError")


class RemoteError(OSError):
    """A remote object could not be read; ``url`` names it."""

    def __init__(self, url: str, message: str):
        super().__init__(f"{url}: {message}")
        self.url = url


class RemoteNotFoundError(RemoteError, FileNotFoundError):
    """The bucket, object or URL does not exist."""


class RemoteAccessError(RemoteError, PermissionError):
    """The server refused the credentials."""


class ShardChangedError(RemoteError):
    """The shard changed during the run: on the server (size or ETag), or,
    for a local archive shard, the file its samples were listed from was
    replaced or rewritten."""


def is_url(path: Any) -> bool:
    """True for ``scheme://...`` strings other than ``file://``."""
    return isinstance(path, str) and bool(_SCHEME.match(path)) and not path.startswith("file://")


def file_name(location: str) -> str:
    """The file name of a shard's path or URL, which its samples are named
    by: a URL's query (a presigned URL's signature, s3fs's ``?versionId=``)
    is no part of it."""
    if is_url(location):
        return location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return os.path.basename(location)


def expand_braces(pattern: str) -> List[str]:
    """Shell-style brace expansion, as bash expands the shard lists users
    write: ``train-{00000..00099}.zip`` (zero-padded when an end is),
    ``{0..100..10}`` (a step), ``{a..f}``, ``{a,b}``, nested ``{a,{b,c}}``;
    braces holding neither a range nor a top-level comma stay as they are."""
    at = 0
    while True:
        start = pattern.find("{", at)
        if start < 0:
            return [pattern]
        end, commas = _closing_brace(pattern, start)
        if end is None:  # unmatched: a literal brace
            at = start + 1
            continue
        body = pattern[start + 1:end]
        if commas:
            cuts = [start] + commas + [end]
            alternatives = [x for a, b in zip(cuts, cuts[1:])
                            for x in expand_braces(pattern[a + 1:b])]
        else:
            alternatives = _sequence(body)
            if alternatives is None:  # not an expansion: look inside and beyond
                at = start + 1
                continue
        head, rests = pattern[:start], expand_braces(pattern[end + 1:])
        return [head + alt + rest for alt in alternatives for rest in rests]


def _closing_brace(pattern: str, start: int) -> Tuple[Optional[int], List[int]]:
    """(index of the brace closing the one at start, or None; indexes of
    the commas at its top level)."""
    depth, commas = 0, []
    for k in range(start, len(pattern)):
        c = pattern[k]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return k, commas
        elif c == "," and depth == 1:
            commas.append(k)
    return None, []


def _sequence(body: str) -> Optional[List[str]]:
    """The items of ``a..b`` or ``a..b..step`` (integers or single
    letters), as bash lists them; None when body is neither."""
    m = _RANGE.fullmatch(body)
    if m is None:
        return None
    a, b, step = m.groups()
    step = abs(int(step or 1)) or 1  # bash: the sign of a step is ignored, 0 means 1
    if a.lstrip("-").isdigit() != b.lstrip("-").isdigit():
        return None
    if not a.lstrip("-").isdigit():
        lo, hi = ord(a), ord(b)
        return [chr(c) for c in range(lo, hi + (1 if hi >= lo else -1), step if hi >= lo else -step)]
    lo, hi = int(a), int(b)
    padded = any(len(s.lstrip("-")) > 1 and s.lstrip("-")[0] == "0" for s in (a, b))
    width = max(len(a), len(b)) if padded else 0
    direction = 1 if hi >= lo else -1
    return [str(i).zfill(width) for i in range(lo, hi + direction, step * direction)]


def shard_locations(paths: Union[PathLike, Sequence[PathLike]]) -> List[Union[str, os.PathLike]]:
    """A pattern or a list of paths/URLs, with brace ranges expanded in
    every string."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: List[Union[str, os.PathLike]] = []
    for p in paths:
        if isinstance(p, str) and p.startswith("file://"):
            p = p[len("file://"):]
        out.extend(expand_braces(p) if isinstance(p, str) else [p])
    return out


def _version_of(info: Dict[str, Any]) -> Optional[str]:
    """What identifies one version of an object (S3/HTTP ETag, GCS
    generation, else the modification time)."""
    for key in ("ETag", "etag", "generation", "Last-Modified", "LastModified", "mtime",
                "last_modified"):
        if info.get(key) is not None:
            return str(info[key])
    return None


def _with_timeouts(url: str, options: Dict[str, Any], seconds: float) -> Dict[str, Any]:
    """storage_options plus the backend's timeouts for a silent server
    (connecting, and between two reads), where the caller set none: aiohttp
    waits 5 minutes by default, botocore 60 s per try of its own retries."""
    opts = dict(options)
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        import aiohttp
        client = dict(opts.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=seconds,
                                                           sock_read=seconds))
        opts["client_kwargs"] = client
    elif scheme in ("s3", "s3a"):
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("connect_timeout", seconds)
        config.setdefault("read_timeout", seconds)
        # one try per attempt of ours: botocore's retries inside each would
        # multiply the wait (s3fs retries some errors once more on top)
        config.setdefault("retries", {"total_max_attempts": 1})
        opts["config_kwargs"] = config
    return opts


class RemoteObject:
    """One object at a URL: its size and version, range reads, and chunked
    downloads, with bounded retries.  Picklable: the fsspec filesystem is
    made on first use in each process.

    ``size``/``version`` are those seen when the object was first asked
    about (``stat``); later reads that find another size or version raise
    :class:`ShardChangedError` instead of mixing two versions."""

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]] = None, *,
                 retries: int = 3, backoff: float = 0.5, timeout: float = 60.0,
                 size: Optional[int] = None, version: Optional[str] = None):
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.retries = max(0, int(retries))
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self.size = size
        self.version = version
        self._fs = None
        self._path = None
        self._pid = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_fs=None, _path=None, _pid=None)
        return state

    def __repr__(self) -> str:
        return f"RemoteObject({self.url!r}, size={self.size})"

    @property
    def name(self) -> str:
        return file_name(self.url)

    def _filesystem(self):
        if self._fs is None or self._pid != os.getpid():
            try:
                from fsspec.core import url_to_fs
            except ImportError as exc:
                raise ImportError(f"{self.url}: reading URLs needs fsspec and its backend "
                                  f"(pip install 'dareblopy[remote]')") from exc
            try:
                self._fs, self._path = url_to_fs(
                    self.url, **_with_timeouts(self.url, self.storage_options, self.timeout))
            except ImportError as exc:
                raise ImportError(f"{self.url}: no fsspec backend for this protocol "
                                  f"({exc}); pip install 'dareblopy[remote]'") from exc
            self._pid = os.getpid()
        return self._fs, self._path

    def _call(self, what: str, fn, *args):
        """fn(fs, path, *args), retried on transient errors."""
        attempt = 0
        while True:
            try:
                fs, path = self._filesystem()
                return fn(fs, path, *args)
            except (RemoteError, ImportError):
                raise
            except FileNotFoundError as exc:
                cause = exc.__cause__  # fsspec's HTTP info says "not found" for any failure
                if getattr(cause, "status", None) in (401, 403):
                    raise RemoteAccessError(self.url, f"access denied ({cause})") from exc
                if not isinstance(cause, OSError) or isinstance(cause, FileNotFoundError):
                    raise RemoteNotFoundError(self.url, f"not found ({exc})") from exc
                failure = cause  # a timeout or a refused connection: retried
            except PermissionError as exc:
                raise RemoteAccessError(self.url, f"access denied ({exc})") from exc
            except Exception as exc:  # network, server and protocol errors
                status = getattr(exc, "status", None)
                if status in (401, 403) or type(exc).__name__ in _NO_CREDENTIALS:
                    raise RemoteAccessError(self.url, f"access denied ({exc})") from exc
                if status == 404:
                    raise RemoteNotFoundError(self.url, f"not found ({exc})") from exc
                failure = exc
            if attempt >= self.retries:
                raise RemoteError(self.url, f"{what} failed after {attempt + 1} attempts: "
                                            f"{type(failure).__name__}: {failure}") from failure
            time.sleep(self.backoff * 2 ** attempt)
            attempt += 1

    def stat(self) -> Tuple[int, Optional[str]]:
        """(size, version) as the server reports them now; the first call
        fixes the identity that later calls must match."""
        def info(fs, path):
            fs.invalidate_cache(path)  # a listing's cached answer would hide a change
            return fs.info(path)
        info = self._call("stat", info)
        if info.get("type") == "directory":
            raise RemoteNotFoundError(self.url, "is a directory, not a shard")
        size, version = info.get("size"), _version_of(info)
        if size is None:
            raise RemoteError(self.url, "the server does not report the size")
        size = int(size)
        if self.size is None:
            self.size, self.version = size, version
        elif size != self.size or (self.version is not None and version != self.version):
            raise ShardChangedError(self.url, f"changed on the server during the run (size "
                                              f"{self.size} -> {size}, version {self.version} "
                                              f"-> {version})")
        return size, version

    def known_size(self) -> int:
        if self.size is None:
            self.stat()
        return self.size

    def read_range(self, start: int, end: int, *, whole_ok: bool = False) -> bytes:
        """Bytes [start, end) of the object.  A 206 carrying less than asked
        (valid: its Content-Range says so, as some CDNs cap a range) is
        continued where it stopped; an empty or truncated answer is retried,
        then an error.  A server that ignores Range (a 200 with the whole
        object) raises at once, or with ``whole_ok`` the whole object is
        returned (``len(result) == size`` tells the caller)."""
        def get(fs, path, at):
            data = fs.cat_file(path, start=at, end=end)
            if not data:
                raise EOFError(f"asked for bytes [{at}, {end}), got none")
            return data
        parts, at = [], start
        while at < end:
            data = self._call(f"read of bytes [{at}, {end})", get, at)
            if len(data) > end - at:
                if len(data) == self.size:
                    if whole_ok:
                        return data
                    raise RemoteError(self.url, f"the server ignores Range requests (asked for "
                                                f"bytes [{at}, {end}), it sent all {len(data)} "
                                                f"bytes): read this shard through a ShardCache "
                                                f"(cache=...), which downloads it once")
                raise RemoteError(self.url, f"asked for bytes [{at}, {end}), the server sent "
                                            f"{len(data)} bytes")
            parts.append(data)
            at += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def download_into(self, fd: int, chunk_bytes: int = 8 << 20, on_chunk=None) -> None:
        """Writes the whole object into fd (pre-sized) chunk by chunk, each
        chunk a range read with its own retries (so a retry resumes where the
        last chunk ended; a server that ignores Range sends it all at once).
        on_chunk(data) sees the chunks in order.  The version is checked
        after the last chunk: a change since the object was first seen
        (listing or stat) raises ShardChangedError."""
        size = self.known_size()
        start = 0
        while start < size:
            stop = min(size, start + chunk_bytes)
            data = self.read_range(start, stop, whole_ok=True)
            if len(data) != stop - start:  # the whole object: keep what is not written yet
                data, stop = memoryview(data)[start:], size
            view = memoryview(data)
            while view:
                view = view[os.pwrite(fd, view, stop - len(view)):]
            if on_chunk is not None:
                on_chunk(data)
            start = stop
        self.stat()

    def upload_from(self, local_path: str) -> None:
        """Copies a local file to the URL (used by ``pack`` for URL outputs)."""
        self._call("upload", lambda fs, path: fs.put_file(local_path, path))


def stat_many(objects: Sequence[RemoteObject]) -> None:
    """Fixes size and version of many objects, with one listing per folder
    where the backend lists (S3, GCS), else one request per object."""
    by_folder: Dict[str, List[RemoteObject]] = {}
    for obj in objects:
        if obj.size is None:
            by_folder.setdefault(obj.url.rsplit("/", 1)[0], []).append(obj)
    for folder, objs in by_folder.items():
        listing = None
        if len(objs) > 1 and not objs[0].url.startswith(("http://", "https://")):
            try:
                listing = objs[0]._call("listing", lambda fs, path: {
                    fs.unstrip_protocol(i["name"]).rstrip("/"): i
                    for i in fs.ls(fs._parent(path), detail=True)})
            except RemoteError:
                listing = None  # fall back to one stat per object: it names the URL
        for obj in objs:
            info = listing.get(obj.url.rstrip("/")) if listing else None
            if (info is not None and info.get("size") is not None
                    and info.get("type") != "directory"):
                obj.size, obj.version = int(info["size"]), _version_of(info)
            else:
                obj.stat()
