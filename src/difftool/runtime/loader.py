"""``load(path)``: open any difftool model file as a ready-to-sample :class:`Pipeline`."""

from __future__ import annotations

from pathlib import Path

from difftool.runtime.backends import make_denoiser


def load(path: str | Path, backend: str = "auto", threads: int | None = None, **opts):
    """``Pipeline(make_denoiser(path, backend, threads, **opts))``."""
    from difftool.runtime.pipeline import Pipeline

    return Pipeline(make_denoiser(path, backend=backend, threads=threads, **opts))
