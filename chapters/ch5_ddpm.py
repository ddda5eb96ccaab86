"""Chapter 5: a denoising diffusion model (DDPM, Ho et al. 2020) with a time-conditioned U-Net.

Generation as the reverse of destruction. The forward process adds a little Gaussian noise
T = 1000 times until nothing of the image is left (see noising_strip.png); a U-Net learns to
predict the noise in x_t given t, trained with a plain MSE on random steps of random images
(`DiffusionModel`). Sampling starts from pure noise and removes the predicted noise step by
step: 1000 network passes per image with the ancestral sampler, or 50 with DDIM (Song et al.
2021), which skips steps deterministically. The weights used for sampling are an exponential
moving average of the trained ones (decay 0.999 after a warm-up), as in the paper, which
smooths out the last steps' noise in the parameters.

Training is Algorithm 1 of the paper (`DiffusionModel.train_step`): noise a batch to random
steps in closed form and regress the noise. Sampling is Algorithm 2 (`ancestral_sample`): from
pure noise, remove the predicted noise one step at a time.

The noise predictor is a small time-conditioned U-Net (the DDPM paper's architecture, appendix
B, scaled down for a CPU), built below:
- residual blocks (He et al. 2016) of GroupNorm -> swish -> 3x3 conv, twice, with the step's
  embedding added in between, so every block knows how noisy its input is;
- the step t enters as a sinusoidal embedding (Vaswani et al. 2017) passed through a two-layer
  MLP; a label, when there is one, adds a learned class vector to it (index `num_classes` is
  the "null" class of classifier-free guidance, chapters/ch5_conditional_diffusion.py);
- two resolutions (28 and 14) and a middle at 7x7 with optional self-attention; skips
  concatenate each encoder level to the decoder level of the same size.
`--denoiser dit` swaps in the other network the lecture points to, a diffusion Transformer
(common.diffusion.dit): the image cut into 4x4 patches, 49 tokens, Transformer blocks told the
step (and class) by adaLN-Zero.

The lecture's training loss is the mean over random steps t of |eps - eps_theta(x_t, t)|^2 on
the linear schedule. This chapter trains with two changes to it, which reach the same FID with
fewer images (docs/results.md has the table):
- `--prediction v` (Salimans & Ho 2022): the network predicts v = sqrt(alpha_bar) eps -
  sqrt(1 - alpha_bar) x_0 instead of eps. Its squared error is the eps error divided by
  alpha_bar, so the noisy steps, where eps is easy to guess and the image hard, weigh more; a
  last layer (NoiseFromVelocity) reads v back as eps, so every sampler works unchanged.
- `--timesteps logit_normal` (Esser et al. 2024): t / T is drawn as the sigmoid of a standard
  normal, so most training steps come from the middle of the chain, where the noise is neither
  all nor nothing of x_t.
`--prediction eps --timesteps uniform --epochs 5` trains exactly the lecture's DDPM. Two more
changes can be switched on: `--schedule cosine` (Nichol & Dhariwal 2021: alpha_bar_t falls as a
squared cosine, so fewer steps are nearly pure noise) and `--loss-weighting min_snr` (Hang et
al. 2023: each step's error weighed by min(SNR_t, 5) / SNR_t).

Measured: classifier FID of samples against the test set (common.eval.classifier), drawn with
--sampler (DDIM-50 unless told), the time to draw 64 images with DDPM-1000 and with DDIM-50
and the FID of each, and training throughput. 64 images are too few for a fair FID;
chapters/ch5_samplers.py compares the samplers on thousands of images from the same noises,
using the U-Net this script saves.

Run:  python chapters/ch5_ddpm.py [--dataset fashion_mnist] [--epochs 6]
      python chapters/ch5_ddpm.py --dataset emoji      (colour: 10 epochs unless told)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from common import figures
from common.atomic import save_model
from common.cli import make_parser, parse, plural, run_main
from common.data import check_square_side
from common.diffusion.dit import build_dit
from common.diffusion.ema import ema_decay_now, update_ema
from common.diffusion.samplers import describe, guided_eps, sample, sample_ddim, sample_ddpm
from common.diffusion.schedule import (
    PREDICTIONS,
    SCHEDULES,
    Schedule,
    predicting_v,
    step_and_label,
)
from common.diffusion.trainer import (
    BATCH_SIZE,
    add_diffusion_flags,
    check_diffusion_flags,
    train_diffusion,
)
from common.distribute import draw, gradient_loss
from common.eval.classifier import FeatureClassifier, describe_fid
from common.flops import BACKWARD_FACTOR, forward_flops
from common.results import write_metrics
from common.run import epochs_for, start
from common.scaling import to_tanh_range, to_unit_range
from common.summary import print_summary

CHAPTER = "ch5_ddpm"
PACKAGE = "chapters.ch5_ddpm"
# Default budget: 3 epochs of 60,000 images. v-prediction with logit-normal steps reaches there
# the FID the lecture's loss reaches after 5 (see docs/results.md).
IMAGES = 180_000
# Colour images (the 3,083 emoji, 32x32x3) cost 1.3 times as much per image as Fashion-MNIST's,
# and 58 epochs of them would take over an hour here; colour data gets 10 epochs unless
# --epochs says otherwise (11 min of training, then 9 min for the 1,000 DDIM-50 samples of the
# FID and more for the DDPM-1000 timing; docs/results.md).
COLOUR_IMAGES = 31_000
SHAPE = (28, 28, 1)
STRIP_STEPS = (0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)
GROUPS = 8


# ---------------------------------------------------------------------------------------------
# The noise predictor eps_theta(x_t, t [, label]).

def residual_block(x, embedding, channels: int, name: str):
    """GroupNorm -> swish -> conv, + the step's embedding, GroupNorm -> swish -> conv, + x."""
    h = layers.Activation("swish", name=f"{name}_act1")(
        layers.GroupNormalization(GROUPS, name=f"{name}_norm1")(x))
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv1")(h)
    step = layers.Dense(channels, name=f"{name}_time")(embedding)
    h = layers.Add(name=f"{name}_add_time")([h, layers.Reshape((1, 1, channels),
                                                              name=f"{name}_time_map")(step)])
    h = layers.Activation("swish", name=f"{name}_act2")(
        layers.GroupNormalization(GROUPS, name=f"{name}_norm2")(h))
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv2")(h)
    if x.shape[-1] != channels:
        x = layers.Conv2D(channels, 1, name=f"{name}_shortcut")(x)
    return layers.Add(name=f"{name}_out")([x, h])


