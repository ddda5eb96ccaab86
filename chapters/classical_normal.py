"""The classical chapter, part 1: the normal distribution and maximum likelihood.

Before any neural network, a generative model can be one formula fitted to data:
1. The normal pdf, and why it is everywhere: sums of many small independent effects tend to
   it (central limit theorem), shown with sums of uniform draws.
2. Maximum likelihood: the mean and standard deviation that make a heights sample most
   probable, in closed form (common.classical.gaussians). The fitted model then *generates*
   new heights and answers questions through its CDF (how many people are taller than 190 cm?).
3. The same in two dimensions: a multivariate normal over (height, weight), its pdf written
   out, the closed-form mean vector and covariance, drawn as a 3-D surface and as contours.

No data file ships with us, so by default the heights and (height, weight) samples are
synthetic, generated from the documented parameters below and labelled so in every output.
Pass your own with --heights-csv / --height-weight-csv (numbers in the first one or two
columns; a header row is skipped).

Run:  python chapters/classical_normal.py [--heights-csv my_heights.csv]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy.stats import norm

from common import figures
from common.classical.gaussians import mvn_mle, mvn_pdf, normal_mle, normal_pdf
from common.cli import make_parser, parse, run_main
from common.errors import UserError
from common.figures import plt  # pyplot, after figures chose the headless backend
from common.results import write_metrics
from common.run import start

CHAPTER = "classical_normal"
# The synthetic samples (not real measurements; chosen to resemble adult heights and weights).
HEIGHTS = {"mean_cm": 170.0, "sd_cm": 10.0, "n": 1000}
HEIGHT_WEIGHT = {"mean": [170.0, 70.0], "sd": [10.0, 12.0], "correlation": 0.6, "n": 1000}


def synthetic_heights(rng, n: int = HEIGHTS["n"]) -> np.ndarray:
    return rng.normal(HEIGHTS["mean_cm"], HEIGHTS["sd_cm"], n)


def synthetic_height_weight(rng, n: int = HEIGHT_WEIGHT["n"]) -> np.ndarray:
    sd, r = np.array(HEIGHT_WEIGHT["sd"]), HEIGHT_WEIGHT["correlation"]
    cov = np.array([[sd[0] ** 2, r * sd[0] * sd[1]], [r * sd[0] * sd[1], sd[1] ** 2]])
    return rng.multivariate_normal(HEIGHT_WEIGHT["mean"], cov, n)


def read_columns(path: Path, columns: int) -> np.ndarray:
    """The first `columns` numeric columns of a CSV (header row allowed) as floats."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read it ({err})") from None
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    try:
        float(rows[0][0])
    except (ValueError, IndexError):
        rows = rows[1:]  # a header
    try:
        values = np.array([[float(cell) for cell in row[:columns]] for row in rows])
    except ValueError as err:
        raise UserError(f"{path}: not numeric ({err})") from None
    if values.ndim != 2 or values.shape[1] != columns or len(values) < 3:
        raise UserError(f"{path}: need at least 3 rows with {columns} numeric column(s)")
    if not np.isfinite(values).all():
        raise UserError(f"{path}: contains non-finite values")
    return values[:, 0] if columns == 1 else values


def flags():
    """The command line: the seed, the output folder and, optionally, your own CSV data."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=None,
                         dataset=None)
    parser.add_argument("--heights-csv", type=Path, help="a CSV of heights (first column)")
    parser.add_argument("--height-weight-csv", type=Path,
                        help="a CSV of (height, weight) pairs (first two columns)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        print("This chapter has no neural network: its models are formulas (see --help).")
        return 0
    with start(args) as run:  # the seed and the output folder
        # The data: heights, and (height, weight) pairs: synthetic unless you give CSVs.
        rng = np.random.default_rng(run.seed)
        heights, data_1d = _sample(args.heights_csv, 1, synthetic_heights, rng, HEIGHTS)
        pairs, data_2d = _sample(args.height_weight_csv, 2, synthetic_height_weight, rng,
                                 HEIGHT_WEIGHT)
        print(f"heights: {data_1d['description']}\nheight/weight: {data_2d['description']}")

        # The normal density for a few means and spreads, and the central limit theorem:
        # means of many draws from a skewed distribution come out normal.
        _plot_pdfs(run.out / "normal_pdfs.png")
        clt = _plot_central_limit(rng, run.out / "central_limit.png",
                                  draws=2000 if run.quick else 20000)

        # Maximum likelihood: the normal that fits the heights best, what it predicts, and
        # new heights generated from it; then the same in two dimensions.
        models = {**fit_heights(heights, rng, run.out), **fit_pairs(pairs, run.out),
                  "central_limit": clt}
        write_metrics(run, data={"heights": data_1d, "height_weight": data_2d}, models=models)
    print(run.closing(f"Figures and metrics.json are in {run.out}/"))
    return 0


def fit_heights(heights: np.ndarray, rng, out: Path) -> dict:
    """The normal distribution's maximum-likelihood fit to the heights, what it predicts, and
    new heights generated from it."""
    mu, sigma = normal_mle(heights)
    generated = rng.normal(mu, sigma, len(heights))
    taller = float(norm.sf(190.0, mu, sigma))
    between = float(norm.cdf(180.0, mu, sigma) - norm.cdf(160.0, mu, sigma))
    print(f"MLE: mean {mu:.2f} cm, sd {sigma:.2f} cm; P(height > 190) = {taller:.4f} "
          f"(sample: {np.mean(heights > 190):.4f}); P(160 < height < 180) = {between:.4f}")
    _plot_heights(heights, generated, mu, sigma, out / "heights_mle.png")
    return {"normal_mle": {"mean": round(mu, 3), "sd": round(sigma, 3),
                           "p_taller_than_190": round(taller, 4),
                           "sample_share_taller_than_190": round(float(np.mean(heights > 190)),
                                                                 4),
                           "p_between_160_180": round(between, 4)}}


def fit_pairs(pairs: np.ndarray, out: Path) -> dict:
    """The multivariate normal's maximum-likelihood fit to (height, weight) pairs."""
    mean, cov = mvn_mle(pairs)
    _plot_bivariate(pairs, mean, cov, out)
    correlation = float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))
    print(f"MLE: mean vector {np.round(mean, 2).tolist()}, correlation {correlation:.3f}")
    return {"multivariate_normal_mle": {"mean": np.round(mean, 3).tolist(),
                                        "covariance": np.round(cov, 3).tolist(),
                                        "correlation": round(correlation, 4)}}


