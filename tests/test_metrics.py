import numpy as np
import pytest

from common.eval.classifier import FeatureClassifier
from common.eval.metrics import fid_from_features, frechet_distance, gaussian_stats


def test_frechet_distance_one_dimensional_closed_form():
    # For 1-D Gaussians: d^2 = (mu1 - mu2)^2 + (s1 - s2)^2.
    assert frechet_distance(1.0, 4.0, -2.0, 9.0) == pytest.approx(9.0 + 1.0)


def test_frechet_distance_diagonal_closed_form():
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    expected = 5.0 + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected)


def test_frechet_distance_full_covariances_against_eigenvalues():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    # Tr((C1 C2)^(1/2)) is the sum of square roots of C1 C2's (real, positive) eigenvalues.
    root_trace = np.sum(np.sqrt(np.linalg.eigvals(c1 @ c2).real))
    expected = np.trace(c1) + np.trace(c2) - 2 * root_trace
    assert frechet_distance(np.zeros(5), c1, np.zeros(5), c2) == pytest.approx(expected)
    assert frechet_distance(np.ones(5), c1, np.ones(5), c1) == pytest.approx(0.0, abs=1e-6)


def test_fid_from_features_sees_a_shift():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(4000, 3))
    assert fid_from_features(real, rng.normal(size=(4000, 3))) < 0.02
    assert fid_from_features(real, rng.normal(size=(4000, 3)) + 2.0) == pytest.approx(12, rel=0.05)
    with pytest.raises(ValueError):
        gaussian_stats(np.ones(3))


def test_feature_classifier_trains_caches_and_measures(digits, tmp_path):
    first = FeatureClassifier.for_dataset(digits, tmp_path, epochs=3)
    assert first.path.exists() and first.test_accuracy > 0.6
    again = FeatureClassifier.for_dataset(digits, tmp_path, epochs=3)
    assert again.test_accuracy == first.test_accuracy  # loaded, not retrained
    x, y = digits.x_test, digits.y_test
    assert first.conditional_accuracy(x, y) == pytest.approx(first.test_accuracy, abs=1e-6)
    assert first.conditional_accuracy(x, (y + 1) % 10) < 0.2
    assert first.features(x[:7]).shape == (7, 128)
    scores = first.score_conditional(x, y, x, bar=0.99)
    assert scores["conditional_accuracy"] == pytest.approx(first.test_accuracy, abs=1e-4)
    hits = first.predict(x) == y
    assert scores["conditional_accuracy_per_class"][3] == pytest.approx(hits[y == 3].mean(),
                                                                         abs=1e-3)
    assert scores["bar_verdict"] == "missed" and scores["classifier_fid"] < 1e-2
    assert first.score_conditional(x, y, x)["bar_verdict"] is None
    # Real images are closer to other real images than to noise, and to themselves.
    noise = np.random.default_rng(0).uniform(size=x.shape).astype("float32")
    assert first.fid(x[:256], x[256:]) < first.fid(x[:256], noise[:256])
    assert first.fid(x.reshape(len(x), -1), x) == pytest.approx(0.0, abs=1e-3)