def attention_block(x, name: str):
    """Self-attention over the positions of a feature map (DDPM uses it at 16x16)."""
    height, width, channels = x.shape[1:]
    h = layers.GroupNormalization(GROUPS, name=f"{name}_norm")(x)
    h = layers.Reshape((height * width, channels), name=f"{name}_flat")(h)
    h = layers.MultiHeadAttention(num_heads=1, key_dim=channels, name=f"{name}_mha")(h, h)
    h = layers.Reshape((height, width, channels), name=f"{name}_map")(h)
    return layers.Add(name=f"{name}_out")([x, h])


def build_unet(channels: int = 32, num_classes: int = 0, attention: bool = True,
               name: str = "unet", shape=SHAPE) -> keras.Model:
    """[x_t (28, 28, 1), t (int)] (+ label (int)) -> predicted noise (28, 28, 1). Any
    square image whose side halves twice works: 32x32x3 colour images go 32 -> 16 -> 8."""
    inputs, emb = step_and_label(shape, num_classes, channels, 4 * channels)
    h = layers.Conv2D(channels, 3, padding="same", name="stem")(inputs[0])
    skip28 = residual_block(h, emb, channels, "down28")
    h = layers.Conv2D(channels, 3, strides=2, padding="same", name="to14")(skip28)
    skip14 = residual_block(h, emb, 2 * channels, "down14")
    h = layers.Conv2D(2 * channels, 3, strides=2, padding="same", name="to7")(skip14)
    h = residual_block(h, emb, 2 * channels, "mid1")
    if attention:
        h = attention_block(h, "mid_attention")
    h = residual_block(h, emb, 2 * channels, "mid2")
    h = layers.UpSampling2D(2, name="up14")(h)
    h = residual_block(layers.Concatenate(name="skip14")([h, skip14]), emb, 2 * channels,
                       "up14_block")
    h = layers.UpSampling2D(2, name="up28")(h)
    h = residual_block(layers.Concatenate(name="skip28")([h, skip28]), emb, channels,
                       "up28_block")
    h = layers.Activation("swish", name="out_act")(layers.GroupNormalization(GROUPS,
                                                                             name="out_norm")(h))
    out = layers.Conv2D(shape[-1], 3, padding="same", name="noise")(h)
    return keras.Model(inputs, out, name=name)


# ---------------------------------------------------------------------------------------------
# Training: Algorithm 1 of Ho et al. (2020).

