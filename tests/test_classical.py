import json

import numpy as np
import pytest
from scipy import optimize, stats

from chapters import classical_gmm_em as gmm_chapter
from chapters import classical_normal as normal_chapter
from common.classical.gaussians import (
    mvn_log_pdf,
    mvn_mle,
    normal_log_likelihood,
    normal_mle,
    normal_pdf,
)
from common.classical.gmm import GaussianMixture, e_step, fit_em, initial_mixture
from tests.conftest import run_notebook, run_script


def test_normal_pdf_and_mvn_pdf_match_scipy():
    x = np.linspace(-3, 5, 9)
    np.testing.assert_allclose(normal_pdf(x, 1.0, 2.0), stats.norm.pdf(x, 1.0, 2.0))
    mean, cov = np.array([1.0, -1.0]), np.array([[2.0, 0.7], [0.7, 1.0]])
    points = np.random.default_rng(0).normal(size=(20, 2))
    np.testing.assert_allclose(mvn_log_pdf(points, mean, cov),
                               stats.multivariate_normal(mean, cov).logpdf(points))


def test_closed_form_mle_equals_numerical_maximisation():
    sample = np.random.default_rng(1).normal(170.0, 10.0, 500)
    mu, sigma = normal_mle(sample)

    def negative_log_likelihood(params):
        return -normal_log_likelihood(sample, params[0], np.exp(params[1]))

    found = optimize.minimize(negative_log_likelihood, x0=[150.0, np.log(30.0)],
                              method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10})
    assert found.x[0] == pytest.approx(mu, abs=1e-3)
    assert np.exp(found.x[1]) == pytest.approx(sigma, abs=1e-3)
    assert sigma == pytest.approx(np.std(sample))  # the MLE divides by n


def test_multivariate_mle_is_the_sample_mean_and_biased_covariance():
    x = normal_chapter.synthetic_height_weight(np.random.default_rng(2), n=4000)
    mean, cov = mvn_mle(x)
    np.testing.assert_allclose(mean, x.mean(axis=0))
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False, bias=True))
    assert cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) == pytest.approx(0.6, abs=0.03)


def test_em_log_likelihood_never_decreases_and_matches_sklearn():
    x, _, _ = gmm_chapter.iris_petals()
    for seed in range(5):
        initial = initial_mixture(x, 3, np.random.default_rng(seed))
        em = fit_em(x, initial, max_iter=500, tol=1e-9)
        assert np.all(np.diff(em.log_likelihoods) >= -1e-12)
        assert em.converged
        sk = gmm_chapter.compare_with_sklearn(x, initial, max_iter=500, tol=1e-9)
        assert em.mixture.mean_log_likelihood(x) == pytest.approx(
            sk["mean_log_likelihood"], abs=1e-5)


def test_e_step_responsibilities_are_a_distribution():
    x = np.random.default_rng(3).normal(size=(50, 2))
    resp, _ = e_step(x, initial_mixture(x, 4, np.random.default_rng(0)))
    assert resp.shape == (50, 4) and (resp >= 0).all()
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)


def test_sampling_a_fitted_mixture_reproduces_its_moments():
    x, _, _ = gmm_chapter.iris_petals()
    fitted = fit_em(x, initial_mixture(x, 3, np.random.default_rng(0))).mixture
    draws, components = fitted.sample(200_000, np.random.default_rng(1))
    mean = fitted.weights @ fitted.means
    # Law of total covariance: E[Cov(x|k)] + Cov(E[x|k]).
    spread = fitted.means - mean
    cov = (np.einsum("k,kij->ij", fitted.weights, fitted.covariances)
           + np.einsum("k,ki,kj->ij", fitted.weights, spread, spread))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov, atol=0.01)
    np.testing.assert_allclose(np.bincount(components) / len(components), fitted.weights,
                               atol=0.005)


def test_em_recovers_a_known_mixture():
    toy = gmm_chapter.TOY
    x, _ = toy.sample(6000, np.random.default_rng(4))
    em = fit_em(x, GaussianMixture(np.full(3, 1 / 3), toy.means + 0.8,
                                   np.repeat(np.eye(2)[None], 3, axis=0)))
    np.testing.assert_allclose(em.mixture.means, toy.means, atol=0.1)
    np.testing.assert_allclose(em.mixture.weights, toy.weights, atol=0.02)


