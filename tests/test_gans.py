"""The shared GAN step, the DCGAN/CGAN networks, pix2pix, and the chapter-4 scripts."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from chapters import ch4_cgan, ch4_dcgan
from chapters import ch4_pix2pix as p2p
from common.gan.training import write_gif
from tests.conftest import run_notebook


def test_networks_have_the_documented_shapes_and_sizes():
    g, d = ch4_dcgan.build_generator(100), ch4_dcgan.build_discriminator()
    assert g.output_shape == (None, 28, 28, 1) and d.output_shape == (None, 1)
    # Dense 100 -> 6272 (no bias) + BN, ConvT 128->64 (4x4, no bias) + BN, ConvT 64->1 + bias.
    assert g.count_params() == 100 * 6272 + 4 * 6272 + 16 * 128 * 64 + 4 * 64 + 16 * 64 + 1
    # D: Conv 1->64 (4x4) + bias, Conv 64->128 (4x4, no bias) + BN, Dense 6272 -> 1.
    assert d.count_params() == 16 * 64 + 64 + 16 * 64 * 128 + 4 * 128 + 6272 + 1
    cg = ch4_cgan.build_conditional_generator(10)
    assert cg.count_params() - g.count_params() == 10 * 6272  # the label's Dense weights
    cd = ch4_cgan.build_conditional_discriminator(10)
    # the label's 28x28 map (Dense 10 -> 784) and the map's channel in the first kernel
    assert cd.count_params() - d.count_params() == 10 * 784 + 784 + 16 * 64
    assert p2p.build_unet().output_shape == (None, 32, 32, 1)
    assert p2p.build_patch_discriminator().output_shape == (None, 8, 8, 1)


def weights(model):
    return [w.copy() for w in model.get_weights()]


def trainable(model):
    return [np.array(w) for w in model.trainable_weights]


def changed(before, after):
    return any(not np.allclose(a, b) for a, b in zip(before, after))


def compiled_dcgan():
    gan = ch4_dcgan.build_dcgan(seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    return gan


def test_without_batch_norm_each_layer_gets_its_bias_back():
    """--no-batch-norm (an exercise): no BatchNormalization layer in either network; the layers
    it followed regain their bias (batch norm's shift made it redundant)."""
    gan = ch4_dcgan.build_dcgan(0, batch_norm=False)
    layers = gan.generator.layers + gan.discriminator.layers
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in layers)
    assert gan.generator.count_params() == 100 * 6272 + 6272 + 16 * 128 * 64 + 64 + 16 * 64 + 1
    assert gan.discriminator.count_params() == 16 * 64 + 64 + 16 * 64 * 128 + 128 + 6272 + 1