LOSS_WEIGHTINGS = ("uniform", "min_snr")
MIN_SNR_GAMMA = 5.0
TIMESTEP_DRAWS = ("uniform", "logit_normal")


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiffusionModel(keras.Model):
    """A noise predictor eps_theta, trained by Algorithm 1 of Ho et al. (2020) in `train_step`:

        x_0 ~ the data, t ~ Uniform{1, ..., T}, eps ~ N(0, I)
        x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps              (q(x_t | x_0), eq. 4)
        one gradient step on  || eps - eps_theta(x_t, t) ||^2       (the simple loss, eq. 14)

    and an exponential moving average of its weights, `ema_network`, to sample with
    (common.diffusion.ema). `network` maps [x_t, t] (or [x_t, t, label] when `num_classes` is
    set) to the predicted noise; each label is replaced by the null class `num_classes` with
    probability `label_dropout`, so one network also learns the unconditional prediction
    (classifier-free guidance, chapters/ch5_conditional_diffusion.py). A text-conditioned
    network takes a prompt's token ids as its label and `null_label`, the empty prompt's ids,
    as "no prompt" (chapters/ch5_text_to_image.py).

    Three changes to the lecture's loss, each a flag of this chapter:
    - `timesteps="logit_normal"` draws t / T as the sigmoid of a standard normal (Esser et al.
      2024, sec. 3.1): most steps land in the middle, where the noise is neither all nor
      nothing of x_t;
    - `prediction="v"`: the network predicts v and ends in NoiseFromVelocity
      (common.diffusion.schedule.predicting_v); its eps error is then weighed by
      1 / abar_t, which is the plain MSE on v, since eps_hat - eps = sqrt(abar_t)(v_hat - v);
    - `loss_weighting="min_snr"` weighs each step's error by min(SNR_t, 5) / SNR_t (Hang et
      al. 2023): the low-noise steps, whose gradients dominate, count less.
    """

    def __init__(self, network: keras.Model, ema_network: keras.Model, *, steps: int = 1000,
                 num_classes: int = 0, label_dropout: float = 0.1, ema_decay: float = 0.999,
                 seed: int | None = None, schedule: Schedule | None = None,
                 loss_weighting: str = "uniform", prediction: str = "eps",
                 timesteps: str = "uniform", null_label=None, **kwargs):
        super().__init__(**kwargs)
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {loss_weighting!r}")
        if prediction not in PREDICTIONS or timesteps not in TIMESTEP_DRAWS:
            raise ValueError(f"unknown prediction {prediction!r} or timesteps {timesteps!r}")
        self.network, self.ema_network = network, ema_network
        self.schedule = schedule or Schedule(steps)
        self.num_classes, self.label_dropout, self.ema_decay = num_classes, label_dropout, ema_decay
        # the condition that means "none": the null class, or a text model's empty prompt
        self.null_label = num_classes if null_label is None else np.asarray(null_label, "int32")
        self.conditional = bool(num_classes) or null_label is not None
        self.loss_weighting, self.prediction, self.timesteps = loss_weighting, prediction, timesteps
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.alpha_bars = ops.convert_to_tensor(self.schedule.alpha_bars, "float32")
        self.step_weights = ops.convert_to_tensor(self.loss_weights(), "float32")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ema_network.set_weights(self.network.get_weights())
        self.built = True

    def train_step(self, data):
        x0, labels, _ = keras.utils.unpack_x_y_sample_weight(data)  # fit or train_on_batch
        labels = labels if self.conditional else None
        n = ops.shape(x0)[0]
        t = self.draw_steps(n)  # t in 1..T, one per image
        eps = draw(keras.random.normal, ops.shape(x0), seed=self.seed_generator)
        abar = ops.reshape(ops.take(self.alpha_bars, t - 1), (-1, 1, 1, 1))
        x_t = ops.sqrt(abar) * x0 + ops.sqrt(1.0 - abar) * eps  # noised in one jump
        if labels is not None:  # sometimes "no label": the unconditional prediction
            drop = draw(keras.random.uniform, (n,), seed=self.seed_generator) < self.label_dropout
            labels = ops.cast(labels, "int32")
            drop = ops.reshape(drop, (-1,) + (1,) * (len(labels.shape) - 1))  # a prompt's row
            labels = ops.where(drop, ops.cast(self.null_label, "int32"), labels)
        with tf.GradientTape() as tape:
            predicted = self.network([x_t, t] if labels is None else [x_t, t, labels],
                                     training=True)
            # || eps - eps_theta ||^2 per image, in float32 whatever the network computed in
            error = ops.mean(ops.square(eps - ops.cast(predicted, "float32")), axis=(1, 2, 3))
            loss = ops.mean(ops.take(self.step_weights, t - 1) * error)
            share = gradient_loss(loss, self.optimizer)  # this replica's part, loss-scaled
        weights = self.network.trainable_weights
        self.optimizer.apply(tape.gradient(share, weights), weights)
        update_ema(self.ema_network, self.network,
                   ema_decay_now(self.ema_decay, ops.cast(self.optimizer.iterations, "float32")))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def draw_steps(self, n):
        """n training steps t in 1..T: uniform (the lecture's), or logit-normal."""
        steps = self.schedule.steps
        if self.timesteps == "uniform":
            return draw(keras.random.randint, (n,), 1, steps + 1, seed=self.seed_generator)
        u = ops.sigmoid(draw(keras.random.normal, (n,), seed=self.seed_generator))
        return ops.cast(ops.clip(ops.ceil(u * steps), 1, steps), "int32")

    def loss_weights(self) -> np.ndarray:
        """Each step's weight in the loss: 1 (the lecture's), 1 / abar_t (v-prediction), or
        min(SNR_t, 5) / SNR_t (Min-SNR, the same in eps and in v terms)."""
        snr = self.schedule.snr()
        if self.loss_weighting == "min_snr":
            return np.minimum(snr, MIN_SNR_GAMMA) / snr
        return 1.0 / self.schedule.alpha_bars if self.prediction == "v" else np.ones_like(snr)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def training_flops_per_image(self) -> int:
        """One forward and backward pass of the noise predictor (the EMA copy only averages
        weights); see common.flops."""
        return BACKWARD_FACTOR * forward_flops(self.network)


