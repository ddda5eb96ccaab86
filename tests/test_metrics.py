import json
from dataclasses import replace

import numpy as np
import pytest

from common.eval.classifier import (
    JUDGE_ARCHITECTURE,
    FeatureClassifier,
    augment,
    checksum,
    robustness,
    train_judge,
    wilson_interval,
)
from common.eval.metrics import (
    FidReference,
    KidReference,
    fid_from_features,
    fid_interval,
    frechet_distance,
    gaussian_stats,
)


def test_guided_samples_are_scored_on_the_training_sets_class_mix():
    """FID compares samples with the data as it is: a conditional generator is asked for its
    classes in the training set's proportions (equal numbers where the classes are)."""
    from types import SimpleNamespace

    from common.eval.guidance import class_labels

    balanced = SimpleNamespace(y_train=np.repeat(np.arange(10), 600), num_classes=10)
    assert np.bincount(class_labels(balanced, 1000)).tolist() == [100] * 10
    skewed = SimpleNamespace(y_train=np.repeat(np.arange(3), [600, 300, 3]), num_classes=3)
    labels = class_labels(skewed, 90)
    assert np.bincount(labels).tolist() == [59, 30, 1]  # the rare class still appears
    assert len(labels) == 90 and np.all(np.diff(labels) >= 0)


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


@pytest.fixture(scope="module")
def judge8(digits, tmp_path_factory):
    """The judge trained for 8 epochs on the digits (augmented), cached in its own folder."""
    return FeatureClassifier.for_dataset(digits, tmp_path_factory.mktemp("judge8"), epochs=8)


def test_feature_classifier_trains_caches_and_measures(digits, judge8):
    first = judge8
    assert first.path.exists() and first.test_accuracy > 0.6
    again = FeatureClassifier.for_dataset(digits, first.path.parents[1], epochs=8)
    assert again.test_accuracy == first.test_accuracy  # loaded, not retrained
    x, y = digits.x_test, digits.y_test
    assert first.conditional_accuracy(x, y) == pytest.approx(first.test_accuracy, abs=1e-6)
    assert first.conditional_accuracy(x, (y + 1) % 10) < 0.2
    assert first.features(x[:7]).shape == (7, 128)
    scores = first.score_conditional(x, y, digits, bar=0.99)
    assert scores["conditional_accuracy"] == pytest.approx(first.test_accuracy, abs=1e-4)
    hits = first.predict(x) == y
    assert scores["conditional_accuracy_per_class"][3] == pytest.approx(hits[y == 3].mean(),
                                                                         abs=1e-3)
    assert scores["bar_verdict"] == "missed" and scores["classifier_fid"] < 1e-2
    low, high = scores["conditional_accuracy_ci95"]
    assert low < scores["conditional_accuracy"] < high
    assert scores["fid_floor"] > 0 and scores["judge"] == first.checksum
    assert first.score_conditional(x, y, digits)["bar_verdict"] is None
    assert first.describe()["robustness"]["clean"] == first.test_accuracy
    # Real images are closer to other real images than to noise, and to themselves.
    noise = np.random.default_rng(0).uniform(size=x.shape).astype("float32")
    assert first.fid(x[:256], x[256:]) < first.fid(x[:256], noise[:256])
    assert first.fid(x.reshape(len(x), -1), x) == pytest.approx(0.0, abs=1e-3)


def test_a_cached_judge_of_another_architecture_is_trained_afresh(digits, tmp_path):
    first = FeatureClassifier.for_dataset(digits, tmp_path, epochs=1)
    assert first.describe()["architecture"] == JUDGE_ARCHITECTURE
    info = json.loads(first.path.with_suffix(".json").read_text())
    info["architecture"], info["checksum"] = "one_conv_per_stage", "0" * 16
    first.path.with_suffix(".json").write_text(json.dumps(info))
    again = FeatureClassifier.for_dataset(digits, tmp_path, epochs=1)
    assert again.checksum == first.checksum != "0" * 16  # retrained, deterministically


def test_the_judge_trains_to_the_same_weights_twice(digits):
    small = replace(digits, x_train=digits.x_train[:256], y_train=digits.y_train[:256])
    first, second = (train_judge(small, epochs=1) for _ in range(2))
    assert checksum(first) == checksum(second)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert checksum(train_judge(small, epochs=1, seed=1)) != checksum(first)


