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
* **duplicates**: share of samples within a per-pixel RMS of 0.05 of a real tile or its mirror image.

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
from difftool.eval.judge import Judge
from difftool.eval.metrics import (
    DUPLICATE_RMS,
    conditional_accuracy,
    feature_stats,
    frechet_distance_from_stats,
    mean_pairwise_distance,
    nearest_train_rms,
)
from difftool.runtime.samplers import get_sampler

# "default": the model's recommended setting (ModelCard.recommended: its card's ``sampling``, else DDIM-25,
# eta 0, guidance 2), so the first row is what `difftool generate` / the TUI / the demo produce.
D = "default"
_DEFAULT_ROWS: tuple[dict[str, Any], ...] = (
    {"sampler": "ddim", "steps": 25, "guidance": D, "eta": D},  # the default sampling settings
    {"sampler": "ddim", "steps": 25, "guidance": D, "eta": 0.0},  # deterministic DDIM
    {"sampler": "ddim", "steps": 25, "guidance": 1.0, "eta": D},
    {"sampler": "ddim", "steps": 25, "guidance": 2.0, "eta": D},
)


def _registry_rows(quick: bool = False) -> tuple[dict[str, Any], ...]:
    """Every registered sampler at its ``eval_steps`` (quick: the largest only, DDIM skipped), then the
    all-timestep samplers (DDPM) with ``steps: None``."""
    from difftool.runtime.samplers import SAMPLERS

    rows: list[dict[str, Any]] = []
    for spec in SAMPLERS.values():
        if spec.all_steps or (quick and spec.name == _DEFAULT_ROWS[0]["sampler"]):
            continue
        eta = D if "eta" in spec.option_names() else 0.0
        for steps in (spec.eval_steps[-1:] if quick else spec.eval_steps):
            if {"sampler": spec.name, "steps": steps, "guidance": D, "eta": eta} not in _DEFAULT_ROWS:
                rows.append({"sampler": spec.name, "steps": steps, "guidance": D, "eta": eta})
    if not quick:
        rows += [{"sampler": spec.name, "steps": None, "guidance": D, "eta": 0.0}  # None: every timestep
                 for spec in SAMPLERS.values() if spec.all_steps]
    return tuple(rows)


DEFAULT_CONFIGS: tuple[dict[str, Any], ...] = _DEFAULT_ROWS + _registry_rows()
QUICK_CONFIGS: tuple[dict[str, Any], ...] = (_DEFAULT_ROWS[0], _DEFAULT_ROWS[2], *_registry_rows(quick=True))
DEFAULT_PER_CLASS = 64
QUICK_PER_CLASS = 16


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

    @property
    def label(self) -> str:
        return _label(self.sampler, self.steps, self.guidance, self.eta)


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


def _label(sampler: str, steps: int, guidance: float, eta: float) -> str:
    text = f"{sampler} {steps} steps, guidance {guidance:g}"
    return text + (f", eta {eta:g}" if eta else "")


@dataclass(frozen=True)
class _Config:
    sampler: str
    steps: int
    guidance: float
    eta: float


def _configs(configs: Sequence[Mapping[str, Any]] | None, card: Any) -> list[_Config]:
    from difftool.runtime.samplers import canonical_name

    out = []
    for raw in DEFAULT_CONFIGS if configs is None else configs:
        unknown = set(raw) - {"sampler", "steps", "guidance", "eta"}
        if unknown:
            raise DifftoolError(
                f"unknown eval setting(s) {sorted(unknown)}; use sampler, steps, guidance, eta"
            )
        raw = {k: (card.recommended(k) if v == D else v) for k, v in raw.items()}
        sampler = canonical_name(str(raw.get("sampler", "ddim")))
        steps = raw.get("steps")
        if steps in (None, "full", "all"):
            steps = int(card.schedule.num_timesteps)
        try:
            steps, guidance, eta = (
                int(steps),
                float(raw.get("guidance", 1.0)),
                float(raw.get("eta", 0.0) or 0.0),
            )
        except (TypeError, ValueError):
            raise DifftoolError(
                f"bad eval setting {dict(raw)}: steps, guidance and eta must be numbers"
            ) from None
        if steps < 1:
            raise DifftoolError(f"eval steps must be at least 1, got {steps}")
        if not card.conditional:
            guidance = 1.0
        out.append(_Config(sampler, steps, guidance, eta))
    if not out:
        raise DifftoolError("no eval configurations given")
    return out