def test_matched_accuracy():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert gmm_chapter.matched_accuracy(labels, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    predicted = np.array([2, 2, 0, 1, 1, 1])
    assert gmm_chapter.matched_accuracy(labels, predicted) == pytest.approx(5 / 6)


def test_heights_csv_is_read_and_bad_csv_is_one_line(tmp_path):
    good = tmp_path / "h.csv"
    good.write_text("height\n150\n160.5\n170\n")
    np.testing.assert_allclose(normal_chapter.read_columns(good, 1), [150, 160.5, 170])
    bad = tmp_path / "bad.csv"
    bad.write_text("height\n150\ntall\n170\n")
    result = run_script("chapters/classical_normal.py", "--heights-csv", bad,
                        "--out", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"classical_normal.py: error: {bad}: not numeric "
                                                  "(could not convert string to float: 'tall')"]


def test_quick_normal_notebook_writes_figures_and_metrics(tmp_path):
    ran = run_notebook("classical_normal", tmp_path)  # the chapter's notebook, cell by cell
    assert ran.images >= 5 and "P(height > 190)" in ran.text
    for name in ("normal_pdfs.png", "central_limit.png", "heights_mle.png",
                 "bivariate_surface.png", "bivariate_contours.png"):
        assert (tmp_path / name).stat().st_size > 1000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dataset"]["heights"]["name"] == "synthetic"
    assert "tensorflow" not in metrics["versions"]  # numpy and scipy only


def write_latents(folder, n=400):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    z = rng.normal(size=(n, 2)) * 0.3 + np.stack([np.cos(labels), np.sin(labels)], axis=1) * 2
    np.savez(folder / "latents.npz", z_vae_mean=z, labels=labels)
    return folder / "latents.npz"


def test_quick_gmm_notebook_without_a_saved_vae(tmp_path):
    latents = write_latents(tmp_path)
    ran = run_notebook("classical_gmm_em", tmp_path / "o", LATENTS=str(latents))
    assert ran.images >= 4 and "EM on iris petals" in ran.text
    for name in ("mixture_sampling.png", "em_iris_iterations.png", "em_log_likelihood.png",
                 "gmm_on_vae_latents.png"):
        assert (tmp_path / "o" / name).stat().st_size > 1000
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    bridge = metrics["models"]["vae_latent_bridge"]
    assert bridge["gmm_mean_log_likelihood"] > bridge["prior_mean_log_likelihood"]
    assert metrics["models"]["em_iris"]["log_likelihood_never_decreased"] is True
    assert "tensorflow" not in metrics["versions"]


def test_gmm_samples_are_decoded_by_a_saved_vae(tmp_path):
    from chapters.ch2_vae import build_decoder
    from common.atomic import save_model
    latents = write_latents(tmp_path)
    save_model(build_decoder("vae_decoder"), tmp_path / "vae_decoder.keras")
    result = run_script("chapters/classical_gmm_em.py", "--quick", "--out", tmp_path / "o",
                        "--latents", latents)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "o" / "gmm_vae_samples.png").stat().st_size > 1000


def test_missing_latents_file_is_one_line(tmp_path):
    result = run_script("chapters/classical_gmm_em.py", "--latents", tmp_path / "nope.npz",
                        "--out", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"classical_gmm_em.py: error: --latents {tmp_path / 'nope.npz'}: no such file "
        "(run chapters/ch2_vae.py)"]


@pytest.mark.parametrize("content", [b"", b"junk", "npz-without-codes"])
def test_an_unreadable_latents_file_is_one_line_and_writes_nothing(tmp_path, content):
    bad = tmp_path / "latents.npz"
    if content == "npz-without-codes":
        np.savez(bad, labels=np.zeros(3))
    else:
        bad.write_bytes(content)
    out = tmp_path / "o"
    result = run_script("chapters/classical_gmm_em.py", "--quick", "--latents", bad,
                        "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"classical_gmm_em.py: error: {bad}: not a")
    assert not any(p.is_file() for p in out.rglob("*"))
