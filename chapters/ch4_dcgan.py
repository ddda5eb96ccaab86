"""Chapter 4: the DCGAN (Radford et al. 2015): a generator and a discriminator in a two-player game.

The generator G turns 100-d noise z ~ N(0, I) into an image; the discriminator D outputs the
probability that an image is real. Goodfellow et al. (2014) set them a game,

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))],

played in turns on every batch (`GAN.train_step` below): D takes one step to tell real images
from G(z), then G takes one step to make D call its images real. Neither network ever sees a
pixel-wise target, so unlike the chapter-2 VAE there is no blur from averaging: the samples
are sharp when the game goes well, and can collapse onto a few kinds of image when it goes
badly (mode collapse), which is why the run counts the classes among its samples.

Measured, with the chapter's feature classifier (common.eval.classifier):
- classifier FID of 5,000 samples against the test set, next to the chapter-2 VAE's samples
  (when outputs/ch2_vae holds a full run on the same data) and next to 5,000 real training
  images (the floor any generator can reach);
- the classes of 1,000 samples (every class should appear).

Run:  python chapters/ch4_dcgan.py [--dataset fashion_mnist] [--epochs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from common import figures
from common.cli import make_parser, parse, plural, run_main
from common.data import check_square_side
from common.distribute import draw, gradient_loss
from common.eval.classifier import FeatureClassifier, describe_fid
from common.gan.training import (
    SampleGrid,
    equilibrium_curves,
    gan_training_flops,
    generate,
    ready_optimizer,
    save_gan,
)
from common.pipeline import batches
from common.results import find_run, write_metrics
from common.run import start
from common.scaling import to_tanh_range
from common.summary import print_summary
from common.training import fit

CHAPTER = "ch4_dcgan"
PACKAGE = "chapters.ch4_dcgan"
IMAGE_SHAPE = (28, 28, 1)  # the default; 32x32x3 colour data (tfds:cifar10) gives its own
LATENT_DIM = 100
IMAGES = 180_000  # default budget: 3 epochs of 60,000 images
SCORED = 5_000
COUNTED = 1_000
# What chapters/ch2_vae.py saves for other chapters: its decoder alone, plain Keras layers.
CH2_DECODER, CH2_IMAGE_SIZE, CH2_LATENT_DIM = "vae_decoder.keras", 32, 2


# ---------------------------------------------------------------------------------------------
# The two players (Radford et al. 2015, sec. 3): no pooling, since strided convolutions learn
# their own down- and upsampling; batch norm in both networks, but not on the generator's
# output or the discriminator's input; ReLU in the generator with tanh at the output,
# LeakyReLU(0.2) in the discriminator, which ends in one logit. The batch norm is
# `synchronized`: under --distribute its statistics are those of the global batch.

def normalized(name: str, batch_norm: bool) -> list[layers.Layer]:
    """The batch norm after layer `name`, or nothing (--no-batch-norm, the exercise that
    shows what it is for)."""
    return [layers.BatchNormalization(synchronized=True, name=f"{name}_bn")] if batch_norm \
        else []


def generator_layers(image_shape=IMAGE_SHAPE, batch_norm: bool = True) -> list[layers.Layer]:
    """Dense 7*7*128 -> Reshape -> Conv2DTranspose 64 (14x14) -> Conv2DTranspose 1 (28x28,
    tanh): from a noise vector to an image in [-1, 1]. ch4_cgan puts the same stack after
    noise and label. For 32x32 colour images the stack starts at 8x8 and ends in 3
    channels."""
    side = image_shape[0] // 4
    return [
        layers.Dense(side * side * 128, use_bias=not batch_norm, name="project"),
        *normalized("project", batch_norm),
        layers.ReLU(name="project_relu"),
        layers.Reshape((side, side, 128), name="to_feature_maps"),
        layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=not batch_norm,
                               name="up_14"),
        *normalized("up_14", batch_norm),
        layers.ReLU(name="up_14_relu"),
        layers.Conv2DTranspose(image_shape[-1], 4, strides=2, padding="same",
                               activation="tanh", name="up_28"),
    ]


def discriminator_layers(batch_norm: bool = True) -> list[layers.Layer]:
    """Conv2D 64 (stride 2, 14x14) -> Conv2D 128 (stride 2, 7x7) + batch norm -> Dense 1:
    from an image to one logit, "real" when positive."""
    return [
        layers.Conv2D(64, 4, strides=2, padding="same", name="down_14"),
        layers.LeakyReLU(0.2, name="down_14_lrelu"),
        layers.Conv2D(128, 4, strides=2, padding="same", use_bias=not batch_norm,
                      name="down_7"),
        *normalized("down_7", batch_norm),
        layers.LeakyReLU(0.2, name="down_7_lrelu"),
        layers.Flatten(name="flatten"),
        layers.Dense(1, name="logit"),
    ]


def build_generator(latent_dim: int = LATENT_DIM, name: str = "generator",
                    image_shape=IMAGE_SHAPE, batch_norm: bool = True) -> keras.Model:
    """G: z (100) -> image (28, 28, 1); 784,641 parameters."""
    return keras.Sequential([keras.Input((latent_dim,), name="z"),
                             *generator_layers(image_shape, batch_norm)], name=name)


def build_discriminator(name: str = "discriminator", image_shape=IMAGE_SHAPE,
                        batch_norm: bool = True) -> keras.Model:
    """D: image (28, 28, 1) -> one logit; 138,945 parameters."""
    return keras.Sequential([keras.Input(image_shape, name="image"),
                             *discriminator_layers(batch_norm)], name=name)


# ---------------------------------------------------------------------------------------------
# The game, one round per batch (Goodfellow et al. 2014, Algorithm 1 with k = 1).

def bce(target: float, logits):
    """Binary cross-entropy of D's logits against a constant label (1 = "real"), averaged
    over the batch, in float32 whatever the layers computed in."""
    logits = ops.cast(logits, "float32")
    return ops.mean(keras.losses.binary_crossentropy(ops.full_like(logits, target), logits,
                                                     from_logits=True))


@keras.saving.register_keras_serializable(package=PACKAGE)
class GAN(keras.Model):
    """G and D in one model whose `train_step` plays a round of the game per batch, so `fit`
    drives it like any model and prints its trackers:

    - d_loss = BCE(D(x), 1) + BCE(D(G(z)), 0): D learns to say "real" to x, "fake" to G(z);
    - g_loss = BCE(D(G(z)), 1) = -log D(G(z)): the non-saturating generator loss
      (Goodfellow et al., sec. 3), which has strong gradients early, when D easily rejects
      the fakes (log(1 - D(G(z))) would be nearly flat there);
    - d_real, d_fake: the mean probability D gives real and generated images.

    At the game's equilibrium G's distribution is the data's and D(x) = 1/2 everywhere
    (Goodfellow et al., prop. 1): d_real and d_fake drift towards 0.5, d_loss towards
    2 log 2 = 1.386 and g_loss towards log 2 = 0.693, and in practice oscillate around them.
    With `num_classes` the game is conditional (ch4_cgan): both players see the label.
    ch4_pix2pix changes what the generator is given and adds a term to its loss.
    """

    extra_terms: tuple[str, ...] = ()  # names of extra generator-loss terms to track

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 num_classes: int = 0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.noise = keras.random.SeedGenerator(seed)  # z for every step, reproducibly
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("d_loss", "g_loss", "d_real", "d_fake",
                                      *self.extra_terms)}
        self.built = True  # both parts are built models; lets BackupAndRestore save weights

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = ready_optimizer(d_optimizer, self.discriminator)
        self.g_optimizer = ready_optimizer(g_optimizer, self.generator)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, data):
        real, condition = self.unpack(data)
        batch = ops.shape(real)[0]

        # 1. D's move. G only draws the fakes; D's weights take one step.
        fake = self.fake(batch, condition)
        with tf.GradientTape() as tape:
            real_logits = self.discriminate(real, condition)
            fake_logits = self.discriminate(fake, condition)
            d_loss = bce(1.0, real_logits) + bce(0.0, fake_logits)
            share = gradient_loss(d_loss, self.d_optimizer)  # this replica's part, scaled
        weights = self.discriminator.trainable_weights
        self.d_optimizer.apply(tape.gradient(share, weights), weights)

        # 2. G's move, on fresh fakes. D only judges; G's weights take one step.
        with tf.GradientTape() as tape:
            fake = self.fake(batch, condition)
            g_loss, logs = self.generator_loss(self.discriminate(fake, condition), fake, real)
            share = gradient_loss(g_loss, self.g_optimizer)
        weights = self.generator.trainable_weights
        self.g_optimizer.apply(tape.gradient(share, weights), weights)

        return self.track(d_loss=d_loss, d_real=mean_probability(real_logits),
                          d_fake=mean_probability(fake_logits), **logs)

    def generator_loss(self, fake_logits, fake, real):
        """(what G minimises, {tracker: value}): the non-saturating loss alone here."""
        g_loss = bce(1.0, fake_logits)
        return g_loss, {"g_loss": g_loss}

    def unpack(self, data):
        """(real images, condition) of a batch: images alone (condition None), or (images,
        integer labels), whose one-hot form conditions both players."""
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)  # fit, train_on_batch
        if not self.num_classes:
            return images, None
        return images, ops.one_hot(ops.cast(labels, "int32"), self.num_classes)

    def fake(self, n, condition=None):
        """n generated images, G(z) or G(z, condition), z ~ N(0, I); under --distribute,
        this replica's rows of the global batch's draw (common.distribute.draw)."""
        z = draw(keras.random.normal, (n, self.latent_dim), seed=self.noise)
        return self.generator(z if condition is None else [z, condition], training=True)

    def discriminate(self, images, condition=None):
        """D's logits for `images` (given the condition, when there is one)."""
        return self.discriminator(images if condition is None else [images, condition],
                                  training=True)

    def track(self, **values) -> dict:
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def call(self, inputs, training=False):
        """Generate: inputs are z, or [z, one-hot labels] for a conditional GAN."""
        return self.generator(inputs, training=training)

    def training_flops_per_image(self) -> int:
        return gan_training_flops(self.generator, self.discriminator)

    def print_summaries(self) -> int:
        """Both players' model.summary(); 0, for a --summary exit."""
        print_summary(self.generator)
        print_summary(self.discriminator)
        return 0


