"""DCGAN generator and discriminator for 28x28x1 images, plain or conditioned on a label.

Radford et al. 2015, sec. 3: no pooling (strided convolutions learn their own down- and
upsampling), batch norm in both networks (not on the generator's output or the
discriminator's input), ReLU in the generator with tanh at the output, LeakyReLU(0.2) in the
discriminator, which ends in one logit.

Conditional versions (Mirza & Osindero 2014) take the one-hot label as a second input: the
generator concatenates it to the noise; the discriminator turns it into a 28x28 map by a Dense
layer and stacks it onto the image as a second channel, so its very first convolution can
compare image and label.
"""

from __future__ import annotations

import keras
from keras import layers

IMAGE_SHAPE = (28, 28, 1)


def build_generator(latent_dim: int = 100, num_classes: int = 0,
                    name: str = "generator") -> keras.Model:
    """z (and label) -> Dense 7*7*128 -> Conv2DTranspose 64 (14x14) -> Conv2DTranspose 1
    (28x28, tanh)."""
    z = keras.Input((latent_dim,), name="z")
    inputs, h = z, z
    if num_classes:
        label = keras.Input((num_classes,), name="label")
        inputs, h = [z, label], layers.Concatenate(name="z_and_label")([z, label])
    h = layers.Dense(7 * 7 * 128, use_bias=False, name="project")(h)
    h = layers.ReLU(name="project_relu")(layers.BatchNormalization(name="project_bn")(h))
    h = layers.Reshape((7, 7, 128), name="to_feature_maps")(h)
    h = layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False,
                               name="up_14")(h)
    h = layers.ReLU(name="up_14_relu")(layers.BatchNormalization(name="up_14_bn")(h))
    image = layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh",
                                   name="up_28")(h)
    return keras.Model(inputs, image, name=name)


def build_discriminator(num_classes: int = 0, name: str = "discriminator") -> keras.Model:
    """image (and label) -> Conv2D 64 (14x14) -> Conv2D 128 (7x7) + batch norm -> 1 logit."""
    image = keras.Input(IMAGE_SHAPE, name="image")
    inputs, h = image, image
    if num_classes:
        label = keras.Input((num_classes,), name="label")
        label_map = layers.Reshape(IMAGE_SHAPE, name="label_map")(
            layers.Dense(28 * 28, name="label_to_pixels")(label))
        inputs, h = [image, label], layers.Concatenate(name="image_and_label")([image,
                                                                                label_map])
    h = layers.Conv2D(64, 4, strides=2, padding="same", name="down_14")(h)
    h = layers.LeakyReLU(0.2, name="down_14_lrelu")(h)
    h = layers.Conv2D(128, 4, strides=2, padding="same", use_bias=False, name="down_7")(h)
    h = layers.LeakyReLU(0.2, name="down_7_lrelu")(layers.BatchNormalization(name="down_7_bn")(h))
    logit = layers.Dense(1, name="logit")(layers.Flatten(name="flatten")(h))
    return keras.Model(inputs, logit, name=name)
