import keras
import numpy as np
import pytest

from chapters.ch3_vae import Sampling, VaeLossLayer
from common.vae.annealing import KLAnnealing
from common.vae.elbo import bernoulli_nll, kl_to_standard_normal


def test_bernoulli_nll_matches_a_hand_computation():
    x = np.array([[1.0, 0.0, 0.5, 1.0]], "float32").reshape(1, 2, 2, 1)  # images are flattened
    p = np.array([[0.9, 0.2, 0.5, 0.6]], "float32")
    expected = -(np.log(0.9) + np.log(0.8) + 0.5 * np.log(0.5) + 0.5 * np.log(0.5) + np.log(0.6))
    assert float(bernoulli_nll(x, p)[0]) == pytest.approx(expected, rel=1e-6)
    # Saturated outputs stay finite thanks to clipping.
    assert np.isfinite(float(bernoulli_nll(np.ones((1, 4), "float32"),
                                           np.zeros((1, 4), "float32"))[0]))


def test_kl_matches_a_hand_computation_and_vanishes_at_the_prior():
    mean = np.array([[0.0, 0.0], [1.0, -1.0]], "float32")
    log_var = np.array([[0.0, 0.0], [np.log(2.0), 0.0]], "float32")
    kl = np.asarray(kl_to_standard_normal(mean, log_var))
    assert kl[0] == pytest.approx(0.0, abs=1e-7)
    # 1-D KL(N(m, s2) || N(0, 1)) = (s2 + m^2 - 1 - log s2) / 2, summed over dimensions.
    expected = (2.0 + 1.0 - 1.0 - np.log(2.0)) / 2 + (1.0 + 1.0 - 1.0 - 0.0) / 2
    assert kl[1] == pytest.approx(expected, rel=1e-6)


def loss_model(beta):
    """A model with no weights: inputs are x, probabilities, mean, log_var."""
    inputs = [keras.Input((4,)), keras.Input((4,)), keras.Input((2,)), keras.Input((2,))]
    out = VaeLossLayer(beta=beta, name="vae_loss")(inputs)
    model = keras.Model(inputs, out)
    model.compile(optimizer="sgd")
    return model


def test_loss_layer_adds_reconstruction_plus_beta_kl():
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(6, 4)) > 0.5).astype("float32")
    p = rng.uniform(0.1, 0.9, size=(6, 4)).astype("float32")
    mean = rng.normal(size=(6, 2)).astype("float32")
    log_var = rng.normal(scale=0.5, size=(6, 2)).astype("float32")
    rec = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)
    kl = -0.5 * (1 + log_var - mean ** 2 - np.exp(log_var)).sum(axis=1)
    for beta in (1.0, 0.25, 4.0):
        got = loss_model(beta).evaluate([x, p, mean, log_var], batch_size=6, verbose=0)
        assert got == pytest.approx(np.mean(rec + beta * kl), rel=1e-5)


def test_annealing_changes_beta_inside_the_compiled_step():
    # Reconstruction is ~0 (p = x), the KL is a fixed c, so each epoch's loss is beta * c.
    x = np.tile(np.array([[1.0, 0.0, 1.0, 0.0]], "float32"), (8, 1))
    mean = np.full((8, 2), 1.0, "float32")
    log_var = np.zeros((8, 2), "float32")
    c = 1.0  # KL of N((1, 1), I) from N(0, I)
    model = loss_model(beta=1.0)
    history = model.fit([x, x, mean, log_var], epochs=4, batch_size=8, verbose=0,
                        callbacks=[KLAnnealing("vae_loss", target=1.0, epochs=2)]).history
    assert history["beta"] == [0.0, 0.5, 1.0, 1.0]
    np.testing.assert_allclose(history["loss"], [0.0, 0.5 * c, c, c], atol=1e-4)


def test_sampling_is_seeded_fresh_each_call_and_follows_its_parameters():
    mean = np.full((20000, 2), [2.0, -1.0], "float32")
    log_var = np.full((20000, 2), [np.log(0.25), 0.0], "float32")
    a, b = Sampling(seed=7), Sampling(seed=7)
    first, again = np.asarray(a([mean, log_var])), np.asarray(a([mean, log_var]))
    np.testing.assert_array_equal(first, np.asarray(b([mean, log_var])))  # same seed
    assert not np.allclose(first, again)  # a fresh draw every call
    np.testing.assert_allclose(first.mean(axis=0), [2.0, -1.0], atol=0.03)
    np.testing.assert_allclose(first.std(axis=0), [0.5, 1.0], rtol=0.03)


def test_layers_round_trip_with_safe_mode(tmp_path):
    x = keras.Input((4,))
    stats = keras.layers.Dense(4)(x)
    mean, log_var = stats[:, :2], stats[:, 2:]
    z = Sampling(seed=1, name="sampling")([mean, log_var])
    probs = keras.layers.Dense(4, activation="sigmoid")(z)
    out = VaeLossLayer(beta=3.0, name="vae_loss")([x, probs, mean, log_var])
    model = keras.Model(x, out)
    model.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras", safe_mode=True)
    assert float(keras.ops.convert_to_numpy(loaded.get_layer("vae_loss").beta)) == 3.0
    assert loaded.get_layer("sampling").seed == 1
