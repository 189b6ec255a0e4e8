"""Pipeline: a Denoiser plus its schedule, turning a :class:`SampleRequest` into images.

x_T is drawn from the per-row seeded :class:`~difftool.runtime.noise.Noise` first, and the same
``Noise`` object then feeds the sampler, so each row is reproducible from its own seed alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.denoiser import Denoiser, StepCallback
from difftool.runtime.guidance import guided_eps
from difftool.runtime.images import check_finite
from difftool.runtime.noise import Noise
from difftool.runtime.palette import Palette, finish, sampling_hook
from difftool.runtime.samplers import Coefficients, SamplerRun, get_sampler
from difftool.runtime.schedules import make_schedule

TABLE_CACHE = 16  # coefficient tables a pipeline keeps
MAX_MIX_WEIGHT = 100.0  # a context weight beyond this is a typo, not a mixture


@dataclass
class SampleRequest:
    """What to sample. ``context`` is (n, K) float32 (None: zeros = unconditional); ``seeds`` gives one
    seed per row (default ``seed .. seed + n - 1``); ``spacing=None`` uses the sampler's default."""

    n: int = 16
    context: np.ndarray | None = None
    sampler: str = "ddim"
    steps: int | None = 25  # None: every timestep (samplers that allow it, e.g. ancestral DDPM)
    eta: float = 0.0
    guidance: float = 1.0
    seed: int = 0
    seeds: list[int] | None = None
    spacing: str | None = None
    variance: str | None = None  # DDPM: posterior | beta; None: the model's, else posterior
    clip: float | str | None = "auto"  # clamp x0 estimates; "auto": to the value range for difftool models
    palette: Palette | None = None  # project x0 onto these colours in the last steps (runtime.palette)


class Pipeline:
    """Sampling front end for one model: ``Pipeline(denoiser).sample(SampleRequest(...))``."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.card = denoiser.card
        self.schedule = make_schedule(self.card.schedule)
        self._tables: dict[tuple, Coefficients] = {}  # coefficient tables by sampler, steps and options

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> np.ndarray:
        """Run ``request``; returns (n, C, H, W) float32 in the card's value range (approximately)."""
        state = self.start(request)
        eps_fn = guided_eps(self.denoiser, self.schedule, self._context(request), request.guidance)
        while not state.done:
            step = state.advance(eps_fn(state.x, state.t))
            if callback is not None:
                callback(step)
        return finish(check_finite(state.x), request.palette, self.card.value_range)

    def start(self, request: SampleRequest) -> SamplerRun:
        """A request's sampler state at x_T: its plan and coefficient table, its per-row noise stream
        (x_T is drawn first from the same stream) and the x0 clamp. Advance it with the guided eps."""
        noise = Noise(self._seeds(request))
        table = self.table(request)
        shape = (self.card.channels, self.card.image_size, self.card.image_size)
        noise.reserve((1 + int(table.noisy_steps.sum())) * math.prod(shape))  # x_T and every step's z at once
        x_t = noise.noise(shape)  # (n, C, H, W)
        hook = sampling_hook(request.palette, self.card.value_range)  # palette projection of x0, last steps
        return SamplerRun(table, x_t, noise, self.clip_value(request), hook)

    def table(self, request: SampleRequest) -> Coefficients:
        """The request's coefficient table (the pipeline hands the sampler its timestep plan)."""
        from difftool.runtime.defaults import request_options, spacing_for

        spec = get_sampler(request.sampler)
        spacing, options = spacing_for(self.card, request.spacing), request_options(self.card, spec, request)
        key = (spec.name, request.steps, spacing, tuple(sorted(options.items())))
        table = self._tables.get(key)
        if table is None:  # a pure function of the key: built once per pipeline (a few hundred microseconds)
            plan = spec.plan(self.schedule, request.steps, spacing)
            table = spec.coefficients(plan, self.schedule, **options)
            if len(self._tables) >= TABLE_CACHE:
                self._tables.pop(next(iter(self._tables)))
            self._tables[key] = table
        return table

    def _seeds(self, request: SampleRequest) -> list[int]:
        """Per-row seeds, checked against n."""
        if request.n < 1:
            raise DifftoolError(f"n must be at least 1, got {request.n}")
        if request.seeds is None:
            return list(range(request.seed, request.seed + request.n))
        if len(request.seeds) != request.n:
            raise DifftoolError(f"got {len(request.seeds)} seeds for n = {request.n} samples")
        return list(request.seeds)

    def _context(self, request: SampleRequest) -> np.ndarray:
        """The (n, K) context of a request (zeros when None)."""
        k = self.card.num_classes
        if request.context is None:
            return np.zeros((request.n, k), dtype=np.float32)
        ctx = np.asarray(request.context, dtype=np.float32)
        if ctx.shape != (request.n, k):
            raise DifftoolError(f"context must have shape ({request.n}, {k}), got {ctx.shape}")
        return ctx

    def clip_value(self, request: SampleRequest) -> float | None:
        """``clip="auto"`` clamps x0 to the data range for difftool-trained models (as improved-diffusion's
        ``clip_denoised``: it keeps the first steps of a cosine schedule, where alpha_bar ~ 1e-9 amplifies
        eps errors ~1e4-fold, well conditioned) and leaves imported course/explainingai models unclamped,
        as their own sampling loops are."""
        if request.clip == "auto":
            return self.card.clip_limit
        return None if request.clip is None else float(request.clip)

    # -- contexts ------------------------------------------------------------------------------
    def context_from_spec(self, spec: str, n: int) -> np.ndarray:
        """(n, K) float32 context from ``"hero"`` / ``"2"`` (one-hot), ``"hero=0.5,food=0.5"`` (weights
        used as given; a bare name counts 1) or ``""`` / ``"none"`` (zeros, unconditional)."""
        k = self.card.num_classes
        vec = np.zeros((k,), dtype=np.float32)  # (K,)
        text = spec.strip()
        if text and text.lower() != "none":
            if k == 0:
                raise DifftoolError(f"this model is unconditional; it takes no class (got {spec!r})")
            for item in text.split(","):
                name, weight = _parse_item(item, spec)
                vec[self.card.class_index(name)] += weight
        return np.tile(vec, (n, 1))  # (n, K)

    def contexts_per_class(self, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        """One-hot contexts, ``per_class`` rows per class: ((K * per_class, K) float32, (K * per_class,) int64
        class indices)."""
        k = self.card.num_classes
        if k == 0:
            raise DifftoolError("this model is unconditional; it has no classes")
        labels = np.repeat(np.arange(k, dtype=np.int64), per_class)  # (K * per_class,)
        return np.eye(k, dtype=np.float32)[labels], labels


def _parse_item(item: str, spec: str) -> tuple[str, float]:
    """``"name=weight"`` or ``"name"`` (weight 1)."""
    name, sep, weight = item.partition("=")
    name = name.strip()
    if not name:
        raise DifftoolError(f"empty class name in context {spec!r} (use e.g. 'hero' or 'hero=0.5,food=0.5')")
    if not sep:
        return name, 1.0
    try:
        value = float(weight)
    except ValueError:
        raise DifftoolError(f"bad weight {weight.strip()!r} for {name!r} in context {spec!r}") from None
    if not -MAX_MIX_WEIGHT <= value <= MAX_MIX_WEIGHT:  # also rejects nan and inf
        raise DifftoolError(f"weight {weight.strip()!r} for {name!r} in context {spec!r} must be a finite "
                            f"number within +-{MAX_MIX_WEIGHT:g}")
    return name, value
