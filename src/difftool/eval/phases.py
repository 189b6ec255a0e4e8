"""The phases of ``difftool eval`` that prepare its inputs: which classes to sample, and the real sprites'
FID statistics, real-vs-real floor and diversity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from difftool.errors import DifftoolError
from difftool.eval.judge import Judge
from difftool.eval.metrics import feature_stats, frechet_distance_from_stats, mean_pairwise_distance


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


Classes = tuple  # (names, k, judge_index, labels, contexts, judged)


def _class_plan(card: Any, judge: Judge, per_class: int, notes: list[str], unavailable: dict[str, str]) -> Classes:
    """The classes to sample, each one's index in the judge's classes (-1: unknown to the judge), the model
    class per row, the contexts and the judge label per row (-1 = not judged)."""
    if not card.conditional:
        labels = np.full(per_class * len(judge.class_names), -1, dtype=np.int64)
        unavailable["accuracy"] = "the model is unconditional: there is no requested class to check"
        return (), 0, np.zeros(0, dtype=np.int64), labels, None, labels
    names = tuple(card.class_names) if card.class_names else ()
    if not names and card.num_classes == len(judge.class_names):
        names = judge.class_names
        notes.append("the model's classes are unnamed; assumed to be the judge's classes in order")
    if not names:
        names = tuple(str(i) for i in range(card.num_classes))
    k = card.num_classes
    judge_index = np.array([judge.class_names.index(n) if n in judge.class_names else -1 for n in names])
    labels = np.repeat(np.arange(k, dtype=np.int64), per_class)  # model class per row
    unknown = [n for n, j in zip(names, judge_index, strict=True) if j < 0]
    if unknown and len(unknown) == k:
        unavailable["accuracy"] = (f"the model's classes ({', '.join(names)}) are not the judge's "
                                   f"({', '.join(judge.class_names)})")
    elif unknown:
        notes.append(f"classes the judge does not know are not scored for accuracy: {', '.join(unknown)}")
    return names, k, judge_index, labels, np.eye(k, dtype=np.float32)[labels], judge_index[labels]


def _real_stats(judge: Judge, real_images: Any, real_labels: Any, data: Any, judge_index: np.ndarray,
                per_class: int, n: int, seed: int, notes: list[str], unavailable: dict[str, str]):
    """Real sprites: FID statistics (class-balanced over the sampled classes), the real-vs-real floor, real
    diversity. Returns (real, real_info, mu, sigma, fid_floor, diversity_real); Nones when unavailable."""
    real, real_lab, real_info, reason = _real_set(real_images, real_labels, data)
    if real is None:
        unavailable["fid"] = unavailable["duplicate_rate"] = f"no real sprites: {reason}"
        return None, None, None, None, None, None
    if real.shape[1:] != (judge.channels, judge.image_size, judge.image_size):
        unavailable["fid"] = unavailable["duplicate_rate"] = f"real images have shape {real.shape[1:]}"
        return None, None, None, None, None, None
    _, real_feats = judge.predict(real)
    rng = np.random.default_rng(seed)
    sampled = [int(j) for j in judge_index if j >= 0]
    real_names = (real_info or {}).get("class_names")
    if real_lab is not None and real_names is not None and list(real_names) != list(judge.class_names):
        remap = np.array([judge.class_names.index(c) if c in judge.class_names else -1 for c in real_names] + [-1])
        real_lab = remap[real_lab]
    have = [c for c in sampled if real_lab is not None and (real_lab == c).sum() >= 2]
    if have:  # weight the real tiles so every sampled class has the same total weight
        counts = np.bincount(real_lab[real_lab >= 0], minlength=len(judge.class_names)).astype(np.float64)
        mask = np.isin(real_lab, have)
        weights = np.where(mask, 1.0 / np.maximum(counts[np.clip(real_lab, 0, None)], 1.0), 0.0)
        real_mu, real_sigma = feature_stats(real_feats[mask], weights[mask])
        floor_idx = np.concatenate([rng.choice(np.flatnonzero(real_lab == c), per_class,
                                               replace=(real_lab == c).sum() < per_class) for c in have])
        diversity_real = _diversity(real[floor_idx], real_lab[floor_idx], have)
    else:
        if sampled:
            notes.append("real sprites have no labels for the sampled classes: FID uses unweighted statistics")
        real_mu, real_sigma = feature_stats(real_feats)
        floor_idx = rng.choice(len(real), n, replace=len(real) < n)
        diversity_real = mean_pairwise_distance(real[floor_idx])
    fid_floor = frechet_distance_from_stats(*feature_stats(real_feats[floor_idx]), real_mu, real_sigma)
    return real, real_info, real_mu, real_sigma, fid_floor, diversity_real


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
