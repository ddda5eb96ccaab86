"""Chapter 1: three classifiers of growing power on the same images.

1. Linear softmax classifier: p(y | x) = softmax(W x + b). One weight per pixel per class:
   784 * 10 + 10 = 7,850 parameters. It can only weigh pixels, not combine them.
2. Multi-layer perceptron: hidden ReLU layers let it combine pixels into features.
3. Convolutional network: shared local filters see strokes wherever they are (translation
   equivariance), which is why it wins on images with far fewer weights per layer.

Run:  python chapters/ch1_classifiers.py [--dataset fashion_mnist] [--epochs 10]
Writes predictions (right and wrong per class), learning curves, the CNN's first-layer filters
and feature maps, the models and metrics.json into outputs/ch1_classifiers/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np

from common import figures
from common.atomic import save_model
from common.cli import make_parser, parse, run_main
from common.pipeline import batches
from common.results import write_metrics
from common.run import start
from common.summary import print_summary
from common.training import fit

CHAPTER = "ch1_classifiers"
VALIDATION_SHARE = 0.1  # the last 10% of the training images, held out for the curves


def build_linear_model(num_pixels: int = 784, num_classes: int = 10) -> keras.Model:
    """Input(784) -> Dense(10, softmax): 7,850 parameters, as in the material."""
    return keras.Sequential([
        keras.Input(shape=(num_pixels,)),
        keras.layers.Dense(num_classes, activation="softmax", name="softmax"),
    ], name="linear_model")


def build_mlp(num_pixels: int = 784, num_classes: int = 10) -> keras.Model:
    """Two hidden ReLU layers (256, 128) between the pixels and the softmax."""
    return keras.Sequential([
        keras.Input(shape=(num_pixels,)),
        keras.layers.Dense(256, activation="relu", name="hidden_1"),
        keras.layers.Dense(128, activation="relu", name="hidden_2"),
        keras.layers.Dense(num_classes, activation="softmax", name="softmax"),
    ], name="mlp")


def build_cnn_classifier(input_shape=(28, 28, 1), num_classes: int = 10,
                         name: str = "cnn_classifier") -> keras.Model:
    """Conv(32) - pool - Conv(64) - pool - Dense(128) - softmax.

    Two 3x3 conv/pool stages learn stroke and part detectors wherever they appear; dropout
    keeps the 128 features from memorising the training images. (The judge of the later
    chapters, common.eval.classifier, is this network with two convolutions per stage.)"""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(32, 3, activation="relu", name="conv_1"),
        keras.layers.MaxPooling2D(2, name="pool_1"),
        keras.layers.Conv2D(64, 3, activation="relu", name="conv_2"),
        keras.layers.MaxPooling2D(2, name="pool_2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dropout(0.5, name="dropout"),
        keras.layers.Dense(128, activation="relu", name="features"),
        keras.layers.Dense(num_classes, activation="softmax", name="class_probabilities"),
    ], name=name)


def build_models(image_shape=(28, 28, 1), num_classes: int = 10) -> dict[str, keras.Model]:
    pixels = int(np.prod(image_shape))
    return {"linear": build_linear_model(pixels, num_classes),
            "mlp": build_mlp(pixels, num_classes),
            "cnn": build_cnn_classifier(image_shape, num_classes)}


def flags():
    """The command line: the shared flags (10 epochs unless told)."""
    return make_parser(CHAPTER, __doc__.splitlines()[0], epochs=10, batch_size=128,
                       learning_rate=1e-3, learning_rate_help="Adam's step size")


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        for model in build_models().values():
            print_summary(model)
        return 0
    with start(args) as run:  # seeds, devices, the output folder, the data
        # The data: a few training images of each class. The last tenth of the training
        # images is held out to draw the learning curves; the test set scores the models.
        data = run.data
        figures.data_grid(data, run.out / "data.png")

        # Three classifiers of growing power on the same images: count their parameters.
        models = build_models(data.image_shape, data.num_classes)

        # Training each in turn, then its test accuracy and its right and wrong predictions.
        results, histories = train_each(models, run, args.learning_rate)

        # The learning curves side by side, and what the CNN's first layer learned.
        figures.curves({f"{k} {s}": h[m] for k, h in histories.items()
                        for s, m in (("train", "accuracy"), ("validation", "val_accuracy"))},
                       run.out / "learning_curves.png", ylabel="accuracy",
                       title=f"Accuracy per epoch on {data.name}")
        _plot_cnn_filters(models["cnn"], data.x_test[:4], run.out / "cnn_filters.png")
        write_metrics(run, models=results)
    print(run.closing(f"Figures, models and metrics.json are in {run.out}/"))
    return 0


def train_each(models: dict, run, learning_rate: float) -> tuple[dict, dict]:
    """Train the classifiers on the same images in turn (the dense ones see flat vectors);
    draw each one's predictions; return their test numbers and learning curves."""
    data, out, batch_size = run.data, run.out, run.batch_size
    n_val = max(batch_size, int(len(data.x_train) * VALIDATION_SHARE))
    x_fit, y_fit = data.x_train[:-n_val], data.y_train[:-n_val]
    x_val, y_val = data.x_train[-n_val:], data.y_train[-n_val:]
    results, histories = {}, {}
    for key, model in models.items():
        print_summary(model)
        flat = key != "cnn"

        def view(x, flat=flat):
            return x.reshape(len(x), -1) if flat else x

        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = batches(view(x_fit), y_fit, batch_size=batch_size, seed=run.seed)
        val = batches(view(x_val), y_val, batch_size=batch_size, shuffle=False,
                      drop_remainder=False)
        trained = fit(model, train, validation=val, epochs=run.epochs, batch_size=batch_size,
                      out=out, tag=key, nan_hint="try a lower --learning-rate")
        loss, accuracy = model.evaluate(view(data.x_test), data.y_test, verbose=0)
        predicted = model.predict(view(data.x_test), verbose=0).argmax(axis=1)
        print(f"{model.name}: test accuracy {accuracy:.4f} ({model.count_params():,} params)")
        figures.prediction_grid(data.x_test, data.y_test, predicted, data.class_names,
                                out / f"predictions_{key}.png",
                                title=f"{model.name}, test accuracy {accuracy:.3f}")
        save_model(model, out / f"{key}.keras")
        histories[key] = trained.history
        results[model.name] = {"test_accuracy": round(float(accuracy), 4),
                               "test_loss": round(float(loss), 4),
                               "params": model.count_params(), **trained.speed()}
    return results, histories


def _plot_cnn_filters(cnn: keras.Model, images: np.ndarray, path: Path) -> None:
    """The first conv layer's first 8 learned 3x3 filters and what they light up."""
    layer = cnn.get_layer("conv_1")
    maps = keras.Model(cnn.inputs, layer.output).predict(images, verbose=0)[..., :8]
    kernels = layer.get_weights()[0][:, :, 0, :8]
    figures.filters_and_maps(kernels, images, maps, path,
                             filter_names=[f"filter {i}" for i in range(8)],
                             title="CNN first layer: learned filters (left) and feature maps")


if __name__ == "__main__":
    sys.exit(run_main(main))
