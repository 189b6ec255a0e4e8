"""Seeded Gaussian noise with one random stream per batch row.

Each row of a batch owns its own ``np.random.Generator`` (PCG64), so row ``i`` of every draw depends
only on seed ``i``: a sprite sampled in a batch of 16 is bit-identical to the same sprite sampled alone
with the same seed, whatever the batch size or the other rows' seeds.

A row's stream does not depend on how its values are drawn (one call of n values or n calls of one give the
same numbers), so :meth:`Noise.reserve` can draw a whole sampling run's noise in one call per row; the
per-step draws then only hand out slices (a cold random generator after a network forward costs more
than the arithmetic of a sampler step on a small batch).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable

import numpy as np

from difftool.errors import DifftoolError

# Any callable(shape_per_item) -> (B, *shape_per_item) float32 standard normal array.
NoiseSource = Callable[[tuple[int, ...]], np.ndarray]

RESERVE_MAX_BYTES = 32 << 20  # values drawn ahead per Noise at most; beyond it, draws are made per call


class Noise:
    """Per-row seeded standard normal noise (one PCG64 generator per batch row)."""

    def __init__(self, seeds: Iterable[int]):
        self.seeds: list[int] = [_check_seed(s) for s in seeds]
        if not self.seeds:
            raise DifftoolError("Noise needs at least one seed (one per batch row)")
        self._generators = [np.random.Generator(np.random.PCG64(s)) for s in self.seeds]
        self._ahead = np.empty((len(self.seeds), 0), dtype=np.float32)  # (B, k) values drawn ahead per row
        self._pos = 0  # next unused column of _ahead

    @classmethod
    def from_seed(cls, seed: int, n: int) -> Noise:
        """Rows seeded ``seed, seed + 1, ..., seed + n - 1``."""
        if n < 1:
            raise DifftoolError(f"the batch size must be at least 1, got {n}")
        seed = _check_seed(seed)
        return cls(range(seed, seed + n))

    def __len__(self) -> int:
        return len(self.seeds)

    def reserve(self, values: int) -> None:
        """Draw the next ``values`` values of every row now (capped at :data:`RESERVE_MAX_BYTES` in all);
        later draws hand them out first. The numbers each draw returns are unchanged."""
        values = min(int(values), RESERVE_MAX_BYTES // (4 * len(self._generators)))
        left = self._ahead.shape[1] - self._pos
        if values <= left:
            return
        ahead = np.empty((len(self._generators), values), dtype=np.float32)  # (B, values)
        ahead[:, :left] = self._ahead[:, self._pos:]
        for row, gen in zip(ahead, self._generators, strict=True):
            gen.standard_normal((values - left,), dtype=np.float32, out=row[left:])
        self._ahead, self._pos = ahead, 0

    def noise(self, shape_per_item: tuple[int, ...]) -> np.ndarray:
        """Draw a (B, *shape_per_item) float32 array; row ``i`` comes from generator ``i`` only."""
        shape = tuple(int(d) for d in shape_per_item)
        size = math.prod(shape)
        rows, ahead = len(self._generators), self._ahead.shape[1] - self._pos
        if size <= ahead:  # drawn ahead: the next values (a view; no other draw returns them)
            out = self._ahead[:, self._pos:self._pos + size].reshape(rows, *shape)
            self._pos += size
            return out
        if ahead:  # the rest of the reserve, then fresh values
            flat = np.empty((rows, size), dtype=np.float32)  # (B, size)
            flat[:, :ahead] = self._ahead[:, self._pos:]
            for row, gen in zip(flat, self._generators, strict=True):
                gen.standard_normal((size - ahead,), dtype=np.float32, out=row[ahead:])
            self._ahead, self._pos = np.empty((rows, 0), dtype=np.float32), 0
            return flat.reshape(rows, *shape)
        out = np.empty((len(self._generators), *shape), dtype=np.float32)  # (B, *shape)
        for row, gen in zip(out, self._generators, strict=True):
            gen.standard_normal(shape, dtype=np.float32, out=row)
        return out

    __call__ = noise


def _check_seed(seed: int) -> int:
    """Validate a seed: a non-negative integer."""
    try:
        value = operator.index(seed)
    except TypeError:
        raise DifftoolError(f"a seed must be an integer, got {seed!r}") from None
    if value < 0:
        raise DifftoolError(f"a seed must be >= 0, got {value}")
    return value
