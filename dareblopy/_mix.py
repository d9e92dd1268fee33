"""Mixing datasets by weight: every batch draws its samples from several
:class:`~dareblopy.ShardedDataset` sources in fixed proportions.

Counts
------
With weights ``w_i`` (normalised to sum to 1) and cumulative weights
``P_i = w_0 + ... + w_i``, the first ``T`` samples of a run hold exactly

    ``S_i(T) = floor(T * P_i + h) - floor(T * P_{i-1} + h)``

samples of source ``i``: the counts add up to ``T``, and each is within one
sample of ``T * w_i`` at every point of the run.  ``h`` in ``[0, 1)`` comes
from ``(seed, epoch)`` and moves the rounding between epochs.  Batch ``b``
takes source ``i``'s samples ``[S_i(bB), S_i((b+1)B))`` of that source's
slice for this rank, so the counts depend on the batch number alone: every
rank and every DataLoader worker computes the same ones, ranks read
disjoint samples (each source is split across ranks as usual) and get the
same number of batches.  Each source needs at least one sample per batch
on average (``B * w_i >= 1``), which keeps every batch's counts
non-negative.

The epoch of a mix
------------------
Epoch ``e`` of a mix reads epoch ``e`` of every source and ends when the
first source runs out of samples for this rank: the batches are the ``L``
for which no source is overdrawn.  Sources with samples left over simply do
not read them this epoch; the next epoch shuffles them anew.

Transforms
----------
Each source keeps its own ``transform``/``batch_transform`` and labels: a
batch is built as one sub-batch per source, each decoded by its source, then
concatenated (numpy arrays along the first axis, lists otherwise).  The
sub-batches must therefore have compatible shapes (for example the same
image size).  The batch also carries ``"sources"``, each sample's source
index.

Resuming
--------
The state holds each source's unread positions (see
:mod:`dareblopy._split`), so a mix resumes on any number of ranks and
workers, like a single dataset.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from ._dataset import ShardedDataset
from ._loader import build_in_order
from ._shuffle import derive_seed

__all__ = ["MixedDataset", "mix"]

_PHASE_STREAM = 3
_DENOMINATOR = 1 << 30  # weights become integers out of this many


def _integer_weights(weights: Sequence[float]) -> List[int]:
    """Weights as integers summing to _DENOMINATOR (largest remainder)."""
    w = [Fraction(x).limit_denominator(1 << 40) for x in weights]
    total = sum(w)
    exact = [x * _DENOMINATOR / total for x in w]
    out = [int(x) for x in exact]
    by_remainder = sorted(range(len(w)), key=lambda i: exact[i] - out[i], reverse=True)
    for i in by_remainder[:_DENOMINATOR - sum(out)]:
        out[i] += 1
    return out


class MixedDataset:
    """Batches of ``batch_size`` samples drawn from ``datasets`` in the
    proportions ``weights`` (see :func:`mix`)."""

    def __init__(self, datasets: Sequence[ShardedDataset], weights: Sequence[float],
                 batch_size: Optional[int] = None, seed: int = 0, epoch: int = 0,
                 loader_threads: int = 2, queue_size: int = 4):
        self.sources = list(datasets)
        if not self.sources:
            raise ValueError("mix: no datasets")
        if len(weights) != len(self.sources):
            raise ValueError(f"mix: {len(self.sources)} datasets but {len(weights)} weights")
        bad = [w for w in weights if not (float(w) >= 0 and np.isfinite(float(w)))]
        if bad or not sum(float(w) for w in weights) > 0:
            raise ValueError(f"mix: weights must be finite, >= 0 and not all 0, not "
                             f"{list(weights)}")
        places = {(d.rank, d.world_size) for d in self.sources}
        if len(places) != 1:
            raise ValueError(f"mix: the datasets disagree on (rank, world_size): "
                             f"{sorted(places)}")
        self.rank, self.world_size = places.pop()
        self.batch_size = int(batch_size or self.sources[0].batch_size)
        self.weights = [float(w) for w in weights]
        self._units = _integer_weights(self.weights)
        for i, units in enumerate(self._units):
            if units and units * self.batch_size < _DENOMINATOR:
                raise ValueError(
                    f"mix: source {i} has weight {self.weights[i] / sum(self.weights):.4g}, "
                    f"less than one sample per batch of {self.batch_size}; raise the batch "
                    f"size to at least {-(-_DENOMINATOR // units)} or the weight")
        self._cumulative = np.cumsum([0] + self._units).tolist()
        self.seed = int(seed)
        self.loader_threads, self.queue_size = int(loader_threads), int(queue_size)
        self.set_epoch(int(epoch))
        if self._length == 0:
            self._refuse_empty_epoch()

    def _refuse_empty_epoch(self) -> None:
        """An epoch ends when a source runs out, so a source too small for
        one batch would end every epoch before it starts, and the other
        sources would never be read: say so instead of yielding nothing."""
        wanted = self.counts_before(self.batch_size)
        for i, (d, want) in enumerate(zip(self.sources, wanted)):
            have = d.samples_per_rank
            if want > have:
                raise ValueError(
                    f"mix: source {i} has {have} samples for rank {self.rank} and a batch of "
                    f"{self.batch_size} takes {want} of them, so an epoch of this mix has no "
                    f"batch; lower the batch size or source {i}'s weight, or give it more "
                    f"samples")
        raise ValueError(f"mix: an epoch of this mix has no batch for rank {self.rank}")

    # ---- counts

    def _phase(self, epoch: int) -> int:
        """h * _DENOMINATOR for the epoch (see the module notes)."""
        return derive_seed(self.seed, epoch, _PHASE_STREAM) % _DENOMINATOR

    def counts_before(self, samples: int, epoch: Optional[int] = None) -> List[int]:
        """S_i(samples): how many of a run's first ``samples`` samples come
        from each source."""
        h = self._phase(self.epoch if epoch is None else epoch)
        edges = [(samples * c + h) // _DENOMINATOR for c in self._cumulative]
        return [b - a for a, b in zip(edges, edges[1:])]

    def _run_length(self) -> int:
        """Batches until the first source would be overdrawn."""
        limits = [d.samples_per_rank for d in self.sources]
        lo, hi = 0, min(lim * _DENOMINATOR // u + 1 for lim, u in zip(limits, self._units)
                        if u) // self.batch_size + 2
        while lo < hi:  # the largest b with counts_before(b * B) within every limit
            mid = (lo + hi + 1) // 2
            if all(c <= lim for c, lim in zip(self.counts_before(mid * self.batch_size),
                                               limits)):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def __len__(self) -> int:
        """Batches in this rank's run of the current epoch."""
        return self._length

    # ---- epochs and state

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch; a different epoch restarts at its first batch."""
        if getattr(self, "epoch", None) == int(epoch):
            return
        self.epoch, self.position = int(epoch), 0
        for d in self.sources:
            d.start_epoch(self.epoch)
        self._length = self._run_length()

    def state_dict(self) -> Dict[str, Any]:
        """Each source's unread positions after the batches handed over; the
        same on every rank, loadable into any world size."""
        consumed = self.counts_before(self.position * self.batch_size)
        return {"format": 2, "kind": "mix", "epoch": self.epoch, "weights": self.weights,
                "seed": self.seed, "position": self.position,
                "sources": [{**d._order_fingerprint(), **d._shard_fingerprint(),
                             "remaining": [list(iv) for iv in d.remaining_after(c)]}
                            for d, c in zip(self.sources, consumed)]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != "mix" or len(state.get("sources", ())) != len(self.sources):
            raise ValueError("MixedDataset.load_state_dict: the state is not from a mix of "
                             f"{len(self.sources)} datasets")
        # [3, 1] and [0.75, 0.25] are the same mix: compare the proportions
        if _integer_weights(state["weights"]) != self._units or state["seed"] != self.seed:
            raise ValueError(f"MixedDataset.load_state_dict: saved weights {state['weights']} "
                             f"and seed {state['seed']}, now {self.weights} and {self.seed}")
        for d, saved in zip(self.sources, state["sources"]):
            d.check_state(saved)
        epoch = int(state["epoch"])
        for d, saved in zip(self.sources, state["sources"]):
            d.resume_run(epoch, saved["remaining"])
        self.epoch, self.position = epoch, 0
        self._length = self._run_length()
        if self._length == 0:
            self.set_epoch(epoch + 1)

    def _advance(self, batch_index: int) -> None:
        self.position = batch_index + 1
        if self.position >= len(self):
            self.set_epoch(self.epoch + 1)

    @property
    def skipped(self) -> List:
        return [s for d in self.sources for s in d.skipped]

    # ---- batches

    def batch_plan(self, epoch: int, start: int = 0, partition: int = 0,
                   partition_count: int = 1) -> Iterator[int]:
        return iter(range(start + partition, len(self), partition_count))

    def build_batch(self, epoch: int, index: int) -> Dict[str, Any]:
        b = self.batch_size
        lo = self.counts_before(index * b, epoch)
        hi = self.counts_before((index + 1) * b, epoch)
        parts, sources = [], []
        for i, d in enumerate(self.sources):
            if hi[i] == lo[i]:
                continue
            positions = d.run_split().positions(lo[i], hi[i])
            shard_ids, local = d.epoch_order(epoch).samples(positions)
            part = d.build_batch(epoch, index, shard_ids, local, int(positions[0]))
            parts.append(part)
            sources += [i] * len(part["keys"])
        return _concatenate(parts, epoch, index, sources)

    def iter_partition(self, epoch: int, start: int, partition: int = 0,
                       partition_count: int = 1) -> Iterator[Dict[str, Any]]:
        plan = self.batch_plan(epoch, start, partition, partition_count)
        yield from build_in_order(plan, lambda index: self.build_batch(epoch, index),
                                  self.loader_threads, self.queue_size)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        epoch = self.epoch
        for batch in self.iter_partition(epoch, self.position):
            self._advance(batch["index"])
            yield batch

    def close(self) -> None:
        for d in self.sources:
            d.close()


def _concatenate(parts: List[Dict[str, Any]], epoch: int, index: int,
                 sources: List[int]) -> Dict[str, Any]:
    """One batch from the sources' sub-batches."""
    datas = [p["data"] for p in parts if p["keys"]]  # (a sub-batch may be all skipped)
    if datas and all(isinstance(x, np.ndarray) for x in datas):
        data: Any = np.concatenate(datas)
    else:
        data = [item for x in datas for item in x]
    batch = {"keys": [k for p in parts for k in p["keys"]], "data": data,
             "skipped": [k for p in parts for k in p["skipped"]],
             "sources": np.array(sources, dtype=np.int64), "epoch": epoch, "index": index}
    if parts and all("labels" in p for p in parts):
        batch["labels"] = np.concatenate([p["labels"] for p in parts])
    return batch


def mix(datasets: Sequence[ShardedDataset], weights: Sequence[float], seed: int = 0,
        batch_size: Optional[int] = None, **kwargs) -> MixedDataset:
    """Batches drawn from ``datasets`` in the proportions ``weights``,
    deterministically from ``(seed, epoch)``: for example
    ``mix([web, curated], [0.7, 0.3])``.  ``batch_size`` defaults to the
    first dataset's; each dataset keeps its own transforms, rank and world
    size (they must agree).  See :mod:`dareblopy._mix` for what an epoch of
    a mix is."""
    return MixedDataset(datasets, weights, batch_size=batch_size, seed=seed, **kwargs)