def mean_probability(logits):
    return ops.mean(ops.sigmoid(ops.cast(logits, "float32")))


def build_dcgan(seed: int | None = None, image_shape=IMAGE_SHAPE,
                batch_norm: bool = True) -> GAN:
    """G and D in the game: one D and one G update per batch."""
    return GAN(build_generator(image_shape=image_shape, batch_norm=batch_norm),
               build_discriminator(image_shape=image_shape, batch_norm=batch_norm),
               LATENT_DIM, seed=seed, name="dcgan")


def train_gan(gan: GAN, train, run, learning_rate: float, samples=None):
    """Adam(learning_rate, beta_1 = 0.5) for both players, the DCGAN paper's choice (sec. 3:
    the default 0.9 oscillated), then `fit` (common.training: NaN guard, resume, speed)."""
    gan.compile(d_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5))
    print(f"\n== training for {plural(run.epochs, 'epoch')}: one D and one G update per "
          "batch ==")
    return fit(gan, train, epochs=run.epochs, batch_size=run.batch_size, out=run.out,
               tag=gan.name, callbacks=[samples] if samples else [],
               nan_hint="try a lower --learning-rate")


# ---------------------------------------------------------------------------------------------
# The main job.

def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         learning_rate=2e-4,
                         learning_rate_help="Adam's step size for both networks")
    parser.add_argument("--no-batch-norm", dest="batch_norm", action="store_false",
                        help="leave out the batch norm of both networks (an exercise: "
                             "see what the paper says it is for)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        return build_dcgan(args.seed, batch_norm=args.batch_norm).print_summaries()
    with start(args, images=IMAGES) as run:
        # The data: a few training images of each class, scaled to [-1, 1] for the tanh of
        # the generator's output.
        data = run.data
        check_square_side(data, multiple=4)
        figures.data_grid(data, run.out / "data.png")

        # The two players.
        gan = build_dcgan(run.seed, data.image_shape, args.batch_norm)  # or 32x32x3 colour
        gan.print_summaries()

        # The game, one round per batch (GAN.train_step); the same 50 noise vectors are drawn
        # through the generator after every epoch (progress/, progress.gif).
        rng = np.random.default_rng(run.seed)
        grid = SampleGrid(run.out, rng.standard_normal((50, LATENT_DIM)).astype("float32"),
                          title="DCGAN")
        train = batches(to_tanh_range(data.x_train), batch_size=run.batch_size, seed=run.seed)
        trained = train_gan(gan, train, run, args.learning_rate, samples=grid)

        # The judge's verdict on 5,000 samples: FID and KID against the test set, and which
        # classes appear (a class that never does is mode collapse).
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        samples = generate(gan.generator, rng.standard_normal((SCORED, LATENT_DIM))
                           .astype("float32"))
        scored = judge.fid_report(data, samples)
        counts = np.bincount(judge.predict(samples[:COUNTED]), minlength=data.num_classes)
        vae_fid = vae_sample_fid(judge, run.out.parent / "ch2_vae", data, rng)
        vae_text = "not available" if vae_fid is None else f"{vae_fid:.2f}"
        print(f"DCGAN: {describe_fid(scored)}; chapter-2 VAE: classifier FID {vae_text}")
        verdict = "every class appears" if counts.min() > 0 else "MISSING CLASSES: mode collapse"
        print(f"classes among {COUNTED:,} samples: "
              f"{dict(zip(data.class_names, counts.tolist()))} ({verdict})")
        # The figures: samples, the losses against the game's equilibrium, the classes drawn;
        # then both networks and metrics.json.
        _figures(run.out, data, samples, counts, trained.history, run.epochs)
        write_metrics(run, judge=judge, models={"dcgan": {
            **scored, "ch2_vae_classifier_fid": None if vae_fid is None else round(vae_fid, 3),
            "sample_class_counts": counts.tolist(), "every_class_appears": bool(counts.min() > 0),
            "batch_norm": args.batch_norm,
            **save_gan(gan, trained, run.out)}})
    print(run.closing(f"\nFigures (progress.gif shows the training), models and "
                      f"metrics.json are in {run.out}/"))
    return 0


def _figures(out: Path, data, samples, counts, history, epochs: int) -> None:
    figures.image_grid(samples[:100], out / "samples.png", ncols=10,
                       suptitle=f"DCGAN: 100 samples after {plural(epochs, 'epoch')}")
    equilibrium_curves(history, out / "loss_curves.png",
                       title="DCGAN training: the game drifts towards its equilibrium")
    figures.bars({"share of samples": (counts / counts.sum()).tolist()},
                 out / "sample_classes.png", labels=data.class_names,
                 title=f"Classes of {COUNTED:,} samples (the judge's verdict)",
                 xlabel="class", ylabel="share")


def vae_sample_fid(judge, ch2_out: Path, data, rng) -> float | None:
    """Classifier FID of the chapter-2 VAE's samples z ~ N(0, I), when that chapter ran in
    full on the same dataset. Its decoder makes 32x32 images; the 28x28 centre is scored."""
    if data.image_shape != IMAGE_SHAPE:  # the decoder's 28x28 centre is grey MNIST-sized
        return None
    earlier = find_run(ch2_out, "ch2_vae", dataset=data.name)
    if earlier is None:
        return None
    decoder = earlier.model(CH2_DECODER)
    z = rng.standard_normal((SCORED, CH2_LATENT_DIM)).astype("float32")
    images = decoder.predict(z, batch_size=500, verbose=0)
    side = CH2_IMAGE_SIZE
    centre = images.reshape(-1, side, side)[:, 2:-2, 2:-2, None]
    return judge.fid(data.x_test, centre)


if __name__ == "__main__":
    sys.exit(run_main(main))
