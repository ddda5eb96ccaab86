"""Pixel ranges. Datasets load as [0, 1]; GANs and diffusion models work in [-1, 1], where a
tanh output lands and where pure Gaussian noise is centred."""

from __future__ import annotations

import numpy as np


def to_tanh_range(x: np.ndarray) -> np.ndarray:
    """[0, 1] pixels -> [-1, 1]."""
    return (np.asarray(x, np.float32) * 2.0 - 1.0).astype(np.float32)


def to_unit_range(x) -> np.ndarray:
    """[-1, 1] -> [0, 1] (clipped) for figures and the feature classifier."""
    return np.clip((np.asarray(x) + 1.0) / 2.0, 0.0, 1.0)
