"""Chapter 5: latent diffusion, Stable Diffusion in miniature (Rombach et al. 2022).

Stable Diffusion is conditional diffusion (chapters/ch5_conditional_diffusion.py) plus a few
devices, and the main one is where the diffusion happens: not on the pixels but on the codes
of an autoencoder. Three parts, trained one after the other:

1. An autoencoder (Stable Diffusion's "VAE"): a convolutional encoder squeezes a 28x28 image
   into a 7x7xC grid of codes and a decoder paints the image back. It is trained on the
   pixels' Bernoulli cross-entropy, as the course's VAEs are, plus a small KL term to N(0, I)
   (the paper's KL-regularised autoencoder, weight KL_WEIGHT), which keeps the codes in a
   compact, smooth region the decoder knows. Before
   diffusion the codes are multiplied by a scale factor that gives them unit variance, as the
   paper does (Stable Diffusion's is 0.18215).
2. Class-conditional diffusion on those codes: the DDPM training of chapter 5 (EMA, label
   dropout for classifier-free guidance) with a denoiser sized for a 7x7 grid, a stack of
   chapter 5's residual blocks with self-attention in the middle. Every network pass handles
   7x7xC numbers instead of 28x28 pixels, which is why this chapter trains in a few minutes.
   Colour works the same way: a 32x32 emoji (--dataset emoji) becomes an 8x8x8 code.
3. Sampling: DPM-Solver++(2M) in 20 steps (common.diffusion.samplers) draws codes, and one
   decoder pass turns them into images.

With it a learner can:
- write prompts (--prompt "ankle boot"): text-to-image where the vocabulary is the dataset's
  ten class names (a digit can be asked for as "7" or "seven");
- change an image into another class (--image-to-image): its code is noised to a strength s
  and denoised under another prompt (SDEdit, Meng et al. 2022): small s keeps the shape, large
  s keeps little but the prompt.

Measured with the same judge as every generative chapter (common.eval.classifier): the
autoencoder's reconstruction MSE and the judge's accuracy on reconstructions (the ceiling of
anything drawn through this decoder), the conditional accuracy, classifier FID and KID of
samples at each guidance scale, and the time to draw 100 samples. `run_all.py` puts these
numbers beside the pixel-space chapter's (its report's "latent against pixel space").

A folder that holds a finished run is used as it is by --prompt and --image-to-image (they
draw with its models and train nothing); a run interrupted after the autoencoder's phase
resumes with the trained autoencoder.

Run:  python chapters/ch5_latent_diffusion.py [--dataset fashion_mnist] [--guidance 2.5]
      python chapters/ch5_latent_diffusion.py --prompt "ankle boot" --prompt dress
      python chapters/ch5_latent_diffusion.py --image-to-image --source shirt --prompt dress
"""

from __future__ import annotations

