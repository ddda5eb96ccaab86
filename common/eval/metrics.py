"""Distances between sets of images, measured on a classifier's features.

Frechet distance between two Gaussians (Dowson & Landau 1982; used as FID by Heusel et al.
2017, "GANs trained by a two time-scale update rule ..."):

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

FID proper uses Inception-v3 features; offline we have no Inception weights, so the chapters
use the penultimate layer of a small CNN trained on the same dataset ("classifier FID",
common.eval.classifier). Numbers are comparable between our chapters, not with published FIDs.

FID is biased upward on small sets (the covariance of n samples is noisy), so it is compared
only at equal sample counts, beside its floor (real images scored the same way). Its spread
is estimated by the delete-a-group jackknife (Efron & Stein 1981): leave each of G groups of
the generated samples out in turn, and the spread of those G FIDs, scaled by (G - 1) / G,
estimates the variance of the FID over fresh draws of as many samples. The interval is the
estimate +- 1.96 standard errors, so it always contains the estimate and means: "another
draw of this many samples from the same model lands in here, 95 times in 100".

KID (Binkowski et al. 2018, "Demystifying MMD GANs") is the squared maximum mean discrepancy
with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 on the same features, estimated
without bias (its expectation does not depend on the sample count), so 0 means "as close as
the test set is to itself". Its interval is also a jackknife one; an interval that holds 0
says the samples cannot be told from real images at this count.
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


JACKKNIFE_GROUPS = 20
Z95 = 1.959964  # the normal distribution's 97.5% quantile


def jackknife(statistic, samples: np.ndarray, groups: int = JACKKNIFE_GROUPS
              ) -> tuple[float, float]:
    """(statistic(samples), its standard error by the delete-a-group jackknife). The groups
    interleave the rows (row i in group i % G), so a class-ordered sample set gives every
    group the same mix of classes, as the sampling design does."""
    samples = np.asarray(samples)
    groups = max(2, min(groups, len(samples) // 2))
    member = np.arange(len(samples)) % groups
    estimate = float(statistic(samples))
    left_out = np.array([statistic(samples[member != g]) for g in range(groups)])
    spread = (groups - 1) / groups * np.sum((left_out - left_out.mean()) ** 2)
    return estimate, float(np.sqrt(spread))


class FidReference:
    """The real set's Gaussian, fitted once: FIDs against it then cost one symmetric
    eigen-decomposition each, Tr((S_r S_g)^(1/2)) = sum of sqrt(eig(S_r^(1/2) S_g S_r^(1/2)))."""

    def __init__(self, real_features: np.ndarray):
        self.mean, cov = gaussian_stats(real_features)
        values, vectors = np.linalg.eigh(cov)
        self.root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
        self.trace = float(np.trace(cov))

    def fid(self, features: np.ndarray) -> float:
        mean, cov = gaussian_stats(features)
        inner = np.linalg.eigvalsh(self.root @ cov @ self.root)
        diff = mean - self.mean
        return float(diff @ diff + self.trace + np.trace(cov)
                     - 2.0 * np.sqrt(np.clip(inner, 0.0, None)).sum())

    def fid_with_interval(self, fake: np.ndarray, groups: int = JACKKNIFE_GROUPS) -> dict:
        """FID of `fake` with its jackknife standard error and 95% interval."""
        estimate, se = jackknife(self.fid, np.asarray(fake, np.float64), groups)
        return {"fid": estimate, "se": se, "ci95": interval(estimate, se, floor=0.0)}


def interval(estimate: float, se: float, floor: float | None = None) -> tuple[float, float]:
    """estimate +- 1.96 se (cut at `floor` below, for a quantity that cannot be smaller)."""
    low = estimate - Z95 * se
    return (low if floor is None else max(floor, low)), estimate + Z95 * se


def fid_interval(real: np.ndarray, fake: np.ndarray, groups: int = JACKKNIFE_GROUPS) -> dict:
    """FID of `fake` against `real` with its jackknife standard error and 95% interval."""
    return FidReference(real).fid_with_interval(fake, groups)


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


class KidReference:
    """The real set's part of the unbiased MMD^2, computed once (in blocks: 10,000 real
    images make a 10,000 x 10,000 kernel)."""

    def __init__(self, real_features: np.ndarray, block: int = 2000):
        real = np.asarray(real_features, np.float64)
        n = len(real)
        if n < 2:
            raise ValueError("KID needs at least two real feature rows")
        total = sum(polynomial_kernel(real[i:i + block], real).sum()
                    for i in range(0, n, block))
        diagonal = ((real * real).sum(axis=1) / real.shape[1] + 1.0) ** 3
        self.real = real
        self.real_term = (total - diagonal.sum()) / (n * (n - 1))

    def kid_with_interval(self, fake: np.ndarray, groups: int = JACKKNIFE_GROUPS) -> dict:
        """Unbiased KID of `fake` with its jackknife standard error and 95% interval."""
        fake = np.asarray(fake, np.float64)
        within = polynomial_kernel(fake, fake)
        np.fill_diagonal(within, 0.0)
        across = polynomial_kernel(fake, self.real).mean(axis=1)  # per fake row

        def unbiased(rows: np.ndarray) -> float:
            m = len(rows)
            return (within[np.ix_(rows, rows)].sum() / (m * (m - 1)) + self.real_term
                    - 2.0 * across[rows].mean())

        estimate, se = jackknife(unbiased, np.arange(len(fake)), groups)
        return {"kid": estimate, "se": se, "ci95": interval(estimate, se)}


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIE L*a*b* (D65 white), where a distance of about 2.3 is the
    smallest colour difference people notice."""
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192],
                             [0.1805, 0.0722, 0.9505]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_error(outputs: np.ndarray, targets: np.ndarray) -> dict:
    """The mean CIE76 colour difference (Delta E: the distance in Lab) between two sets of
    RGB images in [0, 1], per pixel then per image, with a 95% normal interval over images."""
    delta = np.linalg.norm(srgb_to_lab(np.clip(outputs, 0, 1)) - srgb_to_lab(targets), axis=-1)
    per_image = delta.reshape(len(delta), -1).mean(axis=1)
    half = 1.96 * per_image.std(ddof=1) / np.sqrt(len(per_image))
    mean = float(per_image.mean())
    return {"colour_error_delta_e": round(mean, 3),
            "colour_error_ci95": [round(mean - half, 3), round(mean + half, 3)]}