def _sample(path, columns, synthesise, rng, params) -> tuple[np.ndarray, dict]:
    if path is not None:
        values = read_columns(path, columns)
        return values, {"name": path.name, "source": f"user CSV {path}", "size": len(values),
                        "description": f"{len(values)} rows from {path}"}
    values = synthesise(rng)
    return values, {"name": "synthetic", "size": len(values),
                    "source": f"synthetic, generated from {params} (not real measurements)",
                    "description": f"{len(values)} synthetic draws from {params}"}


def _plot_pdfs(path) -> None:
    x = np.linspace(-6, 6, 400)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for mu, sigma in ((0, 1), (0, 2), (2, 0.5)):
        ax.plot(x, normal_pdf(x, mu, sigma), label=f"N({mu}, {sigma}^2)")
    ax.set(title="The normal pdf: mu shifts it, sigma widens it", xlabel="x", ylabel="density")
    ax.legend()
    figures.save(fig, path)


def _plot_central_limit(rng, path, draws: int) -> dict:
    """Standardised sums of n Uniform(0, 1) draws approach N(0, 1) as n grows."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 3), sharey=True)
    x = np.linspace(-4, 4, 200)
    gaps = {}
    for ax, n in zip(axes, (1, 2, 5, 30)):
        sums = rng.uniform(size=(draws, n)).sum(axis=1)
        z = (sums - n / 2) / np.sqrt(n / 12)  # mean n/2, variance n/12
        ax.hist(z, bins=60, density=True, alpha=0.6)
        ax.plot(x, normal_pdf(x, 0, 1), color="black")
        ax.set(title=f"sum of {n} uniform draw{'s' * (n > 1)}", xlim=(-4, 4))
        # Kolmogorov-Smirnov distance to N(0, 1): shrinks as n grows.
        z = np.sort(z)
        gaps[f"ks_distance_n{n}"] = round(float(np.max(np.abs(
            norm.cdf(z) - np.arange(1, len(z) + 1) / len(z)))), 4)
    fig.suptitle("Central limit theorem: standardised sums against the N(0, 1) pdf", y=1.06)
    figures.save(fig, path)
    return gaps


def _plot_heights(heights, generated, mu, sigma, path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bins = np.linspace(heights.min() - 5, heights.max() + 5, 40)
    ax.hist(heights, bins=bins, density=True, alpha=0.5, label="sample")
    ax.hist(generated, bins=bins, density=True, histtype="step", linewidth=1.5,
            label="generated from the fit")
    x = np.linspace(bins[0], bins[-1], 300)
    ax.plot(x, normal_pdf(x, mu, sigma), color="black", label=f"N({mu:.1f}, {sigma:.1f}^2)")
    ax.fill_between(x[x > 190], normal_pdf(x[x > 190], mu, sigma), alpha=0.4, color="red",
                    label="P(height > 190)")
    ax.set(title="Maximum-likelihood normal fit of heights", xlabel="height (cm)",
           ylabel="density")
    ax.legend(fontsize=8)
    figures.save(fig, path)


def _plot_bivariate(pairs, mean, cov, out) -> None:
    lo, hi = pairs.min(axis=0), pairs.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80))
    density = mvn_pdf(np.column_stack([gx.ravel(), gy.ravel()]), mean, cov).reshape(gx.shape)
    fig = plt.figure(figsize=(6.5, 5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(gx, gy, density, cmap="viridis", linewidth=0)
    ax.set(title="Fitted bivariate normal pdf", xlabel="height (cm)", ylabel="weight (kg)")
    figures.save(fig, out / "bivariate_surface.png")
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(pairs[:, 0], pairs[:, 1], s=4, alpha=0.4, label="sample")
    contours = ax.contour(gx, gy, density, levels=8, cmap="viridis")
    ax.clabel(contours, fontsize=6, fmt="%.1e")
    ax.plot(*mean, "r+", markersize=14, label="MLE mean")
    ax.set(title="Contours of the fitted bivariate normal", xlabel="height (cm)",
           ylabel="weight (kg)")
    ax.legend(fontsize=8)
    figures.save(fig, out / "bivariate_contours.png")


if __name__ == "__main__":
    sys.exit(run_main(main))
