"""``load(path)``: open any difftool model file as a ready-to-sample :class:`Pipeline`."""

from __future__ import annotations

from pathlib import Path

from difftool.runtime.backends import make_denoiser


def load(path: str | Path, backend: str = "auto", threads: int | None = None, **opts):
    """``Pipeline(make_denoiser(path, backend, threads, **opts))``; a generator file (the whole sampling
    loop in one graph) opens as a :class:`~difftool.runtime.generator.GeneratorPipeline`."""
    from difftool.runtime.pipeline import Pipeline

    generator = _generator(path, backend, threads)
    if generator is not None:
        return generator
    return Pipeline(make_denoiser(path, backend=backend, threads=threads, **opts))


def _generator(path: str | Path, backend: str, threads: int | None):
    """A GeneratorPipeline when ``path`` is a generator file, else None."""
    from difftool.runtime.generator import generator_info, open_generator

    if generator_info(path) is None:
        return None
    return open_generator(path, backend=backend, threads=threads)
