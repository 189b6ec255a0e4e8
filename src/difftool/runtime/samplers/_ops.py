"""Array helpers shared by the samplers."""

from __future__ import annotations

import numpy as np

try:  # the clip ufunc itself: np.clip's Python wrapper costs more than clipping a sprite batch
    from numpy._core.umath import clip as _clip_ufunc
except ImportError:  # pragma: no cover - numpy < 2
    _clip_ufunc = None


def clip_(x: np.ndarray, limit: float) -> None:
    """Clamp ``x`` to [-limit, limit] in place."""
    if _clip_ufunc is not None:
        _clip_ufunc(x, -limit, limit, out=x)
    else:  # pragma: no cover
        np.clip(x, -limit, limit, out=x)
