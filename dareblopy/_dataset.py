"""Datasets of samples stored in shards: exact sharding over ranks and
workers, deterministic resumable shuffling, bounded memory, and a policy for
corrupt samples.

A *shard* is anything that holds numbered samples and can read several of
them in one call (the :class:`ShardReader` protocol): a directory or a list
of files, a zip archive, an indexed TFRecord file.  A dataset is a list of
shards.

The order of an epoch
---------------------
From ``(seed, epoch)`` alone, so every rank and worker computes the same
order without talking to the others:

1. the shards are permuted;
2. their samples are laid end to end (shard-major, so reads stay local);
3. this sequence is cut into windows of ``shuffle_buffer`` positions and
   each window is permuted on its own.

A sample therefore moves at most ``shuffle_buffer`` positions from its
shard-major place.  Quality against memory: the window holds sample
*indices*, not samples (8 bytes each, so the default 16384 costs 128 KiB),
and each batch reads from the shards that overlap one window.  A window as
large as the dataset is a uniform shuffle of everything (8 bytes per
sample: 80 MB for 10 million samples); a window of one shard's size mixes
about two shards at a time.  Positions map to samples arithmetically, so no
per-sample table of the epoch is ever built.

Splitting
---------
Rank ``r`` of ``W`` takes the contiguous positions ``[r*M, (r+1)*M)``.
With ``uneven="pad"`` (the default, as torch's DistributedSampler),
``M = ceil(N / W)`` and positions past the end wrap around to the start of
the epoch's order, so a few samples are read twice; with ``"drop"``,
``M = N // W`` and the last ``N mod W`` positions are skipped this epoch.
Every rank thus gets exactly ``M`` samples and the same number of batches,
and when ``N`` is a multiple of ``W`` every sample is read exactly once per
epoch in total.  A rank's batches are numbered ``0, 1, ...``; worker ``w``
of ``K`` takes batches ``start + w, start + w + K, ...``, which is the
round-robin order in which torch's DataLoader collects them, so the
consumer sees batches in number order.

Resuming
--------
The state is ``(epoch, batches consumed)``, the same on every rank, plus the
settings that shape the order (checked on load).  A batch counts as consumed
once it has been handed to the caller.

Bounded memory
--------------
Nothing is held per sample of the epoch: the plan is arithmetic, a window
of indices and the shard sizes.  Iterating in one process, peak RSS grows
by at most ``(queue_size + worker_count + 2) * batch_bytes + C``:
``queue_size`` batches in flight, one held by the caller, one being
assembled, and up to one freed batch per worker thread that glibc keeps in
that thread's malloc arena.  Measured on Linux x86-64, CPython 3.11 (see
``tests/python/test_dataset.py::test_peak_rss_is_bounded``, 200 MiB
streamed): C is about 3-4 MiB, for example +9 MiB with 1 MiB batches,
queue 4 and 2 threads, +23 MiB with 4 MiB batches, queue 2 and 4 threads,
and +3.7 MiB after streaming 9.8 GiB in 64 KiB batches; a dataset of 10**9
samples costs no more than a small one.  The test asserts the bound with
C = 16 MiB.  Readers keep their own handles open; ``max_open_shards``
bounds how many are open at once.
"""
from __future__ import annotations

import bisect
import os
import sys
import threading
from collections import OrderedDict
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import numpy as np

from ._files import read_files
from ._loader import data_loader
from ._shuffle import derive_seed, permutation
from ._prefetch import follow_epoch
from ._source import resolve as resolve_sources

__all__ = ["ShardReader", "DirectoryShard", "ZipShard", "directory_shards", "zip_shards",
           "ShardedDataset", "IndexedSamples", "read_label_file", "labels_from_parent_dirs"]

PathLike = Union[str, os.PathLike]

# Streams derived from the seed, kept apart by a stream number.
_WINDOW_STREAM = 1
_BATCH_STREAM = 2


