"""The adversarial training step every GAN chapter shares (Goodfellow et al. 2014).

`GAN` is a `keras.Model` whose `train_step` makes one discriminator update and then one
generator update per batch, so `fit` drives it like any model and prints its `Mean` trackers:

- d_loss:  BCE(D(x), 1) + BCE(D(G(z)), 0)      the discriminator's loss
- g_loss:  BCE(D(G(z)), 1)                      the non-saturating generator loss (sec. 3):
           -log D(G(z)) has strong gradients early, when D easily rejects the fakes
- d_real, d_fake:  the mean probability D assigns to real and generated images

At the game's equilibrium the generator's distribution equals the data's and D(x) = 1/2
everywhere (Goodfellow et al., prop. 1), so d_real and d_fake drift towards 0.5, d_loss towards
2 log 2 = 1.386 and g_loss towards log 2 = 0.693. In practice they oscillate around it.

With `num_classes` set the GAN is conditional (Mirza & Osindero 2014): the batches carry
labels, and both networks receive the one-hot label as a second input.

Images are in [-1, 1] (tanh output); `to_tanh_range` maps the data there. Gradients come from
`tf.GradientTape`: this project runs Keras on the TensorFlow backend (the fastest on its CPUs).
Save the generator and discriminator, not this wrapper: they are plain functional models.

Under `--distribute` each replica draws its rows of the global batch's noise and
differentiates its share of the global loss (common.distribute); the chapters' batch
normalisation is `synchronized`, so the statistics are those of the global batch. Under
`--precision` the losses are computed in float32 from the logits, and with mixed_float16
both optimizers scale the loss (common.precision).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from PIL import Image

from common import figures
from common.atomic import atomic_path, save_model
from common.distribute import draw, gradient_loss
from common.flops import BACKWARD_FACTOR, forward_flops
from common.precision import loss_scaled
from common.scaling import to_unit_range
from common.summary import print_summary
from common.training import fit


def bce_with_logits(target: float, logits):
    """Mean binary cross-entropy of `logits` against a constant target (1 = "real"), in
    float32 whatever the layers computed in."""
    logits = ops.cast(logits, "float32")
    return ops.mean(keras.losses.binary_crossentropy(ops.full_like(logits, target), logits,
                                                     from_logits=True))

PACKAGE = __name__


@keras.saving.register_keras_serializable(package=PACKAGE)
class GAN(keras.Model):
    """One D update, then one G update, per batch; Adam for each network."""

    extra_terms: tuple[str, ...] = ()  # names of the generator's extra loss terms

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 num_classes: int = 0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim, self.num_classes, self.seed = latent_dim, num_classes, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("d_loss", "g_loss", "d_real", "d_fake",
                                      *self.extra_terms)}
        self.built = True  # both parts are built models; lets BackupAndRestore save weights

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer, self.g_optimizer = loss_scaled(d_optimizer), loss_scaled(g_optimizer)
        # Their slots made now, in the strategy's scope, not inside the first step's replicas.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        """Generate: inputs are z, or [z, one-hot labels] for a conditional GAN."""
        return self.generator(inputs, training=training)

    def training_flops_per_image(self) -> int:
        """Per real image: D's update runs G forward (g) and D forward and backward on a real
        and a fake image (2 x 3d); G's update runs G and D forward and backward (3g + 3d).
        Together 4g + 9d; see common.flops."""
        g, d = forward_flops(self.generator), forward_flops(self.discriminator)
        return g + 2 * BACKWARD_FACTOR * d + BACKWARD_FACTOR * (g + d)

    def _with_label(self, x, labels):
        return x if labels is None else [x, labels]

    def unpack(self, data):
        """(real images, condition) from a batch: images alone, or (images, integer labels)
        whose one-hot form conditions both networks."""
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)  # fit or train_on_batch
        if not self.num_classes:
            return images, None
        return images, ops.one_hot(ops.cast(labels, "int32"), self.num_classes)

    def fake(self, n, condition=None, training=True):
        """A batch of generated images: G(z) or G(z, condition), z ~ N(0, I)."""
        z = draw(keras.random.normal, (n, self.latent_dim), seed=self.seed_generator)
        return self.generator(self._with_label(z, condition), training=training)

    def generator_objective(self, fake_logits, fake, real):
        """(loss to minimise, {tracker name: value}): here the non-saturating loss alone;
        subclasses add terms (pix2pix adds an L1 distance to the target)."""
        g_loss = bce_with_logits(1.0, fake_logits)
        return g_loss, {"g_loss": g_loss}

    def discriminator_step(self, real, condition=None):
        """One update of D on a real batch and as many fakes; G is only run, not trained."""
        fake = self.fake(ops.shape(real)[0], condition)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(self._with_label(real, condition), training=True)
            fake_logits = self.discriminator(self._with_label(fake, condition), training=True)
            d_loss = bce_with_logits(1.0, real_logits) + bce_with_logits(0.0, fake_logits)
            scaled = gradient_loss(d_loss, self.d_optimizer)
        weights = self.discriminator.trainable_weights
        self.d_optimizer.apply(tape.gradient(scaled, weights), weights)
        return (d_loss, ops.mean(ops.sigmoid(ops.cast(real_logits, "float32"))),
                ops.mean(ops.sigmoid(ops.cast(fake_logits, "float32"))))

    def generator_step(self, real, condition=None):
        """One update of G to make D call fresh fakes real; D is only run, not trained."""
        with tf.GradientTape() as tape:
            fake = self.fake(ops.shape(real)[0], condition)
            logits = self.discriminator(self._with_label(fake, condition), training=True)
            loss, logs = self.generator_objective(logits, fake, real)
            scaled = gradient_loss(loss, self.g_optimizer)
        weights = self.generator.trainable_weights
        self.g_optimizer.apply(tape.gradient(scaled, weights), weights)
        return logs

    def print_summaries(self) -> int:
        """Print the generator's and the discriminator's model.summary(); 0, for a --summary
        exit."""
        print_summary(self.generator)
        print_summary(self.discriminator)
        return 0

    def save_and_summarise(self, run_, out: Path) -> dict:
        """Save both networks as `.keras` files (they are plain functional models; this
        wrapper is not saved) and return the training numbers a GAN chapter records: the last
        epoch's trackers, the parameter counts, throughput and time."""
        save_model(self.generator, Path(out) / "generator.keras")
        save_model(self.discriminator, Path(out) / "discriminator.keras")
        return {"final": {k: round(v[-1], 4) for k, v in run_.history.items()},
                "generator_params": self.generator.count_params(),
                "discriminator_params": self.discriminator.count_params(),
                **run_.speed()}

    def train_step(self, data):
        real, condition = self.unpack(data)
        d_loss, d_real, d_fake = self.discriminator_step(real, condition)
        values = {"d_loss": d_loss, "d_real": d_real, "d_fake": d_fake,
                  **self.generator_step(real, condition)}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}


