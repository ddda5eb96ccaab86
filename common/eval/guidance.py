"""Scoring a class-conditional generator at several guidance scales, the same way everywhere.

Classifier-free guidance (Ho & Salimans 2022) trades variety for recognisability: the larger
w, the more the samples look like their class and the less they differ. The three guided
chapters (ch5_conditional_diffusion, ch5_latent_diffusion, ch3_vq_transformer) draw classes in
the training set's proportions at each w (`class_labels`: equal numbers on Fashion-MNIST; on
the emoji, People & Body is 60%, and FID compares against the data as it is, so equal numbers
would be scored as a shift of the mix), ask the judge for the conditional accuracy and FID, and
hold the chosen w to one bar per dataset.
"""

from __future__ import annotations

import numpy as np

from common.eval.classifier import describe_scores

# Conditional accuracy a guided generator must reach at its chosen w: the same bar for every
# guided chapter on the same data (datasets without one get no verdict).
GUIDED_BARS = {"mnist": 0.97, "fashion_mnist": 0.95}
KEPT = ("conditional_accuracy", "conditional_accuracy_ci95", "classifier_fid", "fid_ci95",
        "kid", "kid_ci95", "fid_samples")


def class_labels(data, total: int) -> np.ndarray:
    """`total` class labels in the training set's proportions (largest remainders, at least
    one of each class), sorted: the labels a conditional generator is scored on."""
    share = np.bincount(data.y_train, minlength=data.num_classes) / len(data.y_train)
    counts = np.maximum(1, np.floor(share * total).astype(int))
    for c in np.argsort(-(share * total - np.floor(share * total)))[:max(0, total - counts.sum())]:
        counts[c] += 1
    return np.repeat(np.arange(data.num_classes), counts)


def guidance_sweep(generate, judge, data, *, scales, chosen: float, per_class: int,
                   side_share: float = 1.0) -> dict[float, dict]:
    """{w: the judge's scores} for every w in `scales` and `chosen`. `generate(labels, w)`
    returns images for integer labels; `per_class` times the number of classes are drawn at
    the chosen w (in the training set's proportions, `class_labels`) and `side_share` as many
    at the others (a cheaper look at the trend)."""
    scores = {}
    for w in sorted({*scales, chosen}):
        count = per_class if w == chosen else max(1, round(per_class * side_share))
        labels = class_labels(data, count * data.num_classes)
        bar = GUIDED_BARS.get(data.name) if w == chosen else None
        scores[w] = judge.score_conditional(generate(labels, w), labels, data, bar)
        print(f"w = {w:g}: {describe_scores(scores[w])}")
    return scores


def by_guidance(scores: dict[float, dict]) -> dict[str, dict]:
    """The sweep as metrics.json keeps it: per w, the headline numbers with intervals."""
    return {f"{w:g}": {key: s[key] for key in KEPT if key in s} for w, s in scores.items()}
