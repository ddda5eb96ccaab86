"""Chapter 4: the conditional GAN (Mirza & Osindero 2014): ask the generator for a class.

The DCGAN of this chapter, with the one-hot label y given to both players: G(z, y) draws an
image of class y, and D(x, y) judges whether x is a real image *of class y*. A generator that
ignores y is caught, because D has learned what each class looks like, so G must follow the
label to win. Everything else (training step, optimiser, the layer stacks) is shared with
chapters/ch4_dcgan.py: its layers, and its GAN, whose train_step passes the one-hot label to
both players when `num_classes` is set.

Measured: the conditional accuracy (the feature classifier's verdict on 5,000 samples, 500 per
requested class; bars >= 0.90 on MNIST, >= 0.80 on Fashion-MNIST) and the classifier FID.

Run:  python chapters/ch4_cgan.py [--dataset fashion_mnist] [--epochs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` and `chapters` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
from keras import layers

from chapters.ch4_dcgan import (
    GAN,
    IMAGE_SHAPE,
    LATENT_DIM,
    discriminator_layers,
    generator_layers,
    train_gan,
)
from common import figures
from common.cli import make_parser, parse, run_main
from common.eval.classifier import FeatureClassifier, describe_scores
from common.gan.training import SampleGrid, equilibrium_curves, generate, save_gan
from common.pipeline import batches
from common.results import write_metrics
from common.run import start
from common.scaling import to_tanh_range

CHAPTER = "ch4_cgan"
IMAGES = 180_000  # default budget: 3 epochs of 60,000 images
PER_CLASS = 500
BARS = {"mnist": 0.90, "fashion_mnist": 0.80}


def build_conditional_generator(num_classes: int = 10, latent_dim: int = LATENT_DIM,
                                name: str = "generator") -> keras.Model:
    """G(z, y): the one-hot label is concatenated to the noise, and the DCGAN generator's
    layers turn the pair into an image."""
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((num_classes,), name="label")
    h = layers.Concatenate(name="z_and_label")([z, label])
    for layer in generator_layers():
        h = layer(h)
    return keras.Model([z, label], h, name=name)


def build_conditional_discriminator(num_classes: int = 10,
                                    name: str = "discriminator") -> keras.Model:
    """D(x, y): a Dense layer turns the one-hot label into a 28x28 map that is stacked onto the
    image as a second channel, so the very first convolution can compare image and label; then
    the DCGAN discriminator's layers."""
    image = keras.Input(IMAGE_SHAPE, name="image")
    label = keras.Input((num_classes,), name="label")
    label_map = layers.Reshape(IMAGE_SHAPE, name="label_map")(
        layers.Dense(IMAGE_SHAPE[0] * IMAGE_SHAPE[1], name="label_to_pixels")(label))
    h = layers.Concatenate(name="image_and_label")([image, label_map])
    for layer in discriminator_layers():
        h = layer(h)
    return keras.Model([image, label], h, name=name)


def build_cgan(num_classes: int = 10, seed: int | None = None) -> GAN:
    return GAN(build_conditional_generator(num_classes),
               build_conditional_discriminator(num_classes), LATENT_DIM,
               num_classes=num_classes, seed=seed, name="cgan")


def class_grid_inputs(num_classes: int, columns: int, rng):
    """Noise and labels for a grid with one row per class and the same z down each column."""
    z = rng.standard_normal((columns, LATENT_DIM)).astype("float32")
    return np.tile(z, (num_classes, 1)), np.repeat(np.arange(num_classes), columns)


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         learning_rate=2e-4,
                         learning_rate_help="Adam's step size for both networks")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        return build_cgan(seed=args.seed).print_summaries()

    with start(args, images=IMAGES, image_shape=(28, 28, 1)) as run:
        # The data: images with their labels, which both players are given.
        data, k = run.data, run.data.num_classes
        figures.data_grid(data, run.out / "data.png")

        # The two players, each told the label.
        gan = build_cgan(k, run.seed)
        gan.print_summaries()

        # The game of chapters/ch4_dcgan.py, with labels; a grid of one row per class is
        # drawn after every epoch.
        rng = np.random.default_rng(run.seed)
        z_grid, y_grid = class_grid_inputs(k, 10, rng)
        grid = SampleGrid(run.out, z_grid, y_grid, k, title="Conditional GAN, one row per class")
        train = batches(to_tanh_range(data.x_train), data.y_train, batch_size=run.batch_size,
                        seed=run.seed)
        trained = train_gan(gan, train, run, args.learning_rate, samples=grid)

        # Asking for each class 500 times: how often the judge sees the class asked for, and
        # the samples' FID and KID; then the figures, both networks and metrics.json.
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        asked = np.repeat(np.arange(k), PER_CLASS)
        samples = generate(gan.generator, rng.standard_normal((len(asked), LATENT_DIM))
                           .astype("float32"), asked, k)
        scores = judge.score_conditional(samples, asked, data, BARS.get(data.name))
        print(f"{describe_scores(scores)}; per class {scores['conditional_accuracy_per_class']}")
        _figures(run.out, data, gan, z_grid, y_grid, trained.history,
                 scores["conditional_accuracy_per_class"])
        write_metrics(run, judge=judge,
                      models={"cgan": {**scores, **save_gan(gan, trained, run.out)}})
    print(run.closing(f"\nFigures (progress.gif shows the training), models and "
                      f"metrics.json are in {run.out}/ (start with class_grid.png)"))
    return 0


def _figures(out, data, gan, z_grid, y_grid, history, per_class) -> None:
    k = data.num_classes
    figures.image_grid(generate(gan.generator, z_grid, y_grid, k), out / "class_grid.png",
                       ncols=10, row_labels=data.class_names,
                       suptitle="One row per requested class; the same z down each column")
    equilibrium_curves(history, out / "loss_curves.png", title="Conditional GAN training")
    figures.bars({"conditional accuracy": per_class}, out / "accuracy_per_class.png",
                 labels=data.class_names, xlabel="requested class", ylabel="accuracy",
                 title=f"Samples the judge assigns to the requested class "
                       f"({PER_CLASS} per class)")


if __name__ == "__main__":
    sys.exit(run_main(main))
