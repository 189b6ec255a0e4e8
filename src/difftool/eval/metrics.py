"""Sample-quality metrics (numpy only; scipy used for the matrix square root when installed).

* :func:`frechet_distance`: the FID formula on any feature vectors (here the judge's 128-d features):
  ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.
* :func:`mean_pairwise_distance`: mean L2 distance between distinct images (pixel space).
* :func:`nearest_train_rms` / :func:`duplicate_rate`: per-pixel RMS distance from each sample to its nearest
  training tile (the tile or its mirror image) and the share of near-copies: a memorisation check.
* :func:`conditional_accuracy`: how often the judge's argmax equals the class that was asked for.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DUPLICATE_RMS = 0.05  # per-pixel RMS in [-1, 1] units (~6/255): a near-exact copy of a training tile


# -- Fréchet distance --------------------------------------------------------------------------------------
def feature_stats(features: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features, optionally with per-row weights (float64).

    Unweighted covariance uses the unbiased N - 1 normalisation (as ``np.cov``); weighted covariance uses
    the reliability-weights analogue, so equal weights give the same result.
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {feats.shape}")
    if weights is None:
        return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu = w @ feats
    centred = feats - mu
    cov = (centred * w[:, None]).T @ centred / (1.0 - float(np.sum(w * w)))
    return mu, cov


def _trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """tr((S_a S_b)^(1/2)) for symmetric PSD S_a, S_b."""
    try:
        from scipy import linalg
    except ImportError:  # eigh fallback: (S_a S_b)^(1/2) has the eigenvalues of (A^1/2 S_b A^1/2)^(1/2)
        return _trace_sqrt_product_eigh(sigma_a, sigma_b)
    with warnings.catch_warnings():  # few samples -> singular covariances: sqrtm warns, the trace is fine
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(covmean).all():  # offset the diagonals (as pytorch-fid does)
            offset = np.eye(len(sigma_a)) * 1e-6
            covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # numerical noise only: the true eigenvalues are real and >= 0
    return float(np.trace(covmean))


def _trace_sqrt_product_eigh(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """tr((S_a S_b)^(1/2)) = sum sqrt(eig(A^1/2 S_b A^1/2)), A^1/2 from a symmetric eigendecomposition."""
    vals, vecs = np.linalg.eigh((sigma_a + sigma_a.T) / 2)
    root_a = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    inner = root_a @ sigma_b @ root_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))


def frechet_distance_from_stats(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
) -> float:
    """Fréchet distance between the Gaussians N(mu_a, sigma_a) and N(mu_b, sigma_b)."""
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = (
        np.atleast_2d(np.asarray(sigma_a, np.float64)),
        np.atleast_2d(np.asarray(sigma_b, np.float64)),
    )
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != (len(mu_a), len(mu_a)):
        raise ValueError(
            f"mismatched statistics: {mu_a.shape} {sigma_a.shape} vs {mu_b.shape} {sigma_b.shape}"
        )
    diff = mu_a - mu_b
    value = (
        float(diff @ diff)
        + float(np.trace(sigma_a) + np.trace(sigma_b))
        - 2.0 * _trace_sqrt_product(sigma_a, sigma_b)
    )
    return max(value, 0.0)


def frechet_distance(
    feat_a: np.ndarray,
    feat_b: np.ndarray,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> float:
    """FID formula on (N, D) and (M, D) feature arrays (each fitted with a Gaussian; optional row weights)."""
    return frechet_distance_from_stats(*feature_stats(feat_a, weights_a), *feature_stats(feat_b, weights_b))


# -- diversity and memorisation ----------------------------------------------------------------------------
def _flat(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images, dtype=np.float32)
    return arr.reshape(len(arr), -1)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) squared L2 distances between rows of a (N, D) and b (M, D), float64, clipped at 0."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    return np.clip(d, 0.0, None)


def mean_pairwise_distance(images: np.ndarray) -> float:
    """Mean L2 distance (pixel space, flattened) over all pairs of distinct samples; NaN with < 2 images."""
    x = _flat(images)
    n = len(x)
    if n < 2:
        return float("nan")
    d = np.sqrt(_sq_dists(x, x))
    return float(d[np.triu_indices(n, k=1)].mean())


def nearest_train_rms(
    samples: np.ndarray, train_images: np.ndarray, *, flips: bool = True, chunk: int = 256
) -> np.ndarray:
    """(N,) per-pixel RMS distance from each sample to its nearest training image (or its h-flip)."""
    s = _flat(samples)
    train = np.asarray(train_images, dtype=np.float32)
    if s.shape[1] != int(np.prod(train.shape[1:])):
        raise ValueError(
            f"sample shape {np.shape(samples)[1:]} does not match training shape {train.shape[1:]}"
        )
    refs = [train.reshape(len(train), -1)]
    if flips:
        refs.append(np.ascontiguousarray(train[..., ::-1]).reshape(len(train), -1))
    ref = np.concatenate(refs)
    best = np.empty(len(s), dtype=np.float64)
    for i in range(0, len(s), chunk):
        best[i : i + chunk] = _sq_dists(s[i : i + chunk], ref).min(axis=1)
    return np.sqrt(best / s.shape[1])


def duplicate_rate(samples: np.ndarray, train_images: np.ndarray, threshold: float = DUPLICATE_RMS) -> float:
    """Share of samples within ``threshold`` per-pixel RMS of a training tile or its mirror image."""
    if len(samples) == 0:
        return float("nan")
    return float((nearest_train_rms(samples, train_images) < threshold).mean())


# -- conditional accuracy ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Accuracy:
    overall: float
    per_class: dict[str, float | None]  # None: no sample of that class
    counts: dict[str, int]


def conditional_accuracy(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None
) -> Accuracy:
    """Share of rows whose argmax equals ``labels``, overall and per class (rows with label < 0 skipped)."""
    probs = np.asarray(probs)
    labels = np.asarray(labels, dtype=np.int64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(probs.shape[1])]
    valid = labels >= 0
    hit = probs.argmax(axis=1) == labels
    overall = float(hit[valid].mean()) if valid.any() else float("nan")
    per_class: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for i, name in enumerate(names):
        rows = labels == i
        counts[name] = int(rows.sum())
        per_class[name] = float(hit[rows].mean()) if rows.any() else None
    return Accuracy(overall=overall, per_class=per_class, counts=counts)
