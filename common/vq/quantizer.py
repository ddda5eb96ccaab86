"""The vector quantiser of a VQ-VAE (van den Oord et al. 2017), in Keras 3 ops.

Each encoder output vector z_e is replaced by its nearest codebook vector e_k. The argmin has
no gradient, so the decoder's gradient is copied straight through to z_e (the
straight-through estimator: the output is z_e + stop_gradient(e_k - z_e), equal to e_k in
value and to z_e in derivative). Two terms train the rest (the paper's eq. 3):

    codebook loss    || stop_gradient(z_e) - e_k ||^2      moves the codes to the outputs
    commitment loss  beta || z_e - stop_gradient(e_k) ||^2  keeps the encoder near its codes

Codes that no encoder output picks never move and stay dead. `CodebookRestart` starts the
codebook at encoder outputs and moves dead codes onto random encoder outputs after each epoch
but the last (the "random restart" of Dhariwal et al. 2020, Jukebox, sec. 3.3).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

PACKAGE = __name__  # saved models name this module, which a loader must import


@keras.saving.register_keras_serializable(package=PACKAGE)
class VectorQuantizer(layers.Layer):
    """(..., code_dim) vectors -> nearest of `num_codes` codebook vectors, straight through."""

    def __init__(self, num_codes: int, code_dim: int, commitment: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.num_codes, self.code_dim, self.commitment = num_codes, code_dim, commitment

    def build(self, input_shape):
        self.codebook = self.add_weight(
            shape=(self.num_codes, self.code_dim), name="codebook",
            initializer=keras.initializers.RandomUniform(-1.0 / self.num_codes,
                                                         1.0 / self.num_codes))

    def codes(self, z_e):
        """Index of the nearest code for every vector: |z|^2 - 2 z.e + |e|^2, argmin over e."""
        flat = ops.reshape(ops.cast(z_e, "float32"), (-1, self.code_dim))
        codebook = ops.cast(self.codebook, "float32")  # nearest in float32 under --precision
        distances = (ops.sum(ops.square(flat), axis=1, keepdims=True)
                     - 2.0 * ops.matmul(flat, ops.transpose(codebook))
                     + ops.sum(ops.square(codebook), axis=1))
        return ops.reshape(ops.argmin(distances, axis=1), ops.shape(z_e)[:-1])

    def lookup(self, codes):
        """Codebook vectors for an integer array of code indices."""
        return ops.take(self.codebook, codes, axis=0)

    def call(self, z_e):
        z_q = self.lookup(self.codes(z_e))
        z_e32, z_q32 = ops.cast(z_e, "float32"), ops.cast(z_q, "float32")  # --precision
        codebook_loss = ops.mean(ops.square(ops.stop_gradient(z_e32) - z_q32))
        commitment_loss = ops.mean(ops.square(z_e32 - ops.stop_gradient(z_q32)))
        self.add_loss(codebook_loss + self.commitment * commitment_loss)
        return z_e + ops.stop_gradient(z_q - z_e)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_codes": self.num_codes, "code_dim": self.code_dim,
                "commitment": self.commitment}


def usage(codes: np.ndarray, num_codes: int) -> dict:
    """How the codebook is used: counts per code, dead codes, and the perplexity exp(H) of the
    code distribution (num_codes when all are used equally, 1 when one code takes all)."""
    counts = np.bincount(np.asarray(codes).ravel(), minlength=num_codes)
    p = counts / counts.sum()
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    return {"counts": counts, "dead": int(np.sum(counts == 0)),
            "perplexity": float(np.exp(entropy))}


class CodebookRestart(keras.callbacks.Callback):
    """Initialise the codebook from encoder outputs, and after each epoch but the last move
    dead codes onto random encoder outputs. Logs `dead_codes` (before the restart)."""

    def __init__(self, x_sample: np.ndarray, *, encoder: str = "encoder",
                 quantizer: str = "quantizer", seed: int = 0):
        super().__init__()
        self.x_sample, self.seed = x_sample, seed
        self.encoder_name, self.quantizer_name = encoder, quantizer
        self.rng = np.random.default_rng(seed)

    def _outputs(self):
        z_e = self.model.get_layer(self.encoder_name).predict(self.x_sample, batch_size=512,
                                                              verbose=0)
        return z_e.reshape(-1, z_e.shape[-1])

    def _pick(self, vectors, n):
        return vectors[self.rng.choice(len(vectors), size=n, replace=len(vectors) < n)]

    def on_train_begin(self, logs=None):
        # On a resumed run, BackupAndRestore (later in the callback list) then restores the
        # trained codebook over this.
        quantizer = self.model.get_layer(self.quantizer_name)
        quantizer.codebook.assign(self._pick(self._outputs(), quantizer.num_codes))

    def on_epoch_end(self, epoch, logs=None):
        quantizer = self.model.get_layer(self.quantizer_name)
        vectors = self._outputs()
        codes = ops.convert_to_numpy(quantizer.codes(vectors))
        found = usage(codes, quantizer.num_codes)
        if logs is not None:
            logs["dead_codes"] = found["dead"]
        dead = np.flatnonzero(found["counts"] == 0)
        if len(dead) and epoch < self.params["epochs"] - 1:
            codebook = ops.convert_to_numpy(quantizer.codebook).copy()
            codebook[dead] = self._pick(vectors, len(dead))
            quantizer.codebook.assign(codebook)