def generate(generator: keras.Model, z: np.ndarray, labels=None, num_classes: int = 0,
             batch_size: int = 500) -> np.ndarray:
    """Images in [0, 1] from noise `z` (and integer `labels` for a conditional generator)."""
    inputs = z if labels is None else [z, np.eye(num_classes, dtype="float32")[labels]]
    return to_unit_range(generator.predict(inputs, batch_size=batch_size, verbose=0))


class SampleGrid(keras.callbacks.Callback):
    """After every epoch, draw the same input `z` (noise, or images for an image-to-image
    generator; with labels for a conditional one) through the generator and save the grid as
    `progress/epoch_NNN.png`; at the end, `progress.gif` animates the grids."""

    def __init__(self, out: Path, z: np.ndarray, labels=None, num_classes: int = 0,
                 ncols: int = 10, title: str = "samples"):
        super().__init__()
        self.folder = Path(out) / "progress"
        self.z, self.labels, self.num_classes = z, labels, num_classes
        self.ncols, self.title = ncols, title
        self.frames: list[Path] = []

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        images = generate(self.model.generator, self.z, self.labels, self.num_classes)
        path = figures.image_grid(images, self.folder / f"epoch_{epoch + 1:03d}.png",
                                  ncols=self.ncols,
                                  suptitle=f"{self.title}: epoch {epoch + 1} (same noise)")
        self.frames.append(path)

    def on_train_end(self, logs=None):
        frames = sorted(self.folder.glob("epoch_*.png"))  # includes frames of a resumed run
        if frames:
            write_gif(frames, self.folder.parent / "progress.gif")


def write_gif(frames, path: Path, seconds_per_frame: float = 0.6) -> Path:
    """Animate PNG frames into a looping GIF, written atomically."""
    images = [Image.open(f).convert("RGB") for f in frames]
    size = images[0].size
    images = [im.resize(size) for im in images]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(seconds_per_frame * 1000), loop=0)
    return Path(path)


def fit_gan(gan: GAN, train, *, epochs: int, batch_size: int, out: Path, samples=None,
            learning_rate: float = 2e-4):
    """Compile with Adam(2e-4, beta_1 = 0.5) for both networks (Radford et al. 2015, sec. 3)
    and train on batches of [-1, 1] images via common.training.fit (NaN guard, resume,
    throughput, JSON history)."""
    gan.compile(d_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5))
    return fit(gan, train, epochs=epochs, batch_size=batch_size, out=out, tag=gan.name,
               callbacks=[samples] if samples else [], nan_hint="try a lower --learning-rate")


def equilibrium_curves(history: dict, path: Path, *, title: str) -> Path:
    """Losses and D's mean outputs per epoch, with the values of the game's equilibrium."""
    return figures.curve_panels(
        [("losses", {"d_loss": history["d_loss"], "g_loss": history["g_loss"]}, "BCE",
          {"d_loss at equilibrium (2 log 2)": 2 * np.log(2.0),
           "g_loss at equilibrium (log 2)": np.log(2.0)}),
         ("discriminator outputs", {"D(x), real": history["d_real"],
                                    "D(G(z)), fake": history["d_fake"]}, "mean probability",
          {"equilibrium D = 1/2": 0.5})],
        path, suptitle=title)
