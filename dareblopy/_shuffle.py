"""Reproducible shuffling: the same (seed, epoch) gives the same order on
every machine and every Python version.

The generator is SplitMix64 (Steele, Lea and Flood, 2014), written out here
so that nothing depends on the algorithm of ``random`` or numpy's
generators; the permutation is a Fisher-Yates shuffle over it, with
Lemire's multiply-shift reduction (bias below 2**-32 for any n < 2**32)."""
from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1


class SplitMix64:
    """A 64-bit generator seeded from (seed, epoch)."""

    __slots__ = ("state",)

    def __init__(self, seed: int, epoch: int = 0):
        self.state = (int(seed) * 0x9E3779B97F4A7C15 + int(epoch) * 0xD1B54A32D192ED03) & _MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """A number in [0, n)."""
        return ((self.next() >> 32) * n) >> 32


def permutation(n: int, seed: int, epoch: int = 0) -> np.ndarray:
    """A permutation of range(n) as int64, fixed by (seed, epoch)."""
    rng = SplitMix64(seed, epoch)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return np.array(order, dtype=np.int64)
