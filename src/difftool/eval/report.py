"""The sample-quality evaluation: sample per class with several sampler settings, judge, and report.

``evaluate(pipeline)`` draws ``per_class`` samples of every class for each configuration (the same
per-row seeds in every configuration, so rows compare like for like), then measures:

* **accuracy**: how often the sprite judge (:class:`~difftool.eval.judge.Judge`) recognises the class that
  was asked for, overall and per class; read it against the judge's own held-out accuracy;
* **FID**: the Fréchet distance between the samples and the real sprites in the judge's 128-d feature
  space, with the real statistics weighted so every sampled class counts equally (as in the samples);
  ``fid_floor`` is the same distance for ``per_class`` real tiles per class: the value a perfect model
  would score at this sample size;
* **diversity**: mean pairwise L2 distance (pixel space) between samples of the same class, averaged
  over classes (the real sprites' value is ``diversity_real``);
* **duplicates**: share of samples within a per-pixel RMS of 0.05 of a real tile or its mirror image;
* **palette fidelity**: share of the non-background pixels within RMS 8/255 of the training palette (learned
  from the real sprites), and the number of distinct colours; rows with ``palette`` ``sample`` project the
  x0 estimate onto the palette in the last steps, ``post`` snaps the finished raw samples
  (:mod:`difftool.eval.colors`).

Torch-free: it needs only a pipeline-like object (``.card`` and ``.sample(SampleRequest, callback=...)``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from difftool.errors import DifftoolError
from difftool.eval.colors import EvalPalettes, eval_palettes, figures, palette_info, row_palette
from difftool.eval.configs import (  # noqa: F401 (DEFAULT_*/QUICK_* re-exported)
    DEFAULT_CONFIGS,
    DEFAULT_PER_CLASS,
    QUICK_CONFIGS,
    QUICK_PER_CLASS,
    _Config,
    _configs,
    _label,
)
from difftool.eval.judge import Judge
from difftool.eval.metrics import (
    DUPLICATE_RMS,
    conditional_accuracy,
    feature_stats,
    frechet_distance_from_stats,
    nearest_train_rms,
)
from difftool.eval.phases import Classes, _class_plan, _diversity, _model_info, _real_stats
from difftool.eval.table import render_table  # noqa: F401 (re-exported: difftool.eval.report.render_table)
from difftool.runtime.images import to_uint8
from difftool.runtime.palette import Palette, finish


@dataclass(frozen=True)
class EvalProgress:
    """Reported after every sampler step: which configuration runs and how far the whole evaluation is."""

    config: int  # 0-based index of the running configuration
    configs: int
    label: str  # e.g. "ddim 25 steps, guidance 2"
    samples_done: int  # finished samples of this configuration
    samples: int  # samples per configuration
    fraction: float  # 0..1 of the whole evaluation, weighted by network evaluations


@dataclass
class EvalRow:
    sampler: str
    steps: int
    guidance: float
    eta: float
    n: int
    accuracy: float | None
    per_class_accuracy: dict[str, float | None]
    fid: float | None
    diversity: float
    duplicate_rate: float | None
    nearest_rms_median: float | None
    seconds: float
    palette: str = "none"  # none (raw) | sample (projected in the last steps) | post (snapped afterwards)
    palette_fidelity: float | None = None  # share of non-background pixels within RMS 8/255 of the palette
    palette_exact: float | None = None  # share exactly on a palette colour
    distinct_colors: int | None = None  # distinct RGB colours over the row's samples
    variance: str | None = None  # DDPM rows: the variance asked for (None: the model's default)

    @property
    def label(self) -> str:
        return _label(self.sampler, self.steps, self.guidance, self.eta, self.palette, self.variance)


@dataclass
class EvalReport:
    rows: list[EvalRow]
    class_names: tuple[str, ...]  # the classes sampled (the model's), in column order
    per_class: int
    seed: int
    model: dict[str, Any] = field(default_factory=dict)
    judge: dict[str, Any] = field(default_factory=dict)
    real: dict[str, Any] | None = None  # the real sprites FID/duplicates were measured against
    fid_floor: float | None = None  # FID of per_class real tiles per class vs all real tiles
    diversity_real: float | None = None
    palette: dict[str, Any] = field(default_factory=dict)  # the palette rows' and the fidelity reference
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it is missing
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        for row, raw in zip(data["rows"], self.rows, strict=True):
            row["label"] = raw.label
        return _clean(data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def best(self, key: str = "fid") -> EvalRow | None:
        """The row with the lowest ``fid`` (or highest ``accuracy``/``diversity``); None if unmeasured."""
        rows = [r for r in self.rows if getattr(r, key) is not None and math.isfinite(getattr(r, key))]
        if not rows:
            return None
        sign = 1.0 if key in ("fid", "duplicate_rate", "seconds") else -1.0
        return min(rows, key=lambda r: sign * getattr(r, key))


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def evaluate(
    pipeline: Any,
    judge: Judge | None = None,
    real_images: Any = None,
    *,
    real_labels: np.ndarray | None = None,
    data: Sequence[str | Path] | None = None,
    configs: Sequence[Mapping[str, Any]] | None = None,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 0,
    batch_size: int = 160,
    progress: Callable[[EvalProgress], None] | None = None,
    palette: Palette | str | None = "auto",
) -> EvalReport:
    """Sample, judge and score ``pipeline`` for every configuration; returns an :class:`EvalReport`.

    * ``pipeline``: a :class:`~difftool.runtime.pipeline.Pipeline` (anything with ``.card`` and
      ``.sample(request, callback=None)``) making 16x16 RGB images in [-1, 1].
    * ``judge``: default :meth:`Judge.load` (the shipped sprite classifier).
    * ``real_images``: the real sprites for FID, real diversity and the duplicate check: an array
      (N, 3, 16, 16) in [-1, 1] (with ``real_labels`` for class-balanced FID statistics) or a dataset
      (``.images``/``.labels``/``.class_names``). None: load the labelled sprites from the ``data``
      folders (default: the shared dawnlike + kenney-tiny-dungeon folders). When no real sprites can be
      found, FID and duplicates are None and ``report.unavailable`` says why; accuracy still runs.
    * ``configs``: dicts with ``sampler``, ``steps`` (None = every timestep), ``guidance``, ``eta``,
      ``palette`` and, for DDPM, ``variance`` (``beta``: the course's sigma^2 = beta; ``posterior``);
      default :data:`DEFAULT_CONFIGS` (:data:`QUICK_CONFIGS` with ``per_class=QUICK_PER_CLASS`` for a
      quick look).
    * ``per_class``: samples per class (an unconditional model gets ``per_class * 5`` samples).
    * ``seed``: row i of every configuration uses seed ``seed + i``.
    * ``palette``: what the ``sample``/``post`` rows project onto: ``auto`` (the card's learned palette, else
      the real sprites'), a :class:`~difftool.runtime.palette.Palette` or a palette file, or None/``none``
      (palette rows skipped). Fidelity is always measured against the real sprites' palette.
    * ``progress``: called with an :class:`EvalProgress` after every sampler step; raising
      :class:`~difftool.errors.Cancelled` from it stops the evaluation.
    """
    start_all = time.perf_counter()
    if per_class < 2:
        raise DifftoolError(f"per_class must be at least 2 (pairwise diversity), got {per_class}")
    judge = judge if judge is not None else Judge.load()
    card = pipeline.card
    if (card.channels, card.image_size) != (judge.channels, judge.image_size):
        raise DifftoolError(
            f"the sprite judge scores {judge.image_size}x{judge.image_size} RGB sprites; this model makes "
            f"{card.image_size}x{card.image_size} images with {card.channels} channel(s)"
        )
    plan = _configs(configs, card)
    notes: list[str] = []
    unavailable: dict[str, str] = {}

    classes = _class_plan(card, judge, per_class, notes, unavailable)
    names, k, judge_index, labels, contexts, judged = classes
    n = len(labels)
    real, real_info, real_mu, real_sigma, fid_floor, diversity_real = _real_stats(
        judge, real_images, real_labels, data, judge_index, per_class, n, seed, notes, unavailable)
    palettes = eval_palettes(palette, card, real, notes)
    if palettes.project is None and any(c.palette != "none" for c in plan):
        plan = [c for c in plan if c.palette == "none"] or plan[:0]
        unavailable["palette rows"] = "no palette: the model card has none and there are no real sprites"
        if not plan:
            raise DifftoolError("no eval configurations left: the palette rows need a palette (--palette FILE)")
    if palettes.reference is None:
        unavailable["palette_fidelity"] = "no training palette: no real sprites and none in the model card"
    sampling = _Sampling(pipeline, plan, contexts, n, [seed + i for i in range(n)], batch_size, progress,
                         palettes)
    rows: list[EvalRow] = []
    for ci, cfg in enumerate(plan):
        samples, seconds = sampling.run(ci, cfg)
        row = _score_row(cfg, samples, seconds, judge, classes, unavailable, real, real_mu, real_sigma)
        row.palette_fidelity, row.palette_exact, row.distinct_colors = figures(
            to_uint8(samples, card.value_range), palettes)
        rows.append(row)

    return EvalReport(
        rows=rows,
        class_names=tuple(names),
        per_class=per_class,
        seed=seed,
        model=_model_info(pipeline),
        judge={
            "path": str(judge.path) if judge.path else None,
            "class_names": list(judge.class_names),
            "heldout_accuracy": judge.heldout_accuracy,
            "license": judge.license,
        },
        real=real_info if real is not None else None,
        palette=palette_info(palettes),
        fid_floor=fid_floor,
        diversity_real=diversity_real,
        unavailable=unavailable,
        notes=notes,
        seconds=time.perf_counter() - start_all,
    )


class _Sampling:
    """Samples every configuration in batches, reporting progress in network evaluations."""

    def __init__(self, pipeline: Any, plan: list[_Config], contexts: np.ndarray | None, n: int, seeds: list[int],
                 batch_size: int, progress: Callable[[EvalProgress], None] | None, palettes: EvalPalettes):
        card = pipeline.card
        self.pipeline, self.plan, self.contexts, self.n, self.seeds = pipeline, plan, contexts, n, seeds
        self.palettes = palettes
        self.batch_size, self.progress = batch_size, progress
        self.cost = [c.steps * (2 if (card.conditional and c.guidance not in (0.0, 1.0)) else 1) for c in plan]
        self.total_cost, self.done_cost = float(sum(self.cost)) * n, 0.0

    def run(self, ci: int, cfg: _Config) -> tuple[np.ndarray, float]:
        """(samples (n, C, H, W) with non-finite values neutralised, seconds) of configuration ``ci``."""
        from difftool.runtime.pipeline import SampleRequest

        card = self.pipeline.card
        palette = row_palette(cfg.palette, self.palettes)
        samples = np.empty((self.n, card.channels, card.image_size, card.image_size), dtype=np.float32)
        t0 = time.perf_counter()
        for b0 in range(0, self.n, self.batch_size):
            b1 = min(self.n, b0 + self.batch_size)
            request = SampleRequest(n=b1 - b0, context=None if self.contexts is None else self.contexts[b0:b1],
                                    sampler=cfg.sampler, steps=cfg.steps, eta=cfg.eta, guidance=cfg.guidance,
                                    variance=cfg.variance,
                                    seed=self.seeds[b0], seeds=self.seeds[b0:b1], palette=palette)
            callback = None if self.progress is None else self._on_step(ci, cfg, b0, b1)
            samples[b0:b1] = self.pipeline.sample(request, callback=callback) if callback else \
                self.pipeline.sample(request)
            self.done_cost += (b1 - b0) * self.cost[ci]
        seconds = time.perf_counter() - t0
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
        return finish(samples, palette, card.value_range), seconds  # (a no-op after a real Pipeline)

    def _on_step(self, ci: int, cfg: _Config, b0: int, b1: int) -> Callable[[Any], None]:
        label, base = _label(cfg.sampler, cfg.steps, cfg.guidance, cfg.eta, cfg.palette, cfg.variance), self.done_cost

        def on_step(step: Any) -> None:
            frac = (step.index + 1) / max(1, step.total)
            work = base + (b1 - b0) * self.cost[ci] * frac
            done = b0 + int((b1 - b0) * frac) if frac < 1 else b1
            self.progress(EvalProgress(ci, len(self.plan), label, done, self.n, min(1.0, work / self.total_cost)))

        return on_step


def _score_row(cfg: _Config, samples: np.ndarray, seconds: float, judge: Judge, classes: Classes,
               unavailable: dict[str, str], real: Any, real_mu: Any, real_sigma: Any) -> EvalRow:
    """Accuracy (overall and per class), FID, diversity and duplicates of one configuration's samples."""
    names, k, judge_index, labels, _, judged = classes
    probs, feats = judge.predict(samples)
    if "accuracy" in unavailable:
        acc, per = None, {name: None for name in names}
    else:
        scored = judged >= 0
        res = conditional_accuracy(probs[scored], judged[scored], judge.class_names)
        acc = res.overall
        per = {name: (res.per_class[judge.class_names[j]] if j >= 0 else None)
               for name, j in zip(names, judge_index, strict=True)}
    fid = dup = nearest = None
    if real_mu is not None:
        fid = frechet_distance_from_stats(*feature_stats(feats), real_mu, real_sigma)
        rms = nearest_train_rms(samples, real)
        dup, nearest = float((rms < DUPLICATE_RMS).mean()), float(np.median(rms))
    diversity = _diversity(samples, labels, list(range(k)))
    return EvalRow(cfg.sampler, cfg.steps, cfg.guidance, cfg.eta, len(labels), acc, per, fid, diversity, dup,
                   nearest, seconds, cfg.palette, variance=cfg.variance)


# -- rendering ---------------------------------------------------------------------------------------------
