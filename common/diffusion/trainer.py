"""Training a noise predictor eps_theta(x_t, t) with the simplified DDPM loss (Ho et al. 2020,
eq. 14): the plain MSE between the drawn noise and the predicted one, at a random step of a
random image. `DiffusionModel` wraps any network [x_t, t] (or [x_t, t, label]) -> noise, keeps
an EMA copy of its weights for sampling, and drops labels for classifier-free guidance (Ho &
Salimans 2022).

Under `--distribute` every replica draws its rows of the global batch's timesteps, noise and
label drops from the shared seed generator, differentiates its share of the global loss, and
updates its copy of the EMA weights from the same new weights (common.distribute).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from common.cli import positive_int
from common.diffusion.samplers import DEFAULT_STEPS, SAMPLERS
from common.diffusion.schedule import PREDICTIONS, Schedule
from common.distribute import draw, gradient_loss
from common.flops import BACKWARD_FACTOR, forward_flops
from common.pipeline import batches
from common.scaling import to_tanh_range
from common.training import cosine_adam, fit

PACKAGE = __name__
LOSS_WEIGHTINGS = ("uniform", "min_snr")
MIN_SNR_GAMMA = 5.0
TIMESTEPS = ("uniform", "logit_normal")


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiffusionModel(keras.Model):
    """Trains eps_theta with the simplified DDPM loss and keeps an EMA copy for sampling.

    `network` maps [x_t, t] (or [x_t, t, label] when `num_classes` is set) to predicted noise.
    With labels, each label is replaced by the null class `num_classes` with probability
    `label_dropout`, so the same network also learns the unconditional prediction.
    `schedule` is DDPM's linear one over `steps` steps unless given.

    `loss_weighting="min_snr"` weighs each image's squared error by min(SNR_t, gamma) / SNR_t
    (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy",
    gamma = 5): the low-noise steps, whose high SNR makes their noise prediction easy and
    their gradients dominate, count less; the textbook loss is `"uniform"`.

    `prediction="v"` says the network predicts v and ends in NoiseFromVelocity
    (common.diffusion.schedule.predicting_v): its eps error is then weighed by 1 / alpha_bar_t,
    which is the plain MSE on v, since eps_hat - eps = sqrt(alpha_bar_t) (v_hat - v).
    `timesteps="logit_normal"` draws t / T as the sigmoid of a standard normal (Esser et al.
    2024, "Scaling Rectified Flow Transformers", sec. 3.1) instead of uniformly: most steps
    land in the middle, where the noise is neither all nor nothing of x_t.
    """

    def __init__(self, network: keras.Model, ema_network: keras.Model, *, steps: int = 1000,
                 num_classes: int = 0, label_dropout: float = 0.1, ema_decay: float = 0.999,
                 seed: int | None = None, schedule: Schedule | None = None,
                 loss_weighting: str = "uniform", prediction: str = "eps",
                 timesteps: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        self.network, self.ema_network = network, ema_network
        self.schedule = schedule or Schedule(steps)
        self.num_classes, self.label_dropout = num_classes, label_dropout
        self.ema_decay, self.seed = ema_decay, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.alpha_bars = ops.convert_to_tensor(self.schedule.alpha_bars, "float32")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {loss_weighting!r}")
        if prediction not in PREDICTIONS or timesteps not in TIMESTEPS:
            raise ValueError(f"unknown prediction {prediction!r} or timesteps {timesteps!r}")
        self.loss_weighting, self.prediction, self.timesteps = (loss_weighting, prediction,
                                                                timesteps)
        snr = self.schedule.snr()
        if loss_weighting == "min_snr":  # the same in eps and in v terms
            weights = np.minimum(snr, MIN_SNR_GAMMA) / snr
        else:
            weights = 1.0 / self.schedule.alpha_bars if prediction == "v" else np.ones_like(snr)
        self.step_weights = ops.convert_to_tensor(weights, "float32")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ema_network.set_weights(self.network.get_weights())
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def ema_decay_now(self, updates):
        """The EMA's decay after `updates` steps: min(decay, (1 + n) / (10 + n)), the warm-up
        of TensorFlow's ExponentialMovingAverage: with a fixed 0.999 the random initial
        weights would still weigh 0.999^n in the average of a short CPU run."""
        return ops.minimum(self.ema_decay, (1.0 + updates) / (10.0 + updates))

    def draw_steps(self, n):
        """n training steps t in 1..T: uniform (the lecture's), or logit-normal."""
        steps = self.schedule.steps
        if self.timesteps == "uniform":
            return draw(keras.random.randint, (n,), 1, steps + 1, seed=self.seed_generator)
        u = ops.sigmoid(draw(keras.random.normal, (n,), seed=self.seed_generator))
        return ops.cast(ops.clip(ops.ceil(u * steps), 1, steps), "int32")

    def _inputs(self, x_t, t, labels):
        return [x_t, t] if labels is None else [x_t, t, labels]

    def training_flops_per_image(self) -> int:
        """One forward and backward pass of the noise predictor (the EMA copy only averages
        weights); see common.flops."""
        return BACKWARD_FACTOR * forward_flops(self.network)

    def train_step(self, data):
        x0, labels, _ = keras.utils.unpack_x_y_sample_weight(data)  # fit or train_on_batch
        labels = labels if self.num_classes else None
        n = ops.shape(x0)[0]
        t = self.draw_steps(n)
        eps = draw(keras.random.normal, ops.shape(x0), seed=self.seed_generator)
        a = ops.reshape(ops.take(self.alpha_bars, t - 1), (-1, 1, 1, 1))
        x_t = ops.sqrt(a) * x0 + ops.sqrt(1.0 - a) * eps
        if labels is not None:
            drop = draw(keras.random.uniform, (n,), seed=self.seed_generator) < self.label_dropout
            labels = ops.where(drop, self.num_classes, ops.cast(labels, "int32"))
        with tf.GradientTape() as tape:
            predicted = self.network(self._inputs(x_t, t, labels), training=True)
            # float32 even when a mixed-precision policy makes the network compute in bfloat16
            per_image = ops.mean(ops.square(eps - ops.cast(predicted, "float32")), axis=(1, 2, 3))
            loss = ops.mean(ops.take(self.step_weights, t - 1) * per_image)
            scaled = gradient_loss(loss, self.optimizer)
        weights = self.network.trainable_weights
        self.optimizer.apply(tape.gradient(scaled, weights), weights)
        decay = self.ema_decay_now(ops.cast(self.optimizer.iterations, "float32"))
        for ema, w in zip(self.ema_network.weights, self.network.weights):
            ema.assign(decay * ema + (1.0 - decay) * w)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}




