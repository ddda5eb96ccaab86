"""The VQ-VAE's quantiser and the PixelCNN prior."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from chapters.ch3_vqvae import build_pixelcnn
from common.vq.masked_conv import MaskedConv2D, causal_mask, sample
from common.vq.quantizer import CodebookRestart, VectorQuantizer, usage


def quantizer_with(codebook):
    vq = VectorQuantizer(len(codebook), codebook.shape[1])
    vq.build((None, codebook.shape[1]))
    vq.codebook.assign(codebook)
    return vq


def test_quantizer_picks_the_nearest_code_and_adds_both_losses():
    rng = np.random.default_rng(0)
    codebook = rng.normal(size=(8, 3)).astype("float32")
    z = rng.normal(size=(2, 5, 3)).astype("float32")
    vq = quantizer_with(codebook)
    nearest = np.argmin(((z[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(np.asarray(vq.codes(z)), nearest)
    out = np.asarray(vq(z))
    np.testing.assert_allclose(out, codebook[nearest], atol=1e-6)
    # In value the codebook and commitment terms are the same squared distance.
    mse = np.mean((z - codebook[nearest]) ** 2)
    assert float(sum(vq.losses)) == pytest.approx(1.25 * mse, rel=1e-5)


def test_quantizer_gradient_passes_straight_through():
    vq = quantizer_with(np.random.default_rng(1).normal(size=(4, 2)).astype("float32"))
    z = tf.Variable(np.random.default_rng(2).normal(size=(6, 2)).astype("float32"))
    weights = tf.constant(np.arange(12, dtype="float32").reshape(6, 2))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(vq(z) * weights)
    np.testing.assert_allclose(tape.gradient(loss, z).numpy(), weights.numpy())


def test_usage_counts_dead_codes_and_perplexity():
    uniform = usage(np.arange(8).repeat(5), 8)
    assert uniform["dead"] == 0 and uniform["perplexity"] == pytest.approx(8.0)
    skewed = usage(np.array([0, 0, 0, 1]), 4)
    assert skewed["dead"] == 2 and 1.0 < skewed["perplexity"] < 2.0


def test_codebook_restart_moves_dead_codes_onto_encoder_outputs():
    encoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)], name="encoder")
    x = keras.Input((2,))
    model = keras.Model(x, VectorQuantizer(6, 2, name="quantizer")(encoder(x)))
    data = np.random.default_rng(0).normal(size=(200, 2)).astype("float32")
    restart = CodebookRestart(data, seed=0)
    restart.set_model(model)
    restart.set_params({"epochs": 3})
    restart.on_train_begin()
    outputs = encoder.predict(data, verbose=0)
    codebook = np.asarray(model.get_layer("quantizer").codebook)
    assert all(np.isclose(outputs, c).all(axis=1).any() for c in codebook)
    model.get_layer("quantizer").codebook.assign(np.vstack([codebook[:3], np.full((3, 2), 1e3)]))
    logs = {}
    restart.on_epoch_end(0, logs)
    assert logs["dead_codes"] >= 3
    moved = np.asarray(model.get_layer("quantizer").codebook)
    assert np.abs(moved).max() < 100  # the far-away codes now sit on encoder outputs
    assert usage(np.asarray(model.get_layer("quantizer").codes(outputs)), 6)["dead"] < 3


def test_masks_hide_the_future_and_mask_a_hides_the_centre():
    np.testing.assert_array_equal(causal_mask(3, "A"), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(causal_mask(3, "B"), [[1, 1, 1], [1, 1, 0], [0, 0, 0]])


def test_pixelcnn_outputs_never_depend_on_the_current_or_later_positions():
    model = build_pixelcnn(5, (6, 6), filters=16, blocks=3)
    x = tf.Variable(np.random.default_rng(0).uniform(size=(1, 6, 6, 5)).astype("float32"))
    for i, j in [(0, 0), (2, 3), (5, 5), (3, 0)]:
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(model(x)[0, i, j, :])
        grad = np.abs(tape.gradient(out, x).numpy()[0]).sum(axis=-1)
        order = np.arange(36).reshape(6, 6)
        assert grad[order >= order[i, j]].max() == 0.0, (i, j)
        if (i, j) != (0, 0):
            assert grad[order < order[i, j]].max() > 0.0  # it does see the past


def test_pixelcnn_learns_a_pattern_and_samples_it():
    # Synthetic grids: each row repeats its first value; position (i, j>0) is then predictable.
    rng = np.random.default_rng(0)
    codes = np.repeat(rng.integers(0, 3, size=(256, 4, 1)), 4, axis=2)
    model = build_pixelcnn(3, (4, 4), filters=32, blocks=2)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    one_hot = np.eye(3, dtype="float32")[codes]
    before = model.evaluate(one_hot, codes, verbose=0)
    model.fit(one_hot, codes, epochs=40, batch_size=64, verbose=0)
    assert model.evaluate(one_hot, codes, verbose=0) < 0.5 * before
    drawn = sample(model, 20, seed=0)
    assert drawn.shape == (20, 4, 4) and drawn.min() >= 0 and drawn.max() < 3
    assert np.mean(drawn == drawn[:, :, :1]) > 0.9  # the rows repeat, as in the data


def test_masked_layers_round_trip_with_safe_mode(tmp_path):
    model = build_pixelcnn(4, (5, 5), filters=8, blocks=1)
    model.save(tmp_path / "p.keras")
    loaded = keras.saving.load_model(tmp_path / "p.keras", safe_mode=True)
    x = np.random.default_rng(0).uniform(size=(2, 5, 5, 4)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert isinstance(loaded.get_layer("masked_a"), MaskedConv2D)
    assert loaded.get_layer("masked_a").mask_type == "A"
