"""Seeded Gaussian noise with one random stream per batch row.

Each row of a batch owns its own ``np.random.Generator`` (PCG64), so row ``i`` of every draw depends
only on seed ``i``: a sprite sampled in a batch of 16 is bit-identical to the same sprite sampled alone
with the same seed, whatever the batch size or the other rows' seeds.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

import numpy as np

from difftool.errors import DifftoolError

# Any callable(shape_per_item) -> (B, *shape_per_item) float32 standard normal array.
NoiseSource = Callable[[tuple[int, ...]], np.ndarray]


class Noise:
    """Per-row seeded standard normal noise (one PCG64 generator per batch row)."""

    def __init__(self, seeds: Iterable[int]):
        self.seeds: list[int] = [_check_seed(s) for s in seeds]
        if not self.seeds:
            raise DifftoolError("Noise needs at least one seed (one per batch row)")
        self._generators = [np.random.Generator(np.random.PCG64(s)) for s in self.seeds]

    @classmethod
    def from_seed(cls, seed: int, n: int) -> Noise:
        """Rows seeded ``seed, seed + 1, ..., seed + n - 1``."""
        if n < 1:
            raise DifftoolError(f"the batch size must be at least 1, got {n}")
        seed = _check_seed(seed)
        return cls(range(seed, seed + n))

    def __len__(self) -> int:
        return len(self.seeds)

    def noise(self, shape_per_item: tuple[int, ...]) -> np.ndarray:
        """Draw a (B, *shape_per_item) float32 array; row ``i`` comes from generator ``i`` only."""
        shape = tuple(int(d) for d in shape_per_item)
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
