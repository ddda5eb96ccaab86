"""How much arithmetic a network does per image, counted from its layers' shapes, and how fast
this machine can do arithmetic at best (a float32 matmul), so a chapter can say what share of
the machine its training used.

Counting rules (one multiply-add = 2 FLOPs; element-wise work such as activations, norms and
optimizer updates is left out: it is small next to the products on these models):
- Dense: 2 x inputs x units, at every position it is applied to.
- Conv2D (and any layer with a 4-D `kernel`, such as the PixelCNN's masked convolution):
  2 x k x k x C_in x C_out at every output position.
- Conv2DTranspose: the same product at every *input* position (it is a conv's gradient).
- MultiHeadAttention: the four projections plus the two L x L products.
Training costs about three forward passes per image: the backward pass computes two products
(gradients for the inputs and for the weights) for each forward one (Kaplan et al. 2020,
"Scaling laws", sec. 2.1). A model that is more than one network (a GAN, a diffusion model
with an EMA copy) says its own cost through a `training_flops_per_image()` method.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
from keras import layers

BACKWARD_FACTOR = 3  # forward + backward ~ 3 forward passes


def _leaf_layers(model):
    """Every layer that does arithmetic itself, looking inside nested models."""
    for layer in model.layers:
        if hasattr(layer, "layers") and not isinstance(layer, layers.MultiHeadAttention):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _positions(shape) -> int:
    """How many times a per-position product runs per image: all axes but batch and last."""
    return int(np.prod([d for d in shape[1:-1]], dtype=np.int64)) if len(shape) > 2 else 1


def layer_flops(layer) -> int:
    """FLOPs of one call of `layer` on one image, from the shapes of its first call."""
    try:
        output = layer.output
        # an attention layer asked for its scores returns (outputs, scores)
        out_shape = (output[0] if isinstance(output, (list, tuple)) else output).shape
    except (AttributeError, ValueError):  # never called symbolically: nothing to count
        return 0
    if isinstance(layer, layers.MultiHeadAttention):
        length, width = out_shape[1], out_shape[-1]
        heads, key_dim = layer.num_heads, layer.key_dim
        value_dim = layer.value_dim or key_dim
        projections = 2 * length * width * heads * (2 * key_dim + value_dim)
        products = 2 * length * length * heads * (key_dim + value_dim)
        output = 2 * length * heads * value_dim * width
        return projections + products + output
    kernel = getattr(layer, "kernel", None)
    if kernel is None or len(kernel.shape) not in (2, 4):
        return 0
    weights = int(np.prod(kernel.shape))
    if isinstance(layer, layers.Conv2DTranspose):
        return 2 * weights * _positions(layer.input.shape)
    return 2 * weights * _positions(out_shape)


def forward_flops(model) -> int:
    """FLOPs of one forward pass of `model` on one image."""
    return sum(layer_flops(layer) for layer in _leaf_layers(model))


def training_flops_per_image(model) -> int:
    """FLOPs of one training step per image: the model's own account if it has one (the GAN
    of chapters/ch4_dcgan.py, the DiffusionModel of ch5_ddpm), else three forward passes."""
    own = getattr(model, "training_flops_per_image", None)
    return int(own()) if callable(own) else BACKWARD_FACTOR * forward_flops(model)


def matmul_peak_gflops(size: int = 2048, repeats: int = 7) -> float:
    """The machine's float32 matmul speed in GFLOP/s: the median of `repeats` timed
    size x size products after one warm-up (the ceiling a dense model's training can reach)."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.linalg.matmul(a, b).numpy()  # warm-up: thread pool and kernels
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return 2 * size ** 3 / float(np.median(seconds)) / 1e9
