"""Datasets of samples stored in shards: exact sharding over ranks and
partitions, deterministic resumable shuffling, bounded memory, and a policy for
corrupt samples.

A *shard* is anything that holds numbered samples and can read several of
them in one call (the :class:`ShardReader` protocol): a directory or a list
of files, a zip archive, an indexed TFRecord file.  A dataset is a list of
shards.

The order of an epoch is described in :mod:`dareblopy._order`; the shard
readers in :mod:`dareblopy._shards`.

Splitting
---------
The positions of the epoch that are still to be read are cut into one
contiguous slice of ``M`` positions per rank (see :mod:`dareblopy._split`).
With ``uneven="pad"`` (the default, as torch's DistributedSampler),
``M = ceil(N / W)`` and positions past the end wrap around to the start,
so a few samples are read twice; with ``"drop"``, ``M = N // W`` and the
last ``N mod W`` positions are skipped.  Every rank thus gets exactly ``M``
samples and the same number of batches, and when ``N`` is a multiple of
``W`` every sample is read exactly once per epoch in total.  A rank's
batches are numbered ``0, 1, ...`` from the start of the run; partition
``p`` of ``K`` (one per torch DataLoader worker process) takes batches
``start + p, start + p + K, ...``, which is the round-robin order in which
torch's DataLoader collects them, so the consumer sees batches in number
order.

Threads
-------
The dataset owns one thread budget, ``threads`` (default: the CPUs this
process may run on), and hands it down: every C batch call it makes (a
shard's read, the batch decode) runs on that many threads.
``loader_threads`` Python threads build batches concurrently, so one batch
is read and set up while another decodes; ``partition_count`` counts torch
worker processes, never threads.

Corrupt data
------------
``on_error="skip"`` leaves a failed sample out of its batch; the shard
readers and the batch decoders report each item's outcome, so nothing is
read or decoded twice to find out what failed.  A shard that breaks part-way
(a TFRecord file whose framing is cut) keeps the samples before the break
and costs one reason in :attr:`ShardedDataset.skipped`; a shard that cannot
be opened at all costs only its own samples.  Errors name the sample: its
name, where it lives (entry and archive path, record and file) and the
epoch.

Resuming
--------
The state is the epoch and the positions of its order that no rank has
consumed yet (a few intervals), the same on every rank, plus the settings
that shape the order (checked on load).  A batch counts as consumed once it
has been handed to the caller.  The state names no rank, world size,
worker count or batch size, so a job may resume on any number of ranks and
workers: the remaining positions are split afresh (elastic resumption).
States saved before this format (``epoch`` and ``position`` only) load
into the same setup.

Bounded memory
--------------
Nothing is held per sample of the epoch: the plan is arithmetic, a window
of indices and the shard sizes.  Iterating in one process, peak RSS grows
by at most ``(queue_size + loader_threads + 2) * batch_bytes + C``:
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
import hashlib
import json
import os
import sys
import threading
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ._errors import DbrError
from ._labels import (Labels, label_of, labels_from_parent_dirs, name_label_lines,  # noqa: F401
                      read_label_file)
from ._loader import build_in_order
from ._order import BATCH_STREAM, EpochOrder, canonical_order
from ._prefetch import follow_epoch
from ._shards import (DirectoryShard, Sample, ShardReader, TFRecordShard, ZipShard,  # noqa: F401
                      directory_shards, read_grouped, read_samples, tfrecord_shards,
                      zip_shards)
from ._shuffle import derive_seed
from ._split import RunSplit, normalize

__all__ = ["ShardedDataset", "IndexedSamples", "available_cpus"]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has
    one): the default thread budget."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def sample_error(exc: BaseException, where: str) -> BaseException:
    """The exception again, its message prefixed by where the sample lives
    (same class, chained to the original)."""
    try:
        err = type(exc)(f"{where}: {exc}")
    except Exception:  # an exception class with another signature
        if hasattr(exc, "add_note"):
            exc.add_note(f"dareblopy: while loading {where}")
        return exc
    if isinstance(exc, DbrError):
        err.code = exc.code
    err.__cause__ = exc
    return err


def _renamed(kwargs: Dict[str, Any], old: str, new: str, value, default):
    """A deprecated keyword's value (with a DeprecationWarning), else value."""
    if old in kwargs:
        warnings.warn(f"ShardedDataset: {old}= is now {new}=", DeprecationWarning, stacklevel=3)
        if value is not default:
            raise TypeError(f"ShardedDataset: give {new}= or {old}=, not both")
        return kwargs.pop(old)
    return value


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