# Batch 32: a short diffusion run is limited by optimizer steps, and batch 32 takes twice as
# many as 64 at equal images, for a lower FID (see docs/results.md).
BATCH_SIZE = 32


def train_diffusion(model: DiffusionModel, data, *, epochs: int, batch_size: int,
                    learning_rate: float, seed: int, out, x_train=None):
    """Adam with a cosine decay over the run, on [-1, 1] images (with labels when the model
    is conditional), through common.training.fit. `x_train` replaces the images (a latent
    diffusion model trains on their codes), in the order of `data.y_train`."""
    x_train = to_tanh_range(data.x_train) if x_train is None else x_train
    steps = epochs * (len(x_train) // batch_size)
    model.compile(optimizer=cosine_adam(learning_rate, steps))
    train_set = batches(x_train,
                        data.y_train if model.num_classes else None,
                        batch_size=batch_size, seed=seed)
    return fit(model, train_set, epochs=epochs, batch_size=batch_size, out=out,
               tag=model.name, nan_hint="try a lower --learning-rate")


def add_diffusion_flags(parser, sampler: str = "ddim") -> None:
    """The flags both diffusion chapters take besides the shared ones; `sampler` is the
    chapter's default --sampler."""
    parser.add_argument("--channels", type=positive_int, default=32,
                        help="U-Net width at 28x28, a multiple of 8; 14x14 and 7x7 use twice "
                             "this (default 32)")
    parser.add_argument("--attention", action="store_true",
                        help="add self-attention at 7x7 (slower for little gain, so off by "
                             "default; see docs/results.md)")
    add_denoiser_flag(parser)
    add_sampler_flags(parser, sampler)


def add_denoiser_flag(parser) -> None:
    """--denoiser: the chapter's convolutional network (default) or a diffusion Transformer."""
    parser.add_argument("--denoiser", choices=("unet", "dit"), default="unet",
                        help="the noise predictor: the convolutional U-Net (default) or a "
                             "diffusion Transformer (DiT, adaLN-Zero; chapters/ch5_ddpm.py)")


def add_sampler_flags(parser, sampler: str) -> None:
    """--fid-samples, --sampler and --sampling-steps: what every chapter that samples a
    diffusion model takes."""
    parser.add_argument("--fid-samples", type=positive_int, default=1000,
                        help="samples scored by classifier FID (default 1000)")
    parser.add_argument("--sampler", choices=SAMPLERS, default=sampler,
                        help=f"how samples are drawn (default {sampler}; "
                             "chapters/ch5_samplers.py compares them)")
    parser.add_argument("--sampling-steps", type=positive_int, default=None,
                        help="network passes per sample (default: " + ", ".join(
                            f"{n} {name}" for name, n in DEFAULT_STEPS.items()) + ")")


def check_diffusion_flags(parser, args) -> None:
    """One-line errors for the flags add_diffusion_flags adds."""
    if args.channels % 8:
        parser.error("--channels must be a multiple of 8 (group normalisation uses 8 groups)")
    if getattr(args, "attention", False) and getattr(args, "denoiser", "unet") == "dit":
        parser.error("--attention adds self-attention to the U-Net; the DiT (--denoiser dit) "
                     "is attention throughout")
    steps = args.sampling_steps
    if steps is not None and args.sampler == "ddpm" and steps != Schedule().steps:
        parser.error(f"--sampler ddpm takes all {Schedule().steps} steps; --sampling-steps "
                     "applies to ddim, dpmpp and dpmpp_sde")
    if steps is not None and steps > Schedule().steps:
        parser.error(f"--sampling-steps must be at most {Schedule().steps}, the steps the "
                     "model is trained with")