# ---------------------------------------------------------------------------------------------
# Sampling: Algorithm 2 of Ho et al. (2020).

def ancestral_sample(network, schedule: Schedule, shape, *, seed: int = 0, labels=None,
                     guidance: float = 1.0, null_class: int = 0, keep_every: int = 0):
    """Algorithm 2, written out:

        x_T ~ N(0, I)
        for t = T, ..., 1:
            z ~ N(0, I) if t > 1, else z = 0
            x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(alpha_t)
                      + sigma_t z,      sigma_t^2 = (1 - abar_{t-1}) / (1 - abar_t) beta_t
        return x_0

    T network passes per image. (At t = 1, sigma_1 = 0, so drawing z there changes nothing;
    it is drawn anyway, to use the same random numbers as common.diffusion.samplers, whose
    compiled `sample_ddpm` walks the same steps in one loop, and which the tests hold to this
    function.) With labels, eps_theta is the guided mix of chapters/ch5_conditional_diffusion.
    Returns x_0, and with `keep_every` also x_T and then x_t every that many steps."""
    noise = tf.random.Generator.from_seed(seed)
    x = noise.normal(shape)
    frames = [x]
    predict = tf.function(lambda x_t, t: guided_eps(network, x_t, t, labels, guidance,
                                                    null_class))  # compiled once, not T times
    for t in range(schedule.steps, 0, -1):
        eps = predict(x, tf.fill([shape[0]], t))
        alpha, beta, abar = (schedule.alphas[t - 1], schedule.betas[t - 1],
                             schedule.alpha_bars[t - 1])
        abar_before = schedule.alpha_bars[t - 2] if t > 1 else 1.0
        sigma = np.sqrt((1.0 - abar_before) / (1.0 - abar) * beta)
        z = noise.normal(shape)
        x = (x - beta / np.sqrt(1.0 - abar) * eps) / np.sqrt(alpha) + sigma * z
        if keep_every and (schedule.steps - t + 1) % keep_every == 0:
            frames.append(x)
    return (x.numpy(), np.stack(frames)) if keep_every else x.numpy()


# ---------------------------------------------------------------------------------------------
# The model this chapter trains.

