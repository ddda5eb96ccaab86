"""CLIP in miniature (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision"): the judge of whether an image matches its text.

Two encoders map an image and a name to unit vectors in one 128-d space; training pulls each
image's vector towards its own name's and away from the other names in the batch, with the
symmetric contrastive loss (`contrastive_loss`): for a batch of n pairs, the n x n cosine
similarities times a learned scale are logits, and cross-entropy asks row i (the image) to pick
column i (its name) and column i to pick row i. After training, the cosine of an image with a
text is the CLIP score this project reports (Hessel et al. 2021 use the same cosine).

It is an instrument, kept apart from the models it judges, like common.eval.classifier's
judge: trained once per dataset, deterministically, checksummed, shipped with the code for the
emoji (`common/eval/judges/clip_*`), else cached under the output root. Each name enters
training in English or Japanese (one of the two per image and epoch, drawn by a fixed
generator), so one judge reads prompts in both languages.

`python -m common.eval.clip --ship emoji` trains (or loads) it and writes the shipped files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from common.atomic import atomic_path, write_json
from common.errors import first_line
from common.eval.classifier import SHIPPED, checksum
from common.precision import float32_policy
from common.text import MaskedMean, Tokenizer, build_text_encoder, caption_texts
from common.training import cosine_adam

PACKAGE = __name__
CLIP_SEED = 0
CLIP_EPOCHS = 40
CLIP_WIDTH = 128  # the shared space
CLIP_BATCH = 128
CLIP_ARCHITECTURE = "clip_cnn3_text2x64"  # a stored CLIP of another design is retrained
INITIAL_SCALE = 1 / 0.07  # CLIP's initial logit scale (its temperature 0.07)


def contrastive_loss(image_vectors, text_vectors, scale):
    """The symmetric InfoNCE loss of CLIP on n matching pairs (row i of each is pair i):
    logits = scale * cos(image_i, text_j); the mean of the cross-entropy of each image
    choosing its text among the n and of each text choosing its image."""
    images = ops.normalize(image_vectors, axis=-1)
    texts = ops.normalize(text_vectors, axis=-1)
    logits = scale * ops.matmul(images, ops.transpose(texts))
    targets = ops.arange(ops.shape(logits)[0])
    image_to_text = keras.losses.sparse_categorical_crossentropy(targets, logits,
                                                                 from_logits=True)
    text_to_image = keras.losses.sparse_categorical_crossentropy(targets,
                                                                 ops.transpose(logits),
                                                                 from_logits=True)
    return (ops.mean(image_to_text) + ops.mean(text_to_image)) / 2


def build_image_encoder(shape, width: int = CLIP_WIDTH, name: str = "clip_image_encoder"):
    """Image -> width-vector: three stages of two 3x3 convolutions (16, 32, 64 filters, each
    batch-normalised before its ReLU, the first two stages pooled), global average pooling,
    a linear projection. Without the normalisation (or with a bias in the projection) every
    image starts at nearly the same vector, and training finds the flat answer first: all
    similarities equal, the loss stuck at log(batch)."""
    image = keras.Input(shape, name="image")
    h = image
    for stage, filters in enumerate((16, 32, 64), start=1):
        for part in "ab":
            h = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              name=f"conv_{stage}{part}")(h)
            h = layers.Activation("relu", name=f"relu_{stage}{part}")(
                layers.BatchNormalization(name=f"norm_{stage}{part}")(h))
        if stage < 3:
            h = layers.MaxPooling2D(2, name=f"pool_{stage}")(h)
    h = layers.GlobalAveragePooling2D(name="average")(h)
    projection = layers.Dense(width, use_bias=False, name="image_projection")
    return keras.Model(image, projection(h), name=name)


def build_text_tower(vocabulary_size: int, width: int = CLIP_WIDTH,
                     name: str = "clip_text_encoder"):
    """ids -> width-vector: common.text's encoder, its token vectors averaged over the real
    tokens, a linear projection."""
    encoder = build_text_encoder(vocabulary_size)
    pooled = MaskedMean(name="token_mean")([encoder.output, encoder.input])
    projection = layers.Dense(width, use_bias=False, name="text_projection")
    return keras.Model(encoder.input, projection(pooled), name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClipModel(keras.Model):
    """The two encoders and the learned logit scale, trained by `contrastive_loss`."""

    def __init__(self, image_encoder, text_encoder, **kwargs):
        super().__init__(**kwargs)
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        # CLIP learns log(scale), clipped at 100 (its paper, sec. 2.5)
        self.log_scale = self.add_weight(shape=(), name="log_scale",
                                         initializer=keras.initializers.Constant(
                                             math.log(INITIAL_SCALE)))
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        images, tokens = inputs
        return (self.image_encoder(images, training=training),
                self.text_encoder(tokens, training=training))

    def train_step(self, data):
        (images, tokens), _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            image_vectors, text_vectors = self((images, tokens), training=True)
            scale = ops.minimum(ops.exp(self.log_scale), 100.0)
            loss = contrastive_loss(image_vectors, text_vectors, scale)
        weights = self.trainable_weights
        self.optimizer.apply(tape.gradient(loss, weights), weights)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]


def names_fingerprint(data) -> str:
    """SHA-256 (16 hex digits) of the training images and their names in every language."""
    digest = hashlib.sha256(np.ascontiguousarray(data.x_train, np.float32).tobytes())
    for text in caption_texts(data):
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:16]


def train_clip(data, *, epochs: int = CLIP_EPOCHS, seed: int = CLIP_SEED,
               verbose: int = 0) -> tuple[ClipModel, Tokenizer]:
    """CLIP on (training image, its name), deterministically: op determinism on, seeds fixed,
    the order and each pair's language from one NumPy generator, one `fit` epoch per call."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = Tokenizer.from_texts(caption_texts(data))
    languages = sorted(data.captions)
    names = np.stack([tokenizer.encode(data.captions[lang][0]) for lang in languages])
    n = len(data.x_train)
    with float32_policy():
        model = ClipModel(build_image_encoder(data.image_shape),
                          build_text_tower(tokenizer.size), name="clip")
    steps = n // CLIP_BATCH
    model.compile(optimizer=cosine_adam(1e-3, epochs * steps))
    for epoch in range(epochs):
        order = rng.permutation(n)[:steps * CLIP_BATCH]  # whole batches: n x n logits
        language = rng.integers(len(languages), size=len(order))
        model.fit((data.x_train[order], names[language, order]), batch_size=CLIP_BATCH,
                  epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=verbose)
    return model, tokenizer


