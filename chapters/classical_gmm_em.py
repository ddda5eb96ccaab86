"""The classical chapter, part 2: Gaussian mixtures, a latent variable, and EM.

A Gaussian mixture is the simplest generative model with a hidden cause: first pick a
component k (the latent variable), then draw x from that component's Gaussian. Fitting it is
hard only because k is unseen; EM (common.classical.gmm) alternates guessing k softly (E-step) and
refitting each Gaussian to its share of the points (M-step), and the log-likelihood never goes
down. The VAE generalises exactly this: a latent variable, a decoder, and a bound on the
likelihood maximised instead of the likelihood itself.

1. A known 2-D mixture: its pdf, and ancestral sampling (colour = the component picked).
2. EM on real data, scikit-learn's iris flowers (petal length and width, 150 flowers, 3
   species), drawn after several iterations, checked against sklearn's GaussianMixture
   started from the same parameters.
3. The bridge to chapter 2: a GMM fitted to the VAE's 2-D latent codes
   (outputs/ch2_vae/latents.npz from `python chapters/ch2_vae.py`), whose samples decoded by
   the VAE's decoder are new images. It fits the codes better than the VAE's N(0, I) prior.

Run:  python chapters/classical_gmm_em.py [--components 3] [--latents PATH]
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy.optimize import linear_sum_assignment

from common import figures
from common.classical.gaussians import mvn_log_pdf
from common.classical.gmm import GaussianMixture, fit_em, initial_mixture
from common.cli import make_parser, non_negative_float, parse, positive_int, run_main
from common.errors import UserError, first_line
from common.figures import plt  # pyplot, after figures chose the headless backend
from common.results import write_metrics
from common.run import start

CHAPTER = "classical_gmm_em"
DEFAULT_LATENTS = Path("outputs/ch2_vae/latents.npz")
# The known mixture of part 1 (documented so a learner can check the samples against it).
TOY = GaussianMixture(weights=np.array([0.5, 0.3, 0.2]),
                      means=np.array([[0.0, 0.0], [4.0, 3.0], [-3.0, 4.0]]),
                      covariances=np.array([[[1.0, 0.6], [0.6, 1.0]],
                                            [[0.5, 0.0], [0.0, 1.5]],
                                            [[1.2, -0.5], [-0.5, 0.6]]]))


def iris_petals() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Petal length and width (cm) of scikit-learn's bundled iris set, with species labels."""
    try:
        from sklearn.datasets import load_iris
    except ImportError:
        raise UserError("the iris data comes with scikit-learn: pip install scikit-learn") \
            from None
    iris = load_iris()
    return iris.data[:, 2:4], iris.target, tuple(iris.target_names)


