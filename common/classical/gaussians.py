"""The normal distribution in one and in d dimensions: densities written out, and their
maximum-likelihood fits in closed form.

For x_1..x_n drawn from N(mu, sigma^2), the log-likelihood
    l(mu, sigma) = -n/2 log(2 pi sigma^2) - sum_i (x_i - mu)^2 / (2 sigma^2)
is maximised where its derivatives vanish:
    mu_hat = (1/n) sum_i x_i,    sigma_hat^2 = (1/n) sum_i (x_i - mu_hat)^2.
(The MLE divides by n, not n - 1: it is slightly biased but it is the maximiser.)
The multivariate case is the same with vectors: mean_hat = average of the rows,
Sigma_hat = (1/n) sum_i (x_i - mean_hat)(x_i - mean_hat)^T.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


def normal_pdf(x, mu: float, sigma: float) -> np.ndarray:
    """N(x | mu, sigma^2) = exp(-(x - mu)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi))


def normal_log_likelihood(x, mu: float, sigma: float) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(-0.5 * len(x) * (LOG_2PI + 2.0 * np.log(sigma))
                 - np.sum((x - mu) ** 2) / (2.0 * sigma ** 2))


def normal_mle(x) -> tuple[float, float]:
    """Closed-form maximum-likelihood (mu_hat, sigma_hat) of a 1-D sample."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean()
    return float(mu), float(np.sqrt(np.mean((x - mu) ** 2)))


def mvn_log_pdf(x, mean, cov) -> np.ndarray:
    """log N(x | mean, cov) for each row of x, written out:
        -1/2 [ d log(2 pi) + log|cov| + (x - mean)^T cov^-1 (x - mean) ].
    Uses a Cholesky factor (cov = L L^T) so the quadratic form is a triangular solve."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    mean, cov = np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64)
    chol = np.linalg.cholesky(cov)
    solved = np.linalg.solve(chol, (x - mean).T)  # L^-1 (x - mean), one column per point
    mahalanobis = np.sum(solved ** 2, axis=0)
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (x.shape[1] * LOG_2PI + log_det + mahalanobis)


def mvn_pdf(x, mean, cov) -> np.ndarray:
    return np.exp(mvn_log_pdf(x, mean, cov))


def mvn_mle(x) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form maximum-likelihood mean vector and covariance matrix (divides by n)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    return mean, centred.T @ centred / len(x)
