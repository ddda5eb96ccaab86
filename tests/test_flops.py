"""FLOP counts from layer shapes (common.flops) against hand counts, and the peak measurement."""

import keras
import numpy as np
from keras import layers

from chapters.ch4_dcgan import GAN, build_discriminator, build_generator
from common import flops
from common.pipeline import batches
from common.training import fit
from common.vq.masked_conv import MaskedConv2D


def test_each_layer_kind_against_a_hand_count():
    x = keras.Input((7, 7, 8))
    up = layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x)  # 7x7x8 -> 14x14x4
    conv = layers.Conv2D(6, 3, padding="same")(up)  # 14x14x4 -> 14x14x6
    masked = MaskedConv2D(5, 3)(conv)  # 14x14x6 -> 14x14x5
    dense = layers.Dense(3)(layers.Flatten()(masked))  # 980 -> 3
    model = keras.Model(x, dense)
    by_hand = [2 * 9 * 8 * 4 * 49,  # transpose conv: every *input* position
               2 * 9 * 4 * 6 * 196, 2 * 9 * 6 * 5 * 196, 2 * 980 * 3]
    assert [flops.layer_flops(layer) for layer in model.layers[1:]] == \
        [by_hand[0], by_hand[1], by_hand[2], 0, by_hand[3]]
    assert flops.forward_flops(model) == sum(by_hand)
    assert flops.training_flops_per_image(model) == 3 * sum(by_hand)


def test_attention_counts_projections_and_the_two_products():
    x = keras.Input((49, 16))
    model = keras.Model(x, layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x))
    length, width, heads, dim = 49, 16, 2, 8
    by_hand = (2 * length * width * heads * dim * 3  # q, k, v
               + 2 * length * length * heads * dim * 2  # scores, weighted sum
               + 2 * length * heads * dim * width)  # output projection
    assert flops.forward_flops(model) == by_hand


def test_nested_models_are_counted_once_each():
    inner = keras.Sequential([keras.Input((10,)), layers.Dense(20)], name="inner")
    x = keras.Input((10,))
    outer = keras.Model(x, layers.Dense(5)(inner(x)))
    assert flops.forward_flops(outer) == 2 * 10 * 20 + 2 * 20 * 5


def test_gan_step_is_four_generator_and_nine_discriminator_passes():
    gan = GAN(build_generator(), build_discriminator(), latent_dim=100)
    g, d = flops.forward_flops(gan.generator), flops.forward_flops(gan.discriminator)
    assert g > 0 and d > 0
    assert flops.training_flops_per_image(gan) == 4 * g + 9 * d


def test_fit_reports_the_gflops_its_images_per_second_add_up_to(tmp_path):
    model = keras.Sequential([keras.Input((32,)), layers.Dense(64), layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(256, 32)).astype("float32")
    run_ = fit(model, batches(x, x[:, :1], batch_size=32), epochs=1, batch_size=32, out=tmp_path,
               tag="t", resume=False, verbose=0)
    speed = run_.speed()
    assert run_.flops_per_image == 3 * (2 * 32 * 64 + 2 * 64)
    assert speed["train_images_per_s"] > 0
    expected = run_.images_per_second * run_.flops_per_image / 1e9
    assert abs(speed["train_gflop_per_s"] - expected) <= 0.05 + 1e-9


def test_matmul_peak_is_a_plausible_rate():
    peak = flops.matmul_peak_gflops(size=256, repeats=3)
    assert 0.1 < peak < 1e5  # a CPU core does at least 0.1 GFLOP/s; none does 100 TFLOP/s
