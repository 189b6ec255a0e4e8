"""The one form every sampler step takes: a per-step coefficient table applied to a few state tensors.

Notation (Ho et al. 2020; Song et al. 2021; Lu et al. 2022): at timestep t, ``ab`` = alpha_bar_t,
``a = sqrt(ab)`` and ``s = sqrt(1 - ab)``, so ``x_t = a x0 + s eps``. From the network's eps:

    x0  = (x - s eps) / a                 (the data prediction; clamped to +-clip when clipping)
    eps = (x - a x0) / s                  (re-derived from the clamped x0, so the update stays consistent)

Every sampler here (DDPM, DDIM, DPM-Solver++(2M), UniPC) is, step by step, a fixed linear combination of
the state tensors ``x`` (the sample the network saw), ``eps``, ``x0``, the two previous data predictions
``h1``, ``h2`` and the previous corrected sample ``xl``, plus ``sigma z``:

    xc    = c_x x + c_x0 x0 + c_h1 h1 + c_h2 h2 + c_xl xl      (a corrector; xc = x for all but UniPC)
    x_new = u_xc xc + u_eps eps + u_x0 x0 + u_h1 h1 + sigma z
    then  xl <- xc, h2 <- h1, h1 <- x0

The coefficients depend only on the schedule and the timestep plan, so a sampler is a pure function
returning this table; the numpy loop (:mod:`~difftool.runtime.samplers.engine`), the ONNX generator and
the step-level server all apply the same table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Columns of Coefficients.rows, in order.
COLUMNS = ("a", "s", "c_x", "c_x0", "c_h1", "c_h2", "c_xl", "u_xc", "u_eps", "u_x0", "u_h1", "sigma")
COL = {name: i for i, name in enumerate(COLUMNS)}


@dataclass(frozen=True)
class Coefficients:
    """A sampler's whole run: ``t`` (S,) int64 training timesteps (descending) and ``rows`` (S, 12) float64
    with the :data:`COLUMNS` above, one row per step."""

    t: np.ndarray
    rows: np.ndarray

    def __post_init__(self) -> None:
        import numpy as np

        if self.rows.shape != (len(self.t), len(COLUMNS)):
            raise ValueError(f"coefficient rows must be ({len(self.t)}, {len(COLUMNS)}), got {self.rows.shape}")
        if not np.isfinite(self.rows).all():
            raise ValueError("coefficient table has non-finite entries")

    def __len__(self) -> int:
        return len(self.t)

    def column(self, name: str) -> np.ndarray:
        """One column, (S,)."""
        return self.rows[:, COL[name]]

    @property
    def stochastic(self) -> bool:
        """True if any step adds noise."""
        return bool((self.column("sigma") > 0).any())

    @property
    def noisy_steps(self) -> np.ndarray:
        """(S,) bool: the steps that draw noise (sigma > 0)."""
        return self.column("sigma") > 0

    @property
    def corrects(self) -> bool:
        """True if any step's corrector is not the identity (xc = x)."""
        import numpy as np

        ident = np.zeros(5)
        ident[0] = 1.0
        return bool((self.rows[:, COL["c_x"]:COL["c_xl"] + 1] != ident).any())

    @property
    def history(self) -> int:
        """How many previous data predictions the run reads (0, 1 or 2)."""
        if self.column("c_h2").any():
            return 2
        return 1 if (self.column("c_h1").any() or self.column("u_h1").any()) else 0


    @property
    def linear(self) -> bool:
        """True if a step reads nothing but x, eps, x0 and z (no history, identity corrector): DDPM, DDIM."""
        return not self.history and not self.corrects

    def linear_form(self, rederive: bool) -> np.ndarray:
        """(S, 4) float64 ``k_x, k_x0, k_eps, sigma`` with ``x_new = k_x0 x0 + k_x x + k_eps eps + sigma z``
        (that order) for a :attr:`linear` table: its update with, when ``rederive``, the eps re-derived from
        the clamped x0 (``(x - a x0) / s``) folded into the coefficients: ``k_x = u_xc + u_eps / s``,
        ``k_x0 = u_x0 - u_eps a / s``. Fewer array operations per step; the numpy loop and the generator
        graph both apply it."""
        import numpy as np

        a, s, u_xc, u_eps, u_x0, sigma = (self.column(c) for c in ("a", "s", "u_xc", "u_eps", "u_x0", "sigma"))
        if rederive:
            fold = u_eps / s
            return np.stack([u_xc + fold, u_x0 - fold * a, np.zeros_like(u_eps), sigma], axis=1)
        return np.stack([u_xc, u_x0, u_eps, sigma], axis=1)


class TableBuilder:
    """Rows of a table built step by step: ``b.step(t, ab_t, u_x0=..., ...)`` then ``b.build()``."""

    def __init__(self) -> None:
        self._t: list[int] = []
        self._rows: list[np.ndarray] = []

    def step(self, t: int, ab_t: float, **coefficients: float) -> None:
        import numpy as np

        row = np.zeros(len(COLUMNS))
        row[COL["a"]], row[COL["s"]] = math.sqrt(ab_t), math.sqrt(1.0 - ab_t)
        row[COL["c_x"]] = 1.0  # identity corrector unless given
        for name, value in coefficients.items():
            row[COL[name]] = value
        self._t.append(int(t))
        self._rows.append(row)

    def build(self) -> Coefficients:
        import numpy as np

        return Coefficients(np.asarray(self._t, dtype=np.int64), np.stack(self._rows))
