"""How a run of an epoch is split across ranks, and what survives a change
of world size.

An epoch has one canonical order of ``N`` positions (:mod:`dareblopy._order`),
the same on every machine.  A *run* is the part of an epoch between a start
(or a resume) and its end: it covers the positions that were not consumed
yet, held as a short list of intervals of the epoch order.  At the start of
each run those positions are laid end to end and cut into ``world_size``
contiguous slices of ``M`` positions, one per rank:

- ``uneven="pad"``: ``M = ceil(R / W)`` for ``R`` remaining positions, and
  slice offsets past ``R`` wrap around to the start of the remaining
  sequence, so a few samples are read twice;
- ``uneven="drop"``: ``M = R // W``, and the last ``R mod W`` positions are
  not read in this run.

Ranks consume their slices at the same pace (batch ``k`` on every rank at
the same step), so after ``c`` samples per rank the consumed positions are
the first ``c`` of every slice.  What remains is again a list of intervals
(at most ``W + 1`` more per resume), independent of the rank that computes
it, and a new run may split it across any number of ranks: no sample of the
epoch is lost or read twice, except by the padding or dropping above.
DataLoader workers take the batches of their rank round-robin, so their
number never enters the state.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

Intervals = List[Tuple[int, int]]


def normalize(intervals: Sequence[Sequence[int]]) -> Intervals:
    """Sorted, merged, non-empty ``[start, end)`` intervals."""
    out: Intervals = []
    for a, b in sorted((int(a), int(b)) for a, b in intervals):
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class RunSplit:
    """One rank's slice of a run: ``remaining`` (intervals of the epoch
    order) cut into ``world_size`` slices of :attr:`per_rank` positions."""

    def __init__(self, remaining: Sequence[Sequence[int]], rank: int, world_size: int,
                 uneven: str):
        self.remaining = normalize(remaining)
        self.rank, self.world_size, self.uneven = rank, world_size, uneven
        lengths = np.array([b - a for a, b in self.remaining], dtype=np.int64)
        self._lengths = lengths
        self._ends = np.cumsum(lengths)  # interval ends in the remaining sequence
        self._starts = np.array([a for a, _ in self.remaining], dtype=np.int64)
        self.total = int(self._ends[-1]) if len(lengths) else 0
        r, w = self.total, world_size
        self.per_rank = -(-r // w) if uneven == "pad" else r // w

    def _to_epoch(self, seq: np.ndarray) -> np.ndarray:
        """Positions of the remaining sequence -> positions of the epoch."""
        k = np.searchsorted(self._ends, seq, side="right")
        return self._starts[k] + seq - (self._ends[k] - self._lengths[k])

    def positions(self, lo: int, hi: int) -> np.ndarray:
        """Epoch positions of this rank's slice offsets ``[lo, hi)``."""
        hi = min(hi, self.per_rank)
        if hi <= lo or self.total == 0:
            return np.zeros(0, dtype=np.int64)
        seq = (self.rank * self.per_rank + np.arange(lo, hi, dtype=np.int64)) % self.total
        return self._to_epoch(seq)

    def slice_intervals(self, lo: int, hi: int) -> List[Tuple[int, int, int]]:
        """(slice offset, epoch start, epoch end) of intervals of the epoch
        order that cover this rank's slice offsets ``[lo, hi)``, in order."""
        hi = min(hi, self.per_rank)
        out: List[Tuple[int, int, int]] = []
        q = lo
        while q < hi and self.total:
            s = (self.rank * self.per_rank + q) % self.total  # padding wraps to the start
            for a, b in self._epoch_intervals(s, s + min(hi - q, self.total - s)):
                out.append((q, a, b))
                q += b - a
        return out

    def after(self, consumed: int) -> Intervals:
        """What remains of the run once every rank consumed the first
        ``consumed`` positions of its slice (the same on every rank)."""
        c, r = max(0, min(int(consumed), self.per_rank)), self.total
        if r == 0:
            return []
        taken: Intervals = []
        for k in range(self.world_size):
            a = (k * self.per_rank) % r  # padding wraps to the run's start
            if a + c <= r:
                taken.append((a, a + c))
            else:
                taken += [(a, r), (0, a + c - r)]
        gaps, at = [], 0
        for a, b in normalize(taken):
            if a > at:
                gaps.append((at, a))
            at = max(at, b)
        if at < r:
            gaps.append((at, r))
        return normalize([iv for a, b in gaps for iv in self._epoch_intervals(a, b)])

    def _epoch_intervals(self, a: int, b: int) -> Intervals:
        """Epoch intervals covering remaining-sequence positions [a, b)."""
        out: Intervals = []
        k = int(np.searchsorted(self._ends, a, side="right"))
        while a < b:
            seg_start = int(self._ends[k - 1]) if k > 0 else 0
            seg_end = int(self._ends[k])
            lo = int(self._starts[k]) + a - seg_start
            n = min(b, seg_end) - a
            out.append((lo, lo + n))
            a += n
            k += 1
        return out
