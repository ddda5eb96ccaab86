"""Chapter 1: a convolution with two hand-made edge filters, before any learning.

A Conv2D layer slides a small kernel over the image: each output pixel is the weighted sum of
the 5x5 patch under it. We set the kernels by hand instead of learning them:

    vertical edge   K_v[i, j] = c[j] / 15,  c = (-1, -2, 0, 2, 1)   (dark -> bright, left to right)
    horizontal edge K_h = K_v transposed                         (dark -> bright, top to bottom)

Scaled so a clean 0 -> 1 step gives a response of 1; the bias of -0.2 and the ReLU keep only
clear edges. Input(784) -> Reshape(28, 28, 1) -> Conv2D(2, 5x5, same) has exactly
2 * 25 + 2 = 52 parameters, frozen here.

The experiment: on synthetic vertical / horizontal / cross strokes (common.strokes) a linear
classifier on the two feature maps separates the classes, while the same classifier on raw
pixels struggles, because "vertical" is a property of neighbouring pixels, not of any pixel.

Run:  python chapters/ch1_edge_filters.py [--dataset fashion_mnist]
(--dataset picks the real images whose edges are shown.)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np

from common import figures, strokes
from common.cli import make_parser, parse, run_main
from common.pipeline import batches
from common.results import write_metrics
from common.run import start
from common.summary import print_summary
from common.training import fit

CHAPTER = "ch1_edge_filters"
FILTER_NAMES = ("vertical edge", "horizontal edge")
STROKE_TRAIN, STROKE_TEST = 3000, 1000


def edge_kernels() -> np.ndarray:
    """The two 5x5 kernels stacked as Conv2D weights of shape (5, 5, 1, 2)."""
    vertical = np.tile(np.array([-1, -2, 0, 2, 1], dtype=np.float32) / 15.0, (5, 1))
    return np.stack([vertical, vertical.T], axis=-1)[:, :, None, :]


def build_edge_filter_model() -> keras.Model:
    """Input(784) -> Reshape(28, 28, 1) -> frozen Conv2D 'conv_filter' (52 parameters)."""
    return keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Reshape((28, 28, 1), name="to_image"),
        keras.layers.Conv2D(2, (5, 5), padding="same", activation="relu",
                            kernel_initializer=keras.initializers.Constant(edge_kernels()),
                            bias_initializer=keras.initializers.Constant(-0.2),
                            trainable=False, name="conv_filter"),
    ], name="edge_filters")


def build_filtered_classifier(filters: keras.Model, num_classes: int = 3) -> keras.Model:
    """The fixed filters, then a linear softmax classifier on their flattened maps."""
    return keras.Sequential([filters, keras.layers.Flatten(name="features"),
                             keras.layers.Dense(num_classes, activation="softmax",
                                                name="softmax")],
                            name="linear_on_edges")


def build_pixel_classifier(num_classes: int = 3) -> keras.Model:
    """The baseline: the same linear softmax classifier on raw pixels."""
    return keras.Sequential([keras.Input(shape=(784,)),
                             keras.layers.Dense(num_classes, activation="softmax",
                                                name="softmax")], name="linear_on_pixels")


def flags():
    """The command line: the shared flags (15 epochs unless told); --dataset picks the real
    images whose edges are shown."""
    return make_parser(CHAPTER, __doc__.splitlines()[0], epochs=15, batch_size=64,
                       learning_rate=3e-3, learning_rate_help="Adam's step size")


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        filters = build_edge_filter_model()
        for model in (filters, build_filtered_classifier(filters), build_pixel_classifier()):
            print_summary(model)
        return 0
    with start(args) as run:  # seeds, devices, the output folder, the real images
        # The two hand-made filters: a frozen convolution of 52 parameters.
        filters = build_edge_filter_model()  # in the strategy's scope, under --distribute
        print_summary(filters)

        # Synthetic strokes to classify: vertical, horizontal or a cross.
        n_train, n_test = (STROKE_TRAIN, STROKE_TEST) if not run.quick else (384, 192)
        x_train, y_train = strokes.make_strokes(n_train, seed=run.seed)
        x_test, y_test = strokes.make_strokes(n_test, seed=run.seed + 1)
        print(f"strokes: {n_train:,} train / {n_test:,} test images ({strokes.DESCRIPTION})")

        # What the filters see, on real images and on strokes.
        show_edges(filters, run.data, x_test, y_test, run.out)

        # The same linear classifier on the edge maps and on raw pixels.
        results = compare_classifiers(filters, (x_train, y_train), (x_test, y_test), run,
                                      args.learning_rate)
        write_metrics(run, models=results, extra={"synthetic_data": {
            "name": "strokes", "description": strokes.DESCRIPTION,
            "train_size": n_train, "test_size": n_test}})
    print(run.closing(f"Figures and metrics.json are in {run.out}/"))
    return 0


def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def show_edges(filters, data, x_strokes, y_strokes, out: Path) -> None:
    """The two filters and their maps, on real test images and on two strokes per class."""
    real = data.x_test[:6]
    figures.filters_and_maps(edge_kernels()[:, :, 0, :], real,
                             filters.predict(flat(real), verbose=0), out / "edges_real.png",
                             filter_names=FILTER_NAMES,
                             title=f"Fixed edge filters on {data.name} test images")
    sample = np.concatenate([x_strokes[y_strokes == c][:2] for c in range(3)])
    figures.filters_and_maps(edge_kernels()[:, :, 0, :], sample,
                             filters.predict(flat(sample), verbose=0), out / "edges_strokes.png",
                             filter_names=FILTER_NAMES,
                             title="Fixed edge filters on strokes: vertical, horizontal, cross")


def compare_classifiers(filters, train_set, test_set, run, learning_rate: float) -> dict:
    """The same linear classifier on the edge maps and on raw pixels: test accuracy on the
    strokes, and the learning curves of both."""
    (x_train, y_train), (x_test, y_test) = train_set, test_set
    results, curves = {}, {}
    for model in (build_filtered_classifier(filters), build_pixel_classifier()):
        print_summary(model)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = batches(flat(x_train), y_train, batch_size=run.batch_size, seed=run.seed)
        trained = fit(model, train, epochs=run.epochs, batch_size=run.batch_size,
                      out=run.out, tag=model.name, verbose=2,
                      nan_hint="try a lower --learning-rate")
        _, accuracy = model.evaluate(flat(x_test), y_test, verbose=0)
        print(f"{model.name}: strokes test accuracy {accuracy:.4f}")
        curves[model.name] = trained.history["accuracy"]
        results[model.name] = {"strokes_test_accuracy": round(float(accuracy), 4),
                               "trainable_params": int(sum(np.prod(w.shape)
                                                           for w in model.trainable_weights)),
                               **trained.speed()}
    results["edge_filters"] = {"params": filters.count_params()}
    figures.curves(curves, run.out / "learning_curves.png", ylabel="train accuracy",
                   title="Linear classifier on strokes: edge maps vs raw pixels")
    return results


if __name__ == "__main__":
    sys.exit(run_main(main))