def _real_set(real_images: Any, real_labels: Any, data: Sequence[str | Path] | None):
    """(images, labels or None, info dict, reason) for the real sprites; images None with a reason if absent."""
    if real_images is None:
        from difftool.eval.data import load_sprite_tiles

        try:
            tiles = load_sprite_tiles(data)
        except DifftoolError as exc:
            return None, None, None, str(exc)
        info = {
            "name": tiles.name,
            "n": len(tiles),
            "credit": tiles.credit,
            "license": tiles.license,
            "class_counts": tiles.class_counts(),
        }
        return tiles.images, tiles.labels, {**info, "class_names": list(tiles.class_names)}, ""
    images = getattr(real_images, "images", real_images)
    labels = getattr(real_images, "labels", None) if real_labels is None else real_labels
    names = getattr(real_images, "class_names", None)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) < 2:
        return None, None, None, f"real images must be (N, C, H, W) with N >= 2, got {images.shape}"
    info = {
        "name": str(getattr(real_images, "name", "real images")),
        "n": len(images),
        "credit": str(getattr(real_images, "credit", "")),
        "license": str(getattr(real_images, "license", "")),
    }
    if names is not None:
        info["class_names"] = list(names)
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    return images, labels, info, ""


def _diversity(images: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> float:
    """Mean over classes of the within-class mean pairwise distance (all images if no classes)."""
    values = [mean_pairwise_distance(images[labels == c]) for c in classes if (labels == c).sum() >= 2]
    if not classes:
        return mean_pairwise_distance(images)
    return float(np.mean(values)) if values else float("nan")


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
    * ``configs``: dicts with ``sampler``, ``steps`` (None = every timestep), ``guidance``, ``eta``;
      default :data:`DEFAULT_CONFIGS` (:data:`QUICK_CONFIGS` with ``per_class=QUICK_PER_CLASS`` for a
      quick look).
    * ``per_class``: samples per class (an unconditional model gets ``per_class * 5`` samples).
    * ``seed``: row i of every configuration uses seed ``seed + i``.
    * ``progress``: called with an :class:`EvalProgress` after every sampler step; raising
      :class:`~difftool.errors.Cancelled` from it stops the evaluation.
    """
    from difftool.runtime.pipeline import SampleRequest

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

    # classes to sample, and each one's index in the judge's classes (-1: the judge does not know it)
    if card.conditional:
        names = tuple(card.class_names) if card.class_names else ()
        if not names and card.num_classes == len(judge.class_names):
            names = judge.class_names
            notes.append("the model's classes are unnamed; assumed to be the judge's classes in order")
        if not names:
            names = tuple(str(i) for i in range(card.num_classes))
        k = card.num_classes
        judge_index = np.array([judge.class_names.index(n) if n in judge.class_names else -1 for n in names])
        labels = np.repeat(np.arange(k, dtype=np.int64), per_class)  # model class per row
        contexts = np.eye(k, dtype=np.float32)[labels]
        judged = judge_index[labels]  # (N,) judge label per row, -1 = not judged
        unknown = [n for n, j in zip(names, judge_index, strict=True) if j < 0]
        if unknown and len(unknown) == k:
            unavailable["accuracy"] = (
                f"the model's classes ({', '.join(names)}) are not the judge's "
                f"({', '.join(judge.class_names)})"
            )
        elif unknown:
            notes.append(f"classes the judge does not know are not scored for accuracy: {', '.join(unknown)}")
    else:
        names = ()
        k = 0
        judge_index = np.zeros(0, dtype=np.int64)
        labels = np.full(per_class * len(judge.class_names), -1, dtype=np.int64)
        contexts = None
        judged = labels
        unavailable["accuracy"] = "the model is unconditional: there is no requested class to check"
    n = len(labels)

    # real sprites: FID statistics (class-balanced over the sampled classes), floor, diversity, duplicates
    real, real_lab, real_info, reason = _real_set(real_images, real_labels, data)
    real_mu = real_sigma = None
    fid_floor = diversity_real = None
    if real is None:
        unavailable["fid"] = unavailable["duplicate_rate"] = f"no real sprites: {reason}"
    elif real.shape[1:] != (judge.channels, judge.image_size, judge.image_size):
        unavailable["fid"] = unavailable["duplicate_rate"] = f"real images have shape {real.shape[1:]}"
        real = None
    if real is not None:
        _, real_feats = judge.predict(real)
        rng = np.random.default_rng(seed)
        sampled = [int(j) for j in judge_index if j >= 0]
        real_names = (real_info or {}).get("class_names")
        if real_lab is not None and real_names is not None and list(real_names) != list(judge.class_names):
            remap = np.array(
                [judge.class_names.index(c) if c in judge.class_names else -1 for c in real_names] + [-1]
            )
            real_lab = remap[real_lab]
        have = [c for c in sampled if real_lab is not None and (real_lab == c).sum() >= 2]
        if have:  # weight the real tiles so every sampled class has the same total weight
            counts = np.bincount(real_lab[real_lab >= 0], minlength=len(judge.class_names)).astype(np.float64)
            mask = np.isin(real_lab, have)
            weights = np.where(mask, 1.0 / np.maximum(counts[np.clip(real_lab, 0, None)], 1.0), 0.0)
            real_mu, real_sigma = feature_stats(real_feats[mask], weights[mask])
            floor_idx = np.concatenate(
                [
                    rng.choice(
                        np.flatnonzero(real_lab == c), per_class, replace=(real_lab == c).sum() < per_class
                    )
                    for c in have
                ]
            )
            floor_lab = real_lab[floor_idx]
            diversity_real = _diversity(real[floor_idx], floor_lab, have)
        else:
            if sampled:
                notes.append(
                    "real sprites have no labels for the sampled classes: FID uses unweighted statistics"
                )
            real_mu, real_sigma = feature_stats(real_feats)
            floor_idx = rng.choice(len(real), n, replace=len(real) < n)
            diversity_real = mean_pairwise_distance(real[floor_idx])
        fid_floor = frechet_distance_from_stats(*feature_stats(real_feats[floor_idx]), real_mu, real_sigma)

    # work units for progress: network evaluations per configuration
    cost = [c.steps * (2 if (card.conditional and c.guidance not in (0.0, 1.0)) else 1) for c in plan]
    total_cost = float(sum(cost)) * n
    done_cost = 0.0
    seeds = [seed + i for i in range(n)]
    rows: list[EvalRow] = []
    for ci, cfg in enumerate(plan):
        label = _label(cfg.sampler, cfg.steps, cfg.guidance, cfg.eta)
        samples = np.empty((n, card.channels, card.image_size, card.image_size), dtype=np.float32)
        t0 = time.perf_counter()
        for b0 in range(0, n, batch_size):
            b1 = min(n, b0 + batch_size)
            request = SampleRequest(
                n=b1 - b0,
                context=None if contexts is None else contexts[b0:b1],
                sampler=cfg.sampler,
                steps=cfg.steps,
                eta=cfg.eta,
                guidance=cfg.guidance,
                seed=seeds[b0],
                seeds=seeds[b0:b1],
            )
            if progress is None:
                out = pipeline.sample(request)
            else:
                base = done_cost

                def on_step(step: Any, _ci=ci, _label=label, _b0=b0, _b1=b1, _base=base) -> None:
                    frac = (step.index + 1) / max(1, step.total)
                    work = _base + (_b1 - _b0) * cost[_ci] * frac
                    progress(
                        EvalProgress(
                            _ci,
                            len(plan),
                            _label,
                            _b0 + int((_b1 - _b0) * frac) if frac < 1 else _b1,
                            n,
                            min(1.0, work / total_cost),
                        )
                    )

                out = pipeline.sample(request, callback=on_step)
            samples[b0:b1] = out
            done_cost += (b1 - b0) * cost[ci]
        seconds = time.perf_counter() - t0
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
        probs, feats = judge.predict(samples)

        if "accuracy" in unavailable:
            acc, per = None, {name: None for name in names}
        else:
            scored = judged >= 0
            res = conditional_accuracy(probs[scored], judged[scored], judge.class_names)
            acc = res.overall
            per = {
                name: (res.per_class[judge.class_names[j]] if j >= 0 else None)
                for name, j in zip(names, judge_index, strict=True)
            }
        fid = dup = nearest = None
        if real_mu is not None:
            fid = frechet_distance_from_stats(*feature_stats(feats), real_mu, real_sigma)
            rms = nearest_train_rms(samples, real)
            dup, nearest = float((rms < DUPLICATE_RMS).mean()), float(np.median(rms))
        diversity = _diversity(samples, labels, list(range(k)))
        rows.append(
            EvalRow(
                cfg.sampler,
                cfg.steps,
                cfg.guidance,
                cfg.eta,
                n,
                acc,
                per,
                fid,
                diversity,
                dup,
                nearest,
                seconds,
            )
        )

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
        fid_floor=fid_floor,
        diversity_real=diversity_real,
        unavailable=unavailable,
        notes=notes,
        seconds=time.perf_counter() - start_all,
    )


def _model_info(pipeline: Any) -> dict[str, Any]:
    card = pipeline.card
    info: dict[str, Any] = {
        "arch": getattr(card.model, "arch", ""),
        "image_size": card.image_size,
        "channels": card.channels,
        "num_classes": card.num_classes,
        "class_names": list(card.class_names),
        "schedule": {"kind": card.schedule.kind, "num_timesteps": card.schedule.num_timesteps},
        "source": getattr(card, "source", ""),
    }
    backend = getattr(getattr(pipeline, "denoiser", None), "name", None)
    if backend:
        info["backend"] = backend
    return info


# -- rendering ---------------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def _pct(value: float | None, digits: int) -> str:
    """A fraction as a percentage number without the sign (the column header carries it)."""
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def render_table(report: EvalReport):
    """A rich Table: one row per configuration, best FID / accuracy in bold, references in the caption."""
    from rich import box
    from rich.table import Table

    heldout = report.judge.get("heldout_accuracy", {})
    judge_acc, judge_bal = heldout.get("overall"), heldout.get("balanced")
    title = f"Sample quality ({report.per_class} per class, seed {report.seed})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAVY, pad_edge=False, collapse_padding=True)
    table.add_column("sampler", no_wrap=True)
    table.add_column("steps", justify="right")
    table.add_column("cfg", justify="right")
    table.add_column("acc", justify="right")
    for name in report.class_names:
        table.add_column(name, justify="right", style="dim")
    table.add_column("FID↓", justify="right")
    table.add_column("div", justify="right")
    table.add_column("dup", justify="right")
    table.add_column("s", justify="right")
    best_fid, best_acc = report.best("fid"), report.best("accuracy")
    for row in report.rows:
        acc = _pct(row.accuracy, 1)
        fid = _fmt(row.fid, ".2f")
        if row is best_acc and len(report.rows) > 1:
            acc = f"[bold]{acc}[/]"
        if row is best_fid and len(report.rows) > 1:
            fid = f"[bold]{fid}[/]"
        sampler = get_sampler(row.sampler).short.lower() + (f" η{row.eta:g}" if row.eta else "")
        table.add_row(
            sampler,
            str(row.steps),
            f"{row.guidance:g}",
            acc,
            *[_pct(row.per_class_accuracy.get(name), 0) for name in report.class_names],
            fid,
            _fmt(row.diversity, ".1f"),
            _pct(row.duplicate_rate, 1),
            f"{row.seconds:.0f}",
        )
    caption = []
    if judge_bal is not None:
        caption.append(f"acc, per-class and dup in %; acc is class-balanced; the judge scores {judge_bal:.1%} class-balanced "
                       f"({judge_acc:.1%} overall) on held-out real sprites: about what a perfect model gets")
    elif judge_acc is not None:
        caption.append(f"judge held-out accuracy {judge_acc:.1%} (a perfect model scores about this)")
    if report.fid_floor is not None:
        caption.append(f"FID floor (real vs real, same sample size) {report.fid_floor:.2f}")
    if report.diversity_real is not None:
        caption.append(f"div = mean pairwise RMS x 100 (real sprites {report.diversity_real:.2f})")
    caption.append(f"dup = share within RMS {DUPLICATE_RMS:g} of a real tile or its mirror")
    for metric, why in report.unavailable.items():
        caption.append(f"{metric} unavailable: {why}")
    caption.extend(report.notes)
    table.caption = "; ".join(caption)
    table.caption_justify = "left"
    return table
