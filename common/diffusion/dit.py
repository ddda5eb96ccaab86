"""The diffusion Transformer (DiT, Peebles & Xie 2023), the other denoiser the diffusion
chapters can train (`--denoiser dit`): the pixel chapters on 4x4 patches of the image, the
latent chapter on 1x1 patches of its 7x7 codes. Same interface as chapter 5's U-Net:
[x_t, t (int)] (+ label (int)) -> predicted noise.
"""

from __future__ import annotations

import keras
from keras import layers

from common.diffusion.schedule import step_and_label
from common.transformer import GatedResidual, Modulate, PositionEmbedding


def dit_block(x, c, heads: int, name: str):
    """One DiT block with adaLN-Zero: from the conditioning c, six zero-initialised Dense layers
    give the shift, scale and gate of the attention and of the MLP branch, so the block starts
    as the identity (common.transformer)."""
    width = x.shape[-1]

    def from_c(role):
        return layers.Dense(width, kernel_initializer="zeros", name=f"{name}_{role}")(c)

    h = layers.LayerNormalization(center=False, scale=False, epsilon=1e-6,
                                  name=f"{name}_norm_1")(x)
    h = Modulate(name=f"{name}_modulate_1")([h, from_c("shift_1"), from_c("scale_1")])
    h = layers.MultiHeadAttention(heads, width // heads, name=f"{name}_attention")(h, h)
    x = GatedResidual(name=f"{name}_gated_1")([x, h, from_c("gate_1")])
    h = layers.LayerNormalization(center=False, scale=False, epsilon=1e-6,
                                  name=f"{name}_norm_2")(x)
    h = Modulate(name=f"{name}_modulate_2")([h, from_c("shift_2"), from_c("scale_2")])
    h = layers.Dense(4 * width, activation="gelu", name=f"{name}_mlp_in")(h)
    h = layers.Dense(width, name=f"{name}_mlp_out")(h)
    return GatedResidual(name=f"{name}_gated_2")([x, h, from_c("gate_2")])


def build_dit(shape=(28, 28, 1), num_classes: int = 0, *, patch: int = 4, width: int = 128,
              depth: int = 4, heads: int = 4, name: str = "dit") -> keras.Model:
    """The diffusion Transformer (DiT, Peebles & Xie 2023): [x_t, t (int)] (+ label (int))
    -> predicted noise, the same interface as build_unet.

    Patchify: a patch x patch convolution with stride `patch` turns the image into a grid of
    tokens (28x28 with 4x4 patches: 49 tokens; a 7x7 latent with 1x1 patches: 49 too), plus a
    learned position embedding. The step's sinusoidal embedding through a two-layer MLP, plus
    a class vector when there is a label, is the conditioning c. `depth` DiT blocks
    (dit_block: adaLN-Zero) and a final adaptive LayerNorm, then a zero-initialised Dense layer
    to each token's patch x patch x channels noise values; unpatchify reshapes them back into
    the image. There is no convolution after the patchify: every interaction between
    positions is attention.
    """
    height, width_px, channels = shape
    if height % patch or width_px % patch:
        raise ValueError(f"a {height}x{width_px} input cannot be cut into {patch}x{patch} "
                         "patches")
    grid = (height // patch, width_px // patch)
    inputs, c = step_and_label(shape, num_classes, width, width)
    c = layers.Activation("swish", name="c_act")(c)
    h = layers.Conv2D(width, patch, strides=patch, name="patchify")(inputs[0])
    h = layers.Reshape((grid[0] * grid[1], width), name="tokens")(h)
    h = PositionEmbedding(name="position_embedding")(h)
    for i in range(depth):
        h = dit_block(h, c, heads, f"block{i}")
    h = layers.LayerNormalization(center=False, scale=False, epsilon=1e-6, name="final_norm")(h)
    h = Modulate(name="final_modulate")([
        h, layers.Dense(width, kernel_initializer="zeros", name="final_shift")(c),
        layers.Dense(width, kernel_initializer="zeros", name="final_scale")(c)])
    h = layers.Dense(patch * patch * channels, kernel_initializer="zeros",
                     name="to_patches")(h)
    h = layers.Reshape((*grid, patch, patch, channels), name="patch_grid")(h)
    h = layers.Permute((1, 3, 2, 4, 5), name="interleave")(h)
    out = layers.Reshape(shape, name="noise")(h)
    return keras.Model(inputs, out, name=name)