import re
import shutil
import sys
import time
import unicodedata
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` and `chapters` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from chapters.ch3_vae import Sampling
from chapters.ch5_ddpm import DiffusionModel, attention_block, residual_block
from common import figures
from common.atomic import save_model, write_json
from common.cli import (
    make_parser,
    non_negative_float,
    parse,
    plural,
    positive_int,
    run_main,
)
from common.data import FASHION_NAMES, check_square_side
from common.diffusion.dit import build_dit
from common.diffusion.samplers import DEFAULT_STEPS, describe, sample, sample_ddim
from common.diffusion.schedule import Schedule, step_and_label
from common.diffusion.trainer import (
    BATCH_SIZE,
    add_denoiser_flag,
    add_sampler_flags,
    check_diffusion_flags,
    train_diffusion,
)
from common.distribute import gradient_loss
from common.emoji_images import GROUPS as EMOJI_GROUPS
from common.errors import UserError
from common.eval.classifier import FeatureClassifier
from common.eval.guidance import by_guidance, guidance_sweep
from common.pipeline import batches
from common.results import EarlierRun, read_run, write_metrics
from common.run import start
from common.summary import print_summary
from common.training import cosine_adam, fit
from common.vae.elbo import kl_to_standard_normal

CHAPTER = "ch5_latent_diffusion"
PACKAGE = "ch5_latent_diffusion"
# C = 2 channels: at equal diffusion training, more samples show their class than with
# C = 4, for reconstructions nearly as good (see docs/results.md). Colour images carry three
# times the numbers: 8 channels reconstructed them better than 4 did at twice the width.
GREY_LATENT_CHANNELS = 2
COLOUR_LATENT_CHANNELS = 8
DOWNSAMPLING = 4  # 28x28 -> 7x7, the paper's f = 4
AE_WIDTH = 16
KL_WEIGHT = 1e-3  # 1e-4 left the codes' scale loose, 1e-2 blurred them (docs/results.md)
AE_IMAGES = 60_000  # one epoch of Fashion-MNIST
AE_LEARNING_RATE = 2e-3
AE_BATCH = 64
IMAGES = 180_000  # diffusion training images (3 epochs of codes)
DIT_WIDTH = 96  # --denoiser dit: about twice the residual denoiser's parameters
# Stable Diffusion's noise levels (beta from 0.00085 to 0.012), gentler than pixel DDPM's:
# higher conditional accuracy at equal training on these codes (see docs/results.md).
BETAS = (0.00085, 0.012)
SCALES = (0.0, 1.0, 2.0, 3.0, 5.0)
GUIDANCE = 2.5
SIDE_SHARE = 0.3  # the scales other than --guidance are scored on 30% as many samples
STRENGTHS = (0.3, 0.5, 0.7)
ECHO = 60  # characters of a bad prompt repeated in its error line
KANJI_NUMBERS = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九")
# Fashion-MNIST's classes as a Japanese learner would write them (katakana loanwords, as shops
# label them), and the emoji's nine groups; either spelling, English or Japanese, is a prompt.
JAPANESE_NAMES = {FASHION_NAMES: ("Tシャツ/トップ", "ズボン", "プルオーバー", "ドレス", "コート",
                                  "サンダル", "シャツ", "スニーカー", "バッグ", "アンクルブーツ"),
                  EMOJI_GROUPS: ("顔と感情", "人と体", "動物と自然", "食べ物と飲み物", "旅行と場所",
                                 "アクティビティ", "物", "記号", "旗")}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine")
SAVED = ("encoder.keras", "decoder.keras", "denoiser_ema.keras", "latent_diffusion.json")


# ---------------------------------------------------------------------------------------------
# 1. The autoencoder.

def build_encoder(image_shape=(28, 28, 1), latent_channels: int = GREY_LATENT_CHANNELS,
                  width: int = AE_WIDTH) -> keras.Model:
    """Image in [0, 1] -> mean and log-variance of q(z | x), each (H/4, W/4, C): two stride-2
    convolutions, each followed by a 3x3 one, then 1x1 heads."""
    x = keras.Input(image_shape, name="image")
    h = layers.Conv2D(width, 3, padding="same", activation="swish", name="conv_full")(x)
    h = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="swish",
                      name="down_half")(h)
    h = layers.Conv2D(2 * width, 3, padding="same", activation="swish", name="conv_half")(h)
    h = layers.Conv2D(4 * width, 3, strides=2, padding="same", activation="swish",
                      name="down_quarter")(h)
    h = layers.Conv2D(4 * width, 3, padding="same", activation="swish", name="conv_quarter")(h)
    mean = layers.Conv2D(latent_channels, 1, name="z_mean")(h)
    log_var = layers.Conv2D(latent_channels, 1, name="z_log_var")(h)
    return keras.Model(x, [mean, log_var], name="encoder")


def build_decoder(latent_shape=(7, 7, GREY_LATENT_CHANNELS), image_channels: int = 1,
                  width: int = AE_WIDTH) -> keras.Model:
    """Codes (H/4, W/4, C) -> the logits of the pixels (sigmoid them for the image): the
    encoder mirrored, with transposed convolutions to double the size."""
    z = keras.Input(latent_shape, name="z")
    h = layers.Conv2D(4 * width, 3, padding="same", activation="swish", name="conv_quarter")(z)
    h = layers.Conv2D(4 * width, 3, padding="same", activation="swish", name="conv_quarter2")(h)
    h = layers.Conv2DTranspose(2 * width, 4, strides=2, padding="same", activation="swish",
                               name="up_half")(h)
    h = layers.Conv2D(2 * width, 3, padding="same", activation="swish", name="conv_half")(h)
    h = layers.Conv2DTranspose(width, 4, strides=2, padding="same", activation="swish",
                               name="up_full")(h)
    # logits, for the cross-entropy: a sigmoid output under the MSE saturated at black on
    # digits and never recovered, a linear one under the MSE reconstructed blurrier; the
    # cross-entropy's gradient, sigmoid(logit) - x, never vanishes (see docs/results.md)
    out = layers.Conv2D(image_channels, 3, padding="same", name="logits")(h)
    return keras.Model(z, out, name="decoder")


@keras.saving.register_keras_serializable(package=PACKAGE)
class KLAutoencoder(keras.Model):
    """The encoder and decoder trained on

        loss = sum over pixels of BCE(x, sigmoid(decoder(z)))
               + kl_weight * KL(q(z | x) || N(0, I)),

    the first term the pixels' Bernoulli cross-entropy (computed from the logits), z drawn
    from q(z | x) with the reparameterisation trick (chapters/ch3_vae.py Sampling); both sums
    per image, as in the latent diffusion paper. A VAE's KL weight would be 1; a small one
    keeps reconstructions sharp and only stops the codes from drifting to any scale.
    `scale` (1 / the codes' standard deviation, set after training) gives diffusion
    unit-variance codes."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, *,
                 kl_weight: float = KL_WEIGHT, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.kl_weight = encoder, decoder, kl_weight
        self.sampling = Sampling(seed=seed, name="sampling")
        self.scale = 1.0
        self.trackers = [keras.metrics.Mean(name=n) for n in ("loss", "reconstruction", "kl")]
        self.built = True  # its parts are built; fit's resume needs a built model

    @property
    def metrics(self):
        return self.trackers

    def call(self, x, training=False):
        mean, _ = self.encoder(x, training=training)
        return ops.sigmoid(self.decoder(mean, training=training))

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # fit(x) or train_on_batch(x)
        with tf.GradientTape() as tape:
            mean, log_var = self.encoder(x, training=True)
            logits = ops.cast(self.decoder(self.sampling([mean, log_var]), training=True),
                              "float32")  # the loss in float32 under --precision
            reconstruction = ops.mean(ops.sum(ops.binary_crossentropy(
                ops.cast(x, "float32"), logits, from_logits=True), axis=(1, 2, 3)))
            flat = (ops.shape(mean)[0], -1)
            kl = ops.mean(kl_to_standard_normal(ops.cast(ops.reshape(mean, flat), "float32"),
                                                ops.cast(ops.reshape(log_var, flat), "float32")))
            loss = reconstruction + self.kl_weight * kl
            scaled = gradient_loss(loss, self.optimizer)  # under --distribute, this replica's share
        weights = self.trainable_weights
        self.optimizer.apply(tape.gradient(scaled, weights), weights)
        for tracker, value in zip(self.trackers, (loss, reconstruction, kl)):
            tracker.update_state(value)
        return {t.name: t.result() for t in self.trackers}

    def encode(self, images) -> np.ndarray:
        """Images in [0, 1] -> scaled codes (the posterior means times `scale`)."""
        mean, _ = self.encoder.predict(np.asarray(images, np.float32), batch_size=500,
                                       verbose=0)
        return (mean * self.scale).astype(np.float32)

    def decode(self, codes) -> np.ndarray:
        """Scaled codes -> images in [0, 1] (the sigmoid of the decoder's logits)."""
        logits = self.decoder.predict(np.asarray(codes, np.float32) / self.scale,
                                      batch_size=500, verbose=0)
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def build_autoencoder(image_shape=(28, 28, 1), latent_channels: int = GREY_LATENT_CHANNELS,
                      seed: int | None = None) -> KLAutoencoder:
    """The encoder, the decoder and their training wrapper; images must be a multiple of 4
    on each side."""
    if image_shape[0] % DOWNSAMPLING or image_shape[1] % DOWNSAMPLING:
        raise UserError(f"latent diffusion needs images whose sides are multiples of "
                        f"{DOWNSAMPLING}, got {image_shape[0]}x{image_shape[1]}")
    latent_shape = (image_shape[0] // DOWNSAMPLING, image_shape[1] // DOWNSAMPLING,
                    latent_channels)
    return KLAutoencoder(build_encoder(image_shape, latent_channels),
                         build_decoder(latent_shape, image_shape[-1]), seed=seed,
                         name="kl_autoencoder")


# ---------------------------------------------------------------------------------------------
# 2. The denoiser of the codes.

def build_latent_denoiser(latent_shape=(7, 7, GREY_LATENT_CHANNELS), num_classes: int = 10,
                          channels: int = 64, blocks: int = 4,
                          name: str = "latent_denoiser") -> keras.Model:
    """[z_t (7, 7, C), t (int), label (int)] -> predicted noise (7, 7, C).

    A 7x7 grid is too small to halve twice as the pixel U-Net does, so the denoiser stays at
    7x7: `blocks` of chapter 5's residual blocks (the step and class embedding added in each)
    with self-attention over the 49 positions half-way; four blocks already see the whole grid
    through their 3x3 convolutions."""
    inputs, emb = step_and_label(latent_shape, num_classes, channels, 2 * channels,
                                 image_name="z_t")
    h = layers.Conv2D(channels, 3, padding="same", name="stem")(inputs[0])
    for i in range(blocks):
        h = residual_block(h, emb, channels, f"block{i + 1}")
        if i + 1 == blocks // 2:
            h = attention_block(h, "attention")
    h = layers.Activation("swish", name="out_act")(
        layers.GroupNormalization(8, name="out_norm")(h))
    out = layers.Conv2D(latent_shape[-1], 3, padding="same", name="noise")(h)
    return keras.Model(inputs, out, name=name)


def build_latent_diffusion(latent_shape=(7, 7, GREY_LATENT_CHANNELS), num_classes: int = 10,
                           channels: int = 64, seed: int | None = None,
                           denoiser: str = "unet") -> DiffusionModel:
    """The denoiser, its EMA twin and chapter 5's training wrapper, on Stable Diffusion's
    noise levels (BETAS). denoiser="dit": chapter 5's diffusion Transformer on 1x1 patches of
    the 7x7 codes (49 tokens), width 96, instead of the residual blocks."""
    def network(name):
        if denoiser == "dit":
            return build_dit(latent_shape, num_classes, patch=1, width=DIT_WIDTH, name=name)
        return build_latent_denoiser(latent_shape, num_classes, channels, name=name)

    return DiffusionModel(
        network("latent_denoiser"), network("latent_denoiser_ema"),
        num_classes=num_classes, seed=seed, schedule=Schedule(1000, *BETAS),
        name="latent_diffusion")


# ---------------------------------------------------------------------------------------------
# 3. Prompts, sampling and image-to-image.

def _key(text: str) -> str:
    """A prompt as it is looked up: width-normalised (NFKC), lower case, letters and digits of
    any script only."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).lower())


def prompt_vocabulary(class_names) -> dict[str, int]:
    """Every accepted spelling -> class index: the name with case, spaces and punctuation
    ignored, each part of a name like 'T-shirt/top', a digit's word ('seven' or '七' for '7'),
    and Fashion-MNIST's Japanese names (JAPANESE_NAMES: 'アンクルブーツ', 'Tシャツ')."""
    words = {}
    japanese = JAPANESE_NAMES.get(tuple(class_names), [""] * len(class_names))
    for index, (name, name_ja) in enumerate(zip(class_names, japanese)):
        for part in (name, *name.split("/"), *(name_ja.split("/") if name_ja else ())):
            words[_key(part)] = index
        if name_ja:
            words[_key(name_ja)] = index
        if _key(name).isdigit() and int(name) < len(NUMBER_WORDS):
            words[NUMBER_WORDS[int(name)]] = index
            words[KANJI_NUMBERS[int(name)]] = index
    return words


def parse_prompt(text: str, class_names) -> int:
    """The class a prompt asks for; an unknown prompt is a UserError naming the valid ones
    (and repeating at most ECHO characters of the prompt)."""
    index = prompt_vocabulary(class_names).get(_key(text))
    if index is None or not _key(text):
        shown = text if len(text) <= ECHO else f"{text[:ECHO]}... ({len(text):,} characters)"
        raise UserError(f"unknown prompt {shown!r}; the prompts are the class names: "
                        + ", ".join(repr(n) for n in class_names))
    return index


def draw_codes(model: DiffusionModel, labels, guidance: float, seed: int, sampler: str = "dpmpp",
               steps: int | None = None, keep_every: int = 0):
    """Codes of the requested classes at guidance w (the samplers of chapter 5, unclipped:
    codes have no fixed range)."""
    return sample(model.ema_network, model.schedule,
                  (len(labels), *model.ema_network.input_shape[0][1:]), sampler=sampler,
                  sampling_steps=steps, labels=np.asarray(labels, np.int32), guidance=guidance,
                  null_class=model.num_classes, seed=seed, keep_every=keep_every)


def generate(model, autoencoder, labels, guidance: float, seed: int, **draw) -> np.ndarray:
    """Images in [0, 1] of the requested classes: codes drawn, then decoded."""
    return autoencoder.decode(draw_codes(model, labels, guidance, seed, **draw))


def image_to_image(model, autoencoder, images, labels, strength: float, *, guidance: float,
                   seed: int, sampler: str = "dpmpp", steps: int | None = None) -> np.ndarray:
    """SDEdit (Meng et al. 2022): encode `images`, noise their codes to step t = strength * T
    in closed form, and denoise from there under `labels` with strength * the sampler's steps.
    Strength 0 returns the reconstructions; strength 1 starts from pure noise (the input is
    ignored)."""
    codes = autoencoder.encode(images)
    if strength <= 0:
        return autoencoder.decode(codes)
    schedule = model.schedule
    start = max(1, min(schedule.steps, round(strength * schedule.steps)))
    eps = np.random.default_rng(seed).standard_normal(codes.shape).astype(np.float32)
    x_t = eps if strength >= 1 else schedule.noisy(codes, np.full(len(codes), start), eps)
    common_args = {"labels": np.asarray(labels, np.int32), "guidance": guidance,
                   "null_class": model.num_classes, "seed": seed, "start_step": start,
                   "x_start": x_t}
    if sampler == "ddpm":  # ancestral: DDIM with eta = 1 over every step is the same walk
        z = sample_ddim(model.ema_network, schedule, codes.shape, sampling_steps=start,
                        eta=1.0, **common_args)
    else:
        count = max(1, round((steps or DEFAULT_STEPS[sampler]) * min(strength, 1.0)))
        z = sample(model.ema_network, schedule, codes.shape, sampler=sampler,
                   sampling_steps=count, **common_args)
    return autoencoder.decode(z)


# ---------------------------------------------------------------------------------------------
# The main job.

def train_autoencoder(data, run, latent_channels: int) -> tuple[KLAutoencoder, dict]:
    """One pass over the training images (AE_IMAGES), then the scale factor from the codes.
    The trained autoencoder is kept in out/.backup/ until the run finishes, so a run
    interrupted later resumes with it instead of training it again. Returns it and its
    training numbers."""
    kept = run.out / ".backup" / "autoencoder"
    if (kept / "autoencoder.json").exists():
        try:
            autoencoder, report = load_autoencoder(kept)
            print(f"\n== 1. the autoencoder: trained earlier in this run, from {kept}/ ==")
            return autoencoder, report
        except UserError as err:  # damaged: train it again
            print(f"note: {err}; training the autoencoder again")
    autoencoder = build_autoencoder(data.image_shape, latent_channels, seed=run.seed)
    epochs = max(1, round(AE_IMAGES / len(data.x_train))) if not run.quick else 1
    batch = min(AE_BATCH, len(data.x_train))
    steps = epochs * (len(data.x_train) // batch)
    autoencoder.compile(optimizer=cosine_adam(AE_LEARNING_RATE, steps))
    print_summary(autoencoder.encoder)
    print_summary(autoencoder.decoder)
    print(f"\n== 1. the autoencoder, {plural(epochs, 'epoch')} ==")
    trained = fit(autoencoder, batches(data.x_train, batch_size=batch, seed=run.seed),
                  epochs=epochs, batch_size=batch, out=run.out, tag="autoencoder",
                  nan_hint="try a smaller --latent-channels")
    mean, _ = autoencoder.encoder.predict(data.x_train, batch_size=500, verbose=0)
    autoencoder.scale = float(1.0 / mean.std())
    save_autoencoder(autoencoder, kept, speed=trained.speed())
    return autoencoder, trained.speed()


def save_autoencoder(autoencoder: KLAutoencoder, folder: Path, **record) -> None:
    save_model(autoencoder.encoder, folder / "encoder.keras")
    save_model(autoencoder.decoder, folder / "decoder.keras")
    write_json(folder / "autoencoder.json", {"scale_factor": autoencoder.scale,
                                             "kl_weight": autoencoder.kl_weight, **record})


def load_autoencoder(folder: Path) -> tuple[KLAutoencoder, dict]:
    """An autoencoder saved by save_autoencoder (in a run folder, or its backup), and the
    rest of its record."""
    earlier = EarlierRun.files_of(folder, CHAPTER, f"delete {folder} to train it again")
    record = earlier.json("autoencoder.json", keys=("scale_factor", "kl_weight"))
    autoencoder = KLAutoencoder(earlier.model("encoder.keras", layers=("z_mean", "z_log_var")),
                                earlier.model("decoder.keras", layers=("logits",)),
                                kl_weight=record.pop("kl_weight"))
    autoencoder.scale = float(record.pop("scale_factor"))
    return autoencoder, record.get("speed", {})


def autoencoder_report(autoencoder, judge, data) -> dict:
    """Reconstruction MSE on the test set, and the judge's verdicts on reconstructions: its
    accuracy (the ceiling of conditional accuracy through this decoder) and their FID."""
    decoded = autoencoder.decode(autoencoder.encode(data.x_test))
    accuracy = judge.conditional_accuracy(decoded, data.y_test)
    return {"test_mse": round(float(np.mean((decoded - data.x_test) ** 2)), 5),
            "judge_accuracy_on_reconstructions": round(accuracy, 4),
            "reconstruction_fid": judge.fid_report(data, decoded[:1000])["classifier_fid"],
            "scale_factor": round(autoencoder.scale, 5), "kl_weight": autoencoder.kl_weight,
            "latent_shape": list(autoencoder.decoder.input_shape[1:]),
            "params": autoencoder.encoder.count_params() + autoencoder.decoder.count_params()}


def save_run(out: Path, autoencoder, model, data, denoiser: str) -> None:
    """The three networks and what is needed to use them again (scale factor, data, classes)."""
    save_model(autoencoder.encoder, out / "encoder.keras")
    save_model(autoencoder.decoder, out / "decoder.keras")
    save_model(model.ema_network, out / "denoiser_ema.keras")
    write_json(out / "latent_diffusion.json", {
        "dataset": data.name, "image_shape": list(data.image_shape),
        "class_names": list(data.class_names), "scale_factor": autoencoder.scale,
        "kl_weight": autoencoder.kl_weight, "betas": list(BETAS), "denoiser": denoiser})


def load_run(out: Path, data, denoiser: str = "unet"):
    """The autoencoder and diffusion model of the finished run in `out`, or None when `out`
    holds no run. A run that cannot serve this request (damaged files, another chapter's,
    other data, the other denoiser) is a UserError that says what is there and what to do:
    a finished run is never trained over unless --retrain asks for it."""
    if not (out / "metrics.json").exists() and not any((out / n).exists() for n in SAVED):
        return None
    again = "train one with --retrain, or give another --out"
    earlier = read_run(out, CHAPTER, allow_quick=True, remedy=again)
    info = earlier.json("latent_diffusion.json",
                        keys=("dataset", "image_shape", "scale_factor", "kl_weight", "betas"))
    if info["dataset"] != data.name or tuple(info["image_shape"]) != data.image_shape:
        raise UserError(f"{out} holds a latent-diffusion run on {info['dataset']}, not "
                        f"{data.name}; pass --dataset {info['dataset']} to use it, or {again}")
    saved = info.get("denoiser", "unet")
    if saved != denoiser:
        raise UserError(f"{out} holds a latent-diffusion run with the {saved} denoiser, not "
                        f"{denoiser}; pass --denoiser {saved} to draw with it, or to have the "
                        f"{denoiser}, {again}")
    autoencoder = KLAutoencoder(earlier.model("encoder.keras", layers=("z_mean", "z_log_var")),
                                earlier.model("decoder.keras", layers=("logits",)),
                                kl_weight=info["kl_weight"])
    autoencoder.scale = info["scale_factor"]
    network = earlier.model("denoiser_ema.keras", inputs=3)
    model = DiffusionModel(network, network, num_classes=data.num_classes,
                           schedule=Schedule(1000, *info["betas"]))
    return autoencoder, model


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None,
                         batch_size=BATCH_SIZE, learning_rate=1e-3,
                         epochs_help="diffusion training epochs over the codes")
    add_sampler_flags(parser, sampler="dpmpp")
    add_denoiser_flag(parser)
    parser.add_argument("--channels", type=positive_int, default=64,
                        help="the denoiser's width, a multiple of 8 (default 64)")
    parser.add_argument("--latent-channels", type=positive_int, default=None,
                        help="channels C of the (H/4)x(W/4)xC codes (default "
                             f"{GREY_LATENT_CHANNELS} for grey images, {COLOUR_LATENT_CHANNELS} "
                             "for colour)")
    # w = 2.5: at 2 the conditional accuracy stayed below the bar (see docs/results.md)
    parser.add_argument("--guidance", type=non_negative_float, default=GUIDANCE,
                        help="guidance scale w of the class grid, the prompts and the bar "
                             f"(default {GUIDANCE:g})")
    parser.add_argument("--prompt", action="append", default=[],
                        help="a class name to draw, in English or Japanese (repeatable): one "
                             "grid per prompt, with "
                             "the models this folder holds if there are any")
    parser.add_argument("--image-to-image", action="store_true",
                        help="turn test images of --source into the first --prompt at "
                             f"strengths {', '.join(map(str, STRENGTHS))}")
    parser.add_argument("--source", default=None,
                        help="the class of the images --image-to-image starts from (default "
                             "class 6, Shirt on Fashion-MNIST)")
    parser.add_argument("--retrain", action="store_true",
                        help="with --prompt or --image-to-image: train afresh even where the "
                             "folder holds a finished run (which is replaced)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    check_diffusion_flags(parser, args)
    if args.summary:
        channels = args.latent_channels or GREY_LATENT_CHANNELS
        autoencoder = build_autoencoder(latent_channels=channels)
        print_summary(autoencoder.encoder)
        print_summary(autoencoder.decoder)
        print_summary(build_latent_diffusion((7, 7, channels),
                                             channels=args.channels,
                                             denoiser=args.denoiser).network)
        return 0
    with start(args, images=IMAGES) as run:
        # The data, and the prompts: a prompt is a class name ("ankle boot", "7" or "seven").
        data, k = run.data, run.data.num_classes
        check_square_side(data, multiple=DOWNSAMPLING)  # 28x28 -> 7x7 codes, 32x32 -> 8x8
        latent_channels = args.latent_channels or (
            COLOUR_LATENT_CHANNELS if data.image_shape[-1] == 3 else GREY_LATENT_CHANNELS)
        figures.data_grid(data, run.out / "data.png")
        prompts = [read_prompt(parser, "--prompt", text, data) for text in args.prompt]
        source = 6 % k if args.source is None else read_prompt(parser, "--source",
                                                                args.source, data)
        draw = {"sampler": args.sampler, "steps": args.sampling_steps}
        if run.quick and args.sampler != "ddpm":  # a smoke test checks the plumbing
            draw["steps"] = min(args.sampling_steps or 10, 10)

        # The three parts, trained one after the other (train_and_measure): the
        # autoencoder, diffusion on its codes, sampling and its scores. With --prompt or
        # --image-to-image, a folder that holds a finished run is drawn from instead.
        generate_only = (args.prompt or args.image_to_image) and not args.retrain
        loaded = load_run(run.out, data, args.denoiser) if generate_only else None
        if loaded is not None:  # only generate, with what an earlier run trained
            print(f"using the models trained earlier in {run.out}/")
            autoencoder, model = loaded
            judge = FeatureClassifier.for_dataset(data, run.out.parent)
        else:
            autoencoder, model, judge = train_and_measure(
                run, draw, latent_channels=latent_channels, channels=args.channels,
                denoiser=args.denoiser, learning_rate=args.learning_rate,
                guidance=args.guidance, fid_samples=args.fid_samples)
        # Text to image, in miniature: 20 images for each prompt; then image to image (SDEdit).
        for text, label in zip(args.prompt, prompts):
            prompt_figure(model, autoencoder, judge, data, text, label, args.guidance,
                          run.seed + 5, draw, run.out)
        if args.image_to_image or loaded is None:
            target = prompts[0] if prompts else 3 % k
            path = image_to_image_figure(model, autoencoder, judge, data, source, target,
                                         args.guidance, run.seed + 4, draw, run.out)
            print(f"image-to-image, {data.class_names[source]} -> "
                  f"{data.class_names[target]}: {path}")
    return 0


def read_prompt(parser, flag: str, text: str, data) -> int:
    try:
        return parse_prompt(text, data.class_names)
    except UserError as err:
        parser.error(f"{flag}: {err}")


def prompt_figure(model, autoencoder, judge, data, text: str, label: int, guidance: float,
                  seed: int, draw, out: Path) -> None:
    """20 images for one prompt, with the judge's verdict above each."""
    path = out / f"prompt_{_key(text)}.png"
    images = generate(model, autoencoder, np.full(20, label), guidance, seed, **draw)
    verdicts = judge.predict(images)
    figures.image_grid(images, path, ncols=10, titles=[data.class_names[v] for v in verdicts],
                       suptitle=f"\"{data.class_names[label]}\" (w = {guidance:g}); "
                                f"the judge's verdict above each: "
                                f"{np.mean(verdicts == label):.0%} agree")
    print(f"prompt {text!r}: {path}")


def train_and_measure(run, draw, *, latent_channels: int, channels: int, denoiser: str,
                      learning_rate: float, guidance: float, fid_samples: int):
    """Train both parts, score the samples, write every figure and metrics.json."""
    data, k = run.data, run.data.num_classes
    autoencoder, ae_speed = train_autoencoder(data, run, latent_channels)
    judge = FeatureClassifier.for_dataset(data, run.out.parent)
    ae_report = {**autoencoder_report(autoencoder, judge, data), **ae_speed}
    print(f"autoencoder: test MSE {ae_report['test_mse']:.4f}; the judge reads its "
          f"reconstructions with accuracy {ae_report['judge_accuracy_on_reconstructions']:.3f}"
          f", FID {ae_report['reconstruction_fid']:.2f}; scale factor "
          f"{autoencoder.scale:.4f}")
    autoencoder_figures(autoencoder, data, run.out)

    codes = autoencoder.encode(data.x_train)
    model = build_latent_diffusion(codes.shape[1:], k, channels, seed=run.seed,
                                   denoiser=denoiser)
    print_summary(model.network)
    print(f"\n== 2. diffusion on the {'x'.join(map(str, codes.shape[1:]))} codes, "
          f"{plural(run.epochs, 'epoch')} (labels dropped 10% of the time) ==")
    diffusion_run = train_diffusion(model, data, epochs=run.epochs, batch_size=run.batch_size,
                                    learning_rate=learning_rate, seed=run.seed,
                                    out=run.out, x_train=codes)

    print("\n== 3. sampling ==")
    label = describe(draw["sampler"], draw["steps"])
    per_class = max(1, (min(fid_samples, 100) if run.quick else fid_samples) // k)
    scores = guidance_sweep(
        lambda labels, w: generate(model, autoencoder, labels, w, run.seed, **draw), judge,
        data, scales=SCALES, chosen=guidance, per_class=per_class, side_share=SIDE_SHARE)
    timing = None if run.quick else time_hundred(model, autoencoder, guidance, draw)
    if timing is not None:  # a smoke test does not time the machine
        print(f"100 samples in {timing:.2f} s once compiled ({label}, decoding included)")
    sample_figures(model, autoencoder, data, guidance, run.seed, draw, run.out)
    save_run(run.out, autoencoder, model, data, denoiser)
    write_metrics(run, judge=judge, models={
        "autoencoder": ae_report,
        "latent_diffusion": {"guidance": guidance, "sampler": label,
                             **scores[guidance], "by_guidance": by_guidance(scores),
                             "sample_100_seconds": timing and round(timing, 2),
                             "params": model.network.count_params(), "betas": list(BETAS),
                             "denoiser": denoiser, **diffusion_run.speed()}})
    shutil.rmtree(run.out / ".backup" / "autoencoder", ignore_errors=True)  # the run is done
    print(run.closing(f"\nFigures, the models and metrics.json are in {run.out}/ "
                      "(start with class_grid.png)"))
    return autoencoder, model, judge


def sample_figures(model, autoencoder, data, guidance: float, seed: int, draw, out: Path):
    """One row per class, one class at growing guidance, and the denoising path."""
    k, label = data.num_classes, describe(draw["sampler"], draw["steps"])
    grid = generate(model, autoencoder, np.repeat(np.arange(k), 10), guidance, seed + 1, **draw)
    figures.image_grid(grid, out / "class_grid.png", ncols=10, row_labels=data.class_names,
                       suptitle=f"One row per class, latent diffusion, w = {guidance:g} "
                                f"({label})")
    show = 0
    rows = [generate(model, autoencoder, np.full(10, show), w, seed + 2, **draw)
            for w in SCALES]
    figures.image_grid(np.concatenate(rows), out / "guidance_scales.png", ncols=10,
                       row_labels=[f"w = {w:g}" for w in SCALES],
                       suptitle=f"Class '{data.class_names[show]}' at growing guidance: the "
                                "same noise in every row")
    denoising_path_figure(model, autoencoder, guidance, seed + 3, draw,
                          out / "denoising_path.png")


def time_hundred(model, autoencoder, guidance: float, draw) -> float:
    """Seconds to draw and decode 100 images, timed on the second call (the first compiles)."""
    labels = np.arange(100) % model.num_classes
    generate(model, autoencoder, labels, guidance, 0, **draw)
    start = time.perf_counter()
    generate(model, autoencoder, labels, guidance, 1, **draw)
    return time.perf_counter() - start


def autoencoder_figures(autoencoder, data, out: Path) -> None:
    """Test images over their reconstructions, and the code channels of a few."""
    shown = data.x_test[:10]
    codes = autoencoder.encode(shown)
    figures.image_grid(np.concatenate([shown, autoencoder.decode(codes)]),
                       out / "reconstructions.png", ncols=10, row_labels=["test", "decoded"],
                       suptitle="The autoencoder: each image through its "
                                f"{'x'.join(map(str, codes.shape[1:]))} code")
    channels = codes.shape[-1]
    lo, hi = np.percentile(codes, [1, 99])
    cells = []
    for image, code in zip(shown[:6], codes[:6]):
        cells.append(image)
        cells += [_as_image(np.clip((code[..., c] - lo) / (hi - lo), 0, 1), image.shape)
                  for c in range(channels)]
    figures.image_grid(np.stack(cells), out / "latent_channels.png", ncols=1 + channels,
                       titles=["image"] + [f"channel {c}" for c in range(channels)]
                       + [""] * (len(cells) - 1 - channels),
                       suptitle="What diffusion sees: each code channel, "
                                f"{codes.shape[1]}x{codes.shape[2]} numbers "
                                "(grey = their middle range)")


def _as_image(code_map: np.ndarray, image_shape) -> np.ndarray:
    """One (h, w) code channel in [0, 1] drawn at the images' size and channels, to sit
    beside them in a grid."""
    big = np.kron(code_map, np.ones((DOWNSAMPLING, DOWNSAMPLING)))
    return np.repeat(big[..., None], image_shape[-1], axis=-1)


def denoising_path_figure(model, autoencoder, guidance: float, seed: int, draw,
                          path: Path) -> None:
    """Three samples from noise to image, each as two rows: code channel 0, and the code
    decoded (x_t is the code plus noise, so early frames decode to smears)."""
    labels = np.array([0, 3, 7]) % model.num_classes
    steps = draw["steps"] or DEFAULT_STEPS[draw["sampler"]]
    keep = max(1, steps // 10)
    _, kept = draw_codes(model, labels, guidance, seed, draw["sampler"],
                         draw["steps"], keep_every=keep)
    frames = kept[:, : len(labels)]  # (frames, samples, 7, 7, C)
    rows, names = [], []
    lo, hi = np.percentile(frames[-1], [1, 99])
    for i in range(len(labels)):
        decoded = autoencoder.decode(frames[:, i])
        latent = np.clip((frames[:, i, ..., 0] - lo) / (hi - lo), 0, 1)
        rows.append(np.stack([_as_image(f, decoded.shape[1:]) for f in latent]))
        rows.append(decoded)
        names += [f"#{i + 1} code", f"#{i + 1} decoded"]
    figures.image_grid(np.concatenate(rows), path, ncols=len(frames), row_labels=names,
                       suptitle="Denoising in the latent (channel 0) and what the decoder "
                                "makes of each step")


def image_to_image_figure(model, autoencoder, judge, data, source: int, target: int,
                          guidance: float, seed: int, draw, out: Path) -> Path:
    """Four test images of class `source` and their versions under the prompt `target` at
    each of STRENGTHS, the judge's verdict above each."""
    images = data.x_test[data.y_test == source][:4]
    if not len(images):
        raise UserError(f"no test images of class {data.class_names[source]!r} to start from")
    columns = [images, autoencoder.decode(autoencoder.encode(images))]
    columns += [image_to_image(model, autoencoder, images, np.full(len(images), target), s,
                               guidance=guidance, seed=seed,
                               sampler=draw["sampler"], steps=draw["steps"])
                for s in STRENGTHS]
    cells = np.stack(columns, axis=1).reshape(-1, *images.shape[1:])
    verdicts = [data.class_names[v] for v in judge.predict(cells)]
    heads = ["input", "decoded", *[f"s = {s}" for s in STRENGTHS]]
    titles = [f"{heads[i % len(heads)]}\n{v}" for i, v in enumerate(verdicts)]
    path = out / "image_to_image.png"
    figures.image_grid(cells, path, ncols=len(heads), titles=titles, cell=1.3,
                       suptitle=f"{data.class_names[source]} -> \"{data.class_names[target]}\" "
                                "(SDEdit): the judge's verdict under each step's name")
    return path


if __name__ == "__main__":
    sys.exit(run_main(main))