class ShardReader:
    """The protocol a shard implements (subclassing is optional).

    ``read`` gets local indices and returns, in the same order, each
    sample's bytes or the exception that reading it raised, so one bad
    sample does not hide the others.  A reader must be picklable (torch may
    send it to worker processes); ``close()`` is optional and releases open
    handles, after which the reader reopens them on demand.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, index: int) -> str:
        raise NotImplementedError

    def read(self, indices: Sequence[int]) -> List[Union[bytes, Exception]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DirectoryShard(ShardReader):
    """A shard made of plain files.  Names are the paths relative to
    ``root`` (or the paths as given when there is no root)."""

    def __init__(self, files: Sequence[PathLike], root: Optional[PathLike] = None):
        self.root = os.fspath(root) if root is not None else None
        self.files = [os.fspath(f) for f in files]
        # Joined once: the read loop below is the per-sample hot path.
        self._paths = (self.files if self.root is None else
                       [os.path.join(self.root, f) for f in self.files])

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return self.files[index]

    def read(self, indices: Sequence[int]) -> List[Union[bytes, Exception]]:
        # One batch of C calls; failures are reported per sample.
        return read_files([self._paths[i] for i in indices], errors="return")

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


class ZipShard(ShardReader):
    """A zip archive as a shard: its file entries, in central-directory
    order.  The archive is opened on first use in each process, reads a
    batch with one ``Archive.read_many`` call, and names samples
    ``<archive file name>/<entry>``."""

    def __init__(self, path: PathLike, source=None):
        self.path = os.fspath(path)
        self.source = source  # a URL's RemoteSource: the cache, or range reads
        self._archive = None
        self._names = None
        self._pid = None

    def _open(self):
        if self._archive is None or self._pid != os.getpid():
            try:
                from ._zip import open_zip_archive
            except ImportError as exc:  # the zip layer is not built in
                raise ImportError(f"ZipShard({self.path!r}) needs dareblopy's zip support") from exc
            self._archive = (open_zip_archive(self.path) if self.source is None
                             else self.source.open_zip())
            self._pid = os.getpid()
            if self._names is None:
                self._names = [n for n in self._archive.namelist() if not n.endswith("/")]
        return self._archive

    def _entries(self) -> List[str]:
        if self._names is None:
            if self.source is not None:  # the listing by range reads, not the whole shard
                with self.source.open_zip_ranges() as listing:
                    self._names = [n for n in listing.namelist() if not n.endswith("/")]
            else:
                self._open()
        return self._names

    def __len__(self) -> int:
        return len(self._entries())

    def name(self, index: int) -> str:
        return os.path.basename(self.path) + "/" + self._entries()[index]

    def read(self, indices: Sequence[int]) -> List[Union[bytes, Exception]]:
        try:
            archive = self._open()
        except OSError as exc:  # unreachable or damaged: each sample reports it
            return [exc] * len(indices)
        names = [self._names[i] for i in indices]
        try:
            return list(archive.read_many(names))
        except Exception:  # find out which entries fail, and keep the rest
            out = []
            for n in names:
                try:
                    out.append(archive.open_as_bytes(n))
                except Exception as exc:
                    out.append(exc)
            return out

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None
        if self.source is not None:
            self.source.release()

    def __getstate__(self):
        return {"path": self.path, "source": self.source, "_names": self._names,
                "_archive": None, "_pid": None}

    def __repr__(self) -> str:
        return f"ZipShard({self.path!r})"


def zip_shards(paths: Union[PathLike, Sequence[PathLike]], *, cache=None,
               storage_options: Optional[Dict[str, Any]] = None,
               manifest: Optional[PathLike] = None) -> List[ZipShard]:
    """One :class:`ZipShard` per archive, in the order given.  Paths may be
    URLs and brace patterns (see :func:`dareblopy.ShardCache`)."""
    return [ZipShard(p, s) for p, s in resolve_sources(paths, cache, storage_options, manifest)]


class TFRecordShard(ShardReader):
    """An uncompressed TFRecord file as a shard: its records, found through
    the file's index (``FILE.idx``, built and cached on first use).  Samples
    are the serialized records, named ``<file name>/<record number>``; give
    the dataset a ``transform`` that parses them (see RecordParser).
    Compressed files cannot seek, so they cannot be shards."""

    def __init__(self, path: PathLike, source=None):
        self.path = os.fspath(path)
        self.source = source  # a URL's RemoteSource: downloaded through its cache
        self._reader = None
        self._count = None

    def _open(self):
        if self._reader is None:
            from ._tfrecord import RecordReader
            self._reader = RecordReader(self.path if self.source is None
                                        else self.source.local_path())
            self._count = len(self._reader)
        return self._reader

    def __len__(self) -> int:
        if self._count is None:
            self._open()
        return self._count

    def name(self, index: int) -> str:
        return f"{os.path.basename(self.path)}/{index}"

    def read(self, indices: Sequence[int]) -> List[Union[bytes, Exception]]:
        try:
            reader = self._open()
        except OSError as exc:  # unreachable or damaged: each sample reports it
            return [exc] * len(indices)
        out = []
        for i in indices:
            try:
                out.append(reader[int(i)])
            except Exception as exc:
                out.append(exc)
        return out

    def close(self) -> None:
        self._reader = None
        if self.source is not None:
            self.source.release()

    def __getstate__(self):
        return {"path": self.path, "source": self.source, "_reader": None,
                "_count": self._count}

    def __repr__(self) -> str:
        return f"TFRecordShard({self.path!r})"


def tfrecord_shards(paths: Union[PathLike, Sequence[PathLike]], *, cache=None,
                    storage_options: Optional[Dict[str, Any]] = None,
                    manifest: Optional[PathLike] = None) -> List[TFRecordShard]:
    """One :class:`TFRecordShard` per file, in the order given; URLs need
    a ``cache`` (records are read from the downloaded file)."""
    return [TFRecordShard(p, s)
            for p, s in resolve_sources(paths, cache, storage_options, manifest)]


def name_label_lines(path: PathLike) -> Iterator[Tuple[str, int]]:
    """(name, label) for each ``name label`` line of a text file; blank
    lines and lines starting with '#' are skipped, names may hold spaces."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, label = line.rpartition(" ")
            if not name.strip() or not label.lstrip("-").isdigit():
                raise ValueError(f"{os.fspath(path)}:{lineno}: expected 'name label', "
                                 f"got {line!r}")
            yield name.strip(), int(label)


