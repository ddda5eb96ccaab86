"""Looking at a 2-D latent space: how far codes spread, and grids of points to decode."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def latent_report(z: np.ndarray) -> dict:
    """How widely codes spread: the radius (max |coordinate|) that holds 99% of them, the
    share inside |z| < 5, and each dimension's min, max and standard deviation."""
    z = np.asarray(z, dtype=np.float64)
    radius = np.abs(z).max(axis=1)
    return {"abs_z_p99": round(float(np.percentile(radius, 99)), 3),
            "share_abs_z_below_5": round(float(np.mean(radius < 5.0)), 4),
            "z_min": np.round(z.min(axis=0), 3).tolist(),
            "z_max": np.round(z.max(axis=0), 3).tolist(),
            "z_std": np.round(z.std(axis=0), 3).tolist()}


def _grid(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(n, n, 2) codes; row 0 holds the largest z[1] so the picture reads like a plot."""
    gx, gy = np.meshgrid(xs, ys[::-1])
    return np.stack([gx, gy], axis=-1).astype(np.float32)


def normal_grid(n: int = 15, low: float = 0.05, high: float = 0.95):
    """Codes at evenly spaced quantiles of N(0, 1) per axis (the grid mapped through the
    inverse normal CDF), so each cell covers the same prior probability. Returns the
    (n, n, 2) grid and its (left, right, bottom, top) extent."""
    values = norm.ppf(np.linspace(low, high, n))
    return _grid(values, values), (values[0], values[-1], values[0], values[-1])


def range_grid(z: np.ndarray, n: int = 15, percentiles=(1, 99)):
    """An evenly spaced grid over the 1st-99th percentile box of the codes `z`."""
    lo, hi = np.percentile(z, percentiles, axis=0)
    xs, ys = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    return _grid(xs, ys), (xs[0], xs[-1], ys[0], ys[-1])


def path_between(a, b, steps: int = 12) -> np.ndarray:
    """`steps` codes on the straight line from a to b (both ends included)."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1 - t) * np.asarray(a) + t * np.asarray(b)).astype(np.float32)


def traversal_codes(base, values) -> np.ndarray:
    """Latent traversals (Higgins et al. 2017, fig. 7): for each dimension j in turn, copies of
    `base` with z[j] set to each of `values`, all else fixed. Returns (d * len(values), d),
    one row of the picture per dimension."""
    base = np.asarray(base, dtype=np.float32)
    codes = np.repeat(base[None, None, :], len(base), axis=0).repeat(len(values), axis=1)
    for j in range(len(base)):
        codes[j, :, j] = values
    return codes.reshape(-1, len(base))
