"""Sampling from a trained noise predictor: ancestral DDPM, DDIM, classifier-free guidance.

Ancestral DDPM (Ho et al. 2020, Algorithm 2), for t = T .. 1:

    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_t) + sigma_t z,
    sigma_t^2 = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.

DDIM (Song et al. 2021, eq. 12) walks a subsequence of the steps: predict
x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), then

    x_prev = sqrt(alpha_bar_prev) x_0 + sqrt(1 - alpha_bar_prev - s^2) eps + s z,
    s = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev);

eta = 0 is deterministic; with every step and eta = 1 it is the DDPM update above.

Classifier-free guidance (Ho & Salimans 2022): one network trained with the label dropped
(replaced by a "null" class) 10% of the time predicts both eps(x, y) and eps(x, null); sampling
uses eps = eps_null + w (eps_y - eps_null), w > 1 trading variety for class fidelity.

The sampling loops run inside one `tf.function` each (TensorFlow backend), not as T Python
round trips of `predict`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from common.diffusion.schedule import Schedule


def guided_eps(network, x, t, labels=None, guidance: float = 1.0, null_class: int = 0):
    """eps_theta(x, t), or with labels eps_null + w (eps_label - eps_null) (one batched call)."""
    t = ops.cast(t, "int32")
    if labels is None:
        return network([x, t], training=False)
    n = ops.shape(x)[0]
    both = network([ops.concatenate([x, x]), ops.concatenate([t, t]),
                    ops.concatenate([labels, ops.full((n,), null_class, "int32")])],
                   training=False)
    conditional, unconditional = both[:n], both[n:]
    return unconditional + guidance * (conditional - unconditional)


def sample_ddpm(network, schedule: Schedule, shape, *, labels=None, guidance: float = 1.0,
                null_class: int = 0, seed: int = 0, keep_every: int = 0, clip: bool = True):
    """Ancestral sampling (Algorithm 2) from x_T ~ N(0, I) over all T steps, in one compiled
    loop. Returns the final images (and, with `keep_every`, x_T and then x_t every that many
    steps, the last of which is the final image).
    The predicted x_0 is clipped to [-1, 1] at every step, as in the DDPM authors' code."""
    return _run(network, schedule, shape, list(range(schedule.steps, 0, -1)), labels, guidance,
                null_class, seed, eta=1.0, ancestral=True, keep_every=keep_every, clip=clip)


def sample_ddim(network, schedule: Schedule, shape, *, sampling_steps: int = 50,
                eta: float = 0.0, labels=None, guidance: float = 1.0, null_class: int = 0,
                seed: int = 0, keep_every: int = 0, clip: bool = False):
    """DDIM over `sampling_steps` evenly spaced steps of the T the network was trained with.

    Unclipped by default, as in the DDIM authors' code: clipping x_0 also bends the
    deterministic path, since the next x_t is rebuilt from the clipped x_0, and it pushed
    bright regions to saturation (a higher FID clipped; see docs/results.md)."""
    steps = np.unique(np.linspace(1, schedule.steps, sampling_steps).round().astype(int))[::-1]
    return _run(network, schedule, shape, steps.tolist(), labels, guidance, null_class, seed,
                eta=eta, ancestral=False, keep_every=keep_every, clip=clip)


def coefficients(schedule: Schedule, steps, *, eta: float, ancestral: bool) -> np.ndarray:
    """Per visited step, (t, a, b, sigma) with x_prev = a x0_hat + b x_t + sigma z, where
    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) is the predicted image.

    Written in x0_hat so the sampler can clip it to the data range [-1, 1] at every step, as
    the DDPM authors' code does (`clip`); unclipped, the update is exactly the one in the
    module text.
    Ancestral: the posterior mean of q(x_{t-1} | x_t, x_0) (eq. 7) with sigma_t^2 = beta~_t,
    the posterior variance (the paper's second choice). DDIM: eq. 12 with its eps written as
    (x_t - sqrt(alpha_bar_t) x0_hat) / sqrt(1 - alpha_bar_t). With every step and eta = 1 the
    two coincide, which tests/test_diffusion.py checks."""
    ab = schedule.alpha_bars
    t_now = np.asarray(steps, np.int64)
    t_prev = np.append(t_now[1:], 0)  # the step reached; 0 means x_0
    ab_now = ab[t_now - 1]
    ab_prev = np.where(t_prev > 0, ab[np.maximum(t_prev, 1) - 1], 1.0)
    if ancestral:
        alpha = schedule.alphas[t_now - 1]
        beta = schedule.betas[t_now - 1]
        a = np.sqrt(ab_prev) * beta / (1.0 - ab_now)
        b = np.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab_now)
        sigma = np.sqrt((1.0 - ab_prev) / (1.0 - ab_now) * beta)
    else:
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab_now)) * np.sqrt(1 - ab_now / ab_prev)
        direction = np.sqrt(np.maximum(1 - ab_prev - sigma ** 2, 0.0)) / np.sqrt(1 - ab_now)
        a = np.sqrt(ab_prev) - direction * np.sqrt(ab_now)
        b = direction
    return np.stack([t_now, a, b, sigma], axis=1)


def _run(network, schedule, shape, steps, labels, guidance, null_class, seed, *, eta,
         ancestral, keep_every, clip):
    """The shared reverse loop: `steps` is the decreasing list of 1-based steps to visit."""
    table = tf.constant(coefficients(schedule, steps, eta=eta, ancestral=ancestral), tf.float32)
    alpha_bars = tf.constant(schedule.alpha_bars, tf.float32)
    label_tensor = None if labels is None else tf.constant(np.asarray(labels, np.int32))
    generator = tf.random.Generator.from_seed(seed)
    x = generator.normal(shape)

    @tf.function(reduce_retracing=True)
    def loop(x):
        kept = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        if keep_every:
            kept = kept.write(0, x)  # x_T, where every strip starts
        for i in tf.range(len(steps)):
            row = table[i]
            t = tf.fill([shape[0]], tf.cast(row[0], tf.int32))
            eps = guided_eps(network, x, t, label_tensor, guidance, null_class)
            ab = alpha_bars[tf.cast(row[0], tf.int32) - 1]
            x0 = (x - tf.sqrt(1.0 - ab) * eps) / tf.sqrt(ab)
            if clip:
                x0 = tf.clip_by_value(x0, -1.0, 1.0)
            x = row[1] * x0 + row[2] * x + row[3] * generator.normal(shape)
            if keep_every and (i + 1) % keep_every == 0:
                kept = kept.write(kept.size(), x)
        return x, kept.stack() if keep_every else tf.zeros([0])

    final, kept = loop(x)
    return (final.numpy(), kept.numpy()) if keep_every else final.numpy()