def compare_with_sklearn(x, initial: GaussianMixture, *, max_iter: int, tol: float) -> dict:
    """Fit sklearn's GaussianMixture from the same start; return its mean log-likelihood."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    model = SkGaussianMixture(n_components=initial.k, covariance_type="full", tol=tol,
                              reg_covar=1e-6, max_iter=max_iter,
                              weights_init=initial.weights, means_init=initial.means,
                              precisions_init=np.linalg.inv(initial.covariances))
    model.fit(x)
    return {"mean_log_likelihood": float(model.score(x)), "iterations": int(model.n_iter_),
            "converged": bool(model.converged_)}


def matched_accuracy(labels, clusters) -> float:
    """Share of points whose cluster maps to their label under the best one-to-one matching."""
    k = max(labels.max(), clusters.max()) + 1
    counts = np.zeros((k, k))
    np.add.at(counts, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(labels))


def flags():
    """The command line: EM's iterations and tolerance, the mixtures' sizes, and chapter 2's
    latent codes."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=300, batch_size=None,
                         dataset=None, epochs_help="most EM iterations (one pass each)")
    parser.add_argument("--components", type=positive_int, default=3,
                        help="mixture components for iris (default 3, one per species)")
    parser.add_argument("--tol", type=non_negative_float, default=1e-6,
                        help="stop when the mean log-likelihood gains less (default 1e-6)")
    parser.add_argument("--latents", type=Path, default=None,
                        help=f"chapter 2's latents.npz (default {DEFAULT_LATENTS}, if present)")
    parser.add_argument("--latent-components", type=positive_int, default=10,
                        help="mixture components for the VAE's latent codes (default 10)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        print("This chapter has no neural network: its models are formulas (see --help).")
        return 0
    if args.latents is not None and not args.latents.is_file():
        raise UserError(f"--latents {args.latents}: no such file (run chapters/ch2_vae.py)")
    latents = read_latents(args.latents or DEFAULT_LATENTS)  # before anything is written
    if latents is not None and len(latents[1]) < 2 * args.latent_components:
        raise UserError(f"{latents[0]}: {len(latents[1])} codes are too few for "
                        f"{args.latent_components} components")
    with start(args) as run:  # the seed and the output folder
        # A mixture we know, sampled the way it generates: a component, then a point.
        max_iter = 15 if run.quick else run.epochs
        rng = np.random.default_rng(run.seed)
        results = {"toy_mixture_sampling": sample_toy(rng, 500 if run.quick else 5000,
                                                      run.out)}

        # EM, written out, on the petals of three iris species; checked against
        # scikit-learn's GaussianMixture from the same start.
        results["em_iris"] = em_on_iris(rng, args.components, max_iter, args.tol, run.out)

        # The bridge to chapter 2: a mixture fitted to the VAE's codes, whose samples the
        # VAE's decoder turns into images.
        results["vae_latent_bridge"] = _bridge(latents, args.latents or DEFAULT_LATENTS,
                                               args.latent_components, rng, max_iter,
                                               args.tol, run.out)
        data = {"iris": "scikit-learn's bundled iris data (petal length, width; 150 flowers)",
                "toy_mixture": "synthetic draws from the documented TOY mixture",
                "vae_latents": results["vae_latent_bridge"].get("latents")}
        write_metrics(run, data=data, models=results)
    print(run.closing(f"Figures and metrics.json are in {run.out}/"))
    return 0


def sample_toy(rng, count: int, out: Path) -> dict:
    """Ancestral sampling from the known mixture TOY: a component, then a point from it."""
    samples, components = TOY.sample(count, rng)
    _plot_toy(samples, components, out / "mixture_sampling.png")
    return {"sample_mean": np.round(samples.mean(axis=0), 3).tolist(),
            "mixture_mean": np.round(TOY.weights @ TOY.means, 3).tolist(),
            "component_shares": np.round(np.bincount(components, minlength=3) / len(components),
                                         3).tolist()}


def em_on_iris(rng, components: int, max_iter: int, tol: float, out: Path) -> dict:
    """EM, written out in common.classical.gmm, on iris petals; checked against scikit-learn's
    GaussianMixture from the same start."""
    x, species, names = iris_petals()
    if components > len(x):
        raise UserError(f"--components {components}: more than the {len(x)} flowers")
    initial = initial_mixture(x, components, rng)
    em = fit_em(x, initial, max_iter=max_iter, tol=tol)
    ours = em.mixture.mean_log_likelihood(x)
    sklearn_fit = compare_with_sklearn(x, initial, max_iter=max_iter, tol=tol)
    clusters = em.mixture.component_log_pdfs(x).argmax(axis=1)
    print(f"EM on iris petals: {em.iterations} iterations, mean log-likelihood {ours:.5f} "
          f"(sklearn from the same start: {sklearn_fit['mean_log_likelihood']:.5f})")
    _plot_em_iterations(x, species, names, em, out / "em_iris_iterations.png")
    figures.curves({"mean log-likelihood per flower": em.log_likelihoods},
                   out / "em_log_likelihood.png", xlabel="EM iteration",
                   ylabel="mean log-likelihood", title="EM on iris: never decreasing")
    return {
        "components": components, "iterations": em.iterations, "converged": em.converged,
        "mean_log_likelihood": round(ours, 6),
        "log_likelihood_never_decreased": bool(np.all(np.diff(em.log_likelihoods) >= -1e-12)),
        "sklearn": sklearn_fit,
        "abs_difference_from_sklearn": abs(ours - sklearn_fit["mean_log_likelihood"]),
        "species_matched_accuracy": (round(matched_accuracy(species, clusters), 4)
                                     if components == len(names) else None)}


def read_latents(path: Path):
    """(path, codes, labels) from chapter 2's latents.npz, or None if the file is absent.
    An unreadable file is a user error, found before the chapter writes anything."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            return path, saved["z_vae_mean"].astype(np.float64), saved["labels"]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        raise UserError(f"{path}: not a readable .npz file; run chapters/ch2_vae.py to "
                        "write it again") from None
    except KeyError as err:
        raise UserError(f"{path}: not a chapter-2 latents file (no {err} array)") from None


def _bridge(latents, path: Path, components: int, rng, max_iter: int, tol: float,
            out: Path) -> dict:
    """Fit a GMM to chapter 2's VAE codes; decode samples from it if the model is there."""
    if latents is None:
        print(f"note: {path} not found; run chapters/ch2_vae.py first to add the GMM on "
              "the VAE's latent space")
        return {"skipped": f"{path} not found"}
    path, z, labels = latents
    em = fit_em(z, initial_mixture(z, components, rng), max_iter=max_iter, tol=tol)
    gmm_ll = em.mixture.mean_log_likelihood(z)
    prior_ll = float(np.mean(mvn_log_pdf(z, np.zeros(2), np.eye(2))))
    print(f"GMM on the VAE's codes: mean log-likelihood {gmm_ll:.3f} vs {prior_ll:.3f} under "
          "the N(0, I) prior")
    _plot_latent_gmm(z, labels, em.mixture, out / "gmm_on_vae_latents.png")
    report = {"latents": str(path), "codes": len(z), "components": components,
              "iterations": em.iterations, "gmm_mean_log_likelihood": round(gmm_ll, 4),
              "prior_mean_log_likelihood": round(prior_ll, 4)}
    model_path = path.parent / "vae_decoder.keras"
    if model_path.is_file():
        codes, _ = em.mixture.sample(40, rng)
        images = _decode(model_path, codes.astype("float32"))
        figures.image_grid(images, out / "gmm_vae_samples.png", ncols=10,
                           suptitle="New images: codes sampled from the GMM, decoded by the VAE")
        report["decoded_samples"] = 40
    return report


def _decode(model_path: Path, codes: np.ndarray) -> np.ndarray:
    """Decode codes with chapter 2's saved VAE decoder (plain Keras layers). TensorFlow is
    imported here, for this step only: the rest of the chapter is NumPy."""
    import common.quiet_tensorflow  # noqa: F401

    import keras

    try:
        decoder = keras.saving.load_model(model_path, safe_mode=True)
    except Exception as err:  # a truncated or foreign file: say which, not a traceback
        raise UserError(f"{model_path}: cannot load it ({first_line(err)})") from None
    return decoder.predict(codes, verbose=0)


def _plot_toy(samples, components, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(samples[:, 0], samples[:, 1], c=components, cmap="tab10", s=3, alpha=0.5,
               vmin=0, vmax=9)
    lo, hi = samples.min(axis=0), samples.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    ax.contour(gx, gy, TOY.pdf(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape),
               levels=10, colors="black", linewidths=0.6)
    ax.set(title="Ancestral sampling: pick k ~ pi, then x ~ N(mu_k, Sigma_k)\n"
                 "(colour = the component picked; lines = the mixture pdf)",
           xlabel="x[0]", ylabel="x[1]")
    figures.save(fig, path)


def _plot_em_iterations(x, species, names, em, path) -> None:
    steps = sorted({0, 1, 2, 5, 10, len(em.snapshots) - 1} & set(range(len(em.snapshots))))
    fig, axes = plt.subplots(1, len(steps), figsize=(3.3 * len(steps), 3.4), squeeze=False)
    for ax, step in zip(axes[0], steps):
        ax.scatter(x[:, 0], x[:, 1], c=species, cmap="tab10", vmin=0, vmax=9, s=8)
        mixture = em.snapshots[step]
        for mean, cov in zip(mixture.means, mixture.covariances):
            figures.gaussian_ellipse(ax, mean, cov, color="black", linewidth=1.2)
        ax.set(title=f"after {step} iteration{'s' * (step != 1)}", xlabel="petal length (cm)",
               xlim=(0, 8), ylim=(-0.5, 3.5))
    axes[0, 0].set_ylabel("petal width (cm)")
    fig.suptitle(f"EM on iris petals (2-sigma ellipses; colours = species {', '.join(names)})",
                 y=1.04)
    figures.save(fig, path)


def _plot_latent_gmm(z, labels, mixture, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=2, alpha=0.4, vmin=0, vmax=9)
    for mean, cov in zip(mixture.means, mixture.covariances):
        figures.gaussian_ellipse(ax, mean, cov, color="black", linewidth=1)
    ax.set(title="A Gaussian mixture fitted by EM to the VAE's latent codes",
           xlabel="z[0]", ylabel="z[1]")
    figures.save(fig, path)


if __name__ == "__main__":
    sys.exit(run_main(main))