def read_label_file(path: PathLike) -> Dict[str, int]:
    """A label map from a text file of ``name label`` lines."""
    return dict(name_label_lines(path))


def labels_from_parent_dirs(classes: Sequence[str]) -> Callable[[str], int]:
    """ImageFolder-style labels: a sample's label is the index, in
    ``classes``, of its parent directory's name."""
    index = {c: i for i, c in enumerate(classes)}

    def label(key: str) -> int:
        parent = key.replace("\\", "/").rsplit("/", 2)
        cls = parent[-2] if len(parent) >= 2 else ""
        if cls not in index:
            raise KeyError(f"sample {key!r}: directory {cls!r} is not one of the classes")
        return index[cls]
    return label


def _label_of(labels, name: str) -> int:
    return int(labels[name] if isinstance(labels, Mapping) else labels(name))


def _named(exc: BaseException, name: str) -> BaseException:
    """The exception, with a note naming the sample (Python >= 3.11 shows
    notes in tracebacks)."""
    if hasattr(exc, "add_note"):
        exc.add_note(f"dareblopy: while loading sample {name!r}")
    return exc


class _Layout:
    """Cumulative sizes of the shards, for mapping flat positions to
    (shard, local index)."""

    def __init__(self, shards: Sequence[ShardReader]):
        self.lengths = np.array([len(s) for s in shards], dtype=np.int64)
        self.total = int(self.lengths.sum())