class _Leases:
    """Keeps at most ``limit`` shard readers open, closing the least
    recently used ones that no thread is reading (a closed reader reopens on
    demand).  A reader in use is never closed, so eviction can never fail a
    read; while every open reader is in use the limit is exceeded briefly."""

    def __init__(self, shards: Sequence, limit: int):
        self.shards, self.limit = shards, limit
        self.open: "OrderedDict[int, int]" = OrderedDict()  # shard id -> readers using it
        self.lock = threading.Lock()

    def acquire(self, sid: int) -> None:
        with self.lock:
            self.open[sid] = self.open.get(sid, 0) + 1
            self.open.move_to_end(sid)
            self._evict()

    def release(self, sid: int) -> None:
        with self.lock:
            self.open[sid] -= 1
            self._evict()

    def _evict(self) -> None:
        excess = len(self.open) - self.limit
        if excess <= 0:
            return
        idle = [s for s, users in self.open.items() if users == 0][:excess]
        for s in idle:
            del self.open[s]
            self.shards[s].close()


class ShardedDataset:
    """Batches of samples from shards, for one rank of a (possibly
    distributed) job.  Iterating yields dicts:

    - ``"keys"``: the sample names (list of str);
    - ``"data"``: ``batch_transform(raws, rng_seed)`` if given, else the list
      of ``transform(raw)`` (or of raw ``bytes`` without a transform); an
      empty list if every sample of the batch was skipped;
    - ``"labels"``: int64 array, when ``labels`` is given or the shards
      carry labels (TFRecord Examples with a label feature);
    - ``"skipped"``: names of samples skipped as corrupt in this batch;
    - ``"epoch"``, ``"index"``: the epoch and this batch's number on the rank.

    Within a batch, samples are grouped by shard (each shard is read, or
    decoded, with one call).

    Arguments:
      shards: ShardReaders (see :func:`directory_shards`, :func:`zip_shards`,
        :func:`tfrecord_shards`), in any order: they are put in their
        canonical order (see :mod:`dareblopy._order`).
      batch_size: samples per batch.
      shuffle, seed, shuffle_buffer: the epoch order.
      rank, world_size: this rank; default from torch.distributed when it is
        initialised, else 0 and 1.
      uneven: "pad" or "drop" when the sample count is not a multiple of the
        world size; drop_last drops a rank's final partial batch.
      transform: raw bytes -> sample, per sample.
      batch_transform: (list of raw bytes, rng_seed) -> batch data, one call
        per batch (for batched C decoders); rng_seed depends only on
        (seed, epoch, rank, batch number), so augmentations do not change
        with the number of threads or workers.  A batch transform with a
        ``from_shards`` method reads the shards itself (see
        :mod:`dareblopy._pipeline`).
      labels: a mapping or a callable from sample name to int label.
      on_error: "raise" (default) re-raises a failed read or transform,
        naming the sample; "skip" leaves the sample out of its batch and
        records ``(name, message)`` in :attr:`skipped`.
      threads: the thread budget of each C batch call (default: all CPUs
        this process may use).
      loader_threads, queue_size: Python threads that build batches, and
        the number of batches in flight, when iterating in this process;
        memory stays within about (queue_size + 2) batches plus a constant.
        (``worker_count`` is the deprecated name of ``loader_threads``.)
      max_open_shards: readers kept open at once (others are closed).
    """

    def __init__(self, shards: Sequence[ShardReader], batch_size: int, *,
                 shuffle: bool = True, seed: int = 0, shuffle_buffer: int = 16384,
                 epoch: int = 0, rank: Optional[int] = None, world_size: Optional[int] = None,
                 uneven: str = "pad", drop_last: bool = False,
                 transform: Optional[Callable[[bytes], Any]] = None,
                 batch_transform: Optional[Callable[[List[bytes], int], Any]] = None,
                 labels: Labels = None, on_error: str = "raise",
                 threads: Optional[int] = None, loader_threads: int = 1, queue_size: int = 4,
                 max_open_shards: int = 64, **deprecated):
        loader_threads = _renamed(deprecated, "worker_count", "loader_threads",
                                  loader_threads, 1)
        if deprecated:
            raise TypeError(f"ShardedDataset: unexpected arguments {sorted(deprecated)}")
        self.shards = canonical_order(list(shards))
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
        self.threads = max(1, int(threads)) if threads else available_cpus()
        self.loader_threads, self.queue_size = int(loader_threads), int(queue_size)
        self.max_open_shards = max(1, int(max_open_shards))
        self.epoch = int(epoch)
        self.position = 0  # batches of this epoch handed to the caller
        self.skipped: List[Tuple[str, str]] = []
        self.lengths = self._measure()
        self.total = int(self.lengths.sum())
        if self.total == 0:
            reasons = "".join(f"\n  {where}: {why}" for where, why in self.skipped)
            raise ValueError("ShardedDataset: the shards hold no samples"
                             + (f"; skipped:{reasons}" if reasons else ""))
        self._leases = _Leases(self.shards, self.max_open_shards)
        self.remaining = [(0, self.total)]  # positions of the epoch this run reads
        self._split_cache: Optional[RunSplit] = None
        if len(self) == 0:  # every epoch would be empty: a loop would train on nothing
            raise ValueError(
                f"ShardedDataset: an epoch gives rank {self.rank} no batch: the shards hold "
                f"{self.total} samples, {self.samples_per_rank} of them for each of the "
                f"{self.world_size} rank(s) (uneven={self.uneven!r}), and drop_last="
                f"{self.drop_last} with batch_size {self.batch_size}")

    @property
    def worker_count(self) -> int:
        """Deprecated name of :attr:`loader_threads`."""
        return self.loader_threads

    def _measure(self) -> np.ndarray:
        """Each shard's sample count.  A shard that cannot be opened, or that
        breaks part-way, raises in raise mode; in skip mode it keeps what it
        can deliver and leaves one reason in :attr:`skipped`."""
        lengths = np.zeros(len(self.shards), dtype=np.int64)
        for k, shard in enumerate(self.shards):
            try:
                lengths[k] = len(shard)
            except DbrError as exc:
                if self.on_error == "raise":
                    raise
                self.skipped.append((repr(shard), f"{type(exc).__name__}: {exc} (the whole "
                                                  f"shard is skipped)"))
                continue
            damage = getattr(shard, "damage", None)
            if damage is not None:
                if self.on_error == "raise":
                    raise sample_error(damage, f"{shard!r} breaks after its sample "
                                               f"{lengths[k]}")
                self.skipped.append((repr(shard), f"{type(damage).__name__}: {damage} (the "
                                                  f"{lengths[k]} samples before it are kept, "
                                                  f"the rest of the shard is skipped)"))
            shard.close()  # counted; reopened when read
        return lengths

    # ---- sizes

    @property
    def num_samples(self) -> int:
        """Samples in all shards."""
        return self.total

    def run_split(self) -> RunSplit:
        """This rank's slice of the current run (see :mod:`dareblopy._split`)."""
        split = self._split_cache
        if split is None or split.remaining != self.remaining:
            split = RunSplit(self.remaining, self.rank, self.world_size, self.uneven)
            self._split_cache = split
        return split

    @property
    def samples_per_rank(self) -> int:
        """Samples this rank reads in the current run (a whole epoch unless
        the run was resumed)."""
        return self.run_split().per_rank

    def __len__(self) -> int:
        """Batches per epoch on each rank."""
        m, b = self.samples_per_rank, self.batch_size
        return m // b if self.drop_last else -(-m // b)

    # ---- epochs and state

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch; a different epoch restarts at its first batch
        (the same one keeps a resumed position)."""
        if int(epoch) != self.epoch:
            self.start_epoch(int(epoch))

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.position, self.remaining = epoch, 0, [(0, self.total)]

    def _order_fingerprint(self) -> Dict[str, Any]:
        """The settings that shape an epoch's order: a state is only valid
        for the same ones."""
        return {"num_samples": self.total, "num_shards": len(self.shards),
                "seed": self.seed, "shuffle": self.shuffle,
                "shuffle_buffer": self.shuffle_buffer}

    def _shard_fingerprint(self) -> Dict[str, Any]:
        """Which shards hold the positions: digests of the shards' names
        (their ``sort_key`` without the folder part, so the same files
        resume from another folder or node) and of their sample counts.
        Equal counts from other shards would name other samples."""
        names = [str(getattr(s, "sort_key", None) or "").split("\0")[0] for s in self.shards]
        return {"shard_names": _digest(names), "shard_lengths": _digest(self.lengths.tolist())}

    def _setup_fingerprint(self) -> Dict[str, Any]:
        """The settings that shape how a run is cut into batches (checked
        only for states of the old format, which count batches)."""
        return {"world_size": self.world_size, "batch_size": self.batch_size,
                "uneven": self.uneven, "drop_last": self.drop_last}

    def remaining_after(self, consumed: int) -> List[Tuple[int, int]]:
        """The epoch's unread positions once every rank has consumed
        ``consumed`` samples of this run (for :meth:`state_dict` and mixes)."""
        return self.run_split().after(consumed)

    def state_dict(self) -> Dict[str, Any]:
        """Where this epoch stands: the positions that no rank has consumed
        yet.  Equal on every rank, and loadable into any rank, world size and
        worker count (see "Resuming" above)."""
        consumed = min(self.position * self.batch_size, self.samples_per_rank)
        return {"format": 2, "epoch": self.epoch,
                "remaining": [list(iv) for iv in self.remaining_after(consumed)],
                **self._order_fingerprint(), **self._shard_fingerprint(),
                # informational: where the saving run stood
                "position": self.position, **self._setup_fingerprint()}

    def check_state(self, state: Mapping[str, Any], old_format: bool = False) -> None:
        """Raises ValueError unless ``state`` was saved for this dataset's
        order (and, for the old format, for this setup)."""
        mine = {**self._order_fingerprint(), **(self._setup_fingerprint() if old_format else {})}
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        details = [f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items()]
        # states saved before shard fingerprints existed lack them
        shards = self._shard_fingerprint()
        for key, what in (("shard_names", "the shards' names differ"),
                          ("shard_lengths", "the shards' sample counts differ")):
            if key in state and state[key] != shards[key]:
                details.append(what)
        if details:
            detail = ", ".join(details)
            extra = (" (a state saved before elastic resumption only loads into the same "
                     "world size and batch size)" if old_format else "")
            raise ValueError(f"ShardedDataset.load_state_dict: the saved state is for a "
                             f"different dataset or setup ({detail}){extra}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continues the saved epoch with this dataset's rank, world size and
        batch size: the unread positions are split across the ranks afresh."""
        if state.get("kind") == "mix":
            raise ValueError("ShardedDataset.load_state_dict: this is a mix's state "
                             "(MixedDataset.state_dict); load it into the same mix")
        old_format = "remaining" not in state
        self.check_state(state, old_format)
        epoch = int(state["epoch"])
        if old_format:
            self.start_epoch(epoch)
            position = int(state["position"])
            if not 0 <= position <= len(self):
                raise ValueError(f"ShardedDataset.load_state_dict: position {position} is "
                                 f"not in [0, {len(self)}]")
            self.position = position
            return
        self.resume_run(epoch, state["remaining"])
        if len(self) == 0:  # nothing of the saved epoch is left for this world
            self.start_epoch(epoch + 1)

    def resume_run(self, epoch: int, remaining) -> None:
        """Starts a run of ``epoch`` over its unread positions ``remaining``
        (intervals, as in :meth:`state_dict`)."""
        for iv in remaining:
            # a hand-edited or damaged state: an inverted interval would
            # silently drop its samples
            if not (isinstance(iv, (list, tuple)) and len(iv) == 2 and
                    all(isinstance(v, (int, np.integer)) for v in iv) and iv[0] <= iv[1]):
                raise ValueError(f"ShardedDataset.load_state_dict: {iv!r} is not an interval "
                                 f"[start, end) of unread positions")
        intervals = normalize(remaining)
        if any(a < 0 or b > self.total for a, b in intervals):
            raise ValueError(f"ShardedDataset.load_state_dict: remaining positions "
                             f"{remaining!r} are outside the epoch's [0, {self.total})")
        self.epoch, self.position, self.remaining = int(epoch), 0, intervals

    def _advance(self, batch_index: int) -> None:
        """Records that batch_index was handed over; an epoch that is
        complete rolls over to the next one."""
        self.position = batch_index + 1
        if self.position >= len(self):
            self.start_epoch(self.epoch + 1)

    # ---- the plan of an epoch

    def batch_plan(self, epoch: int, start: int = 0, partition: int = 0,
                   partition_count: int = 1) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        """(batch number, shard ids, local indices, seed key) of this rank's batches
        ``start + partition``, ``start + partition + partition_count``, ..."""
        order = self.epoch_order(epoch)
        split, b = self.run_split(), self.batch_size
        for index in range(start + partition, len(self), partition_count):
            positions = split.positions(index * b, (index + 1) * b)
            shard_ids, local = order.samples(positions)
            yield index, shard_ids, local, int(positions[0])

    def epoch_order(self, epoch: int) -> EpochOrder:
        return EpochOrder(self.lengths, self.seed, epoch, self.shuffle, self.shuffle_buffer)


    def shard_schedule(self, epoch: int, start: int = 0,
                       whole_epoch: bool = False) -> List[Tuple[int, int, int]]:
        """(shard id, first batch, last batch) of each shard this rank's
        batches from ``start`` on may read, ordered by first batch: what a
        cache of remote shards prefetches, and when a shard is finished.
        ``whole_epoch``: for a run of the whole epoch (the next epoch), not
        the current run."""
        order = self.epoch_order(epoch)
        split = (RunSplit([(0, self.total)], self.rank, self.world_size, self.uneven)
                 if whole_epoch else self.run_split())
        b = self.batch_size
        read = split.per_rank // b * b if self.drop_last else split.per_rank
        spans: Dict[int, List[int]] = {}
        for offset, lo, hi in split.slice_intervals(start * b, read):
            for sid, first, last in order.shard_spans(lo, hi):
                fb, lb = (offset + first - lo) // b, (offset + last - lo) // b
                span = spans.setdefault(sid, [fb, lb])
                span[0], span[1] = min(span[0], fb), max(span[1], lb)
        return sorted(((sid, fb, lb) for sid, (fb, lb) in spans.items()), key=lambda t: t[1])

    # ---- reading

    @staticmethod
    def _groups(shard_ids: List[int], local: List[int]) -> List[Tuple[int, List[int]]]:
        """(shard id, local indices) per shard, in order of first use."""
        first = shard_ids[0]
        if shard_ids.count(first) == len(shard_ids):  # the usual case: one shard
            return [(first, local)]
        groups: Dict[int, List[int]] = {}
        for s, i in zip(shard_ids, local):
            groups.setdefault(s, []).append(i)
        return list(groups.items())

    def _where(self, shard, index: int, name: Optional[str], epoch: int) -> str:
        what = f"sample {name!r} ({shard.describe(index)})" if name else shard.describe(index)
        return f"{what}, epoch {epoch}"

    def build_batch(self, epoch: int, index: int, shard_ids: np.ndarray,
                    local: np.ndarray, seed_key: Optional[int] = None) -> Dict[str, Any]:
        """Reads and transforms one planned batch (one read or decode call
        per shard it touches); ``seed_key`` (default: ``index``) seeds its
        augmentations."""
        groups = self._groups(shard_ids.tolist(), local.tolist())
        from_shards = getattr(self.batch_transform, "from_shards", None)
        # Augmentations are seeded by where the batch starts in the epoch's
        # order, so a resumed run (with the same world) repeats them exactly.
        seed = derive_seed(self.seed, epoch, BATCH_STREAM,
                           index if seed_key is None else seed_key)
        for s, _ in groups:
            self._leases.acquire(s)
        try:
            if from_shards is not None and self.transform is None:
                parts = [(self.shards[s], idx) for s, idx in groups]
                data, outcomes = from_shards(parts, seed, self.threads)
            else:
                data = None
                outcomes = read_grouped([(self.shards[s], idx) for s, idx in groups],
                                        self.threads)
        finally:
            for s, _ in groups:
                self._leases.release(s)
        places = [(self.shards[s], i) for s, idx in groups for i in idx]
        skipped: List[Tuple[str, str]] = []
        keep, keys, items, labels = [], [], [], []
        for slot, ((shard, i), got) in enumerate(zip(places, outcomes)):
            name = None
            try:
                if isinstance(got, BaseException):
                    raise got
                name = got.name
                if isinstance(got.data, BaseException):  # failed once its name was known
                    raise got.data
                label = (label_of(self.labels, name) if self.labels is not None
                         else got.label)
                item = got.data
                if data is None and self.transform is not None:
                    item = self.transform(item)
            except Exception as exc:
                self._fail(shard, i, name, epoch, exc, skipped)
                continue
            keep.append(slot)
            keys.append(name)
            items.append(item)
            labels.append(label)
        if data is None:
            data = items
            if self.batch_transform is not None and items:
                data, keys, labels = self._run_batch_transform(
                    epoch, seed, [places[k] for k in keep], keys, items, labels, skipped)
        elif len(keep) < len(places):
            data, rows = _compact(data, keep)
            keys, labels = [keys[r] for r in rows], [labels[r] for r in rows]
        batch = {"keys": keys, "data": data, "skipped": [n for n, _ in skipped],
                 "epoch": epoch, "index": index}
        if self.labels is not None or (labels and all(x is not None for x in labels)):
            batch["labels"] = np.array(labels, dtype=np.int64)
        self.skipped.extend(skipped)
        return batch

    def _fail(self, shard, index: int, name: Optional[str], epoch: int, exc: BaseException,
              skipped: list) -> None:
        if name is None:
            name = _failed_name(shard, index)
        where = self._where(shard, index, name, epoch)
        if self.on_error == "raise":
            raise sample_error(exc, where)
        skipped.append((name, f"{type(exc).__name__}: {where}: {exc}"))

    def _run_batch_transform(self, epoch, seed, places, keys, items, labels, skipped):
        """A bytes-in batch transform.  One that raises for a batch is
        narrowed to its culprits one sample at a time (transforms that
        report per-item outcomes, through ``from_shards``, never need this)."""
        try:
            return self.batch_transform(items, seed), keys, labels
        except Exception as exc:
            if self.on_error == "raise":
                if len(keys) == 1:
                    self._fail(*places[0], keys[0], epoch, exc, skipped)
                raise
        good = []
        for k, item in enumerate(items):
            try:
                self.batch_transform([item], seed)
                good.append(k)
            except Exception as exc:
                self._fail(*places[k], keys[k], epoch, exc, skipped)
        data = self.batch_transform([items[k] for k in good], seed) if good else []
        return data, [keys[k] for k in good], [labels[k] for k in good]

    # ---- iteration

    def iter_partition(self, epoch: int, start: int, partition: int = 0,
                       partition_count: int = 1, **deprecated) -> Iterator[Dict[str, Any]]:
        """The batches of one partition (one per torch DataLoader worker
        process), in order, built by ``loader_threads`` threads with at most
        ``queue_size`` in flight.  (``worker``/``num_workers`` are the
        deprecated names of ``partition``/``partition_count``.)"""
        partition = _renamed(deprecated, "worker", "partition", partition, 0)
        partition_count = _renamed(deprecated, "num_workers", "partition_count",
                                   partition_count, 1)
        if deprecated:
            raise TypeError(f"iter_partition: unexpected arguments {sorted(deprecated)}")
        plan = self.batch_plan(epoch, start, partition, partition_count)
        follower = follow_epoch(self, epoch, start)  # None unless shards go through a cache
        if self.loader_threads <= 1 and self.queue_size <= 1:
            batches = (self.build_batch(epoch, *planned) for planned in plan)
        else:
            batches = build_in_order(plan, lambda p: self.build_batch(epoch, *p),
                                     self.loader_threads, self.queue_size)
        try:
            for batch in batches:
                yield batch
                if follower is not None:
                    follower.handed_over(batch["index"])
        finally:
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
        state["_leases"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._leases = _Leases(self.shards, self.max_open_shards)


def _digest(values: List) -> str:
    """A short digest of a JSON-able list (states stay small with many shards)."""
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def _failed_name(shard, index: int) -> str:
    """A failed sample's name without reading it again."""
    own = getattr(shard, "failed_name", None)
    return own(index) if own is not None else shard.name(index)


def _compact(data, keep: List[int]):
    """The rows ``keep`` of a batch, without the others: (data, rows),
    rows[j] being the position in ``keep`` of the sample now at row j.  An
    array is compacted in place (a view: it stays one allocation, reused by
    its recycler), each hole filled by a kept row from past the end, so
    only as many rows are copied as samples failed."""
    n = len(keep)
    if not isinstance(data, np.ndarray):
        return [data[k] for k in keep], list(range(n))
    rows = list(range(n))
    kept = set(keep)
    holes = [slot for slot in range(n) if slot not in kept]
    movers = [j for j, slot in enumerate(keep) if slot >= n]
    for hole, j in zip(holes, movers):
        data[hole] = data[keep[j]]
        rows[hole] = j
    for j, slot in enumerate(keep):
        if slot < n:
            rows[slot] = j
    return data[:n], rows


class IndexedSamples:
    """Random access to the samples of shards by a global index (shards in
    order, samples in shard order): the base of map-style datasets.  Items
    are ``(name, sample, label)``; ``get_many`` reads with one call per
    shard.  Labels come from ``labels``, else from the shard (TFRecord
    Examples with a label feature)."""

    def __init__(self, shards: Sequence[ShardReader],
                 transform: Optional[Callable[[bytes], Any]] = None, labels: Labels = None):
        self.shards = list(shards)
        self.transform = transform
        self.labels = labels
        self._ends = list(np.cumsum([len(s) for s in self.shards]))
        for shard in self.shards:
            if getattr(shard, "damage", None) is not None:
                raise sample_error(shard.damage, f"{shard!r}")

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
            for slot, i, got in zip(slots, local, read_samples(shard, local, 1)):
                if isinstance(got, BaseException):
                    raise sample_error(got, shard.describe(i))
                sample = self.transform(got.data) if self.transform is not None else got.data
                label = label_of(self.labels, got.name) if self.labels is not None else got.label
                out[slot] = (got.name, sample, label)
        return out

    def __getitem__(self, index: int):
        return self.get_many([index])[0]
