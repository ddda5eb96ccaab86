"""An exponential moving average (EMA) of a network's weights, the copy diffusion models
sample with (Ho et al. 2020, appendix B: decay 0.9999; shorter CPU runs use 0.999).

The average smooths out the noise that the last optimizer steps leave in the weights. With a
fixed decay the random initial weights would still weigh decay^n after n steps (0.999^2,800 is
6% for three short epochs), so the decay warms up as TensorFlow's ExponentialMovingAverage
does: min(decay, (1 + n) / (10 + n)), which follows the trained weights closely at first.
"""

from __future__ import annotations

from keras import ops


def ema_decay_now(decay: float, updates):
    """The decay after `updates` optimizer steps: min(decay, (1 + n) / (10 + n))."""
    return ops.minimum(decay, (1.0 + updates) / (10.0 + updates))


def update_ema(ema_network, network, decay) -> None:
    """ema <- decay * ema + (1 - decay) * weights, for every weight (batch-norm statistics
    included). Under --distribute every replica does this on its own copy, from the same new
    weights, so the copies stay equal."""
    for ema, weight in zip(ema_network.weights, network.weights):
        ema.assign(decay * ema + (1.0 - decay) * weight)