def build_diffusion(channels: int = 32, num_classes: int = 0, seed: int | None = None,
                    name: str = "ddpm", attention: bool = False,
                    denoiser: str = "unet", shape=SHAPE, schedule: str = "linear",
                    loss_weighting: str = "uniform", prediction: str = "eps",
                    timesteps: str = "uniform") -> DiffusionModel:
    """The noise predictor (the U-Net, or with denoiser="dit" the diffusion Transformer), its
    EMA twin, and the training wrapper (common.diffusion.trainer), for images of `shape`.
    With prediction="v" the network predicts v, read back as noise (predicting_v)."""
    noise_schedule = Schedule(kind=schedule)

    def network(network_name):
        if denoiser == "dit":
            net = build_dit(shape, num_classes, name=network_name)
        else:
            net = build_unet(channels, num_classes, attention, name=network_name, shape=shape)
        return predicting_v(net, noise_schedule) if prediction == "v" else net

    return DiffusionModel(network("unet" if denoiser == "unet" else "dit"),
                          network("unet_ema" if denoiser == "unet" else "dit_ema"),
                          num_classes=num_classes, seed=seed, name=name,
                          schedule=noise_schedule, loss_weighting=loss_weighting,
                          prediction=prediction, timesteps=timesteps)


# ---------------------------------------------------------------------------------------------
# The main job.

def noising_strip(x0: np.ndarray, schedule: Schedule, seed: int) -> np.ndarray:
    """One image at the steps of STRIP_STEPS, noised in closed form with one eps."""
    eps = np.random.default_rng(seed).standard_normal(x0.shape).astype("float32")
    frames = [x0] + [schedule.noisy(x0[None], np.array([t]), eps[None])[0]
                     for t in STRIP_STEPS[1:]]
    return to_unit_range(np.stack(frames))


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None,
                         batch_size=BATCH_SIZE, learning_rate=1e-3)
    add_diffusion_flags(parser)
    parser.add_argument("--schedule", choices=SCHEDULES, default="linear",
                        help="noise schedule: DDPM's linear betas (default) or the cosine "
                             "schedule of Nichol & Dhariwal 2021 (sample it with --sampler "
                             "ddpm: the unclipped DDIM fails on its last step, whose alpha_bar "
                             "is 2.4e-9; see docs/results.md)")
    parser.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, default="uniform",
                        help="the DDPM loss as the lecture writes it (uniform, default) or "
                             "Min-SNR-5 weighting of the steps (Hang et al. 2023)")
    parser.add_argument("--prediction", choices=PREDICTIONS, default="v",
                        help="what the network predicts: v (Salimans & Ho 2022; default) or "
                             "the noise, as the lecture has it (eps)")
    parser.add_argument("--timesteps", choices=TIMESTEP_DRAWS, default="logit_normal",
                        help="how training draws the step t: logit-normal, favouring the "
                             "middle steps (default), or uniformly, as the lecture has it")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    check_diffusion_flags(parser, args)
    if args.summary:
        print_summary(build_diffusion(args.channels, attention=args.attention,
                                      denoiser=args.denoiser,
                                      prediction=args.prediction).network)
        return 0

    with start(args, images=IMAGES) as run:
        # The data: a few training images of each class, scaled to [-1, 1].
        data = run.data
        check_square_side(data, multiple=4)
        shape = data.image_shape  # 28x28x1, or 32x32x3 colour
        if shape[-1] == 3 and args.epochs is None and not run.quick:
            run.epochs = epochs_for(None, len(data.x_train), images=COLOUR_IMAGES)
        figures.data_grid(data, run.out / "data.png")

        # The noise predictor (the U-Net, or the DiT), its EMA copy and the training step.
        model = build_diffusion(args.channels, seed=run.seed, attention=args.attention,
                                denoiser=args.denoiser, shape=shape, schedule=args.schedule,
                                loss_weighting=args.loss_weighting, prediction=args.prediction,
                                timesteps=args.timesteps)
        print_summary(model.network)

        # The forward process: one test image noised to growing t in one jump each.
        figures.image_grid(noising_strip(to_tanh_range(data.x_test[0]), model.schedule,
                                         run.seed),
                           run.out / "noising_strip.png", ncols=len(STRIP_STEPS),
                           titles=[f"t={t}" for t in STRIP_STEPS],
                           suptitle="The forward process: x_t = sqrt(abar_t) x_0 + "
                                    "sqrt(1 - abar_t) eps")

        # Training: Algorithm 1 on every batch (DiffusionModel.train_step).
        print(f"\n== training the noise predictor for {plural(run.epochs, 'epoch')} ==")
        trained = train_diffusion(model, data, epochs=run.epochs, batch_size=run.batch_size,
                                  learning_rate=args.learning_rate, seed=run.seed, out=run.out)

        # Sampling with the EMA weights and the judge's verdict; in a full run also the time
        # of DDPM-1000 against DDIM-50, and Algorithm 2 drawn step by step.
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        label = describe(args.sampler, args.sampling_steps)
        drawn, scored, timing = measure(model, judge, data, run, args.sampler,
                                        args.sampling_steps,
                                        min(args.fid_samples, 64) if run.quick
                                        else args.fid_samples)
        reverse_process_figure(model, run.out / "reverse_process.png", run.seed, shape,
                               written_out=not run.quick)
        figures.image_grid(drawn[:100], run.out / "samples.png", ncols=10,
                           suptitle=f"{label} samples from the EMA weights")
        figures.curves({"train MSE on the noise": trained.history["loss"]},
                       run.out / "loss_curve.png", title="DDPM training loss", ylabel="MSE")
        save_model(model.ema_network, run.out / "unet_ema.keras")  # the name, whichever network
        save_model(model.network, run.out / "unet.keras")  # the last trained weights
        write_metrics(run, judge=judge, models={"ddpm": {
            "sampler": label, **scored, **timing, "params": model.network.count_params(),
            "channels": args.channels, "denoiser": args.denoiser, "schedule": args.schedule,
            "loss_weighting": args.loss_weighting, "prediction": args.prediction,
            "timesteps": args.timesteps, **trained.speed()}})
    print(run.closing(f"\nFigures, the denoisers (EMA and last) and metrics.json are in {run.out}/ "
                      "(start with reverse_process.png); next, python chapters/ch5_samplers.py "
                      f"--run {run.out} compares the samplers"))
    return 0


