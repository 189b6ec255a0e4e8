"""Classifier-free guidance (Ho & Salimans 2022) in one place: bind a Denoiser into an EpsFn.

``eps = eps_u + g * (eps_c - eps_u)``, with the conditional and unconditional (zero-context) branches
evaluated in ONE batched forward of 2B rows (conditional rows first), using buffers allocated once.

This is also the one place where a network that does not predict the noise is turned into one that does
(``card.prediction``; ab = alpha_bar at the step's timestep):

* ``v_prediction``: ``eps = sqrt(ab) v + sqrt(1 - ab) x``;
* ``sample`` (x0): ``eps = (x - sqrt(ab) x0) / sqrt(1 - ab)``.

Both are affine in the network output with the same x for both branches, so guiding the raw outputs and
converting once gives exactly the guided eps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.denoiser import Denoiser, EpsFn
from difftool.runtime.schedules import Schedule
from difftool.runtime.timesteps import AB_FLOOR


def guided_eps(denoiser: Denoiser, schedule: Schedule, context: np.ndarray, guidance: float = 1.0) -> EpsFn:
    """An EpsFn for ``denoiser`` with ``context`` (B, K) bound and guidance scale ``guidance``.

    One forward of batch B when guidance is 1, the model is unconditional (K = 0) or every context
    row is zero (both branches would be equal); with guidance 0, one unconditional forward of batch B.
    Otherwise one forward of 2B rows per step. The returned array is reused between calls.
    """
    check_null_class(denoiser.card, np.asarray(context), float(guidance))
    to_eps = eps_converter(denoiser.card.prediction, schedule)
    rows, doubled = branch_context(context, guidance)
    if doubled:
        return _doubled(denoiser, schedule, rows, float(guidance), to_eps)
    return _single(denoiser, schedule, rows, to_eps)


def branch_context(context: np.ndarray, guidance: float) -> tuple[np.ndarray, bool]:
    """The context rows of the one forward per step that guidance ``guidance`` needs for ``context`` (B, K),
    and whether they are doubled: ``[ctx; 0]`` (2B, K), whose eps :func:`combine` turns into the guided eps.
    Otherwise (B, K): ``ctx`` itself (no guidance needed) or zeros (guidance 0). The step-level server
    batches these rows of many requests into one forward, so its eps equals :func:`guided_eps`'s."""
    ctx = np.ascontiguousarray(context, dtype=np.float32)  # (B, K)
    if ctx.ndim != 2:
        raise DifftoolError(f"context must be (batch, classes), got shape {ctx.shape}")
    guidance = float(guidance)
    if guidance == 1.0 or ctx.shape[1] == 0 or not ctx.any():
        return ctx, False
    if guidance == 0.0:
        return np.zeros_like(ctx), False
    return np.concatenate([ctx, np.zeros_like(ctx)]), True  # (2B, K): conditional rows, then unconditional


def combine(eps2: np.ndarray, guidance: float, out: np.ndarray) -> np.ndarray:
    """``out = eps_u + g (eps_c - eps_u)`` from the doubled forward's eps (2B, C, H, W) (conditional rows
    first) into ``out`` (B, C, H, W), in float32; returns ``out``."""
    batch = out.shape[0]
    eps_c, eps_u = eps2[:batch], eps2[batch:]
    np.subtract(eps_c, eps_u, out=out)
    out *= float(guidance)
    out += eps_u
    return out


# (network output, x, timestep, out) -> eps written into out; None: the network already predicts eps.
EpsConverter = Callable[[np.ndarray, np.ndarray, int, np.ndarray], np.ndarray]


def eps_converter(prediction: str, schedule: Schedule) -> EpsConverter | None:
    """The conversion of a ``prediction``-type network output to eps (None for ``epsilon``)."""
    if prediction == "epsilon":
        return None
    if prediction not in ("v_prediction", "sample"):
        raise DifftoolError(f"unknown prediction type {prediction!r} (expected epsilon, v_prediction or sample)")

    def convert(raw: np.ndarray, x: np.ndarray, t: int, out: np.ndarray) -> np.ndarray:
        ab = min(max(schedule.ab(t), AB_FLOOR), 1.0 - AB_FLOOR)
        a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
        if prediction == "v_prediction":  # eps = a v + s x
            np.multiply(raw, a, out=out)
            out += s * x
        else:  # eps = (x - a x0) / s
            np.multiply(raw, -a / s, out=out)
            out += x / s
        return out

    return convert


def check_null_class(card: ModelCard, ctx: np.ndarray, guidance: float) -> None:
    """A class-conditional model without a null class has no meaning for an all-zero context row."""
    if card.model.null_context or ctx.shape[1] == 0:
        return
    if guidance != 1.0:
        raise DifftoolError(f"{card.no_guidance_reason}; use guidance 1")
    if (~ctx.any(axis=1)).any():
        names = ", ".join(card.class_names[:6]) + (", ..." if len(card.class_names) > 6 else "")
        raise DifftoolError("this class-conditional model has no unconditional (null) class: every sample needs "
                            f"a class or mix (e.g. --class {card.class_names[0] if card.class_names else 0}; "
                            f"classes: {names})")


def _single(denoiser: Denoiser, schedule: Schedule, ctx: np.ndarray, to_eps: EpsConverter | None = None) -> EpsFn:
    """No guidance: eps = denoiser(x, t, ctx) with a reused (B,) time buffer."""
    batch = ctx.shape[0]
    t_buf = np.empty((batch,), dtype=np.float32)  # (B,)
    bufs: dict[str, np.ndarray] = {}  # out (B, C, H, W) for the converted eps

    def eps_fn(x: np.ndarray, t: int) -> np.ndarray:
        _check_batch(x, batch)
        t_buf.fill(schedule.model_time(t))
        raw = denoiser(x, t_buf, ctx)
        if to_eps is None:
            return raw
        out = bufs.get("out")
        if out is None or out.shape != x.shape:
            out = bufs["out"] = np.empty(x.shape, dtype=np.float32)
        return to_eps(raw, x, t, out)

    return eps_fn


def _doubled(denoiser: Denoiser, schedule: Schedule, ctx2: np.ndarray, guidance: float,
             to_eps: EpsConverter | None = None) -> EpsFn:
    """Guidance: one forward of [x; x] with ``ctx2`` = [ctx; 0], then eps_u + g (eps_c - eps_u)."""
    batch = ctx2.shape[0] // 2
    t_buf = np.empty((2 * batch,), dtype=np.float32)  # (2B,)
    bufs: dict[str, np.ndarray] = {}  # x2 (2B, C, H, W) and out (B, C, H, W), allocated on first call

    def eps_fn(x: np.ndarray, t: int) -> np.ndarray:
        _check_batch(x, batch)
        x2 = bufs.get("x2")
        if x2 is None or x2.shape[1:] != x.shape[1:]:
            x2 = bufs["x2"] = np.empty((2 * batch, *x.shape[1:]), dtype=np.float32)
            bufs["out"] = np.empty(x.shape, dtype=np.float32)
        np.copyto(x2.reshape(2, *x.shape), x)  # [x; x] in one copy
        t_buf.fill(schedule.model_time(t))
        out = combine(denoiser(x2, t_buf, ctx2), guidance, bufs["out"])  # (2B, ...) -> (B, C, H, W)
        return out if to_eps is None else to_eps(out, x, t, out)

    return eps_fn


def _check_batch(x: np.ndarray, batch: int) -> None:
    """The sample batch must match the bound context batch."""
    if x.shape[0] != batch:
        raise DifftoolError(f"sample batch {x.shape[0]} does not match the context batch {batch}")
