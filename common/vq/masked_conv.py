"""The machinery of a PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks",
sec. 3.5), an autoregressive model of a grid of categorical values such as a VQ-VAE's code
indices; chapters/ch3_vqvae.py builds the network from these layers.

    p(c) = prod over positions i in raster order of p(c_i | c_1 .. c_{i-1})

Masked convolutions make position i see only the positions before it. The first layer uses
mask "A" (the centre is hidden too: c_i must not see itself); later layers use mask "B" (the
centre is allowed: it now holds features of earlier positions only). Stacked 3x3 masks leave a
blind spot up and to the right of each position (fixed by the gated PixelCNN's two stacks,
van den Oord et al. 2016b); on a 7x7 grid the model still learns a useful prior.

Sampling runs the network once per position, sampling c_i from its softmax, so drawing a 7x7
grid takes 49 passes.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

PACKAGE = __name__


def causal_mask(kernel_size: int, mask_type: str) -> np.ndarray:
    """(k, k) mask of 1s: rows above the centre, and the centre row left of the centre (and
    the centre itself for type "B")."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', not {mask_type!r}")
    mask = np.zeros((kernel_size, kernel_size), "float32")
    c = kernel_size // 2
    mask[:c, :] = 1.0
    mask[c, :c + (mask_type == "B")] = 1.0
    return mask


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedConv2D(layers.Layer):
    """A same-padded Conv2D whose kernel is multiplied by a causal mask on every call."""

    def __init__(self, filters: int, kernel_size: int, mask_type: str = "B",
                 activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.mask_type = filters, kernel_size, mask_type
        self.activation = keras.activations.get(activation)
        self.mask = causal_mask(kernel_size, mask_type)[:, :, None, None]

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(shape=(k, k, input_shape[-1], self.filters),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, x):
        dtype = self.compute_dtype  # 16 bits under --precision mixed_*
        kernel = ops.cast(self.kernel, dtype) * ops.cast(self.mask, dtype)
        y = ops.conv(x, kernel, padding="same") + ops.cast(self.bias, dtype)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "mask_type": self.mask_type,
                "activation": keras.activations.serialize(self.activation)}


def sample(model: keras.Model, n: int, *, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
    """Draw `n` code grids position by position (Gumbel-max sampling from each softmax)."""
    _, height, width, k = model.input_shape
    rng = np.random.default_rng(seed)
    codes = np.zeros((n, height, width), "int64")
    for i in range(height):
        for j in range(width):
            one_hot = np.eye(k, dtype="float32")[codes]
            logits = ops.convert_to_numpy(model(one_hot, training=False))[:, i, j, :]
            gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=logits.shape)))
            codes[:, i, j] = np.argmax(logits / temperature + gumbel, axis=1)
    return codes