@pytest.mark.parametrize("still", ["generator", "discriminator"])
def test_each_update_trains_only_its_own_network(still):
    # One player's optimizer takes steps of size 0: after a round of the game only the other
    # player's weights have moved, so neither update reaches the other network.
    gan = ch4_dcgan.build_dcgan(seed=0)
    rates = {"generator": 2e-4, "discriminator": 2e-4, still: 0.0}
    gan.compile(d_optimizer=keras.optimizers.Adam(rates["discriminator"], beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(rates["generator"], beta_1=0.5))
    real = np.random.default_rng(0).uniform(-1, 1, size=(16, 28, 28, 1)).astype("float32")
    g0, d0 = trainable(gan.generator), trainable(gan.discriminator)
    gan.train_on_batch(real)
    g1, d1 = trainable(gan.generator), trainable(gan.discriminator)
    assert changed(g0, g1) == (still != "generator")
    assert changed(d0, d1) == (still != "discriminator")


def test_fit_runs_one_d_and_one_g_update_per_batch_and_reports_the_trackers():
    gan = compiled_dcgan()
    real = np.random.default_rng(1).uniform(-1, 1, size=(32, 28, 28, 1)).astype("float32")
    g0, d0 = weights(gan.generator), weights(gan.discriminator)
    history = gan.fit(real, batch_size=16, epochs=1, verbose=0).history
    assert set(history) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert 0 < history["d_real"][0] < 1 and 0 < history["d_fake"][0] < 1
    assert changed(g0, weights(gan.generator)) and changed(d0, weights(gan.discriminator))
    assert gan.d_optimizer.iterations.numpy() == 2 == gan.g_optimizer.iterations.numpy()


def test_the_cgan_discriminator_reads_the_label():
    d = ch4_cgan.build_cgan(seed=0).discriminator
    image = np.random.default_rng(2).uniform(-1, 1, size=(1, 28, 28, 1)).astype("float32")
    outputs = [float(d.predict([image, np.eye(10, dtype="float32")[[c]]], verbose=0)[0, 0])
               for c in range(10)]
    assert len({round(o, 6) for o in outputs}) > 1


def test_the_unet_skips_join_matching_resolutions():
    unet = p2p.build_unet()
    skips = [layer for layer in unet.layers if isinstance(layer, keras.layers.Concatenate)]
    assert [s.name for s in skips] == ["skip_8", "skip_16"]
    for skip in skips:
        shapes = [tuple(t.shape[1:3]) for t in skip.input]
        assert shapes[0] == shapes[1]
        side = int(skip.name.split("_")[1])
        assert shapes[0] == (side, side)


def test_paired_inputs():
    x = np.zeros((2, 32, 32, 1), "float32")
    x[:, 8:24, 8:24] = 1.0  # a square: edges on its border, none inside or outside
    edges = p2p.sobel_edges(x)
    assert edges.max() == pytest.approx(1.0) and edges[0, 16, 16, 0] == 0.0
    assert edges[0, 8, 16, 0] > 0.5 and edges[0, 2, 2, 0] == 0.0
    occluded = p2p.occlude(x, seed=0)
    assert occluded.shape == x.shape
    assert np.mean(occluded == 0.5) > 0.1  # grey bars cover part of every image
    np.testing.assert_array_equal(occluded, p2p.occlude(x, seed=0))  # seeded


def test_each_image_gets_its_own_edges():
    x = np.zeros((3, 32, 32, 1), "float32")
    x[1, 8:24, 8:24] = 1.0  # only the middle image has content
    edges = p2p.sobel_edges(x)
    assert edges[0].max() == 0.0 and edges[2].max() == 0.0  # no bleeding across the batch
    np.testing.assert_allclose(edges[1], p2p.sobel_edges(x[1:2])[0])


def test_write_gif_animates_every_frame(tmp_path):
    frames = []
    for i in range(3):
        path = tmp_path / f"f{i}.png"
        Image.new("RGB", (20, 10), (80 * i, 0, 0)).save(path)
        frames.append(path)
    gif = write_gif(frames, tmp_path / "a.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 3


@pytest.mark.parametrize("script,expected", [
    ("ch4_dcgan", ["samples.png", "loss_curves.png", "sample_classes.png", "progress.gif",
                   "progress/epoch_001.png", "generator.keras"]),
    ("ch4_cgan", ["class_grid.png", "accuracy_per_class.png", "progress.gif"]),
    ("ch4_pix2pix", ["triplets.png", "l1_curves.png", "progress.gif", "unet_l1_only.keras"]),
])
def test_quick_notebooks_write_their_figures_and_metrics(tmp_path, script, expected):
    out = tmp_path / script
    # The colour path on real colour data: the DCGAN on emoji, pix2pix colourising line art.
    dataset = "mnist5k" if script == "ch4_cgan" else "emoji"
    ran = run_notebook(script, out, dataset=dataset)  # the chapter's notebook, cell by cell
    assert "Total params" in ran.text and ran.images >= 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == dataset
    if script == "ch4_pix2pix":  # line art in, colour out, its colour error measured
        assert metrics["task"] == "colourise"
        assert metrics["dataset"]["provenance"]["font"].startswith("Noto Color Emoji")
        assert all(r["colour_error_delta_e"] > 0 for r in metrics["models"].values())
        generator = keras.saving.load_model(out / "generator.keras", safe_mode=True)
        assert generator.input_shape[-1] == 1 and generator.output_shape[-1] == 3
    for name in expected:
        assert (out / name).exists(), name
    for r in metrics["models"].values():
        assert r["train_images_per_s"] > 0


def test_pix2pix_task_flag_is_checked(tmp_path, capsys, digits):
    from common.errors import DataError
    with pytest.raises(SystemExit) as stop:
        p2p.main(["--quick", "--task", "colour", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "invalid choice: 'colour'" in capsys.readouterr().err
    assert p2p.choose_task(None, digits) == "edges"
    with pytest.raises(DataError, match="colourise needs colour images.*--dataset emoji"):
        p2p.choose_task("colourise", digits)


# The trackers after each of three batches, as the adversarial step of common/gan/training.py
# computed them before the game moved into chapters/ch4_dcgan.py (2026-12-07; mnist5k's first
# 96 training images in [-1, 1], seed 0, Adam(2e-4, 0.5) for both players, fit on batches of
# 32, so each value is the running mean of the epoch so far).
BEFORE = {
    "dcgan": [(0.63156, 1.870756, 0.497309, 0.651102), (0.625253, 1.600263, 0.614568, 0.74016),
              (0.594611, 1.379598, 0.701695, 0.779329)],
    "cgan": [(0.515271, 1.536725, 0.495225, 0.805933), (0.508963, 1.293035, 0.618769, 0.900491),
             (0.486215, 1.124973, 0.692033, 0.978228)],
    "pix2pix": [(0.614594, 1.580207, 0.615516, 0.534518), (0.609469, 1.554978, 0.616934, 0.543571),
                (0.604721, 1.532627, 0.617559, 0.551516)],
}


@pytest.mark.parametrize("name", list(BEFORE))
def test_the_game_written_in_the_chapter_gives_the_losses_of_before(name, digits):
    import tensorflow as tf

    from common.data import pad_images
    from common.scaling import to_tanh_range

    x, y = to_tanh_range(digits.x_train[:96]), digits.y_train[:96]
    keras.utils.set_random_seed(0)
    if name == "dcgan":
        gan, data = ch4_dcgan.build_dcgan(seed=0), x
    elif name == "cgan":
        gan, data = ch4_cgan.build_cgan(10, seed=0), (x, y)
    else:
        padded = pad_images(digits.x_train[:96], 32)
        gan = p2p.build_pix2pix(seed=0)
        data = (to_tanh_range(p2p.make_inputs("edges", padded, 0)), to_tanh_range(padded))
    gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs=None: seen.append(
            tuple(float(logs[k]) for k in ("d_fake", "d_loss", "d_real", "g_loss"))))
    gan.fit(tf.data.Dataset.from_tensor_slices(data).batch(32), epochs=1, verbose=0,
            shuffle=False, callbacks=[record])
    np.testing.assert_allclose(seen, BEFORE[name], rtol=2e-4, atol=2e-5)
