"""The order of an epoch: which sample sits at each position, from
``(seed, epoch)`` alone, so every rank and worker computes the same order
without talking to the others.

1. the shards are put in their canonical order (by :attr:`sort_key`: the
   file name, then the path), so the order of the list a caller passes
   (``glob`` results differ between machines) changes nothing;
2. the shards are permuted;
3. their samples are laid end to end (shard-major, so reads stay local);
4. this sequence is cut into windows of ``shuffle_buffer`` positions and
   each window is permuted on its own.

A sample therefore moves at most ``shuffle_buffer`` positions from its
shard-major place.  Quality against memory: the window holds sample
*indices*, not samples (8 bytes each, so the default 16384 costs 128 KiB),
and each batch reads from the shards that overlap one window.  A window as
large as the dataset is a uniform shuffle of everything (8 bytes per
sample: 80 MB for 10 million samples); a window of one shard's size mixes
about two shards at a time.  Positions map to samples arithmetically, so no
per-sample table of the epoch is ever built.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Sequence, Tuple

import numpy as np

from ._shuffle import derive_seed, permutation

# Streams derived from the seed, kept apart by a stream number.
WINDOW_STREAM = 1
BATCH_STREAM = 2


def canonical_order(shards: Sequence) -> List:
    """The shards sorted by their ``sort_key`` (stable); the given order
    when any shard has no key (custom readers without one)."""
    keys = [getattr(s, "sort_key", None) for s in shards]
    if any(k is None for k in keys):
        return list(shards)
    return [shards[i] for i in sorted(range(len(shards)), key=keys.__getitem__)]


class EpochOrder:
    """The sample at each position of one epoch.  Only the shard order and
    the windows in use are held in memory."""

    def __init__(self, lengths: np.ndarray, seed: int, epoch: int, shuffle: bool, window: int):
        self.total = int(lengths.sum())
        self.shuffle = shuffle
        self.window = max(1, int(window))
        n = len(lengths)
        self.shard_order = permutation(n, seed, epoch) if shuffle else np.arange(n, dtype=np.int64)
        ordered = lengths[self.shard_order]
        self.ends = np.cumsum(ordered)
        self.starts = self.ends - ordered
        self._window_seed = derive_seed(seed, epoch, WINDOW_STREAM)
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
        windows that overlap its shard-major range (what a cache of remote
        shards prefetches, and when it may evict them)."""
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
