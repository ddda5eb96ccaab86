"""Chapter 3: a hierarchical VAE with two stochastic layers, x <- z1 <- z2.

One Gaussian layer asks a single N(0, I) to carry everything about an image. A hierarchical VAE
stacks latents (Tomczak 2022, "Deep Generative Modeling", sec. 4.5): the generative model is

    p(x, z1, z2) = p(x | z1) p(z1 | z2) p(z2),   p(z2) = N(0, I),

so the prior of z1 is itself learned, and inference runs bottom-up, q(z1 | x) q(z2 | z1). The
negative ELBO gains a second KL term (`HierarchicalVaeLossLayer` below):

    -ELBO = -log p(x | z1) + [log q(z1 | x) - log p(z1 | z2)] + KL(q(z2 | z1) || N(0, I)).

Both models here share the bottom level (784 -> Dense 512 -> z1 of 16 -> Dense 512 -> 784); the
hierarchical one adds z2 (8 dims) with two Dense(256) networks, about 2% more parameters. Both
train with the same KL warm-up, optimiser, epochs and data. A known failure is visible in the
numbers: the top layer can collapse (its KL near 0, no active units), and the model is then a
one-level VAE with an extra learned layer in its prior.

Run:  python chapters/ch3_hierarchical_vae.py [--dataset fashion_mnist]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
from keras import layers, ops

from chapters.ch3_vae import (
    IMAGE_SHAPE,
    Sampling,
    VaeLossLayer,
    assemble_vae,
    dense_decoder,
    dense_encoder,
)
from common import figures
from common.atomic import save_model
from common.cli import make_parser, non_negative_int, parse, run_main
from common.eval.classifier import FeatureClassifier, describe_fid
from common.pipeline import batches
from common.results import write_metrics
from common.run import seed_everything, start
from common.summary import print_summary
from common.training import cosine_adam, fit
from common.vae.annealing import KLAnnealing
from common.vae.elbo import (
    ACTIVE_THRESHOLD,
    ElboMonitor,
    bernoulli_nll,
    elbo_report,
    gaussian_log_density,
    kl_to_standard_normal,
    sample_log_density,
)

CHAPTER = "ch3_hierarchical_vae"
PACKAGE = "chapters.ch3_hierarchical_vae"  # saved models name their loss layer by it
Z1, Z2, HIDDEN, TOP_HIDDEN = 16, 8, 512, 256
IMAGES_PER_MODEL = 1_200_000  # default budget: 20 epochs of 60,000 images (dense models)


def dense_gaussian(in_dim: int, latent_dim: int, *, hidden: int = 256,
                   name: str) -> keras.Model:
    """A vector -> Dense(hidden, relu) -> mean and log variance of a Gaussian over the next
    latent: q(z2 | z1) and p(z1 | z2)."""
    inputs = keras.Input((in_dim,), name="input")
    h = layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, [layers.Dense(latent_dim, name="mean")(h),
                                layers.Dense(latent_dim, name="log_var")(h)], name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class HierarchicalVaeLossLayer(VaeLossLayer):
    """The negative ELBO of a two-level VAE  x <- z1 <- z2  with bottom-up inference
    q(z1 | x) q(z2 | z1) (Tomczak 2022, "Deep Generative Modeling", sec. 4.5):

        -ELBO = -log p(x | z1)                              reconstruction
                + log q(z1 | x) - log p(z1 | z2)             KL of the first level
                + KL(q(z2 | z1) || N(0, I))                  KL of the second level

    z1 and z2 are the sampled values. The first KL is a one-sample Monte Carlo estimate: z2 is
    drawn given z1, so KL(q(z1 | x) || p(z1 | z2)) in closed form would not be the ELBO's term.
    log q(z1 | x) is computed from the noise that drew z1 (`sample_log_density`), which stays
    finite however small the posterior variance gets. The second KL is exact given z1. Both
    KL terms are weighted by `beta` (for annealing), the weight it shares with chapter 3's
    VaeLossLayer.

    Inputs: [x, probabilities, z1, noise1, q1_log_var, p1_mean, p1_log_var, q2_mean,
    q2_log_var], where z1 = q1_mean + exp(q1_log_var / 2) * noise1; output: the
    probabilities, unchanged.
    """

    def call(self, inputs):
        x, probabilities, z1, noise1, q1_log_var, p1_mean, p1_log_var, q2_mean, q2_log_var = inputs
        kl1 = (sample_log_density(noise1, q1_log_var)
               - gaussian_log_density(z1, p1_mean, p1_log_var))
        kl2 = kl_to_standard_normal(q2_mean, q2_log_var)
        self.add_loss(ops.mean(bernoulli_nll(x, probabilities) + self.beta * (kl1 + kl2)))
        return probabilities


def build_one_level(seed: int | None = None) -> keras.Model:
    """The baseline: x -> Dense 512 -> z (16) -> Dense 512 -> x."""
    return assemble_vae(dense_encoder(Z1, hidden=HIDDEN), dense_decoder(Z1, hidden=HIDDEN),
                        seed=seed, name="one_level")


def build_two_level(seed: int | None = None) -> keras.Model:
    """x -> q(z1 | x) -> z1 -> q(z2 | z1) -> z2;  z2 -> p(z1 | z2);  z1 -> p(x | z1)."""
    image = keras.Input(IMAGE_SHAPE, name="image")
    q1_mean, q1_log_var = dense_encoder(Z1, hidden=HIDDEN, name="encoder")(image)
    z1, noise1 = Sampling(seed=seed, return_noise=True, name="sample_z1")([q1_mean,
                                                                           q1_log_var])
    q2_mean, q2_log_var = dense_gaussian(Z1, Z2, hidden=TOP_HIDDEN, name="encoder_z2")(z1)
    z2 = Sampling(seed=None if seed is None else seed + 1, name="sample_z2")([q2_mean,
                                                                              q2_log_var])
    p1_mean, p1_log_var = dense_gaussian(Z2, Z1, hidden=TOP_HIDDEN, name="prior_z1")(z2)
    probabilities = dense_decoder(Z1, hidden=HIDDEN, name="decoder")(z1)
    output = HierarchicalVaeLossLayer(name="vae_loss")(
        [image, probabilities, z1, noise1, q1_log_var, p1_mean, p1_log_var, q2_mean,
         q2_log_var])
    return keras.Model(image, output, name="two_level")


@dataclass
class TwoLevelReport:
    """One-sample -ELBO terms per image of the two-level model (nats)."""
    reconstruction: np.ndarray
    kl1: np.ndarray
    kl2: np.ndarray
    z1_means: np.ndarray
    z2_means: np.ndarray

    @property
    def kl(self) -> np.ndarray:
        return self.kl1 + self.kl2

    @property
    def nelbo(self) -> float:
        return float(np.mean(self.reconstruction + self.kl))

    def summary(self) -> dict:
        return {"test_nelbo_nats": round(self.nelbo, 2),
                "test_reconstruction_nats": round(float(self.reconstruction.mean()), 2),
                "test_kl_nats": round(float(self.kl.mean()), 2),
                "test_kl_z1_nats": round(float(self.kl1.mean()), 2),
                "test_kl_z2_nats": round(float(self.kl2.mean()), 2),
                "active_units_z1": int((self.z1_means.var(axis=0) > ACTIVE_THRESHOLD).sum()),
                "active_units_z2": int((self.z2_means.var(axis=0) > ACTIVE_THRESHOLD).sum())}


def _gaussian_sample(rng, mean, log_var):
    return mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape).astype("float32")


def _numpy(tensor) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(tensor), np.float64)


def score_two_level(model: keras.Model, x: np.ndarray, _condition=None,
                    seed: int = 0) -> TwoLevelReport:
    """The same terms as the loss layer, computed with the trained parts on `x`."""
    rng = np.random.default_rng(seed)
    q1_mean, q1_log_var = model.get_layer("encoder").predict(x, batch_size=500, verbose=0)
    z1 = _gaussian_sample(rng, q1_mean, q1_log_var)
    q2_mean, q2_log_var = model.get_layer("encoder_z2").predict(z1, batch_size=500, verbose=0)
    z2 = _gaussian_sample(rng, q2_mean, q2_log_var)
    p1_mean, p1_log_var = model.get_layer("prior_z1").predict(z2, batch_size=500, verbose=0)
    probabilities = model.get_layer("decoder").predict(z1, batch_size=500, verbose=0)
    kl1 = (_numpy(gaussian_log_density(z1, q1_mean, q1_log_var))
           - _numpy(gaussian_log_density(z1, p1_mean, p1_log_var)))
    return TwoLevelReport(_numpy(bernoulli_nll(x, probabilities)), kl1,
                          _numpy(kl_to_standard_normal(q2_mean, q2_log_var)), q1_mean, q2_mean)


def sample_two_level(model: keras.Model, z2: np.ndarray, seed: int = 0) -> np.ndarray:
    """Ancestral sampling: z2 -> z1 ~ p(z1 | z2) -> decoder's pixel probabilities."""
    p1_mean, p1_log_var = model.get_layer("prior_z1").predict(z2, verbose=0)
    z1 = _gaussian_sample(np.random.default_rng(seed), p1_mean, p1_log_var)
    return model.get_layer("decoder").predict(z1, verbose=0)


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         learning_rate=1e-3)
    parser.add_argument("--kl-anneal", type=non_negative_int, default=3,
                        help="raise beta from 0 to 1 over this many epochs, for both models "
                             "(default 3; 0 trains with beta = 1 throughout)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        print_summary(build_one_level())
        print_summary(build_two_level())
        return 0

    with start(args, images=IMAGES_PER_MODEL, image_shape=(28, 28, 1)) as run:
        # The data: a few training images of each class.
        data = run.data
        figures.data_grid(data, run.out / "data.png")

        # Two VAEs of nearly the same size: one latent layer, and two (x <- z1 <- z2).
        models = {"one_level": build_one_level(run.seed),
                  "two_level": build_two_level(run.seed)}
        for model in models.values():
            print_summary(model)

        # Training both with the same KL warm-up, optimiser and shuffling.
        runs, reports = train_both(models, run, args.learning_rate, args.kl_anneal)

        # The test set's -ELBO side by side, with the KL of each level.
        results = compare(models, runs, reports)

        # New images from each model's prior, scored by the judge; the figures, models and
        # metrics.json.
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        for name, drawn in new_images(models, 200 if run.quick else 1000, run.seed).items():
            results[name].update(judge.fid_report(data, drawn))
            print(f"{name} samples: {describe_fid(results[name])}")
        _figures(run.out, data, models, runs, reports, run.seed)
        for name, model in models.items():
            save_model(model, run.out / f"{name}.keras")
        gap = reports["two_level"].nelbo - reports["one_level"].nelbo
        write_metrics(run, judge=judge, models=results,
                      extra={"kl_anneal_epochs": args.kl_anneal,
                             "two_minus_one_nelbo_nats": round(gap, 2)})
    print(run.closing(f"\nFigures, models and metrics.json are in {run.out}/ "
                      "(start with samples.png)"))
    return 0


def score_one_level(model, x, _condition=None, seed: int = 0):
    return elbo_report(model.get_layer("encoder"), model.get_layer("decoder"), x, seed=seed)


SCORERS = {"one_level": score_one_level, "two_level": score_two_level}


def train_both(models: dict, run, learning_rate: float, kl_anneal: int):
    """Both models with the same optimiser, warm-up and shuffling, the held-out -ELBO logged
    per epoch; returns their training records and test-set reports."""
    data = run.data
    steps = run.epochs * (len(data.x_train) // run.batch_size)
    monitored = data.x_test[:2000]
    runs, reports = {}, {}
    for name, model in models.items():
        seed_everything(run.seed)
        model.compile(optimizer=cosine_adam(learning_rate, steps))
        if kl_anneal:  # start at beta = 0; the callback raises it from the first epoch
            model.get_layer("vae_loss").beta.assign(0.0)
        callbacks = [ElboMonitor(monitored, score=SCORERS[name])]
        if kl_anneal:
            callbacks.append(KLAnnealing("vae_loss", 1.0, kl_anneal))
        print(f"\n== {name} ({model.count_params():,} parameters) ==")
        runs[name] = fit(model, batches(data.x_train, batch_size=run.batch_size,
                                        seed=run.seed),
                         epochs=run.epochs, batch_size=run.batch_size, out=run.out,
                         tag=name, callbacks=callbacks, nan_hint="try a lower --learning-rate")
        reports[name] = SCORERS[name](model, data.x_test, None, run.seed)
    return runs, reports


def compare(models, runs, reports) -> dict:
    """Both models' test -ELBO, its parts and active units, printed side by side."""
    one, two = reports["one_level"], reports["two_level"]
    results = {
        "one_level": {**one.summary(), "params": models["one_level"].count_params(),
                      **runs["one_level"].speed()},
        "two_level": {**two.summary(), "params": models["two_level"].count_params(),
                      **runs["two_level"].speed()}}
    print(f"\ntest -ELBO, nats per image: one level {one.nelbo:.2f} "
          f"(reconstruction {one.reconstruction.mean():.2f} + KL {one.kl.mean():.2f}, "
          f"{results['one_level']['active_units']}/{Z1} active units)")
    print(f"                          two levels {two.nelbo:.2f} "
          f"(reconstruction {two.reconstruction.mean():.2f} + KL z1 {two.kl1.mean():.2f} "
          f"+ KL z2 {two.kl2.mean():.2f}; active units z1 "
          f"{results['two_level']['active_units_z1']}/{Z1}, z2 "
          f"{results['two_level']['active_units_z2']}/{Z2})")
    print(f"difference (two - one): {two.nelbo - one.nelbo:+.2f} nats per image")
    return results


def new_images(models, count: int, seed: int) -> dict[str, np.ndarray]:
    """`count` images from each model's prior (the decoder's pixel means), for the judge."""
    rng = np.random.default_rng(seed + 100)
    z = rng.standard_normal((count, Z1)).astype("float32")
    z2 = rng.standard_normal((count, Z2)).astype("float32")
    return {"one_level": models["one_level"].get_layer("decoder").predict(z, verbose=0),
            "two_level": sample_two_level(models["two_level"], z2, seed)}


def _figures(out, data, models, runs, reports, seed) -> None:
    rng = np.random.default_rng(seed)
    one, two = models["one_level"], models["two_level"]
    z = rng.standard_normal((30, Z1)).astype("float32")
    z2 = rng.standard_normal((30, Z2)).astype("float32")
    figures.image_grid(np.concatenate([one.get_layer("decoder").predict(z, verbose=0),
                                       sample_two_level(two, z2, seed)]),
                       out / "samples.png", ncols=10,
                       row_labels=["one level"] * 3 + ["two levels"] * 3,
                       suptitle="New images: z ~ N(0, I) (top) and z2 ~ N(0, I), "
                                "z1 ~ p(z1 | z2) (bottom)")
    tops = np.repeat(rng.standard_normal((6, Z2)).astype("float32"), 10, axis=0)
    figures.image_grid(sample_two_level(two, tops, seed + 1), out / "fixed_z2.png", ncols=10,
                       row_labels=[f"z2 #{i + 1}" for i in range(6)],
                       suptitle="Two levels: one z2 per row, a fresh z1 ~ p(z1 | z2) per "
                                "image: what the top layer decides")
    picks = np.concatenate([np.flatnonzero(data.y_test == c)[:1]
                            for c in range(data.num_classes)])
    x = data.x_test[picks]
    figures.image_grid(np.concatenate([x, one.get_layer("decoder").predict(
                           reports["one_level"].means[picks], verbose=0),
                                       two.get_layer("decoder").predict(
                           reports["two_level"].z1_means[picks], verbose=0)]),
                       out / "reconstructions.png", ncols=len(picks),
                       row_labels=["input", "one level", "two levels"],
                       suptitle="Test images and their reconstructions (decoded q(z1 | x) mean)")
    figures.curve_panels(
        [("held-out -ELBO", {n: runs[n].history["val_nelbo"] for n in runs}, "nats per image"),
         ("held-out KL", {n: runs[n].history["val_kl"] for n in runs}, "nats per image")],
        out / "nelbo_curves.png", suptitle="One level against two levels")


if __name__ == "__main__":
    sys.exit(run_main(main))
