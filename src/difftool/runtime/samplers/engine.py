"""Apply a :class:`~difftool.runtime.samplers.table.Coefficients` table in numpy, one step at a time.

:class:`SamplerRun` holds one run's state (x, the data-prediction history, the last corrected sample)
and advances it by one network evaluation; the offline loop (:func:`run`) and the step-level server both
drive it, so a request's state evolves exactly as in the offline loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from difftool.runtime.denoiser import EpsFn, Step, StepCallback
from difftool.runtime.noise import NoiseSource
from difftool.runtime.samplers._ops import clip_
from difftool.runtime.samplers.table import COL, Coefficients

# Called after the clip with (step index, total steps, x0 (B, C, H, W)); may change x0 in place. eps is then
# re-derived from the changed x0, so the update stays consistent (as with clipping).
X0Hook = Callable[[int, int, np.ndarray], None]


class SamplerRun:
    """One sampling run: ``x`` is x_T (B, C, H, W) (copied); feed ``advance(eps)`` with the network's eps at
    ``x`` and timestep ``t`` until ``done``. ``noise`` is called only on steps with sigma > 0."""

    def __init__(self, table: Coefficients, x: np.ndarray, noise: NoiseSource, clip: float | None = None,
                 x0_hook: X0Hook | None = None):
        self.table, self.noise, self.clip, self.x0_hook = table, noise, clip, x0_hook
        self.x = np.array(x, dtype=np.float32, order="C", copy=True)  # (B, C, H, W) current sample
        self.index = 0
        self.x0 = np.zeros_like(self.x)  # data prediction of the last step
        self._tmp = np.empty_like(self.x)
        depth = table.history
        self._h = [np.zeros_like(self.x) for _ in range(depth)]  # h1, h2
        self._xl = np.zeros_like(self.x) if table.corrects else None
        self._rederive = (clip is not None or x0_hook is not None) and bool(table.column("u_eps").any())
        # samplers without history or corrector (DDPM, DDIM): x_new from x, x0 (and eps) in one linear form
        self._linear = [tuple(k) for k in table.linear_form(self._rederive).tolist()] if table.linear else None

    @property
    def done(self) -> bool:
        return self.index >= len(self.table)

    @property
    def t(self) -> int:
        """The training timestep the network must be evaluated at next."""
        return int(self.table.t[self.index])

    def advance(self, eps: np.ndarray) -> Step:
        """One update from the network's ``eps`` (B, C, H, W) at (``x``, ``t``); returns the step record."""
        r = self.table.rows[self.index].tolist()  # Python floats: float32 arrays stay float32
        self._data_prediction(r, eps)
        if self._linear is not None:
            new = self._linear_update(self._linear[self.index], eps)
        else:
            new = self._combine(r, self._consistent_eps(r, eps))
            self._shift()
        self.x = new
        step = Step(self.index, len(self.table), self.t, new, self.x0)
        self.index += 1
        return step

    def _data_prediction(self, r: list[float], eps: np.ndarray) -> None:
        """x0 = (x - s eps) / a, clamped, then the hook (e.g. palette projection in the last steps)."""
        x0, tmp = self.x0, self._tmp
        np.multiply(eps, r[COL["s"]], out=tmp)
        np.subtract(self.x, tmp, out=x0)
        x0 *= 1.0 / r[COL["a"]]
        if self.clip is not None:
            clip_(x0, self.clip)
        if self.x0_hook is not None:
            self.x0_hook(self.index, len(self.table), x0)

    def _linear_update(self, k: tuple[float, float, float], eps: np.ndarray) -> np.ndarray:
        """x_new = k_x0 x0 + k_x x (+ k_eps eps) + sigma z (:meth:`Coefficients.linear_form`: eps re-derived
        from x0 folded into the coefficients), a few array operations per step."""
        k_x, k_x0, k_eps, sigma = k
        tmp = self._tmp
        new = np.multiply(self.x0, k_x0)
        if k_x:
            np.multiply(self.x, k_x, out=tmp)
            new += tmp
        if k_eps:
            np.multiply(eps, k_eps, out=tmp)
            new += tmp
        if sigma > 0.0:
            np.multiply(self.noise(new.shape[1:]), sigma, out=tmp)  # z (B, C, H, W)
            new += tmp
        return new

    def _consistent_eps(self, r: list[float], eps: np.ndarray) -> np.ndarray:
        """eps, or re-derived from the changed x0 when x0 was clamped or hooked."""
        x, x0, tmp = self.x, self.x0, self._tmp
        if self._rederive:
            np.multiply(x0, r[COL["a"]], out=tmp)
            np.subtract(x, tmp, out=tmp)
            tmp *= 1.0 / r[COL["s"]]  # eps = (x - a x0) / s
            return tmp
        return eps

    def _combine(self, r: list[float], eps: np.ndarray) -> np.ndarray:
        """x_new = u_xc xc + u_eps eps + u_x0 x0 + u_h1 h1 + sigma z, xc from the corrector."""
        h1 = self._h[0] if self._h else None
        xc = self._corrected(r, h1)
        new = np.multiply(xc, r[COL["u_xc"]]) if r[COL["u_xc"]] else np.zeros_like(xc)
        _axpy(new, r[COL["u_eps"]], eps)
        _axpy(new, r[COL["u_x0"]], self.x0)
        if h1 is not None:
            _axpy(new, r[COL["u_h1"]], h1)
        if r[COL["sigma"]] > 0.0:
            z = self.noise(new.shape[1:])  # (B, C, H, W)
            _axpy(new, r[COL["sigma"]], z)
        if self._xl is not None:
            np.copyto(self._xl, xc)
        return new

    def _corrected(self, r: list[float], h1: np.ndarray | None) -> np.ndarray:
        """xc = c_x x + c_x0 x0 + c_h1 h1 + c_h2 h2 + c_xl xl (x itself when the row is the identity)."""
        if self._xl is None or (r[COL["c_x"]] == 1.0 and not any(r[COL["c_x0"]:COL["c_xl"] + 1])):
            return self.x
        xc = np.multiply(self.x, r[COL["c_x"]])
        _axpy(xc, r[COL["c_x0"]], self.x0)
        if h1 is not None:
            _axpy(xc, r[COL["c_h1"]], h1)
        if len(self._h) > 1:
            _axpy(xc, r[COL["c_h2"]], self._h[1])
        _axpy(xc, r[COL["c_xl"]], self._xl)
        return xc

    def _shift(self) -> None:
        """h2 <- h1, h1 <- x0 (buffers rotate; x0 is rewritten by the next step)."""
        if not self._h:
            return
        last = self._h.pop()
        np.copyto(last, self.x0)
        self._h.insert(0, last)


def _axpy(out: np.ndarray, k: float, y: np.ndarray) -> None:
    """out += k y (skipped when k is 0)."""
    if k:
        out += np.multiply(y, k, dtype=np.float32)


def run(eps_fn: EpsFn, x: np.ndarray, table: Coefficients, noise: NoiseSource, *, clip: float | None = None,
        callback: StepCallback | None = None, x0_hook: X0Hook | None = None) -> np.ndarray:
    """The offline loop: every step of ``table`` from x_T ``x`` (not modified); returns x_0 (B, C, H, W)."""
    state = SamplerRun(table, x, noise, clip, x0_hook)
    while not state.done:
        step = state.advance(eps_fn(state.x, state.t))
        if callback is not None:
            callback(step)
    return state.x
