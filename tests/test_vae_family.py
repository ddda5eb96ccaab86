"""The chapter-3 VAE family's shared parts: encoders/decoders, ELBO scoring, the two-level loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from scipy.stats import multivariate_normal

from chapters.ch3_hierarchical_vae import HierarchicalVaeLossLayer
from chapters.ch3_vae import assemble_vae, conv_decoder, conv_encoder, dense_decoder, dense_encoder
from common.latent import traversal_codes
from common.pipeline import labelled_inputs
from common.vae.elbo import ElboMonitor, ElboReport, elbo_report, gaussian_log_density


def test_conv_parts_match_the_keras_io_vae_summary():
    # keras.io "Variational AutoEncoder" (latent_dim = 2): encoder 69,076, decoder 65,089.
    assert conv_encoder(2, hidden=16).count_params() == 69_076
    assert conv_decoder(2).count_params() == 65_089
    assert conv_decoder(2).output_shape == (None, 28, 28, 1)
    # The course's dense form: 784 -> 512 -> (z_mean, z_log_var) and back.
    assert dense_encoder(2).count_params() == 784 * 512 + 512 + 2 * (512 * 2 + 2)
    assert dense_decoder(2).count_params() == 2 * 512 + 512 + 512 * 784 + 784


def test_gaussian_log_density_matches_scipy():
    rng = np.random.default_rng(0)
    z, mean = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    log_var = rng.normal(scale=0.5, size=(5, 3))
    got = np.asarray(gaussian_log_density(z.astype("float32"), mean.astype("float32"),
                                          log_var.astype("float32")))
    expected = [multivariate_normal(mean[i], np.diag(np.exp(log_var[i]))).logpdf(z[i])
                for i in range(5)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_two_level_loss_matches_a_hand_computation():
    rng = np.random.default_rng(1)
    n = 4
    f = lambda *shape: rng.normal(size=shape).astype("float32")  # noqa: E731
    x = (rng.uniform(size=(n, 6)) > 0.5).astype("float32")
    p = rng.uniform(0.1, 0.9, size=(n, 6)).astype("float32")
    noise1, q1m, q1v, p1m, p1v = f(n, 3), f(n, 3), f(n, 3) * 0.3, f(n, 3), f(n, 3) * 0.3
    z1 = q1m + np.exp(0.5 * q1v) * noise1
    q2m, q2v = f(n, 2), f(n, 2) * 0.3

    def log_n(z, m, lv):
        return [multivariate_normal(m[i], np.diag(np.exp(lv[i]))).logpdf(z[i]) for i in range(n)]

    rec = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)
    kl1 = np.subtract(log_n(z1, q1m, q1v), log_n(z1, p1m, p1v))
    kl2 = -0.5 * (1 + q2v - q2m ** 2 - np.exp(q2v)).sum(axis=1)
    inputs = [keras.Input(a.shape[1:]) for a in (x, p, z1, noise1, q1v, p1m, p1v, q2m, q2v)]
    for beta in (1.0, 0.5):
        model = keras.Model(inputs, HierarchicalVaeLossLayer(beta=beta)(inputs))
        model.compile(optimizer="sgd")
        got = model.evaluate([x, p, z1, noise1, q1v, p1m, p1v, q2m, q2v], batch_size=n,
                             verbose=0)
        assert got == pytest.approx(np.mean(rec + beta * (kl1 + kl2)), rel=1e-5)


def test_two_level_loss_and_its_gradient_stay_finite_as_the_posterior_variance_vanishes():
    # The beta = 0 epoch of KL annealing lets q(z1 | x) shrink without limit; at a log
    # variance of -120, exp(log_var) is 0 in float32 and the division form of the density
    # gives 0 / 0. The loss layer must not (the chapter once stopped with a NaN loss there).
    noise1 = np.full((2, 3), 0.5, "float32")
    q1m = np.ones((2, 3), "float32")
    q1v = keras.Variable(np.full((2, 3), -120.0, "float32"))
    z1 = q1m + ops.exp(0.5 * q1v) * noise1
    zeros = np.zeros((2, 3), "float32")
    layer = HierarchicalVaeLossLayer(beta=0.0)
    with tf.GradientTape() as tape:
        layer([np.ones((2, 4), "float32"), np.full((2, 4), 0.9, "float32"), z1, noise1, q1v,
               zeros, zeros, zeros[:, :2], zeros[:, :2]])
        loss = layer.losses[0]
    assert np.isfinite(float(loss))
    assert np.isfinite(tape.gradient(loss, q1v.value).numpy()).all()
    assert float(ops.exp(q1v)[0, 0]) == 0.0  # the case the division form cannot take


def test_add_loss_vae_trains_with_fit_x_and_its_score_agrees_with_the_loss(digits):
    keras.utils.set_random_seed(0)
    vae = assemble_vae(dense_encoder(4, hidden=64), dense_decoder(4, hidden=64), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))  # no loss: the layer adds it
    x = digits.x_train
    before = vae.evaluate(x, batch_size=128, verbose=0)
    history = vae.fit(x, epochs=4, batch_size=64, verbose=0,
                      callbacks=[ElboMonitor(digits.x_test[:200])]).history
    after = vae.evaluate(x, batch_size=128, verbose=0)
    assert after < 0.8 * before
    assert set(history) >= {"loss", "val_nelbo", "val_reconstruction", "val_kl"}
    report = elbo_report(vae.get_layer("encoder"), vae.get_layer("decoder"), x)
    # Two independent estimates of the same -ELBO (Keras' Sampling vs NumPy noise).
    assert report.nelbo == pytest.approx(after, rel=0.02)
    assert report.summary()["latent_dim"] == 4


def test_active_units_count_dimensions_whose_means_move():
    rng = np.random.default_rng(0)
    means = np.stack([rng.normal(size=1000), rng.normal(scale=0.01, size=1000),
                      rng.normal(scale=0.5, size=1000)], axis=1)
    report = ElboReport(np.zeros(1000), np.zeros((1000, 3)), means)
    assert report.active.tolist() == [True, False, True]


def test_conditional_vae_sees_the_label_in_both_halves(digits):
    vae = assemble_vae(conv_encoder(3, hidden=32, condition_dim=10),
                       conv_decoder(3, condition_dim=10), seed=0, name="cvae")
    vae.compile(optimizer="adam")
    data = labelled_inputs(digits.x_train[:64], digits.y_train[:64], 10, batch_size=32)
    vae.fit(data, epochs=1, verbose=0)
    decoder, encoder = vae.get_layer("decoder"), vae.get_layer("encoder")
    z = np.zeros((2, 3), "float32")
    labels = np.eye(10, dtype="float32")[[1, 7]]
    images = decoder.predict([z, labels], verbose=0)
    assert not np.allclose(images[0], images[1])
    x = np.repeat(digits.x_test[:1], 2, axis=0)
    mean, _ = encoder.predict([x, labels], verbose=0)
    assert not np.allclose(mean[0], mean[1])


def test_traversal_codes_vary_one_dimension_per_row():
    codes = traversal_codes([0.5, -1.0, 2.0], [-1.0, 0.0, 1.0]).reshape(3, 3, 3)
    np.testing.assert_array_equal(codes[1, :, 1], [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(codes[1, :, 0], [0.5] * 3)
    np.testing.assert_array_equal(codes[2, :, 0:2], [[0.5, -1.0]] * 3)


def test_assembled_vaes_round_trip_with_safe_mode(tmp_path):
    for vae in (assemble_vae(dense_encoder(2, hidden=8), dense_decoder(2, hidden=8), seed=3),
                assemble_vae(conv_encoder(2, hidden=8, condition_dim=10),
                             conv_decoder(2, condition_dim=10), name="cvae")):
        vae.save(tmp_path / f"{vae.name}.keras")
        loaded = keras.saving.load_model(tmp_path / f"{vae.name}.keras", safe_mode=True)
        for a, b in zip(vae.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
