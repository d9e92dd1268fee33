"""The dataset's order, told to the caches of its remote shards.

The order of an epoch comes from ``(seed, epoch)`` alone, so before the
first batch this process knows which shards it will read, in which order,
and after which batch it is done with each (see
:meth:`ShardedDataset.shard_schedule`).  The caches get that plan (the rest
of this epoch, then the next epoch's, for look-ahead) and download in that
order; once the batch that last reads a shard has been handed over, the
shard's reader is closed (its pin goes) and its cache may evict it first.
"""
from __future__ import annotations

from typing import Dict, List, Tuple


class EpochFollower:
    """Closes and releases shards as the batches that last need them are
    handed over."""

    def __init__(self, dataset, schedule: List[Tuple[int, int, int]], sources: Dict[int, object]):
        self.dataset = dataset
        self.sources = sources
        # (last batch, shard id), soonest finished first
        self._pending = sorted((lb, sid) for sid, _, lb in schedule if sid in sources)

    def handed_over(self, index: int) -> None:
        while self._pending and self._pending[0][0] <= index:
            _, sid = self._pending.pop(0)
            self.dataset.shards[sid].close()
            source = self.sources[sid]
            source.cache.finished(source.obj)


def follow_epoch(dataset, epoch: int, start: int):
    """Gives each cache the plan of this rank's shards from batch ``start``
    of ``epoch`` on (then the next epoch's); None when no shard goes
    through a cache."""
    sources = {i: s.source for i, s in enumerate(dataset.shards)
               if getattr(getattr(s, "source", None), "cache", None) is not None}
    if not sources:
        return None
    now = dataset.shard_schedule(epoch, start)
    ahead = dataset.shard_schedule(epoch + 1, 0, whole_epoch=True)
    plans: Dict[int, Tuple[object, list]] = {}
    for sid, _, _ in now + ahead:
        if sid in sources:
            src = sources[sid]
            plans.setdefault(id(src.cache), (src.cache, []))[1].append((src.obj, src.sha256))
    for cache, plan in plans.values():
        cache.follow(plan)
    return EpochFollower(dataset, now, sources)
