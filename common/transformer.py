"""Transformer pieces the chapters' Transformers share (Vaswani et al. 2017, "Attention Is All
You Need"): a learned position embedding. Keras supplies the rest (MultiHeadAttention,
LayerNormalization, Dense); the blocks are drawn in the chapters that introduce them.

Attention is blind to order: permute the tokens and the outputs permute with them. Adding a
learned vector per position to each token's embedding is how GPT-2 and ViT tell positions
apart; here the positions are the cells of a code or patch grid in raster order.
"""

from __future__ import annotations

import keras
from keras import layers

PACKAGE = __name__


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(layers.Layer):
    """(batch, positions, width) -> the same plus one learned width-vector per position,
    initialised small (N(0, 0.02^2), as GPT-2) so the token embeddings dominate at first."""

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=tuple(input_shape[1:]), name="positions",
            initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, tokens):
        return tokens + self.positions


# adaLN-Zero (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", sec. 3.2):
# a diffusion Transformer's blocks are told the noise level and class by a conditioning vector
# c that sets, per block, the shift and scale after each LayerNorm and a gate on each residual
# branch. The Dense layers that compute them from c start at zero, so every gate is 0 and
# every block starts as the identity, as a residual network's blocks should.

@keras.saving.register_keras_serializable(package=PACKAGE)
class Modulate(layers.Layer):
    """[x (batch, tokens, width), shift (batch, width), scale (batch, width)]
    -> x * (1 + scale) + shift, the same shift and scale at every token."""

    def call(self, inputs):
        x, shift, scale = inputs
        return x * (1.0 + scale[:, None, :]) + shift[:, None, :]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatedResidual(layers.Layer):
    """[x, branch (batch, tokens, width), gate (batch, width)] -> x + gate * branch."""

    def call(self, inputs):
        x, branch, gate = inputs
        return x + gate[:, None, :] * branch

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]
