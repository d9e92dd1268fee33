"""Reproducible shuffling: the same (seed, epoch) gives the same order on
every machine and every Python version.

The generator is SplitMix64 (Steele, Lea and Flood, 2014), written out here
so that no order depends on the algorithms behind ``random`` or numpy's
generators, which may change between versions.  A permutation is a
Fisher-Yates shuffle over it; numbers in [0, n) come from Lemire's
multiply-shift reduction of the top 32 bits (bias below 2**-32 for any
n < 2**32)."""
from __future__ import annotations

import numpy as np

from ._errors import check
from ._ffi import ffi, lib

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_EPOCH_MUL = 0xD1B54A32D192ED03


class SplitMix64:
    """A 64-bit generator whose stream is fixed by (seed, epoch)."""

    __slots__ = ("state",)

    def __init__(self, seed: int, epoch: int = 0):
        self.state = (int(seed) * _GOLDEN + int(epoch) * _EPOCH_MUL) & _MASK

    def next(self) -> int:
        self.state = (self.state + _GOLDEN) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """A number in [0, n)."""
        return ((self.next() >> 32) * n) >> 32


def permutation(n: int, seed: int, epoch: int = 0) -> np.ndarray:
    """A permutation of range(n) as int64, fixed by (seed, epoch): libdbr's
    dbr_permutation, bit-identical to :func:`permutation_reference`."""
    n = max(0, int(n))
    out = np.empty(n, np.int64)
    check(lib.dbr_permutation(n, int(seed) & _MASK, int(epoch) & _MASK,
                              ffi.from_buffer("int64_t[]", out, require_writable=True)))
    return out


def permutation_reference(n: int, seed: int, epoch: int = 0) -> np.ndarray:
    """The same permutation in Python (about 1 us per value): the
    definition the C version is tested against."""
    rng = SplitMix64(seed, epoch)
    below = rng.below
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = below(i + 1)
        order[i], order[j] = order[j], order[i]
    return np.array(order, dtype=np.int64)


def derive_seed(seed: int, *parts: int) -> int:
    """A new 64-bit seed from a seed and a path of integers (for example
    epoch, stream, batch): libdbr's dbr_seed_derive, the one derivation
    that the shuffles and the random crops share."""
    return int(lib.dbr_seed_derive(int(seed) & _MASK, [int(p) & _MASK for p in parts],
                                   len(parts)))


def derive_seed_reference(seed: int, *parts: int) -> int:
    """The same derivation in Python: each part steps to the first output of
    ``SplitMix64(state, part)``.  The definition the C one is tested against."""
    state = int(seed) & _MASK
    for part in parts:
        state = SplitMix64(state, part).next()
    return state
