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

DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models") solves the same probability-flow ODE as DDIM with a second-order
multistep method. With alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t) and the
half log-SNR lambda_t = log(alpha_t / sigma_t), one step from s to t (h = lambda_t - lambda_s)
in the data-prediction form is (the paper's eq. 10 and Algorithm 2, "2M")

    x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) D,
    D   = (1 + 1/(2r)) x0_hat(s) - 1/(2r) x0_hat(s'),   r = h' / h,

where s' is the step before s and h' the log-SNR step that led to s. The first step has no s'
and uses D = x0_hat(s): that is exactly DDIM. Its stochastic variant (SDE-DPM-Solver++(2M),
the paper's appendix) adds fresh noise as ancestral sampling does,

    x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) D + sigma_t sqrt(1 - e^{-2h}) z,

whose first-order form is the DDPM posterior step (DDIM with eta = 1). The last step, to x_0
itself (lambda = infinity), is first order in both: x_0 = x0_hat.

The sampling loops run inside one `tf.function` each (TensorFlow backend), not as T Python
round trips of `predict`.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf
from keras import ops

from common.diffusion.schedule import Schedule

# Every sampler, by --sampler name, with the step count it uses unless told.
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpmpp": 20, "dpmpp_sde": 50}
SAMPLERS = tuple(DEFAULT_STEPS)


def guided_eps(network, x, t, labels=None, guidance: float = 1.0, null_class: int = 0):
    """eps_theta(x, t), or with labels eps_null + w (eps_label - eps_null) (one batched call).
    `null_class` is the null label: a class index, or for prompts (labels of shape (n, T))
    the empty prompt's T ids.
    In float32 even when the network computes in 16 bits (--precision): the sampler's update
    stays in float32."""
    t = ops.cast(t, "int32")
    if labels is None:
        return ops.cast(network([x, t], training=False), "float32")
    n = ops.shape(x)[0]
    both = ops.cast(network([ops.concatenate([x, x]), ops.concatenate([t, t]),
                             ops.concatenate([labels, ops.broadcast_to(
                                 ops.cast(null_class, "int32"), ops.shape(labels))])],
                            training=False), "float32")
    conditional, unconditional = both[:n], both[n:]
    return unconditional + guidance * (conditional - unconditional)


def sample_ddpm(network, schedule: Schedule, shape, *, labels=None, guidance: float = 1.0,
                null_class: int = 0, seed: int = 0, keep_every: int = 0, clip: bool = True):
    """Ancestral sampling (Algorithm 2) from x_T ~ N(0, I) over all T steps, in one compiled
    loop. Returns the final images (and, with `keep_every`, x_T and then x_t every that many
    steps, the last of which is the final image).
    The predicted x_0 is clipped to [-1, 1] at every step, as in the DDPM authors' code."""
    table = coefficients(schedule, list(range(schedule.steps, 0, -1)), eta=1.0, ancestral=True)
    return _run(network, schedule, shape, table, labels, guidance, null_class, seed,
                keep_every=keep_every, clip=clip)


def sample_ddim(network, schedule: Schedule, shape, *, sampling_steps: int = 50,
                eta: float = 0.0, labels=None, guidance: float = 1.0, null_class: int = 0,
                seed: int = 0, keep_every: int = 0, clip: bool = False,
                start_step: int | None = None, x_start=None):
    """DDIM over `sampling_steps` evenly spaced steps of the T the network was trained with
    (or of the first `start_step`, from a given `x_start`: see `sample`).

    Unclipped by default, as in the DDIM authors' code: clipping x_0 also bends the
    deterministic path, since the next x_t is rebuilt from the clipped x_0, and it pushed
    bright regions to saturation (a higher FID clipped; see docs/results.md)."""
    table = coefficients(schedule, even_steps(schedule, sampling_steps, start_step), eta=eta,
                         ancestral=False)
    return _run(network, schedule, shape, table, labels, guidance, null_class, seed,
                keep_every=keep_every, clip=clip, x_start=x_start)


def sample_dpmpp(network, schedule: Schedule, shape, *, sampling_steps: int = 20,
                 stochastic: bool = False, spacing: str = "logsnr", labels=None,
                 guidance: float = 1.0, null_class: int = 0, seed: int = 0, keep_every: int = 0,
                 clip: bool = False, start_step: int | None = None, x_start=None):
    """DPM-Solver++(2M) over `sampling_steps` steps, one network pass each; `stochastic` gives
    SDE-DPM-Solver++(2M). Unclipped by default, as DDIM. `start_step` and `x_start`: see
    `sample`.

    The steps are spread evenly in log-SNR (`spacing="logsnr"`, as the DPM-Solver papers
    advise for small images), not evenly in t as DDIM's: in t, the second-order correction
    overshoots across the last steps, where the log-SNR jumps (see docs/results.md)."""
    steps = logsnr_steps(schedule, sampling_steps, start_step) if spacing == "logsnr" else \
        even_steps(schedule, sampling_steps, start_step)
    table = dpmpp_coefficients(schedule, steps, stochastic=stochastic)
    return _run(network, schedule, shape, table, labels, guidance, null_class, seed,
                keep_every=keep_every, clip=clip, x_start=x_start)


def sample(network, schedule: Schedule, shape, *, sampler: str = "ddim",
           sampling_steps: int | None = None, **kwargs):
    """Any of SAMPLERS by name; `sampling_steps` None is the sampler's DEFAULT_STEPS. The
    ancestral DDPM sampler always takes every step (`sampling_steps` must be None or T).

    The others can also start part-way (SDEdit, Meng et al. 2022): from `x_start`, an x_t at
    the 1-based step `start_step`, walking `sampling_steps` steps from there down to x_0
    instead of from pure noise at T."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    steps = sampling_steps or DEFAULT_STEPS[sampler]
    if sampler == "ddpm":
        if steps != schedule.steps:
            raise ValueError(f"ddpm takes all {schedule.steps} steps, not {steps}")
        return sample_ddpm(network, schedule, shape, **kwargs)
    if sampler == "ddim":
        return sample_ddim(network, schedule, shape, sampling_steps=steps, **kwargs)
    return sample_dpmpp(network, schedule, shape, sampling_steps=steps,
                        stochastic=sampler == "dpmpp_sde", **kwargs)


def network_passes(schedule: Schedule, sampler: str, sampling_steps: int | None = None) -> int:
    """Network passes per image (per guided pair) that `sample` makes with these settings."""
    steps = sampling_steps or DEFAULT_STEPS[sampler]
    if sampler == "ddpm":
        return schedule.steps
    return len(logsnr_steps(schedule, steps) if sampler.startswith("dpmpp") else
               even_steps(schedule, steps))


def describe(sampler: str, sampling_steps: int | None = None) -> str:
    """The name a figure or a log line gives a sampler: 'DDIM-50', 'DPM-Solver++(2M)-20'."""
    names = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp": "DPM-Solver++(2M)",
             "dpmpp_sde": "SDE-DPM-Solver++(2M)"}
    return f"{names[sampler]}-{sampling_steps or DEFAULT_STEPS[sampler]}"


def even_steps(schedule: Schedule, count: int, start: int | None = None) -> list[int]:
    """`count` 1-based steps spread evenly from `start` (T unless told) down to 1 (fewer if
    there are fewer steps than `count`)."""
    start = start or schedule.steps
    return np.unique(np.linspace(1, start, count).round().astype(int))[::-1].tolist()


def logsnr_steps(schedule: Schedule, count: int, start: int | None = None) -> list[int]:
    """About `count` 1-based steps from `start` (T unless told) down to 1, evenly spaced in the
    log-SNR lambda: each is the step whose lambda is nearest to the even grid's (where lambda
    moves fastest, near t = 1, neighbours can coincide and are kept once)."""
    ab = schedule.alpha_bars
    lam = 0.5 * np.log(ab / (1.0 - ab))
    targets = np.linspace(lam[(start or schedule.steps) - 1], lam[0], count)
    nearest = np.abs(lam[None, :] - targets[:, None]).argmin(axis=1) + 1
    return np.unique(nearest)[::-1].tolist()


def coefficients(schedule: Schedule, steps, *, eta: float, ancestral: bool) -> np.ndarray:
    """Per visited step, the row (t, a, b, 0, sigma) of the update
    x_prev = a x0_hat + b x_t + sigma z, where
    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) is the predicted image (the
    zero column is the weight of the previous step's x0_hat, which only DPM-Solver++ uses).

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
    return np.stack([t_now, a, b, np.zeros_like(a), sigma], axis=1)


def dpmpp_coefficients(schedule: Schedule, steps, *, stochastic: bool) -> np.ndarray:
    """Per visited step s -> t, the row (s, a, b, c, sigma) of the DPM-Solver++(2M) update
    x_t = a x0_hat(s) + b x_s + c x0_hat(s') + sigma z of the module text: with
    phi = alpha_t (1 - e^{-h}) (ODE) or alpha_t (1 - e^{-2h}) (SDE), a = phi (1 + 1/(2r)) and
    c = -phi / (2r), except on the first step and the last (to x_0), which are first order."""
    ab = schedule.alpha_bars
    t_now = np.asarray(steps, np.int64)
    t_next = np.append(t_now[1:], 0)
    alpha, sigma = np.sqrt(ab), np.sqrt(1.0 - ab)  # of step t at index t - 1
    lam = np.log(alpha / sigma)
    rows, h_before = [], None
    for s, t in zip(t_now - 1, t_next - 1):  # 0-based indices; t = -1 is x_0
        if t < 0:  # lambda is infinite at x_0: e^{-h} = 0, and both forms give x0_hat(s)
            rows.append((s + 1, 1.0, 0.0, 0.0, 0.0))
            continue
        h = lam[t] - lam[s]
        if stochastic:
            b, phi = sigma[t] / sigma[s] * np.exp(-h), alpha[t] * -np.expm1(-2 * h)
            noise = sigma[t] * np.sqrt(-np.expm1(-2 * h))
        else:
            b, phi, noise = sigma[t] / sigma[s], alpha[t] * -np.expm1(-h), 0.0
        if h_before is None:  # the first step: DDIM's (first order)
            a, c = phi, 0.0
        else:
            half_inverse_r = h / (2 * h_before)  # 1 / (2r), r = h' / h
            a, c = phi * (1 + half_inverse_r), -phi * half_inverse_r
        rows.append((s + 1, a, b, c, noise))
        h_before = h
    return np.asarray(rows, np.float64)


def _run(network, schedule, shape, table, labels, guidance, null_class, seed, *, keep_every,
         clip, x_start=None):
    """The shared reverse loop over a table of rows (t, a, b, c, sigma), one per visited
    1-based step t, decreasing: x <- a x0_hat + b x + c x0_hat(previous step) + sigma z.
    It starts from `x_start`, else from x_T ~ N(0, I) drawn with `seed`."""
    loop, generator = _compiled_loop(network, tuple(shape), labels is not None, keep_every, clip)
    generator.reset_from_seed(seed)
    x = generator.normal(shape)
    if x_start is not None:
        x = tf.constant(np.asarray(x_start, np.float32))
    label_tensor = tf.zeros([0], tf.int32) if labels is None else \
        tf.constant(np.asarray(labels, np.int32))
    final, kept = loop(x, tf.constant(table, tf.float32),
                       tf.constant(schedule.alpha_bars, tf.float32), label_tensor,
                       tf.constant(guidance, tf.float32), tf.constant(null_class, tf.int32))
    return (final.numpy(), kept.numpy()) if keep_every else final.numpy()


# One compiled loop per network and settings, so drawing again costs no new tracing.
_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_loop(network, shape, labelled: bool, keep_every: int, clip: bool):
    """The `tf.function` of the reverse loop for `network`, and the random generator it draws
    z from, made once per (shape, labelled, keep_every, clip) and kept while the network
    lives. The schedule's table, labels and guidance are arguments, not constants, so other
    step counts and scales reuse it."""
    cache = _LOOPS.setdefault(network, {})
    key = (shape, labelled, keep_every, clip)
    if key in cache:
        return cache[key]
    generator = tf.random.Generator.from_seed(0)

    @tf.function(reduce_retracing=True)
    def loop(x, table, alpha_bars, labels, guidance, null_class):
        kept = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        if keep_every:
            kept = kept.write(0, x)  # x_T, where every strip starts
        x0_before = tf.zeros(shape)
        for i in tf.range(tf.shape(table)[0]):
            row = table[i]
            t = tf.fill([shape[0]], tf.cast(row[0], tf.int32))
            eps = guided_eps(network, x, t, labels if labelled else None, guidance, null_class)
            ab = alpha_bars[tf.cast(row[0], tf.int32) - 1]
            x0 = (x - tf.sqrt(1.0 - ab) * eps) / tf.sqrt(ab)
            if clip:
                x0 = tf.clip_by_value(x0, -1.0, 1.0)
            x = row[1] * x0 + row[2] * x + row[3] * x0_before + row[4] * generator.normal(shape)
            x0_before = x0
            if keep_every and (i + 1) % keep_every == 0:
                kept = kept.write(kept.size(), x)
        return x, kept.stack() if keep_every else tf.zeros([0])

    cache[key] = loop, generator
    return cache[key]