def test_augmentation_keeps_half_clean_and_stays_in_range(digits):
    x = digits.x_train[:400]
    out = augment(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    unchanged = np.all(np.isclose(out, x), axis=(1, 2, 3)).mean()
    assert 0.4 < unchanged < 0.75  # half untouched, a few touched ones drew no change


def test_robustness_falls_without_the_augmentation(digits, judge8):
    plain = train_judge(digits, epochs=8, augmented=False)
    robust = judge8.model  # train_judge(digits, epochs=8, augmented=True), cached
    x, y = digits.x_test, digits.y_test
    plain_scores, robust_scores = robustness(plain, x, y), robustness(robust, x, y)
    assert set(plain_scores) == {"clean", "noise_0.1", "noise_0.2", "blur_1px"}
    assert plain_scores["noise_0.2"] < plain_scores["clean"]  # noise costs the plain judge
    assert robust_scores["noise_0.2"] > plain_scores["noise_0.2"] + 0.02


def test_the_jackknife_interval_means_what_it_says():
    # The spread of the FID over independent draws of 400 samples from one "generator",
    # against the jackknife's estimate of it from each draw alone; and how often the interval
    # of one draw holds the FID's mean over all draws (its expectation at this count).
    rng = np.random.default_rng(0)
    real = rng.normal(size=(10_000, 6))
    reference = FidReference(real)
    scale = np.array([1.3, 1.0, 0.8, 1.0, 1.1, 1.0])
    draws = [reference.fid_with_interval(rng.normal(size=(400, 6)) * scale + 0.2)
             for _ in range(60)]
    fids = np.array([d["fid"] for d in draws])
    ses = np.array([d["se"] for d in draws])
    assert 0.7 < ses.mean() / fids.std(ddof=1) < 1.5
    covered = np.mean([low <= fids.mean() <= high for low, high in (d["ci95"] for d in draws)])
    assert covered >= 0.85


def test_the_intervals_tell_apart_only_different_distributions():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(4000, 16))
    kid = KidReference(real)
    same, other = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    shifted = rng.normal(size=(600, 16)) + np.r_[0.4, np.zeros(15)]
    low, high = kid.kid_with_interval(same)["ci95"]
    assert low <= 0.0 <= high  # indistinguishable from the real set
    assert kid.kid_with_interval(shifted)["ci95"][0] > 0.0  # told apart
    fid = FidReference(real)
    a, b, c = (fid.fid_with_interval(x)["ci95"] for x in (same, other, shifted))
    assert a[0] <= b[1] and b[0] <= a[1]  # two draws of one distribution overlap
    assert c[0] > max(a[1], b[1])  # the shifted one lies apart from both


def test_every_interval_contains_its_estimate():
    # Small and biased sets (duplicates, few samples) are where a basic bootstrap interval
    # ended below its own estimate.
    rng = np.random.default_rng(2)
    real = rng.normal(size=(3000, 8))
    reference, kid = FidReference(real), KidReference(real)
    for n, shift in ((12, 0.0), (50, 0.0), (200, 1.0), (1000, 0.1)):
        fake = rng.normal(size=(n, 8)) + shift
        fake[: n // 3] = fake[0]  # a third of them one image
        for report, key in ((reference.fid_with_interval(fake), "fid"),
                            (kid.kid_with_interval(fake), "kid")):
            low, high = report["ci95"]
            assert low <= report[key] <= high, (n, shift, key, report)
    assert fid_interval(real[:500], real[500:1000])["fid"] == pytest.approx(
        fid_from_features(real[:500], real[500:1000]), rel=1e-6)


def test_the_results_table_intervals_contain_their_estimates():
    import re

    from tests.conftest import ROOT

    text = (ROOT / "docs" / "results.md").read_text()
    table = text[text.index("<!-- run_all: the table below"):
                 text.index("<!-- run_all: end of table -->")]
    found = re.findall(r"(-?\d+\.\d+) \[(-?\d+\.?\d*), (-?\d+\.?\d*)\]", table)
    assert found  # the table reports intervals
    for estimate, low, high in found:
        assert float(low) <= float(estimate) <= float(high), (estimate, low, high)


def test_the_wilson_interval():
    low, high = wilson_interval(90, 100)
    assert (round(low, 3), round(high, 3)) == (0.826, 0.945)  # the textbook example
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_shipped_judge_is_used_only_for_the_data_it_was_trained_on(digits, tmp_path,
                                                                      monkeypatch):
    import common.eval.classifier as classifier

    trained = FeatureClassifier.for_dataset(digits, tmp_path / "here", epochs=1)
    assert trained.describe()["source"] == "trained on this machine"
    trained.ship(digits, tmp_path / "shipped")
    monkeypatch.setattr(classifier, "SHIPPED", tmp_path / "shipped")
    shipped = FeatureClassifier.for_dataset(digits, tmp_path / "elsewhere", epochs=1)
    assert shipped.checksum == trained.checksum
    assert shipped.describe()["source"].startswith("shipped")
    assert not (tmp_path / "elsewhere").exists()  # nothing trained, nothing cached
    np.testing.assert_array_equal(shipped.predict(digits.x_test), trained.predict(digits.x_test))
    # The same name and size but other data (one label changed) does not get this judge.
    y = digits.y_train.copy()
    y[0] = (y[0] + 1) % 10
    assert FeatureClassifier.shipped(replace(digits, y_train=y)) is None
    # Nor do weights that no longer hash to the recorded checksum.
    record = tmp_path / "shipped" / f"{classifier.judge_stem(digits)}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "checksum": "0" * 16}))
    assert FeatureClassifier.shipped(digits) is None


@pytest.mark.parametrize("name,expected", [("fashion_mnist", "151c42dcba85d958"),
                                           ("mnist5k", "7697627daafed730")])
def test_the_shipped_judges_are_the_documented_instruments(tmp_path, name, expected):
    from common.data import DEBIAN_FASHION_DIR, load

    if name == "fashion_mnist" and not DEBIAN_FASHION_DIR.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = load(name)
    judge = FeatureClassifier.for_dataset(data, tmp_path)  # nothing trained, nothing cached
    assert judge.checksum == expected and not (tmp_path / "_classifiers").exists()
    assert judge.conditional_accuracy(data.x_test, data.y_test) == pytest.approx(
        judge.info["robustness"]["clean"], abs=1e-4)


def test_shipping_an_unknown_dataset_is_one_error_line(capsys):
    from common.cli import run_main
    from common.eval.classifier import main
    prog = "python -m common.eval.classifier"
    assert run_main(main, ["--ship", "nope"], prog=prog) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{prog}: error: unknown dataset 'nope'; choose one of auto, "
        "mnist, fashion_mnist, mnist5k, emoji or tfds:NAME"]
