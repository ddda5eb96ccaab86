"""The ELBO's arithmetic, and judging a trained VAE with it.

The negative evidence lower bound for one image x (Kingma & Welling 2014, eq. 10):

    -ELBO(x) = E_q[-log p(x | z)] + KL(q(z | x) || N(0, I))
             = sum over pixels of binary cross-entropy(x, decoder(z))    (Bernoulli decoder)
               - 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)

The functions below compute its terms per example, in float32 whatever the layers computed
in; the chapters' loss layers (chapters/ch3_vae.py, ch3_hierarchical_vae.py) add them up.
Judging a trained VAE: the negative ELBO in nats per image, its two parts, the KL per latent
dimension, and how many dimensions are in use.

- -ELBO(x) = E_q[-log p(x | z)] + KL(q(z | x) || p(z)) >= -log p(x), estimated with one z per
  test image (averaged over 10,000 images, the noise of one draw is negligible). Always with
  beta = 1, whatever beta the model trained with, so models can be compared.
- Active units (Burda et al. 2016, sec. 5.2): dimension u is active when the posterior mean moves
  with the input, Cov_x(E_q[z_u]) > 0.01. A dimension whose KL is ~0 has collapsed onto the
  prior: the decoder ignores it (posterior collapse).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

ACTIVE_THRESHOLD = 0.01
EPSILON = 1e-7  # keeps log() finite where the decoder outputs exactly 0 or 1
LOG_2PI = 1.8378770664093453  # log(2 pi)


def kl_to_standard_normal(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) per example, summed over latent dimensions (in
    float32, whatever the encoder computed in)."""
    mean, log_var = ops.cast(mean, "float32"), ops.cast(log_var, "float32")
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


def bernoulli_nll(x, probabilities):
    """-log p(x | probabilities) per example: binary cross-entropy summed over all pixels (in
    float32)."""
    x = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))
    p = ops.clip(ops.reshape(ops.cast(probabilities, "float32"), (ops.shape(probabilities)[0], -1)),
                 EPSILON, 1.0 - EPSILON)
    return -ops.sum(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p), axis=-1)


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, exp(log_var)) per example, summed over dimensions (in float32)."""
    z, mean, log_var = (ops.cast(v, "float32") for v in (z, mean, log_var))
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(z - mean) / ops.exp(log_var), axis=-1)


def sample_log_density(noise, log_var):
    """log N(z; mean, exp(log_var)) of a sample drawn as z = mean + exp(log_var / 2) * noise.

    The same number as `gaussian_log_density(z, mean, log_var)`, written with the noise so that
    nothing is divided: (z - mean)^2 / exp(log_var) is noise^2. The division form turns into
    0 / 0 once a variance underflows, which a posterior trained without its KL term (the
    beta = 0 epoch of KL annealing) can reach within a few dozen steps.
    """
    noise, log_var = ops.cast(noise, "float32"), ops.cast(log_var, "float32")
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(noise), axis=-1)



@dataclass
class ElboReport:
    reconstruction: np.ndarray  # (N,) nats: -log p(x | z)
    kl_per_dim: np.ndarray      # (N, d) nats
    means: np.ndarray           # (N, d) posterior means

    @property
    def kl(self) -> np.ndarray:
        """(N,) nats: the KL term of each image."""
        return self.kl_per_dim.sum(axis=1)

    @property
    def nelbo(self) -> float:
        return float(np.mean(self.reconstruction + self.kl))

    @property
    def active(self) -> np.ndarray:
        return self.means.var(axis=0) > ACTIVE_THRESHOLD

    def summary(self) -> dict:
        kl = self.kl_per_dim.mean(axis=0)
        return {"test_nelbo_nats": round(self.nelbo, 2),
                "test_reconstruction_nats": round(float(self.reconstruction.mean()), 2),
                "test_kl_nats": round(float(kl.sum()), 2),
                "kl_per_dim_nats": np.round(kl, 3).tolist(),
                "active_units": int(self.active.sum()),
                "latent_dim": int(kl.size)}


def elbo_report(encoder: keras.Model, decoder: keras.Model, x: np.ndarray,
                condition: np.ndarray | None = None, *, seed: int = 0,
                batch_size: int = 500) -> ElboReport:
    """One-sample ELBO terms per image of `x` (with one-hot `condition` for a CVAE)."""
    extra = [] if condition is None else [condition]
    mean, log_var = encoder.predict([x, *extra] if extra else x, batch_size=batch_size,
                                    verbose=0)
    eps = np.random.default_rng(seed).standard_normal(mean.shape).astype("float32")
    z = mean + np.exp(0.5 * log_var) * eps
    probabilities = decoder.predict([z, *extra] if extra else z, batch_size=batch_size,
                                    verbose=0)
    reconstruction = ops.convert_to_numpy(bernoulli_nll(x, probabilities))
    kl = -0.5 * (1.0 + log_var - np.square(mean) - np.exp(log_var))
    return ElboReport(np.asarray(reconstruction, np.float64), kl.astype(np.float64), mean)


def score_encoder_decoder(model: keras.Model, x, condition, seed: int) -> ElboReport:
    """`elbo_report` of a model whose parts are the layers named `encoder` and `decoder`."""
    return elbo_report(model.get_layer("encoder"), model.get_layer("decoder"), x, condition,
                       seed=seed)


class ElboMonitor(keras.callbacks.Callback):
    """After each epoch, log the held-out `val_nelbo`, `val_reconstruction` and `val_kl`
    (nats per image, beta = 1) on a fixed image set.

    `score(model, x, condition, seed)` returns a report with `nelbo`, and per-image
    `reconstruction` and `kl` arrays; the default scores the `encoder`/`decoder` pair."""

    def __init__(self, x: np.ndarray, condition: np.ndarray | None = None, *,
                 score=score_encoder_decoder):
        super().__init__()
        self.x, self.condition, self.score = x, condition, score

    def on_epoch_end(self, epoch, logs=None):
        report = self.score(self.model, self.x, self.condition, epoch)
        if logs is not None:
            logs.update(val_nelbo=report.nelbo,
                        val_reconstruction=float(np.mean(report.reconstruction)),
                        val_kl=float(np.mean(report.kl)))
