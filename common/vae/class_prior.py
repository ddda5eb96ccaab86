"""A prior fitted after training: p(z | y) as a Gaussian mixture per class, by EM
(common.classical.gmm).

A conditional VAE trains with the prior N(0, I), but its decoder only ever sees codes drawn from
the aggregate posterior of each class, q(z | y) = mean over training images x of class y of
q(z | x, y). The KL term pulls the two together without making them equal: with a weak pull
(small beta, many latent dimensions) the codes of a class fill only part of N(0, I), and a z
drawn where no training code of that class lies decodes to a blend. Fitting p(z | y) to the
posterior means of the training codes once training is over ("ex-post density estimation",
Ghosh et al. 2020, sec. 4; the two-stage VAE of Dai & Wipf 2019 fits a second VAE instead)
draws z only where the decoder has seen codes of class y. The model stays a generative model,
p(y) p(z | y) p(x | z, y); only its prior is learned after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from common.classical.gmm import GaussianMixture, fit_em
from common.errors import UserError


@dataclass
class ClassPrior:
    mixtures: list[GaussianMixture]  # one per class, over the latent space

    @classmethod
    def fit(cls, codes, labels, num_classes: int, *, components: int = 10, seed: int = 0,
            max_iter: int = 100, reg_covar: float = 1e-4) -> ClassPrior:
        """EM on the codes of each class in turn (`components` Gaussians, full covariances).
        The ridge keeps a covariance invertible where a component sits on few codes."""
        codes, labels = np.asarray(codes, np.float64), np.asarray(labels)
        rng = np.random.default_rng(seed)
        mixtures = []
        for c in range(num_classes):
            mine = codes[labels == c]
            k = min(components, len(mine))
            if k == 0:  # e.g. a --quick slice of a dataset with many classes
                raise UserError(f"no training images of class {c} to fit its prior p(z | y); "
                                "use more data or --prior normal")
            start = spread_start(mine, k, rng)
            mixtures.append(fit_em(mine, start, max_iter=max_iter, tol=1e-4,
                                   reg_covar=reg_covar).mixture)
        return cls(mixtures)

    def sample(self, labels, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
        """One z per requested label, drawn from that class's mixture (float32).

        `temperature` tau < 1 draws from N(mu_k, tau^2 Sigma_k) instead of N(mu_k, Sigma_k):
        codes nearer the middle of their component, so images more typical of the class and
        less varied ("reduced-temperature sampling": Kingma & Dhariwal 2018, sec. 5; NVAE
        samples at tau = 0.6-0.9; BigGAN's truncation trick is the GAN analogue)."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        labels = np.asarray(labels)
        z = np.empty((len(labels), self.mixtures[0].means.shape[1]), np.float32)
        for c, mixture in enumerate(self.mixtures):
            chosen = labels == c
            if chosen.any():
                x, components = mixture.sample(int(chosen.sum()), rng)
                centre = mixture.means[components]
                z[chosen] = centre + temperature * (x - centre)
        return z

    def save(self, path: Path) -> None:
        """weights (C, K), means (C, K, d) and covariances (C, K, d, d) in one .npz file."""
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **{name: np.stack([getattr(m, name) for m in self.mixtures])
                                        for name in ("weights", "means", "covariances")})


def spread_start(x: np.ndarray, k: int, rng: np.random.Generator) -> GaussianMixture:
    """EM's starting point: means picked by k-means++ seeding (Arthur & Vassilvitskii 2007:
    each next mean is a data point drawn with probability proportional to its squared distance
    from the means so far), so the components start spread over the clusters instead of
    several in one; every covariance the data's, equal weights."""
    means = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min([np.sum((x - m) ** 2, axis=1) for m in means], axis=0)
        means.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0
                     else x[rng.integers(len(x))])
    cov = np.cov(x, rowvar=False, bias=True) + 1e-6 * np.eye(x.shape[1])
    return GaussianMixture(np.full(k, 1.0 / k), np.stack(means), np.repeat(cov[None], k, axis=0))
