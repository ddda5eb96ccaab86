"""Encoders, decoders and their assembly into an add_loss VAE, shared by the chapter-3 models.

Every encoder maps a 28x28x1 image (and, for a conditional model, a one-hot label) to the two
heads `z_mean` and `z_log_var` of q(z | x); every decoder maps z (and the label) to Bernoulli
pixel probabilities of shape 28x28x1. `assemble_vae` wires them with the seeded `Sampling`
layer and the `VaeLossLayer` from common.vae_layers, so the result compiles with no loss and
trains with `fit(x)`.

Two encoder/decoder families:
- dense: the course's form, one hidden Dense layer each way (Kingma & Welling 2014, sec. 5).
- conv: two stride-2 convolutions (28 -> 14 -> 7) and a Dense layer before the heads; the
  decoder mirrors it with Conv2DTranspose. `hidden=16` is exactly the keras.io VAE example
  (fchollet, "Variational AutoEncoder"); a wider hidden layer is the variant this project
  trains against it.
"""

from __future__ import annotations

import keras
from keras import layers

from common.vae_layers import Sampling, VaeLossLayer

IMAGE_SHAPE = (28, 28, 1)
PIXELS = 28 * 28


def _inputs(condition_dim: int):
    image = keras.Input(IMAGE_SHAPE, name="image")
    label = keras.Input((condition_dim,), name="label") if condition_dim else None
    return image, label


def _heads(h, latent_dim: int, image, label, name: str) -> keras.Model:
    mean = layers.Dense(latent_dim, name="z_mean")(h)
    log_var = layers.Dense(latent_dim, name="z_log_var")(h)
    inputs = [image, label] if label is not None else image
    return keras.Model(inputs, [mean, log_var], name=name)


def _with_label(h, label):
    """Append the one-hot label to a feature vector (the conditional VAE's encoder and decoder
    both see it: Sohn et al. 2015)."""
    return h if label is None else layers.Concatenate(name="with_label")([h, label])


def dense_encoder(latent_dim: int, *, hidden: int = 512, condition_dim: int = 0,
                  name: str = "encoder") -> keras.Model:
    """Flatten -> Dense(hidden, relu) -> z_mean, z_log_var."""
    image, label = _inputs(condition_dim)
    h = _with_label(layers.Flatten(name="flatten")(image), label)
    h = layers.Dense(hidden, activation="relu", name="hidden")(h)
    return _heads(h, latent_dim, image, label, name)


def conv_encoder(latent_dim: int, *, hidden: int = 256, condition_dim: int = 0,
                 name: str = "encoder") -> keras.Model:
    """Conv2D 32, 64 (3x3, stride 2, relu) -> Flatten -> Dense(hidden, relu) -> heads."""
    image, label = _inputs(condition_dim)
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv_1")(image)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv_2")(h)
    h = _with_label(layers.Flatten(name="flatten")(h), label)
    h = layers.Dense(hidden, activation="relu", name="hidden")(h)
    return _heads(h, latent_dim, image, label, name)


def dense_gaussian(in_dim: int, latent_dim: int, *, hidden: int = 256,
                   name: str) -> keras.Model:
    """A vector -> Dense(hidden, relu) -> mean and log variance of a Gaussian over the next
    latent: q(z2 | z1) and p(z1 | z2) of a hierarchical VAE."""
    inputs = keras.Input((in_dim,), name="input")
    h = layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, [layers.Dense(latent_dim, name="mean")(h),
                                layers.Dense(latent_dim, name="log_var")(h)], name=name)


def _decoder_inputs(latent_dim: int, condition_dim: int):
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((condition_dim,), name="label") if condition_dim else None
    return z, label, ([z, label] if label is not None else z)


def dense_decoder(latent_dim: int, *, hidden: int = 512, condition_dim: int = 0,
                  name: str = "decoder") -> keras.Model:
    """Dense(hidden, relu) -> Dense(784, sigmoid) -> Reshape(28, 28, 1)."""
    z, label, inputs = _decoder_inputs(latent_dim, condition_dim)
    h = layers.Dense(hidden, activation="relu", name="hidden")(_with_label(z, label))
    if label is not None:  # the label again, next to the hidden features
        h = layers.Concatenate(name="hidden_with_label")([h, label])
    h = layers.Dense(PIXELS, activation="sigmoid", name="pixel_probabilities")(h)
    return keras.Model(inputs, layers.Reshape(IMAGE_SHAPE, name="to_image")(h), name=name)


def conv_decoder(latent_dim: int, *, condition_dim: int = 0,
                 name: str = "decoder") -> keras.Model:
    """Dense(7*7*64, relu) -> Reshape -> Conv2DTranspose 64, 32 (stride 2, relu) ->
    Conv2DTranspose 1 (sigmoid): 7 -> 14 -> 28 pixels a side."""
    z, label, inputs = _decoder_inputs(latent_dim, condition_dim)
    h = layers.Dense(7 * 7 * 64, activation="relu", name="expand")(_with_label(z, label))
    h = layers.Reshape((7, 7, 64), name="to_feature_maps")(h)
    h = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu",
                               name="deconv_1")(h)
    h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                               name="deconv_2")(h)
    out = layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid",
                                 name="pixel_probabilities")(h)
    return keras.Model(inputs, out, name=name)


def assemble_vae(encoder: keras.Model, decoder: keras.Model, *, beta: float = 1.0,
                 seed: int | None = None, name: str = "vae") -> keras.Model:
    """image (and label) -> encoder -> Sampling -> decoder -> VaeLossLayer.

    The loss layer adds  mean(-log p(x | z) + beta * KL)  with `add_loss`, so the model
    compiles with no loss and trains on images alone (or on {"image", "label"} dicts).
    """
    conditional = isinstance(encoder.input, list)
    image = keras.Input(IMAGE_SHAPE, name="image")
    label = keras.Input(encoder.input[1].shape[1:], name="label") if conditional else None
    mean, log_var = encoder([image, label] if conditional else image)
    z = Sampling(seed=seed, name="sampling")([mean, log_var])
    probabilities = decoder([z, label] if conditional else z)
    output = VaeLossLayer(beta=beta, name="vae_loss")([image, probabilities, mean, log_var])
    return keras.Model({"image": image, "label": label} if conditional else image, output,
                       name=name)
