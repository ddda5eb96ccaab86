"""`tf.data` input pipelines: cache, shuffle, batch, prefetch.

Feeding Keras from a cached `tf.data.Dataset` keeps the cores on the model, and equal-sized
batches (`drop_remainder=True`) avoid retracing the training step for a ragged last batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from common.errors import UserError


def batches(x: np.ndarray, y: np.ndarray | None = None, *, batch_size: int,
            shuffle: bool = True, seed: int = 0, drop_remainder: bool = True,
            reconstruct: bool = False) -> tf.data.Dataset:
    """Batches of `x` (and labels `y`), or of `(x, x)` pairs when `reconstruct` is set.

    `reconstruct=True` is the autoencoder case: the target is the input itself. The pair is
    made after batching, so the images are stored (and cached) once.
    """
    if len(x) < batch_size and drop_remainder:
        raise UserError(f"--batch-size {batch_size} is larger than the {len(x):,} training "
                        "examples; choose a smaller batch")
    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y)).cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if reconstruct:
        ds = ds.map(lambda b: (b, b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def labelled_inputs(x: np.ndarray, y: np.ndarray, num_classes: int, *, batch_size: int,
                    shuffle: bool = True, seed: int = 0) -> tf.data.Dataset:
    """Batches of `{"image": x, "label": one_hot(y)}` with no target: the input of a
    conditional model that adds its own loss (e.g. the conditional VAE)."""
    ds = batches(x, y.astype("int32"), batch_size=batch_size, shuffle=shuffle, seed=seed)
    return ds.map(lambda images, labels: {"image": images,
                                          "label": tf.one_hot(labels, num_classes)},
                  num_parallel_calls=tf.data.AUTOTUNE)


def one_hot_sequences(codes: np.ndarray, num_classes: int, *, batch_size: int,
                      shuffle: bool = True, seed: int = 0) -> tf.data.Dataset:
    """Batches of `(one_hot(codes), codes)`: an autoregressive model's input and its targets
    (e.g. a PixelCNN over VQ-VAE code grids). Integers are cached, one-hot made per batch."""
    ds = batches(codes.astype("int32"), batch_size=batch_size, shuffle=shuffle, seed=seed)
    return ds.map(lambda c: (tf.one_hot(c, num_classes), c),
                  num_parallel_calls=tf.data.AUTOTUNE)
