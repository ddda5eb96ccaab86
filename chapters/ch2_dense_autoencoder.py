"""Chapter 2: a dense autoencoder, and what it does with inputs it was never shown.

An autoencoder is trained to copy its input through a bottleneck: x -> encoder -> z (16 numbers)
-> decoder -> x_hat, minimising the squared error between x and x_hat. With 16 numbers for
784 pixels it cannot copy; it must learn what typical images of its data have in common.

Three experiments a learner should see:
1. Reconstructions of test images: close, a little blurred.
2. Inputs unlike the training data (another dataset's images, synthetic strokes): the decoder
   can only produce what it learned, so it "sees" its own kind of image in them.
3. The decoder alone, fed with made-up codes: codes drawn to match the statistics of real codes
   decode to something image-like; codes from N(0, I) mostly do not, because nothing made the
   autoencoder's code space follow a known distribution. The VAE (ch2_vae.py) fixes exactly this.

`--distribute` trains it data-parallel under tf.distribute (common.distribute).

Run:  python chapters/ch2_dense_autoencoder.py [--dataset fashion_mnist] [--distribute]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
from keras import layers

from common import figures, strokes
from common.atomic import save_model
from common.cli import make_parser, parse, run_main
from common.data import load
from common.errors import DataError
from common.pipeline import batches
from common.results import write_metrics
from common.run import start
from common.summary import print_summary
from common.training import fit

CHAPTER = "ch2_dense_autoencoder"
LATENT_DIM = 16
IMAGES_TO_TRAIN = 600_000  # default budget: 10 epochs of 60,000 images


def build_dense_autoencoder(pixels: int = 784) -> keras.Model:
    """784 -> 256 -> 128 -> 16 (the code) -> 128 -> 256 -> 784 (sigmoid): 472,608 params."""
    return keras.Sequential([
        keras.Input(shape=(pixels,)),
        layers.Dense(256, activation="relu", name="encoder_1"),
        layers.Dense(128, activation="relu", name="encoder_2"),
        layers.Dense(LATENT_DIM, activation="relu", name="latent"),
        layers.Dense(128, activation="relu", name="decoder_1"),
        layers.Dense(256, activation="relu", name="decoder_2"),
        layers.Dense(pixels, activation="sigmoid", name="reconstruction"),
    ], name="dense_autoencoder")


def split(autoencoder: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The trained encoder (input -> 'latent') and decoder ('decoder_1' onwards)."""
    encoder = keras.Model(autoencoder.inputs, autoencoder.get_layer("latent").output)
    code = keras.Input(shape=(LATENT_DIM,))
    x = code
    for name in ("decoder_1", "decoder_2", "reconstruction"):
        x = autoencoder.get_layer(name)(x)
    return encoder, keras.Model(code, x, name="decoder")


def other_images(data, n: int) -> tuple[np.ndarray, str]:
    """Images unlike the training set: the other MNIST-family set if this machine has it (never
    downloaded for this), else synthetic strokes. Returns the images and which they are."""
    other = "mnist5k" if data.name == "fashion_mnist" else "fashion_mnist"
    try:
        x = load(other, flatten=True, limit=n, offline=True).x_test
        if x.shape[1] == data.x_train.shape[1]:
            return x, other
    except DataError:
        pass
    return strokes.make_strokes(n, seed=1)[0].reshape(n, -1), "strokes"


def flags():
    """The command line: the shared flags."""
    return make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                       learning_rate=1e-3, learning_rate_help="Adam's step size")


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        print_summary(build_dense_autoencoder())
        return 0
    # seeds, devices (with --distribute the models below are made in the strategy's scope),
    # the output folder, the images flattened to vectors
    with start(args, images=IMAGES_TO_TRAIN, flatten=True) as run:
        # The data: a few training images of each class, each a vector of 784 pixels here.
        data = run.data
        figures.data_grid(data, run.out / "data.png")

        # The autoencoder: 784 numbers squeezed through 16 and back.
        model = build_dense_autoencoder(data.x_train.shape[1])
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="mse")
        print_summary(model)

        # Training: every image is its own target (reconstruct=True).
        trained = fit(model, batches(data.x_train, batch_size=run.batch_size, seed=run.seed,
                                     reconstruct=True),
                      epochs=run.epochs, batch_size=run.batch_size, out=run.out,
                      tag=model.name, nan_hint="try a lower --learning-rate")
        recon = model.predict(data.x_test, verbose=0)
        mse = float(np.mean(np.square(recon - data.x_test)))
        print(f"{model.name}: test MSE {mse:.4f} per pixel")

        # What it learned: reconstructions, images unlike its data, the decoder on its own.
        foreign_name, foreign_mse = draw_figures(model, data, recon, trained.history, run)
        save_model(model, run.out / "dense_autoencoder.keras")
        write_metrics(run, models={model.name: {"test_mse": round(mse, 5),
                                                f"mse_on_{foreign_name}": round(foreign_mse, 5),
                                                "params": model.count_params(),
                                                **trained.speed()}})
    print(run.closing(f"Figures, model and metrics.json are in {run.out}/"))
    return 0


def draw_figures(model, data, recon, history, run) -> tuple[str, float]:
    """Reconstructions, unfamiliar inputs, the decoder fed made-up codes, the loss curve.
    Returns which unfamiliar images were shown and their reconstruction MSE."""
    out = run.out
    encoder, decoder = split(model)
    figures.image_grid(np.concatenate([data.x_test[:10], recon[:10]]),
                       out / "reconstructions.png", ncols=10, row_labels=["input", "output"],
                       suptitle=f"Test images through a {LATENT_DIM}-number bottleneck")
    foreign, foreign_name = other_images(data, 10)
    answers = model.predict(foreign, verbose=0)
    figures.image_grid(np.concatenate([foreign, answers]), out / "unfamiliar_inputs.png",
                       ncols=10, row_labels=["input", "output"],
                       suptitle=f"Trained on {data.name}, shown {foreign_name}: it answers with "
                                "what it knows")
    codes = encoder.predict(data.x_test, verbose=0)
    rng = np.random.default_rng(run.seed)
    matched = rng.multivariate_normal(codes.mean(axis=0), np.cov(codes, rowvar=False), 10)
    standard = rng.standard_normal((10, LATENT_DIM))
    decoded = decoder.predict(np.concatenate([np.maximum(matched, 0), standard])
                              .astype("float32"), verbose=0)
    figures.image_grid(decoded, out / "decoder_from_codes.png", ncols=10,
                       row_labels=["codes ~ fit\nto real", "codes ~\nN(0, I)"],
                       suptitle="The decoder alone, fed with made-up codes")
    figures.curves({"train MSE": history["loss"]}, out / "loss_curve.png",
                   title="Dense autoencoder training loss", ylabel="MSE per pixel")
    return foreign_name, float(np.mean(np.square(answers - foreign)))


if __name__ == "__main__":
    sys.exit(run_main(main))
