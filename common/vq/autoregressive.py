"""Next-token training and sampling for a sequence model over discrete codes (a Transformer
prior over a VQ-VAE's code grid, chapters/ch3_vq_transformer.py).

A grid of codes is read in raster order as a sequence c_1 .. c_P. The model sees the sequence
shifted right by one behind a start token s (s, c_1, .., c_{P-1}) and is trained so that its
output at position i is the distribution of c_i: with a causal mask, position i sees only s
and the codes before c_i. The start token can carry a condition: one start token per class
makes the same network a class-conditional prior p(c | y). With one more start token that
stands for "no class", put in place of the class token 10% of the time in training, the same
network is also an unconditional prior, and sampling can use classifier-free guidance (Ho &
Salimans 2022, used on the tokens of autoregressive image models by Make-A-Scene, Gafni et
al. 2022): logits = l(no class) + w (l(class) - l(no class)), w > 1 trading variety for
images that look more like their class.

Sampling fills the sequence one position at a time: P network passes, each drawing c_i from
softmax(logits_i / temperature), optionally restricted to the top_k most likely codes
(temperature < 1 and small top_k trade variety for typical samples). The loop runs inside
one `tf.function`, compiled once per network and batch shape.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf
from keras import ops

from common.pipeline import batches


def shift_right(codes: np.ndarray, start_tokens: np.ndarray) -> np.ndarray:
    """(N, P) codes and (N,) start tokens -> the (N, P) model inputs (s, c_1 .. c_{P-1})."""
    codes = np.asarray(codes).reshape(len(codes), -1)
    return np.concatenate([np.asarray(start_tokens)[:, None], codes[:, :-1]],
                          axis=1).astype("int32")


def next_code_batches(codes: np.ndarray, start_tokens: np.ndarray, *, batch_size: int,
                      seed: int = 0, null_token: int | None = None,
                      drop_rate: float = 0.1) -> tf.data.Dataset:
    """Shuffled batches of (inputs, targets) = (shift_right(codes), codes); with a
    `null_token`, each sequence's start token is replaced by it with probability
    `drop_rate`, drawn afresh every batch."""
    targets = np.asarray(codes).reshape(len(codes), -1).astype("int32")
    ds = batches(shift_right(targets, start_tokens), targets, batch_size=batch_size,
                 seed=seed)
    if null_token is None:
        return ds
    generator = tf.random.Generator.from_seed(seed)

    def drop(inputs, targets):
        dropped = generator.uniform([tf.shape(inputs)[0]]) < drop_rate
        first = tf.where(dropped, null_token, inputs[:, 0])
        return tf.concat([first[:, None], inputs[:, 1:]], axis=1), targets

    return ds.map(drop)


def sample_codes(model, start_tokens, *, temperature: float = 1.0, top_k: int = 0,
                 guidance: float = 1.0, null_token: int | None = None, seed: int = 0,
                 batch: int = 500) -> np.ndarray:
    """Draw one (P,) code sequence per start token, position by position (Gumbel-max
    sampling from softmax(logits / temperature), over the top_k codes or all for top_k=0;
    with a `null_token`, from the guided logits at scale `guidance`). Batches of `batch`
    sequences; batch j draws its noise from seed + j."""
    start_tokens = np.asarray(start_tokens, "int32")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    num_codes = model.output_shape[-1]
    k = num_codes if top_k <= 0 else min(top_k, num_codes)
    out = []
    for j, first in enumerate(range(0, len(start_tokens), batch)):
        loop, generator = _compiled_loop(model, guided=null_token is not None)
        generator.reset_from_seed(seed + j)
        out.append(loop(tf.constant(start_tokens[first:first + batch]),
                        tf.constant(temperature, tf.float32), tf.constant(k),
                        tf.constant(guidance, tf.float32),
                        tf.constant(-1 if null_token is None else null_token)).numpy())
    return np.concatenate(out)


def sequence_nll(model, codes: np.ndarray, start_tokens: np.ndarray, *,
                 batch: int = 500) -> np.ndarray:
    """Negative log-likelihood of each (P,) code sequence in nats: the sum over positions of
    -log p(c_i | s, c_1 .. c_{i-1})."""
    codes = np.asarray(codes).reshape(len(codes), -1).astype("int32")
    inputs = shift_right(codes, start_tokens)
    nll = []
    for first in range(0, len(codes), batch):
        logits = ops.cast(model(inputs[first:first + batch], training=False), "float32")
        log_p = ops.log_softmax(logits, axis=-1)
        picked = ops.take_along_axis(log_p, codes[first:first + batch, :, None], axis=-1)
        nll.append(-ops.convert_to_numpy(ops.sum(picked, axis=(1, 2))))
    return np.concatenate(nll)


# One compiled loop per network (and guided or not), so drawing again costs no new tracing.
_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_loop(model, guided: bool):
    cache = _LOOPS.setdefault(model, {})
    if guided in cache:
        return cache[guided]
    positions = model.input_shape[1]
    generator = tf.random.Generator.from_seed(0)

    def next_logits(start, codes, i, guidance, null_token):
        inputs = tf.concat([start[:, None], codes[:, :-1]], axis=1)
        if not guided:  # logits in float32 whatever the policy (--precision)
            return tf.cast(model(inputs, training=False)[:, i, :], tf.float32)
        unconditioned = tf.concat([tf.fill(tf.shape(start[:, None]), null_token),
                                   codes[:, :-1]], axis=1)
        both = tf.cast(model(tf.concat([inputs, unconditioned], axis=0), training=False)[:, i, :],
                       tf.float32)
        conditional, free = tf.split(both, 2)
        return free + guidance * (conditional - free)

    @tf.function(reduce_retracing=True)
    def loop(start, temperature, k, guidance, null_token):
        n = tf.shape(start)[0]
        codes = tf.zeros([n, positions], tf.int32)
        where = tf.range(positions)[None, :]
        for i in tf.range(positions):
            logits = next_logits(start, codes, i, guidance, null_token) / temperature
            kth_best = ops.top_k(logits, k)[0][:, -1:]
            logits = ops.where(logits < kth_best, -1e9, logits)
            uniform = generator.uniform(tf.shape(logits), 1e-12, 1.0)
            code = ops.cast(ops.argmax(logits - ops.log(-ops.log(uniform)), axis=-1), "int32")
            codes = ops.where(where == i, code[:, None], codes)
        return codes

    cache[guided] = (loop, generator)
    return cache[guided]
