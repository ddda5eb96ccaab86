"""Colour data and mixed precision (issue: outgrowing the laptop): the chapters a learner
scales first run on 32x32x3 images (the emoji, drawn offline from Debian's Noto Color Emoji)
under --precision mixed_bfloat16: the models build for 3 channels, the figures are in colour,
metrics.json names the data and the precision. tfds:NAME is checked with
tfds.testing.mock_data in tests/test_data.py."""

import importlib

import keras
import numpy as np
import pytest

from tests.conftest import colourfulness, needs_font, run_in_process

# A whole chapter on emoji under mixed_bfloat16: ch2_vae's notebook run (tests/test_ch2.py);
# ch4_pix2pix's, ch4_dcgan's and ch5_conditional_diffusion's notebooks run on emoji too.


@needs_font
def test_conv_models_train_on_colour_images_in_mixed_bfloat16(tmp_path):
    """ch3_vae's convolutional VAE, ch4_dcgan's GAN and ch5_ddpm's U-Net, built for 32x32x3
    under the bfloat16 policy: one training step on eight emoji gives finite losses, the
    outputs have 3 channels, and the saved models load in safe mode."""
    from chapters.ch3_vae import Spec, build
    from chapters.ch4_dcgan import build_dcgan
    from chapters.ch5_ddpm import build_diffusion
    from common.data import load
    x = load("emoji", limit=8).x_train
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        gan = build_dcgan(seed=0, image_shape=(32, 32, 3))
        gan.compile(d_optimizer=keras.optimizers.Adam(2e-4),
                    g_optimizer=keras.optimizers.Adam(2e-4))
        gan_logs = gan.train_on_batch(x * 2 - 1, return_dict=True)
        assert gan.generator.output_shape[1:] == (32, 32, 3)
        gan.generator.save(tmp_path / "generator.keras")
        vae = build(Spec("conv", "conv", 64, 1.0), latent_dim=4, seed=0, image_shape=(32, 32, 3))
        vae.compile(optimizer="adam")
        vae_logs = vae.train_on_batch(x, return_dict=True)
        diffusion = build_diffusion(channels=8, seed=0, shape=(32, 32, 3))
        diffusion.compile(optimizer=keras.optimizers.Adam(1e-3))
        diffusion_logs = diffusion.train_on_batch(x * 2 - 1, return_dict=True)
        assert vae.get_layer("decoder").output_shape[1:] == (32, 32, 3)
        assert diffusion.ema_network.output_shape[1:] == (32, 32, 3)
        assert diffusion.network.layers[-1].compute_dtype == "bfloat16"
        vae.save(tmp_path / "conv.keras")
        diffusion.ema_network.save(tmp_path / "unet_ema.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for logs in (vae_logs, gan_logs, diffusion_logs):
        assert all(np.isfinite(v) for v in logs.values()), logs
    for name in ("conv.keras", "generator.keras", "unet_ema.keras"):
        loaded = keras.saving.load_model(tmp_path / name, safe_mode=True)
        assert loaded.output_shape[-1] == 3


def test_grey_figures_stay_grey(tmp_path):
    from common import figures
    images = np.random.default_rng(0).uniform(size=(4, 28, 28, 1))
    assert colourfulness(figures.image_grid(images, tmp_path / "grey.png", ncols=4)) < 1e-3
    colour = np.random.default_rng(0).uniform(size=(4, 32 * 32 * 3))  # flat colour vectors
    assert colourfulness(figures.image_grid(colour, tmp_path / "colour.png", ncols=4)) > 0.05


def test_a_dataset_of_the_wrong_size_is_a_one_line_error(tmp_path):
    """The DCGAN halves the image twice: 28 or 32 pixels a side. tfds:mnist_corrupted and
    others of 28x28 work; an odd size (here mocked by padding to 30) does not."""
    from common.data import check_square_side, load
    from common.errors import DataError
    data = load("mnist5k", pad_to=30, limit=8)
    with pytest.raises(DataError, match="multiple of 4"):
        check_square_side(data, multiple=4)
    check_square_side(load("mnist5k", pad_to=32, limit=8), multiple=4)  # 32 is fine


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_gan_step_under_mixed_precision(precision):
    """The GAN step under a 16-bit policy: float32 losses, finite, and with float16 both
    optimizers carry a loss scale."""
    from chapters.ch4_dcgan import build_dcgan
    keras.mixed_precision.set_global_policy(precision)
    try:
        gan = build_dcgan(seed=0)
        gan.compile(d_optimizer=keras.optimizers.Adam(2e-4),
                    g_optimizer=keras.optimizers.Adam(2e-4))
        x = np.random.default_rng(0).uniform(-1, 1, (16, 28, 28, 1)).astype("float32")
        logs = gan.train_on_batch(x, return_dict=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert gan.generator.layers[0].compute_dtype == precision.split("_")[1]
    scaled = isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")


@needs_font
def test_a_grey_only_chapter_refuses_colour_data_in_one_line(tmp_path, capsys):
    result = run_in_process(capsys, "ch4_cgan", "--quick", "--dataset", "emoji",
                            "--out", tmp_path / "o")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "32x32x3" in result.stderr and "28x28x1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


TRAINING_CHAPTERS = ["ch1_classifiers", "ch1_edge_filters", "ch2_dense_autoencoder", "ch2_vae",
                     "ch3_cvae", "ch3_hierarchical_vae", "ch3_vae", "ch3_vq_transformer",
                     "ch3_vqvae", "ch4_cgan", "ch4_dcgan", "ch4_pix2pix",
                     "ch5_conditional_diffusion", "ch5_ddpm", "ch5_latent_diffusion",
                     "ch5_text_to_image"]


@pytest.mark.parametrize("chapter", TRAINING_CHAPTERS)
def test_every_training_chapter_takes_distribute_and_precision(chapter, capsys):
    main = importlib.import_module(f"chapters.{chapter}").main
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--distribute" in text and "--precision" in text


def test_custom_layers_follow_a_16_bit_policy():
    """Layers written for this project compute in the policy's dtype and keep their losses
    in float32: the masked convolution, the vector quantiser (its codes found in float32),
    and the quantiser's add_loss terms."""
    from common.vq.masked_conv import MaskedConv2D
    from common.vq.quantizer import VectorQuantizer
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        x = np.random.default_rng(0).normal(size=(2, 7, 7, 4)).astype("float32")
        conv = MaskedConv2D(8, 3, mask_type="A")
        dtype = keras.backend.standardize_dtype
        assert dtype(conv(x).dtype) == "bfloat16"
        quantizer = VectorQuantizer(16, 4)
        out = quantizer(x)
        assert dtype(out.dtype) == "bfloat16"
        assert quantizer.losses and all(dtype(loss.dtype) == "float32"
                                        for loss in quantizer.losses)
        assert quantizer.codes(x).shape == (2, 7, 7)
    finally:
        keras.mixed_precision.set_global_policy("float32")
