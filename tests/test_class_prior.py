import numpy as np
import pytest

from common.errors import UserError
from common.vae.class_prior import ClassPrior


def two_classes(rng):
    """Class 0: two tight clusters at (-5, 0) and (5, 0); class 1: one cluster at (0, 8)."""
    a = rng.normal(size=(400, 2)) * 0.3 + [[-5.0, 0.0]]
    b = rng.normal(size=(400, 2)) * 0.3 + [[5.0, 0.0]]
    c = rng.normal(size=(400, 2)) * 0.3 + [[0.0, 8.0]]
    return np.concatenate([a, b, c]), np.repeat([0, 0, 1], 400)


def test_class_prior_draws_each_class_where_its_codes_are(tmp_path):
    rng = np.random.default_rng(0)
    codes, labels = two_classes(rng)
    prior = ClassPrior.fit(codes, labels, 2, components=2, seed=0)
    z = prior.sample(np.repeat([0, 1], 500), rng)
    assert z.dtype == np.float32 and z.shape == (1000, 2)
    zero, one = z[:500], z[500:]
    # class 0 lands in its two clusters, half in each, and never in the gap between them
    assert np.all(np.abs(np.abs(zero[:, 0]) - 5.0) < 2.0)
    assert np.mean(zero[:, 0] > 0) == pytest.approx(0.5, abs=0.1)
    assert np.all(np.abs(one - [0.0, 8.0]).max(axis=1) < 2.0)
    prior.save(tmp_path / "prior.npz")
    saved = np.load(tmp_path / "prior.npz")
    assert saved["means"].shape == (2, 2, 2) and saved["covariances"].shape == (2, 2, 2, 2)


def test_class_prior_needs_codes_of_every_class():
    # A user error (one line, exit 2): a --quick slice of a many-class dataset can miss a class.
    with pytest.raises(UserError, match="class 2.*--prior normal"):
        ClassPrior.fit(np.zeros((4, 2)), np.array([0, 0, 1, 1]), 3)



def test_temperature_scales_the_spread_around_each_component_not_the_components():
    rng = np.random.default_rng(1)
    codes, labels = two_classes(rng)
    prior = ClassPrior.fit(codes, labels, 2, components=2, seed=0)
    asked = np.zeros(4000, int)
    full = prior.sample(asked, np.random.default_rng(2))
    cool = prior.sample(asked, np.random.default_rng(2), temperature=0.5)
    # the same components are drawn (same rng), and each point moves halfway to its centre
    centre = np.where(full[:, :1] > 0, [5.0, 0.0], [-5.0, 0.0])
    assert np.std(cool - centre) == pytest.approx(0.5 * np.std(full - centre), rel=0.05)
    assert np.mean(cool[:, 0] > 0) == pytest.approx(np.mean(full[:, 0] > 0))
    at_zero = prior.sample(asked, np.random.default_rng(2), temperature=0.0)
    assert len(np.unique(at_zero.round(4), axis=0)) == 2  # just the two component means
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(asked, rng, temperature=-1.0)
