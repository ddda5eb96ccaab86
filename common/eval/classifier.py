"""The judge: the CNN classifier that measures every generative chapter.

Generative chapters need to judge images they made: are they recognisable (conditional
accuracy: the share the classifier assigns to the requested class) and do they look like the
test set as a whole (classifier FID, common.eval.metrics)? `FeatureClassifier.for_dataset`
trains the judge (`build_judge`) once per dataset and image shape, deterministically, and
caches it under the output root.

Deterministic training gives the same weights on the same kind of CPU, not on every CPU
(oneDNN picks its kernels, and so its rounding, by instruction set). So the judges of
Fashion-MNIST and mnist5k ship with the code (`common/eval/judges/`): wherever the data is
the same, bit for bit (its fingerprint), every machine scores with that one instrument, and
trains nothing. `python -m common.eval.classifier --ship fashion_mnist` rebuilds the shipped files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage

from common.atomic import save_model, write_json, write_text
from common.errors import first_line
from common.eval.metrics import FidReference, KidReference, fid_from_features
from common.precision import float32_policy
from common.training import cosine_adam


def build_judge(input_shape, num_classes: int, name: str = "feature_classifier"):
    """The judge: chapter 1's CNN (chapters/ch1_classifiers.py) with two 'same' 3x3
    convolutions per stage instead of one. Each stage sees 5x5 pixels before it pools instead
    of 3x3, which lifts Fashion-MNIST test accuracy with the augmentation below
    (docs/results.md, "The judge"). Its 128-d `features` layer is what FID and KID compare.
    """
    stages = [layer for stage, filters in ((1, 32), (2, 64)) for layer in (
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{stage}a"),
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{stage}b"),
        keras.layers.MaxPooling2D(2, name=f"pool_{stage}"))]
    head = [keras.layers.Flatten(name="flatten"), keras.layers.Dropout(0.5, name="dropout"),
            keras.layers.Dense(128, activation="relu", name="features"),  # what FID compares
            keras.layers.Dense(num_classes, activation="softmax", name="class_probabilities")]
    return keras.Sequential([keras.Input(shape=input_shape), *stages, *head], name=name)


CACHE_README = """\
The judging classifiers of the generative chapters (common/eval/classifier.py), one per
dataset, trained deterministically the first time a chapter scores samples on that data and
reused after. Each .json beside a .keras file holds the judge's checksum, clean test accuracy
and accuracy on noised and blurred test images; every metrics.json scored by a judge repeats
its checksum. Delete this folder to train them afresh (the same checksum should come back).
"""
JUDGE_SEED = 0  # the same judge for every chapter, whatever the chapter's --seed
JUDGE_EPOCHS = 12
JUDGE_ARCHITECTURE = "two_convs_per_stage"  # a cached judge of another architecture is retrained
NOISE_LEVELS = (0.1, 0.2)  # robustness: Gaussian pixel noise of these standard deviations
BLUR_SIGMA = 1.0  # robustness: Gaussian blur of 1 pixel
SHIPPED = Path(__file__).with_name("judges")  # judges trained once, shipped with the code


def gaussian_blur(images: np.ndarray, sigma) -> np.ndarray:
    """Blur NHWC images over height and width (sigma per image, or one for all)."""
    images = np.asarray(images, np.float32)
    sigmas = np.broadcast_to(np.asarray(sigma, np.float64), (len(images),))
    out = np.empty_like(images)
    for value in np.unique(sigmas):
        chosen = sigmas == value
        out[chosen] = ndimage.gaussian_filter(images[chosen], (0, value, value, 0),
                                              mode="constant") if value > 0 else images[chosen]
    return out


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What generated images carry and real ones do not, drawn afresh each epoch: half the
    images stay clean (clean accuracy must not suffer); the others are shifted by up to 2
    pixels (p = 1/2), blurred with sigma 0.5-1.2 pixels (p = 1/3) and given Gaussian noise of
    sigma up to 0.25 (p = 1/2), then clipped to [0, 1]."""
    x = np.asarray(images, np.float32)
    n, height, width = x.shape[:3]
    touched = rng.random(n) < 0.5
    shift = rng.integers(-2, 3, size=(2, n)) * (touched & (rng.random(n) < 0.5))
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    rows = np.arange(height)[None, :] + 2 + shift[0][:, None]
    cols = np.arange(width)[None, :] + 2 + shift[1][:, None]
    x = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    blur = np.where(touched & (rng.random(n) < 1 / 3), rng.uniform(0.5, 1.2, n), 0.0)
    x = gaussian_blur(x, np.round(blur, 1))
    noise = np.where(touched & (rng.random(n) < 0.5), rng.uniform(0.0, 0.25, n), 0.0)
    x = x + noise[:, None, None, None] * rng.standard_normal(x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def checksum(model: keras.Model) -> str:
    """The first 16 hex digits of the SHA-256 of the weights: two judges agree only if every
    weight does, bit for bit."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, np.float32).tobytes())
    return digest.hexdigest()[:16]


def fingerprint(data) -> str:
    """The first 16 hex digits of the SHA-256 of the training images (as float32 in [0, 1])
    and labels: a shipped judge is used only for data that matches it bit for bit."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data.x_train, np.float32).tobytes())
    digest.update(np.ascontiguousarray(data.y_train, np.int64).tobytes())
    return digest.hexdigest()[:16]


def judge_stem(data) -> str:
    """'fashion_mnist_28x28x1_60000': the file name of a dataset's judge, cached or shipped."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", data.name)
    return f"{slug}_{'x'.join(map(str, data.image_shape))}_{len(data.x_train)}"


def train_judge(data, *, epochs: int = JUDGE_EPOCHS, seed: int = JUDGE_SEED,
                augmented: bool = True, verbose: int = 0) -> keras.Model:
    """The judging CNN, trained deterministically: fixed seeds, op determinism on, the data
    order and the augmentation drawn from one NumPy generator, one epoch per `fit` call on
    arrays (no shuffling inside Keras). The same code, data and versions on the same kind of
    CPU give the same weights (op determinism stays on in this process afterwards)."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    with float32_policy():  # the same instrument whatever the run's --precision
        model = build_judge(data.image_shape, data.num_classes)
    batch = min(128, len(data.x_train))
    model.compile(optimizer=cosine_adam(1e-3, epochs * (len(data.x_train) // batch)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(epochs):
        order = rng.permutation(len(data.x_train))
        x = data.x_train[order]
        x = augment(x, rng) if augmented else x
        model.fit(x, data.y_train[order], batch_size=batch, epochs=epoch + 1,
                  initial_epoch=epoch, shuffle=False, verbose=verbose)
    return model


def robustness(model: keras.Model, x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Accuracy on the clean test images, with Gaussian noise of NOISE_LEVELS, and blurred."""
    rng = np.random.default_rng(seed)

    def accuracy(images):
        probs = model.predict(np.clip(images, 0, 1), batch_size=512, verbose=0)
        return float(np.mean(probs.argmax(axis=1) == y))

    x = np.asarray(x, np.float32)
    scores = {"clean": accuracy(x)}
    for sigma in NOISE_LEVELS:
        scores[f"noise_{sigma:g}"] = accuracy(x + sigma * rng.standard_normal(x.shape))
    scores[f"blur_{BLUR_SIGMA:g}px"] = accuracy(gaussian_blur(x, BLUR_SIGMA))
    return scores


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion hits / n (Wilson 1927): unlike the normal
    approximation it stays inside [0, 1] and is honest near 0 and 1."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class FeatureClassifier:
    """The judge: a trained CNN classifier and its penultimate `features` layer."""

    def __init__(self, model: keras.Model, info: dict, path: Path | None = None):
        self.model = model
        self.info = info
        self.test_accuracy = info["test_accuracy"]
        self.path = path
        self._features = keras.Model(model.inputs, model.get_layer("features").output)
        self.image_shape = tuple(model.input_shape[1:])
        self._references: dict = {}  # per dataset: the test set's FID and KID terms

    @property
    def checksum(self) -> str:
        return self.info["checksum"]

    def describe(self) -> dict:
        """What metrics.json records of the judge that scored a run."""
        return {key: self.info.get(key) for key in ("dataset", "checksum", "test_accuracy",
                                                    "robustness", "epochs", "augmented",
                                                    "architecture", "source")}

    @classmethod
    def for_dataset(cls, data, root: Path, *, epochs: int = JUDGE_EPOCHS,
                    verbose: int = 0, augmented: bool = True) -> FeatureClassifier:
        """The judge for `data`: the shipped one where it matches, else the one cached under
        `root`, else one trained here (deterministically) and cached. A shipped or cached
        judge is used only if its files load and its weights hash to the checksum on record;
        otherwise the note says why and a judge is trained here."""
        if len(data.image_shape) == 1:
            raise ValueError("give the classifier NHWC images, not flat vectors")
        shipped = cls.shipped(data, augmented=augmented)
        if shipped is not None:
            return shipped
        path = Path(root) / "_classifiers" / f"{judge_stem(data)}.keras"
        cached = cls.cached(path, augmented=augmented)
        if cached is not None:
            return cached
        print(f"training the judge for {data.name} ({epochs} epochs, deterministic)")
        model = train_judge(data, epochs=epochs, augmented=augmented, verbose=verbose)
        info = {"dataset": data.name, "checksum": checksum(model), "epochs": epochs,
                "architecture": JUDGE_ARCHITECTURE,
                "augmented": augmented, "seed": JUDGE_SEED, "source": "trained on this machine",
                "data_fingerprint": fingerprint(data),
                "robustness": robustness(model, data.x_test, data.y_test)}
        info["test_accuracy"] = info["robustness"]["clean"]
        save_model(model, path)
        write_json(path.with_suffix(".json"), info)
        write_text(path.parent / "README.txt", CACHE_README)
        print(f"judge: {path} (checksum {info['checksum']}; accuracy {info['robustness']})")
        return cls(model, info, path)

    @classmethod
    def cached(cls, path: Path, *, augmented: bool = True) -> FeatureClassifier | None:
        """The judge cached at `path` (a .keras file and its .json record), or None: nothing
        cached, another architecture, or files that fail to load or to match their checksum
        (each said in one note)."""
        info_path = path.with_suffix(".json")
        if not (path.exists() and info_path.exists()):
            return None
        try:
            info = json.loads(info_path.read_text())
            if (info.get("architecture") != JUDGE_ARCHITECTURE
                    or info.get("augmented") != augmented):
                return None
            model = keras.saving.load_model(path)
            recorded = info["checksum"]
        except Exception as err:  # any damage (zip, HDF5, JSON, keys): this file is unusable
            print(f"note: the cached judge {path} cannot be read ({first_line(err)}); "
                  "training a judge here")
            return None
        if checksum(model) != recorded:
            print(f"note: the cached judge {path} does not hash to its checksum {recorded}; "
                  "training a judge here")
            return None
        info.setdefault("source", "trained on this machine")
        print(f"judge: {path} (checksum {recorded})")
        return cls(model, info, path)

    @classmethod
    def shipped(cls, data, *, augmented: bool = True,
                folder: Path | None = None) -> FeatureClassifier | None:
        """The judge shipped for `data` in `folder` (default SHIPPED), or None when none
        matches: another dataset or size, other data under the same name (fingerprint),
        another architecture, files that fail to load, or weights that no longer hash to
        their recorded checksum."""
        folder = SHIPPED if folder is None else Path(folder)
        weights = folder / f"{judge_stem(data)}.weights.h5"
        info_path = folder / f"{judge_stem(data)}.json"
        if not (weights.exists() and info_path.exists()):
            return None
        try:
            info = json.loads(info_path.read_text())
            matches = (info.get("architecture") == JUDGE_ARCHITECTURE
                       and info.get("augmented") == augmented
                       and info.get("data_fingerprint") == fingerprint(data))
            if matches:
                with float32_policy():
                    model = build_judge(data.image_shape, data.num_classes)
                model.load_weights(weights)
                recorded = info["checksum"]
        except Exception as err:  # any damage (HDF5, JSON, keys): this file is unusable
            print(f"note: the shipped judge {weights.name} cannot be read "
                  f"({first_line(err)}); training a judge here")
            return None
        if not matches:
            print(f"note: the shipped judge {weights.name} does not match this data; "
                  "training one here")
            return None
        if checksum(model) != recorded:
            print(f"note: {weights} does not hash to its checksum {recorded}; "
                  "training a judge here")
            return None
        info = {**info, "source": f"shipped ({weights.name})"}
        print(f"judge: {weights} (shipped; checksum {recorded})")
        return cls(model, info, weights)

    def ship(self, data, folder: Path | None = None) -> Path:
        """Write this judge's weights and record into `folder` (default SHIPPED) for `data`."""
        folder = SHIPPED if folder is None else Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / f"{judge_stem(data)}.weights.h5"
        with float32_policy():  # an uncompiled copy: its file holds no optimizer state
            bare = build_judge(self.image_shape, self.model.output_shape[-1])
        bare.set_weights(self.model.get_weights())
        bare.save_weights(weights)
        info = {key: value for key, value in self.info.items() if key != "source"}
        write_json(folder / f"{judge_stem(data)}.json",
                   {**info, "data_fingerprint": fingerprint(data)})
        return weights

    def _prepare(self, images) -> np.ndarray:
        return np.asarray(images, dtype=np.float32).reshape((-1, *self.image_shape))

    def features(self, images) -> np.ndarray:
        return self._features.predict(self._prepare(images), batch_size=256, verbose=0)

    def predict(self, images) -> np.ndarray:
        probs = self.model.predict(self._prepare(images), batch_size=256, verbose=0)
        return probs.argmax(axis=1)

    def fid(self, real_images, generated_images) -> float:
        """Classifier FID between two image sets (lower is closer)."""
        return fid_from_features(self.features(real_images), self.features(generated_images))

    def references(self, data) -> tuple[FidReference, KidReference]:
        """The test set's Gaussian (FID) and kernel term (KID), made once per dataset."""
        key = (data.name, len(data.x_test))
        if key not in self._references:
            real = self.features(data.x_test)
            self._references[key] = (FidReference(real), KidReference(real))
        return self._references[key]

    def fid_report(self, data, generated_images) -> dict:
        """Classifier FID and KID of `generated_images` against the test set, each with a
        95% jackknife interval (common.eval.metrics: it contains the estimate and gives the
        spread over fresh draws of as many samples), and the FID's floor (as many real
        training images against the same test set: what a perfect generator would score at
        this count)."""
        fid_ref, kid_ref = self.references(data)
        fake = self.features(generated_images)
        count = min(len(fake), len(data.x_train))
        floor = fid_ref.fid(self.features(data.x_train[:count]))
        fid, kid = fid_ref.fid_with_interval(fake), kid_ref.kid_with_interval(fake)
        return {"classifier_fid": round(fid["fid"], 3),
                "fid_ci95": [round(v, 3) for v in fid["ci95"]], "fid_floor": round(floor, 3),
                "kid": round(kid["kid"], 4), "kid_ci95": [round(v, 4) for v in kid["ci95"]],
                "fid_samples": len(fake), "judge": self.checksum}

    def conditional_accuracy(self, generated_images, requested_labels) -> float:
        """Share of generated images classified as the class they were asked to show."""
        return float(np.mean(self.predict(generated_images) == np.asarray(requested_labels)))

    def score_conditional(self, generated_images, requested_labels, data,
                          bar: float | None = None) -> dict:
        """What a conditional generator's chapter reports: the conditional accuracy overall
        (with its 95% interval) and per requested class, the classifier FID against the test
        set of `data` (with spread and floor, `fid_report`), and the bar with its verdict
        ("met"/"missed"; None where no bar is set for the data)."""
        requested = np.asarray(requested_labels)
        hits = self.predict(generated_images) == requested
        accuracy = float(np.mean(hits))
        low, high = wilson_interval(int(hits.sum()), len(hits))
        return {"conditional_accuracy": round(accuracy, 4),
                "conditional_accuracy_ci95": [round(low, 4), round(high, 4)],
                "conditional_accuracy_per_class": [round(float(np.mean(hits[requested == c])), 3)
                                                   for c in np.unique(requested)],
                **self.fid_report(data, generated_images),
                "classifier_test_accuracy": round(self.test_accuracy, 4),
                "conditional_accuracy_bar": bar,
                "bar_verdict": None if bar is None else ("met" if accuracy >= bar else "missed")}


def describe_scores(scores: dict) -> str:
    """One line of FeatureClassifier.score_conditional's numbers, with intervals and the
    bar's verdict."""
    bar = scores["conditional_accuracy_bar"]
    verdict = "" if bar is None else f" (bar {bar}: {scores['bar_verdict']})"
    low, high = scores["conditional_accuracy_ci95"]
    return (f"conditional accuracy {scores['conditional_accuracy']:.3f} [{low:.3f}, {high:.3f}]"
            f"{verdict}; {describe_fid(scores)}")


def describe_fid(report: dict) -> str:
    """'classifier FID 7.44 [6.9, 8.0], floor 1.20; KID 0.412 [0.30, 0.52] (1,000 samples)'
    from `fid_report`."""
    low, high = report["fid_ci95"]
    text = (f"classifier FID {report['classifier_fid']:.2f} [{low:.2f}, {high:.2f}], floor "
            f"{report['fid_floor']:.2f}")
    if "kid" in report:
        low, high = report["kid_ci95"]
        text += f"; KID {report['kid']:.3f} [{low:.3f}, {high:.3f}]"
    return text + f" ({report['fid_samples']:,} samples)"


def main(argv=None) -> None:
    """`--ship DATASET`: train (or load the cached) judge for DATASET and write it to SHIPPED."""
    from common.data import load  # noqa: PLC0415 (only the command line needs the loader)

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--ship", required=True, metavar="DATASET")
    parser.add_argument("--root", type=Path, default=Path("outputs"),
                        help="where the judge is cached (default: outputs)")
    args = parser.parse_args(argv)
    data = load(args.ship)
    judge = FeatureClassifier.for_dataset(data, args.root)
    print(f"shipped {judge.ship(data)} (checksum {judge.checksum})")


if __name__ == "__main__":
    import sys

    from common.cli import run_main  # noqa: PLC0415 (a bad dataset name: one error line, exit 2)

    sys.exit(run_main(main, prog="python -m common.eval.classifier"))
