"""Judging a trained VAE: the negative ELBO in nats per image, its two parts, the KL per latent
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

from common.vae.layers import bernoulli_nll

ACTIVE_THRESHOLD = 0.01


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