def measure(model, judge, data, run, sampler: str, steps: int | None, count: int):
    """`count` samples with the chosen sampler, scored by the judge; in a full run also the
    time and FID of 64 images with DDPM-1000 against DDIM-50. Returns the samples, their
    scores and the timing."""
    label = describe(sampler, steps)
    print(f"\nsampling {count} images with {label} for the FID")
    drawn = to_unit_range(sample(model.ema_network, model.schedule, (count, *data.image_shape),
                                 sampler=sampler, sampling_steps=steps, seed=run.seed))
    scored = judge.fid_report(data, drawn)
    print(f"{label} samples: {describe_fid(scored)}")
    timing = {}
    if not run.quick:  # 1000 network passes per image: minutes, so not in a smoke test
        timing = compare_samplers(model, judge, data, 64, run.seed, data.image_shape)
        print(f"64-image timing: DDPM-1000 {timing['ddpm_seconds']:.1f} s (FID "
              f"{timing['ddpm_fid']:.1f}), DDIM-50 {timing['ddim_seconds']:.1f} s (FID "
              f"{timing['ddim_fid']:.1f}); ratio {timing['time_ratio']:.3f}")
    return drawn, scored, timing


def reverse_process_figure(model, path, seed: int, shape=SHAPE, written_out: bool = True):
    """Six samples as strips of x_t, from noise to image: Algorithm 2 as written out above
    (`ancestral_sample`), every 100 of its 1000 steps, or in a --quick run DDIM-50 every 5 of
    its steps."""
    if written_out:
        strips = ancestral_sample(model.ema_network, model.schedule, (6, *shape),
                                  seed=seed + 1, keep_every=100)
        name = "Algorithm 2, every 100 of 1000 steps"
    else:
        strips = sample_ddim(model.ema_network, model.schedule, (6, *shape), seed=seed + 1,
                             keep_every=5)
        name = "DDIM-50, every 5 of its steps"
    frames = to_unit_range(strips[1][:, :6].transpose(1, 0, 2, 3, 4))  # x_T ... x_0 per row
    figures.image_grid(frames.reshape(-1, *shape), path, ncols=frames.shape[1],
                       suptitle=f"The reverse process, noise to image ({name})")


def compare_samplers(model, judge, data, n: int, seed: int, shape=SHAPE) -> dict:
    """Time DDPM-1000 and DDIM-50 (common.diffusion.samplers, each a compiled loop) drawing n
    images each (the time includes tracing each loop, a few seconds); the FID of each set."""
    results = {}
    for name, sampler, keep in (("ddpm", sample_ddpm, 100), ("ddim", sample_ddim, 0)):
        began = time.perf_counter()
        drawn = sampler(model.ema_network, model.schedule, (n, *shape), seed=seed + 7,
                        keep_every=keep)
        results[f"{name}_seconds"] = round(time.perf_counter() - began, 2)
        drawn = drawn[0] if keep else drawn
        results[f"{name}_fid"] = round(judge.fid(data.x_test, to_unit_range(drawn)), 3)
    results["time_ratio"] = round(results["ddim_seconds"] / results["ddpm_seconds"], 4)
    results["timed_images"] = n
    return results


if __name__ == "__main__":
    sys.exit(run_main(main))