class ClipJudge:
    """A trained CLIP and its tokenizer: unit vectors of images and texts, and what they say
    of each other (`retrieval`, `score`)."""

    def __init__(self, model: ClipModel, tokenizer: Tokenizer, info: dict):
        self.model, self.tokenizer, self.info = model, tokenizer, info

    @property
    def checksum(self) -> str:
        return self.info["checksum"]

    def image_vectors(self, images) -> np.ndarray:
        vectors = self.model.image_encoder.predict(np.asarray(images, np.float32),
                                                   batch_size=256, verbose=0)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def text_vectors(self, texts) -> np.ndarray:
        vectors = self.model.text_encoder.predict(self.tokenizer.encode(list(texts)),
                                                  batch_size=256, verbose=0)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def score(self, images, texts) -> dict:
        """The CLIP score of each image with its text (the cosine, -1..1): the mean and a
        95% interval (normal, over the pairs)."""
        cosines = np.sum(self.image_vectors(images) * self.text_vectors(texts), axis=1)
        return mean_interval(cosines)

    def retrieval(self, images, texts) -> dict:
        """Top-1 and top-5 retrieval among n pairs both ways, with chance (k / n)."""
        similarity = self.image_vectors(images) @ self.text_vectors(texts).T
        n = len(similarity)
        # rank of the true partner: how many candidates score strictly higher
        image_to_text = np.sum(similarity > np.diag(similarity)[:, None], axis=1)
        text_to_image = np.sum(similarity > np.diag(similarity)[None, :], axis=0)
        report = {"pairs": n}
        for k in (1, 5):
            report[f"image_to_text_top{k}"] = round(float(np.mean(image_to_text < k)), 4)
            report[f"text_to_image_top{k}"] = round(float(np.mean(text_to_image < k)), 4)
            report[f"chance_top{k}"] = round(k / n, 4)
        return report

    def describe(self) -> dict:
        return {key: self.info.get(key) for key in ("dataset", "checksum", "architecture",
                                                    "epochs", "retrieval", "source")}

    # -- where a judge comes from: shipped, cached, or trained here --------------------------

    @classmethod
    def for_dataset(cls, data, root: Path, *, epochs: int = CLIP_EPOCHS,
                    verbose: int = 0) -> ClipJudge:
        """The shipped CLIP for `data` where it matches, else the one cached under `root`,
        else one trained here (deterministically) and cached."""
        stem = clip_stem(data)
        for folder, source in ((SHIPPED, "shipped"), (Path(root) / "_clip", "cached")):
            found = cls.read(folder, stem, data, source)
            if found is not None:
                return found
        print(f"training CLIP for {data.name} ({epochs} epochs, deterministic)")
        model, tokenizer = train_clip(data, epochs=epochs, verbose=verbose)
        info = {"dataset": data.name, "checksum": checksum(model), "epochs": epochs,
                "architecture": CLIP_ARCHITECTURE, "seed": CLIP_SEED,
                "data_fingerprint": names_fingerprint(data), "source": "trained on this machine",
                "context": tokenizer.context, "vocabulary": tokenizer.vocabulary}
        judge = cls(model, tokenizer, info)
        info["retrieval"] = {lang: judge.retrieval(data.x_test, data.captions[lang][1])
                             for lang in sorted(data.captions)}
        judge.write(Path(root) / "_clip", stem)
        print(f"CLIP: {len(data.x_test)} test pairs, retrieval {info['retrieval']}")
        return judge

    @classmethod
    def read(cls, folder: Path, stem: str, data, source: str) -> ClipJudge | None:
        weights, record = folder / f"{stem}.weights.h5", folder / f"{stem}.json"
        if not (weights.exists() and record.exists()):
            return None
        try:
            info = json.loads(record.read_text())
            if (info.get("architecture") != CLIP_ARCHITECTURE
                    or info.get("data_fingerprint") != names_fingerprint(data)):
                print(f"note: the {source} CLIP {weights} does not match this data; "
                      "training one here")
                return None
            tokenizer = Tokenizer(info["vocabulary"], info["context"])
            with float32_policy():
                model = ClipModel(build_image_encoder(data.image_shape),
                                  build_text_tower(tokenizer.size), name="clip")
                model((np.zeros((1, *data.image_shape), np.float32),
                       np.zeros((1, tokenizer.context), np.int32)))
            model.load_weights(weights)
        except Exception as err:  # any damage (HDF5, JSON, keys): this file is unusable
            print(f"note: the {source} CLIP {weights} cannot be read ({first_line(err)})")
            return None
        if checksum(model) != info["checksum"]:
            print(f"note: {weights} does not hash to its checksum {info['checksum']}")
            return None
        info["source"] = source if source == "shipped" else info.get("source")
        print(f"CLIP: {weights} (checksum {info['checksum']})")
        return cls(model, tokenizer, info)

    def write(self, folder: Path, stem: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{stem}.weights.h5") as tmp:
            self.model.save_weights(tmp)
        write_json(folder / f"{stem}.json", {**self.info, "source": "trained on this machine"})
        return folder / f"{stem}.weights.h5"


def clip_stem(data) -> str:
    shape = "x".join(str(s) for s in data.image_shape)
    return f"clip_{data.name}_{shape}_{len(data.x_train)}"


def mean_interval(values) -> dict:
    """Mean of per-pair values and its 95% normal interval (1.96 standard errors)."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    half = 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"clip_score": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)],
            "pairs": len(values)}


def shuffled(texts, seed: int = 0) -> list[str]:
    """The texts moved so that none stays with its own image (a random derangement; names
    that repeat may still meet their twin)."""
    texts = list(texts)
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(len(texts))
    partner = np.empty_like(cycle)
    partner[cycle] = np.roll(cycle, -1)  # each image takes the next text of one random cycle
    return [texts[i] for i in partner]


def main(argv=None) -> None:
    """`--ship DATASET`: train (or load the cached) CLIP for DATASET, write it beside the
    shipped judges."""
    from common.data import load  # noqa: PLC0415 (only the command line needs the loader)

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--ship", required=True, metavar="DATASET")
    parser.add_argument("--root", type=Path, default=Path("outputs"))
    args = parser.parse_args(argv)
    data = load(args.ship)
    judge = ClipJudge.for_dataset(data, args.root, verbose=2)
    print(f"shipped {judge.write(SHIPPED, clip_stem(data))} (checksum {judge.checksum})")


if __name__ == "__main__":
    import sys

    from common.cli import run_main  # noqa: PLC0415

    sys.exit(run_main(main, prog="python -m common.eval.clip"))
