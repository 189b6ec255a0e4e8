"""Load-time validation of checkpoint weights against the architecture their card describes.

One place for every front end (``info``, ``export``, ``sample``/``generate`` with the torch backend, the TUI,
``eval``): :func:`build_checked` builds the module only after the state dict has been checked against a
copy built on the ``meta`` device (no memory, so a card that lies about a huge model costs nothing), and
:func:`check_values` rejects non-finite weights. Each failure is one :class:`DifftoolError` line that lists
the offending tensors by name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from difftool.config import ModelConfig
from difftool.errors import DifftoolError

MAX_NAMES = 4


def names(items: list[str]) -> str:
    """``a, b, c, d (+3 more)``."""
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" (+{len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


def _build(config: ModelConfig, path, device: str | None = None, schedule=None) -> nn.Module:
    from difftool.models import build

    try:
        if device is None:
            return build(config, schedule)
        with torch.device(device):
            return build(config, schedule)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, IndexError, OverflowError) as exc:
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DifftoolError(f"{path}: its {config.arch} config cannot be built ({msg})") from None


def check_structure(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], arch: str, path) -> None:
    """Missing / unexpected keys, wrong shapes and non-float tensors where weights are floats."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes, dtypes = [], []
    for key, want in expected.items():
        got = state.get(key)
        if got is None:
            continue
        if tuple(got.shape) != tuple(want.shape):
            shapes.append(f"{key} {tuple(got.shape)} (needs {tuple(want.shape)})")
        elif want.is_floating_point() and not got.is_floating_point():
            dtypes.append(f"{key} {str(got.dtype).removeprefix('torch.')}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} with the wrong shape: {names(shapes)}")
    if dtypes:
        problems.append(f"{len(dtypes)} not floating point: {names(dtypes)}")
    if problems:
        raise DifftoolError(f"{path}: the weights do not fit the {arch} architecture of its card; tensors "
                            + "; ".join(problems))


def check_values(state: dict[str, torch.Tensor], path) -> None:
    """Every floating-point tensor finite; BatchNorm running variances not negative."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DifftoolError(f"{path}: non-finite weights (NaN or inf) in {len(bad)} tensor(s): {names(bad)}; "
                            "the file is corrupt or its training diverged")
    neg = [k for k, v in state.items() if k.endswith("running_var") and v.is_floating_point() and bool((v < 0).any())]
    if neg:
        raise DifftoolError(f"{path}: negative BatchNorm running variance in {names(neg)}; the file is corrupt")


def build_checked(config: ModelConfig, state: dict[str, torch.Tensor], path: str | Path,
                  schedule=None) -> nn.Module:
    """The module for ``config`` (and the card's ``schedule``) with ``state`` loaded (strict), after the checks
    above."""
    skeleton = _build(config, path, device="meta", schedule=schedule)
    check_structure(state, skeleton.state_dict(), config.arch, path)
    check_values(state, path)
    module = _build(config, path, schedule=schedule)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # not expected after the checks; kept one line all the same
        msg = " ".join(str(exc).split())[:200]
        raise DifftoolError(f"{path}: weights do not fit the {config.arch} config ({msg})") from None
    return module
