"""Gaussian mixtures and the EM algorithm, from scratch (Dempster, Laird & Rubin 1977;
Bishop, Pattern Recognition and Machine Learning, section 9.2).

A mixture of K Gaussians has a hidden variable: which component made each point.
    p(x) = sum_k pi_k N(x | mu_k, Sigma_k)
Ancestral sampling follows that story: draw k ~ Categorical(pi), then x ~ N(mu_k, Sigma_k).

EM fits it by alternating two steps, each of which can only raise the log-likelihood:
    E-step  responsibilities r_nk = pi_k N(x_n | mu_k, Sigma_k) / p(x_n)
    M-step  N_k = sum_n r_nk,  pi_k = N_k / N,  mu_k = sum_n r_nk x_n / N_k,
            Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k  (+ a tiny ridge)
It stops when the mean log-likelihood per point rises by less than `tol`. This is the same
algorithm (and the same ridge, 1e-6) as sklearn.mixture.GaussianMixture with full covariances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from common.classical.gaussians import mvn_log_pdf


@dataclass
class GaussianMixture:
    weights: np.ndarray      # (K,), sums to 1
    means: np.ndarray        # (K, d)
    covariances: np.ndarray  # (K, d, d)

    @property
    def k(self) -> int:
        return len(self.weights)

    def component_log_pdfs(self, x) -> np.ndarray:
        """(N, K) matrix of log pi_k + log N(x_n | mu_k, Sigma_k)."""
        return np.stack([np.log(w) + mvn_log_pdf(x, m, c) for w, m, c in
                         zip(self.weights, self.means, self.covariances)], axis=1)

    def log_pdf(self, x) -> np.ndarray:
        return logsumexp(self.component_log_pdfs(x), axis=1)

    def pdf(self, x) -> np.ndarray:
        return np.exp(self.log_pdf(x))

    def mean_log_likelihood(self, x) -> float:
        return float(np.mean(self.log_pdf(x)))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Ancestral sampling: components k ~ pi, then x ~ N(mu_k, Sigma_k). Returns (x, k)."""
        components = rng.choice(self.k, size=n, p=self.weights)
        x = np.empty((n, self.means.shape[1]))
        for k in range(self.k):
            chosen = components == k
            x[chosen] = rng.multivariate_normal(self.means[k], self.covariances[k],
                                                chosen.sum())
        return x, components


@dataclass
class EMResult:
    mixture: GaussianMixture
    log_likelihoods: list[float]          # mean per point, one per iteration
    snapshots: list[GaussianMixture] = field(repr=False)  # the fit after each iteration
    converged: bool

    @property
    def iterations(self) -> int:
        return len(self.log_likelihoods)


def initial_mixture(x, k: int, rng: np.random.Generator) -> GaussianMixture:
    """A neutral start: K distinct data points as means, the data covariance for every
    component, equal weights."""
    x = np.asarray(x, dtype=np.float64)
    means = x[rng.choice(len(x), size=k, replace=False)]
    cov = np.cov(x, rowvar=False, bias=True) + 1e-6 * np.eye(x.shape[1])
    return GaussianMixture(np.full(k, 1.0 / k), means, np.repeat(cov[None], k, axis=0))


def e_step(x, mixture: GaussianMixture) -> tuple[np.ndarray, float]:
    """Responsibilities (N, K) and the mean log-likelihood of the current parameters."""
    joint = mixture.component_log_pdfs(x)
    log_px = logsumexp(joint, axis=1, keepdims=True)
    return np.exp(joint - log_px), float(np.mean(log_px))


def m_step(x, responsibilities, reg_covar: float = 1e-6) -> GaussianMixture:
    """Weighted maximum-likelihood updates of weights, means and covariances."""
    x = np.asarray(x, dtype=np.float64)
    counts = responsibilities.sum(axis=0) + 10 * np.finfo(float).eps
    means = responsibilities.T @ x / counts[:, None]
    covariances = np.empty((len(counts), x.shape[1], x.shape[1]))
    for k in range(len(counts)):
        centred = x - means[k]
        covariances[k] = (responsibilities[:, k, None] * centred).T @ centred / counts[k]
        covariances[k] += reg_covar * np.eye(x.shape[1])
    return GaussianMixture(counts / len(x), means, covariances)


def fit_em(x, initial: GaussianMixture, *, max_iter: int = 200, tol: float = 1e-6,
           reg_covar: float = 1e-6) -> EMResult:
    """Run EM from `initial` until the mean log-likelihood gains less than `tol`."""
    mixture, log_likelihoods, snapshots = initial, [], [initial]
    converged = False
    for _ in range(max_iter):
        responsibilities, log_likelihood = e_step(x, mixture)
        if log_likelihoods and log_likelihood - log_likelihoods[-1] < tol:
            log_likelihoods.append(log_likelihood)
            converged = True
            break
        log_likelihoods.append(log_likelihood)
        mixture = m_step(x, responsibilities, reg_covar)
        snapshots.append(mixture)
    return EMResult(mixture, log_likelihoods, snapshots, converged)
