"""Distances between sets of images, measured on a classifier's features.

Frechet distance between two Gaussians (Dowson & Landau 1982; used as FID by Heusel et al.
2017, "GANs trained by a two time-scale update rule ..."):

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

FID proper uses Inception-v3 features; offline we have no Inception weights, so the chapters
use the penultimate layer of a small CNN trained on the same dataset ("classifier FID",
common.eval.classifier). Numbers are comparable between our chapters, not with published FIDs.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and covariance matrix (rows are samples)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError("need a 2-D array with at least two rows of features")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2, eps: float = 1e-6) -> float:
    """Squared Frechet distance between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    cov1, cov2 = np.atleast_2d(cov1), np.atleast_2d(cov2)
    with warnings.catch_warnings():
        # Dead (always zero) features make covariances singular; handled just below.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(covmean).all():
            # Nearly singular product: nudge both covariances towards the identity.
            offset = eps * np.eye(len(cov1))
            covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)  # discard tiny imaginary parts from round-off
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def bootstrap_fid(real: np.ndarray, fake: np.ndarray, *, rounds: int = 50, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """A 95% bootstrap interval of the FID over the generated samples: `rounds` FIDs, each
    against a resample (with replacement) of `fake`, the real set's statistics fixed. It is
    the basic (reverse percentile) interval, 2 F - q_high .. 2 F - q_low: resampling repeats
    images, which pushes every resampled FID up, and reflecting the quantiles about the
    estimate F takes that bias back out instead of doubling it."""
    rng = np.random.default_rng(seed)
    mu_real, cov_real = gaussian_stats(real)
    fake = np.asarray(fake, np.float64)
    estimate = frechet_distance(mu_real, cov_real, *gaussian_stats(fake))
    values = [frechet_distance(mu_real, cov_real,
                               *gaussian_stats(fake[rng.integers(0, len(fake), len(fake))]))
              for _ in range(rounds)]
    tail = (1.0 - level) / 2 * 100
    q_low, q_high = np.percentile(values, [tail, 100 - tail])
    return max(0.0, 2 * estimate - q_high), 2 * estimate - q_low
