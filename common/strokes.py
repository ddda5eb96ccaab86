"""A small procedurally generated image set: vertical strokes, horizontal strokes, crosses.

Clearly synthetic (never passed off as a real dataset): it exists to show what fixed edge
filters extract (chapter 1) and how a model reacts to inputs unlike its training data
(chapter 2). Each 28x28 image holds 1-3 bars of random position, length (10-22 px), width
(1-3 px) and brightness (0.6-1.0) plus faint Gaussian noise (sd 0.03), clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("vertical", "horizontal", "cross")
DESCRIPTION = ("synthetic strokes: 28x28, classes vertical / horizontal / cross, 1-3 bars of "
               "length 10-22 px, width 1-3 px, brightness 0.6-1.0, noise sd 0.03")


def make_strokes(n: int, *, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (n, size, size, 1) float32 in [0, 1] and labels 0/1/2 (balanced)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASS_NAMES)
    rng.shuffle(labels)
    images = np.zeros((n, size, size), dtype=np.float32)
    for img, label in zip(images, labels):
        bars = rng.integers(1, 4)
        directions = {0: ["v"] * bars, 1: ["h"] * bars,
                      2: ["v", "h"] + [rng.choice(["v", "h"]) for _ in range(bars - 2)]}[label]
        for direction in directions:
            _draw_bar(img, direction, rng)
    images += rng.normal(0.0, 0.03, images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0)[..., None], labels.astype(np.int64)


def _draw_bar(img: np.ndarray, direction: str, rng) -> None:
    size = img.shape[0]
    length, width = rng.integers(10, 23), rng.integers(1, 4)
    start = rng.integers(2, size - length - 1)
    offset = rng.integers(3, size - width - 3)
    value = rng.uniform(0.6, 1.0)
    if direction == "v":
        img[start:start + length, offset:offset + width] = value
    else:
        img[offset:offset + width, start:start + length] = value
