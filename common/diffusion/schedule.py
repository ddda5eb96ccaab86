"""The forward process of denoising diffusion (Ho et al. 2020, "DDPM"), and how a denoiser is told
the step (and the class).

T steps with variances beta_t (linear from 1e-4 to 0.02, the paper's sec. 4):

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),
    alpha_bar_t      = prod over s <= t of (1 - beta_s)

so x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps in one step (eq. 4).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

PACKAGE = __name__


SCHEDULES = ("linear", "cosine")
COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s: keeps beta_1 from being vanishingly small
MAX_BETA = 0.999  # their clip, so the last steps do not destroy the signal in one jump


class Schedule:
    """beta_t, alpha_t and alpha_bar_t for t = 1..T, stored at index t - 1.

    `kind="linear"`: DDPM's betas, linear from `beta_start` to `beta_end`. `kind="cosine"`
    (Nichol & Dhariwal 2021, eq. 17): alpha_bar_t = f(t) / f(0) with
    f(t) = cos^2(((t / T + s) / (1 + s)) pi / 2), so alpha_bar falls slowly at both ends and
    about linearly in between; the linear schedule is nearly pure noise for its last few
    hundred steps, which a model then spends training on for little gain.
    """

    def __init__(self, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 kind: str = "linear"):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")
        self.steps, self.kind = steps, kind
        if kind == "linear":
            self.betas = np.linspace(beta_start, beta_end, steps, dtype=np.float64)
        else:
            f = np.cos((np.arange(steps + 1) / steps + COSINE_OFFSET) / (1 + COSINE_OFFSET)
                       * np.pi / 2) ** 2
            self.betas = np.minimum(1.0 - f[1:] / f[:-1], MAX_BETA)
        self.alphas = 1.0 - self.betas
        self.alpha_bars = np.cumprod(self.alphas)

    def snr(self) -> np.ndarray:
        """The signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) of each step."""
        return self.alpha_bars / (1.0 - self.alpha_bars)

    def noisy(self, x0: np.ndarray, t: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """x_t from x_0 in closed form; `t` holds 1-based steps, one per image."""
        a = self.alpha_bars[np.asarray(t) - 1].reshape(-1, *([1] * (x0.ndim - 1)))
        return (np.sqrt(a) * x0 + np.sqrt(1.0 - a) * eps).astype(np.float32)


def timestep_embedding(t, dim: int):
    """Sinusoidal embedding of integer steps (Vaswani et al. 2017, sec. 3.5; DDPM appendix B):
    [sin(t w_k), cos(t w_k)] with w_k = 10000^(-k / (dim/2)). Vectorised over the batch."""
    half = dim // 2
    freqs = ops.exp(-math.log(10000.0) * ops.arange(half, dtype="float32") / half)
    args = ops.cast(ops.reshape(t, (-1, 1)), "float32") * freqs[None, :]
    return ops.concatenate([ops.sin(args), ops.cos(args)], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimestepEmbedding(layers.Layer):
    """Integer steps (batch,) -> sinusoidal vectors (batch, dim)."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def call(self, t):
        return timestep_embedding(t, self.dim)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}




# The label vectors start unit-normal, as large as the step's embedding, rather than Keras's
# default uniform(-0.05, 0.05), which drowned the label and made it slow to learn.
LABEL_STDDEV = 1.0


def step_and_label(shape, num_classes: int, sinusoid_dim: int, width: int,
                   image_name: str = "x_t"):
    """A noise predictor's inputs [x_t, t (int)] (+ label (int)) and its conditioning vector:
    the step's sinusoidal embedding through a two-layer MLP, plus a learned class vector when
    there is a label."""
    x_in = keras.Input(shape, name=image_name)
    t_in = keras.Input((), dtype="int32", name="t")
    inputs = [x_in, t_in]
    emb = TimestepEmbedding(sinusoid_dim, name="t_sinusoidal")(t_in)
    emb = layers.Dense(width, activation="swish", name="t_mlp_1")(emb)
    emb = layers.Dense(width, name="t_mlp_2")(emb)
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        class_vector = layers.Embedding(num_classes + 1, width, name="label_embedding",
                                        embeddings_initializer=keras.initializers.RandomNormal(
                                            stddev=LABEL_STDDEV))(label)
        emb = layers.Add(name="t_plus_label")([emb, class_vector])
    return inputs, emb



PREDICTIONS = ("eps", "v")


@keras.saving.register_keras_serializable(package=PACKAGE)
class NoiseFromVelocity(layers.Layer):
    """[v, x_t, t] -> eps = sqrt(alpha_bar_t) v + sqrt(1 - alpha_bar_t) x_t.

    v-prediction (Salimans & Ho 2022, "Progressive Distillation", sec. 4 and appendix D): the
    network predicts v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0, which stays a
    well-scaled target at every step, where eps is trivial to predict (and x_0 hopeless) near
    pure noise. Turned back into eps here, the network still plugs into every sampler.
    Computed in float32: at alpha_bar_T = 4e-5 the two terms nearly cancel.
    """

    def __init__(self, steps: int = 1000, kind: str = "linear", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.steps, self.kind = steps, kind
        self.alpha_bars = Schedule(steps, kind=kind).alpha_bars.astype("float32")

    def call(self, inputs):
        v, x_t, t = inputs
        a = ops.reshape(ops.take(ops.convert_to_tensor(self.alpha_bars), ops.cast(t, "int32") - 1),
                        (-1,) + (1,) * (len(x_t.shape) - 1))
        return ops.sqrt(a) * ops.cast(v, "float32") + ops.sqrt(1.0 - a) * ops.cast(x_t, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "kind": self.kind}


def predicting_v(network: keras.Model, schedule: Schedule) -> keras.Model:
    """`network` [x_t, t (, label)] -> v, read as a noise predictor: the same inputs, its output
    turned into eps by NoiseFromVelocity."""
    x_t, t = network.inputs[:2]
    eps = NoiseFromVelocity(schedule.steps, schedule.kind, name="noise_from_v")(
        [network.output, x_t, t])
    return keras.Model(network.inputs, eps, name=network.name)