class _EpochOrder:
    """The sample at each position of one epoch (see the module docstring).
    Only the shard order and the windows in use are held in memory."""

    def __init__(self, layout: _Layout, seed: int, epoch: int, shuffle: bool, window: int):
        self.total = layout.total
        self.shuffle = shuffle
        self.window = max(1, int(window))
        self.seed = seed
        self.epoch = epoch
        n = len(layout.lengths)
        self.shard_order = permutation(n, seed, epoch) if shuffle else np.arange(n, dtype=np.int64)
        lengths = layout.lengths[self.shard_order]
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self._window_seed = derive_seed(seed, epoch, _WINDOW_STREAM)
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()

    def _window_perm(self, w: int) -> np.ndarray:
        perm = self._cache.get(w)
        if perm is None:
            size = min(self.window, self.total - w * self.window)
            perm = permutation(size, self._window_seed, w)
            self._cache[w] = perm
            if len(self._cache) > 2:  # a batch spans at most a few windows
                self._cache.popitem(last=False)
        return perm

    def samples(self, positions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(shard ids, local indices) for positions in [0, total)."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.shuffle:
            flat = np.empty_like(positions)
            w_of = positions // self.window
            for w in np.unique(w_of):
                sel = w_of == w
                flat[sel] = w * self.window + self._window_perm(int(w))[positions[sel] - w * self.window]
        else:
            flat = positions
        k = np.searchsorted(self.ends, flat, side="right")
        return self.shard_order[k], flat - self.starts[k]

    def shard_spans(self, lo: int, hi: int) -> List[Tuple[int, int, int]]:
        """(shard id, first, last position) of each shard that positions
        [lo, hi) may read, in order: a shard's samples stay inside the
        windows that overlap its shard-major range."""
        out = []
        for k in range(len(self.shard_order)):
            s, e = int(self.starts[k]), int(self.ends[k])
            if e == s:
                continue
            if self.shuffle:
                s = s // self.window * self.window
                e = min(-(-e // self.window) * self.window, self.total)
            first, last = max(s, lo), min(e, hi) - 1
            if first <= last:
                out.append((int(self.shard_order[k]), first, last))
        return out


def _dist_rank_world() -> Tuple[int, int]:
    """Rank and world size from torch.distributed, if torch is already
    imported and a process group is up; (0, 1) otherwise.  dareblopy never
    imports torch itself here."""
    torch = sys.modules.get("torch")
    if torch is not None:
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedDataset:
    """Batches of samples from shards, for one rank of a (possibly
    distributed) job.  Iterating yields dicts:

    - ``"keys"``: the sample names (list of str);
    - ``"data"``: ``batch_transform(raws, rng_seed)`` if given, else the list
      of ``transform(raw)`` (or of raw ``bytes`` without a transform); an
      empty list if every sample of the batch was skipped;
    - ``"labels"``: int64 array (only when ``labels`` is given);
    - ``"skipped"``: names of samples skipped as corrupt in this batch;
    - ``"epoch"``, ``"index"``: the epoch and this batch's number on the rank.

    Arguments:
      shards: ShardReaders (see :func:`directory_shards`, :func:`zip_shards`).
      batch_size: samples per batch.
      shuffle, seed, shuffle_buffer: the epoch order (module docstring).
      rank, world_size: this rank; default from torch.distributed when it is
        initialised, else 0 and 1.
      uneven: "pad" or "drop" when the sample count is not a multiple of the
        world size; drop_last drops a rank's final partial batch.
      transform: raw bytes -> sample, per sample.
      batch_transform: (list of raw bytes, rng_seed) -> batch data, one call
        per batch (for batched C decoders); rng_seed depends only on
        (seed, epoch, rank, batch number), so augmentations do not change
        with the number of workers.
      labels: a mapping or a callable from sample name to int label.
      on_error: "raise" (default) re-raises a failed read or transform, with
        the sample's name; "skip" leaves the sample out of its batch and
        records ``(name, message)`` in :attr:`skipped`.
      worker_count, queue_size: threads that build batches and the number of
        batches in flight when iterating in this process; memory stays
        within about (queue_size + 2) batches plus a constant.
      max_open_shards: readers kept open at once (others are closed).
    """

    def __init__(self, shards: Sequence[ShardReader], batch_size: int, *,
                 shuffle: bool = True, seed: int = 0, shuffle_buffer: int = 16384,
                 epoch: int = 0, rank: Optional[int] = None, world_size: Optional[int] = None,
                 uneven: str = "pad", drop_last: bool = False,
                 transform: Optional[Callable[[bytes], Any]] = None,
                 batch_transform: Optional[Callable[[List[bytes], int], Any]] = None,
                 labels: Union[Mapping[str, int], Callable[[str], int], None] = None,
                 on_error: str = "raise", worker_count: int = 1, queue_size: int = 4,
                 max_open_shards: int = 64):
        self.shards = list(shards)
        if not self.shards:
            raise ValueError("ShardedDataset: no shards")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"ShardedDataset: batch_size must be >= 1, not {batch_size}")
        if uneven not in ("pad", "drop"):
            raise ValueError(f"ShardedDataset: uneven must be 'pad' or 'drop', not {uneven!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"ShardedDataset: on_error must be 'raise' or 'skip', not {on_error!r}")
        if int(shuffle_buffer) < 1:
            raise ValueError(f"ShardedDataset: shuffle_buffer must be >= 1, not {shuffle_buffer}")
        if rank is None and world_size is None:
            rank, world_size = _dist_rank_world()
        elif rank is None or world_size is None:
            raise ValueError("ShardedDataset: give both rank and world_size, or neither")
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardedDataset: rank {rank} is not in [0, world_size={world_size})")
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.uneven, self.drop_last = uneven, bool(drop_last)
        self.transform, self.batch_transform = transform, batch_transform
        self.labels = labels
        self.on_error = on_error
        self.worker_count, self.queue_size = int(worker_count), int(queue_size)
        self.max_open_shards = max(1, int(max_open_shards))
        self._layout = _Layout(self.shards)
        if self._layout.total == 0:
            raise ValueError("ShardedDataset: the shards hold no samples")
        self.epoch = int(epoch)
        self.position = 0  # batches of this epoch handed to the caller
        self.skipped: List[Tuple[str, str]] = []
        self._open_lru: "OrderedDict[int, None]" = OrderedDict()
        self._lru_lock = threading.Lock()

    # ---- sizes

    @property
    def num_samples(self) -> int:
        """Samples in all shards."""
        return self._layout.total

    @property
    def samples_per_rank(self) -> int:
        n, w = self._layout.total, self.world_size
        return -(-n // w) if self.uneven == "pad" else n // w

    def __len__(self) -> int:
        """Batches per epoch on each rank."""
        m, b = self.samples_per_rank, self.batch_size
        return m // b if self.drop_last else -(-m // b)

    # ---- epochs and state

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch; a different epoch restarts at its first batch
        (the same one keeps a resumed position)."""
        if int(epoch) != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def _fingerprint(self) -> Dict[str, Any]:
        return {"num_samples": self._layout.total, "num_shards": len(self.shards),
                "world_size": self.world_size, "batch_size": self.batch_size,
                "seed": self.seed, "shuffle": self.shuffle,
                "shuffle_buffer": self.shuffle_buffer, "uneven": self.uneven,
                "drop_last": self.drop_last}

    def state_dict(self) -> Dict[str, Any]:
        """Where this epoch stands: restoring it restarts at the next
        unconsumed batch.  Equal on every rank."""
        return {"epoch": self.epoch, "position": self.position, **self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mine = self._fingerprint()
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"ShardedDataset.load_state_dict: the saved state is for a "
                             f"different dataset or setup ({detail})")
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"ShardedDataset.load_state_dict: position {position} is not "
                             f"in [0, {len(self)}]")
        self.epoch, self.position = int(state["epoch"]), position

    def _advance(self, batch_index: int) -> None:
        """Records that batch_index was handed over; an epoch that is
        complete rolls over to the next one."""
        self.position = batch_index + 1
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0

    # ---- the plan of an epoch

    def batch_plan(self, epoch: int, start: int = 0, worker: int = 0,
                   num_workers: int = 1) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        """(batch number, shard ids, local indices) of this rank's batches
        ``start + worker``, ``start + worker + num_workers``, ..."""
        order = _EpochOrder(self._layout, self.seed, epoch, self.shuffle, self.shuffle_buffer)
        m, n, b = self.samples_per_rank, self._layout.total, self.batch_size
        base = self.rank * m
        for index in range(start + worker, len(self), num_workers):
            lo = index * b
            pos = np.arange(base + lo, base + min(lo + b, m), dtype=np.int64) % n
            shard_ids, local = order.samples(pos)
            yield index, shard_ids, local

    def shard_schedule(self, epoch: int, start: int = 0) -> List[Tuple[int, int, int]]:
        """(shard id, first batch, last batch) of each shard this rank's
        batches from ``start`` on may read, ordered by first batch: what a
        cache prefetches, and when a shard is finished."""
        order = _EpochOrder(self._layout, self.seed, epoch, self.shuffle, self.shuffle_buffer)
        m, n, b = self.samples_per_rank, self._layout.total, self.batch_size
        base = self.rank * m
        end = base + (len(self) * b if self.drop_last else m)
        spans: Dict[int, List[int]] = {}
        p = base
        while p < end:  # positions past n wrap to the start of the order (uneven="pad")
            wrap = p // n * n
            hi = min(end, wrap + n)
            for sid, first, last in order.shard_spans(p - wrap, hi - wrap):
                fb, lb = (first + wrap - base) // b, (last + wrap - base) // b
                if lb >= start:
                    span = spans.setdefault(sid, [fb, lb])
                    span[0], span[1] = min(span[0], fb), max(span[1], lb)
            p = hi
        return sorted(((sid, max(fb, start), lb) for sid, (fb, lb) in spans.items()),
                      key=lambda t: t[1])

    # ---- reading

    def _touch(self, shard_id: int) -> None:
        """Keeps at most max_open_shards readers open (least recently used
        ones are closed and reopen on demand)."""
        with self._lru_lock:
            self._open_lru[shard_id] = None
            self._open_lru.move_to_end(shard_id)
            while len(self._open_lru) > self.max_open_shards:
                old, _ = self._open_lru.popitem(last=False)
                self.shards[old].close()

    def _fail(self, name: str, exc: BaseException, skipped: list) -> None:
        if self.on_error == "raise":
            raise _named(exc, name)
        skipped.append((name, f"{type(exc).__name__}: {exc}"))

    def _read_planned(self, shard_ids: List[int], local: List[int]):
        """Names and bytes (or exceptions) of planned samples, in plan
        order, with one read call per shard."""
        first = shard_ids[0]
        if shard_ids.count(first) == len(shard_ids):  # the usual case: one shard
            groups = {first: list(range(len(shard_ids)))}
        else:
            groups = {}
            for slot, s in enumerate(shard_ids):
                groups.setdefault(s, []).append(slot)
        names: List[Any] = [None] * len(shard_ids)
        raws: List[Any] = [None] * len(shard_ids)
        for s, slots in groups.items():
            shard = self.shards[s]
            self._touch(s)
            idx = [local[k] for k in slots]
            for slot, i, raw in zip(slots, idx, shard.read(idx)):
                names[slot] = shard.name(i)
                raws[slot] = raw
        return names, raws

    def build_batch(self, epoch: int, index: int, shard_ids: np.ndarray,
                    local: np.ndarray) -> Dict[str, Any]:
        """Reads and transforms one planned batch (one read call per shard
        it touches)."""
        names, raws = self._read_planned(shard_ids.tolist(), local.tolist())
        skipped: List[Tuple[str, str]] = []
        if (self.transform is None and self.labels is None
                and not any(isinstance(r, BaseException) for r in raws)):
            keys, items, labels = names, raws, [None] * len(names)  # nothing per sample
        else:
            keys, items, labels = [], [], []
            for name, raw in zip(names, raws):
                try:
                    if isinstance(raw, BaseException):
                        raise raw
                    label = _label_of(self.labels, name) if self.labels is not None else None
                    item = self.transform(raw) if self.transform is not None else raw
                except Exception as exc:
                    self._fail(name, exc, skipped)
                    continue
                keys.append(name)
                items.append(item)
                labels.append(label)
        data: Any = items
        if self.batch_transform is not None and items:
            data, keys, labels = self._run_batch_transform(epoch, index, keys, items, labels,
                                                           skipped)
        batch = {"keys": keys, "data": data, "skipped": [n for n, _ in skipped],
                 "epoch": epoch, "index": index}
        if self.labels is not None:
            batch["labels"] = np.array(labels, dtype=np.int64)
        self.skipped.extend(skipped)
        return batch

    def _run_batch_transform(self, epoch, index, keys, items, labels, skipped):
        seed = derive_seed(self.seed, epoch, _BATCH_STREAM, self.rank * len(self) + index)
        try:
            return self.batch_transform(items, seed), keys, labels
        except Exception as exc:
            if self.on_error == "raise":
                self._fail(keys[0] if len(keys) == 1 else f"batch {index} of epoch {epoch}",
                           exc, skipped)
        # Skip mode: find the culprits one sample at a time, then redo the
        # batch without them.
        good = []
        for i, (key, item) in enumerate(zip(keys, items)):
            try:
                self.batch_transform([item], seed)
                good.append(i)
            except Exception as exc:
                self._fail(key, exc, skipped)
        data = self.batch_transform([items[i] for i in good], seed) if good else []
        return data, [keys[i] for i in good], [labels[i] for i in good]

    # ---- iteration

    def iter_partition(self, epoch: int, start: int, worker: int = 0,
                       num_workers: int = 1) -> Iterator[Dict[str, Any]]:
        """The batches of one worker's partition, in order, built by
        ``worker_count`` threads with at most ``queue_size`` in flight."""
        plan = self.batch_plan(epoch, start, worker, num_workers)
        follower = follow_epoch(self, epoch, start)  # None unless shards go through a cache
        if self.worker_count <= 1 and self.queue_size <= 1:
            batches = (self.build_batch(epoch, index, shard_ids, local)
                       for index, shard_ids, local in plan)
        else:
            batches = data_loader(plan, lambda p: self.build_batch(epoch, *p),
                                  worker_count=self.worker_count, queue_size=self.queue_size,
                                  ordered=True)
        try:
            for batch in batches:
                yield batch
                if follower is not None:
                    follower.handed_over(batch["index"])
        finally:
            if hasattr(batches, "close"):
                batches.close()

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        """This rank's remaining batches of the current epoch; the position
        advances as batches are handed over, and a completed epoch rolls
        over to the next."""
        epoch = self.epoch
        for batch in self.iter_partition(epoch, self.position):
            self._advance(batch["index"])
            yield batch

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_lru_lock"] = None
        state["_open_lru"] = OrderedDict()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lru_lock = threading.Lock()


class IndexedSamples:
    """Random access to the samples of shards by a global index (shards in
    order, samples in shard order): the base of map-style datasets.  Items
    are ``(name, sample, label)``; ``get_many`` reads with one call per
    shard."""

    def __init__(self, shards: Sequence[ShardReader],
                 transform: Optional[Callable[[bytes], Any]] = None,
                 labels: Union[Mapping[str, int], Callable[[str], int], None] = None):
        self.shards = list(shards)
        self.transform = transform
        self.labels = labels
        self._ends = list(np.cumsum([len(s) for s in self.shards]))

    def __len__(self) -> int:
        return int(self._ends[-1]) if self._ends else 0

    def locate(self, index: int) -> Tuple[int, int]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")
        s = bisect.bisect_right(self._ends, index)
        return s, index - (int(self._ends[s - 1]) if s else 0)

    def get_many(self, indices: Sequence[int]) -> List[Tuple[str, Any, Optional[int]]]:
        located = [self.locate(int(i)) for i in indices]
        by_shard: Dict[int, List[int]] = {}
        for slot, (s, _) in enumerate(located):
            by_shard.setdefault(s, []).append(slot)
        out: List[Any] = [None] * len(located)
        for s, slots in by_shard.items():
            shard = self.shards[s]
            local = [located[k][1] for k in slots]
            for slot, i, raw in zip(slots, local, shard.read(local)):
                name = shard.name(i)
                if isinstance(raw, BaseException):
                    raise _named(raw, name)
                sample = self.transform(raw) if self.transform is not None else raw
                label = _label_of(self.labels, name) if self.labels is not None else None
                out[slot] = (name, sample, label)
        return out

    def __getitem__(self, index: int):
        return self.get_many([index])[0]

