"""Chapter 3: the VAE in the course's form, with its loss added by a layer, beta and KL annealing.

Chapter 2's book-form VAE smuggled mean and log variance through the model output so that a
Keras loss could see them. Here a layer does the bookkeeping instead: `VaeLossLayer` receives
the image, the decoder's Bernoulli pixel probabilities, mean and log variance, and registers

    -ELBO = sum over pixels of BCE(x, p(x | z))  +  beta * KL(q(z | x) || N(0, I))

with `self.add_loss` (Kingma & Welling 2014, eq. 10), so the model compiles with no loss and
trains with `fit(x)`. Five models train on the same data with the same optimiser and epochs:

- `dense`: the course's encoder and decoder with one hidden Dense(512) layer each;
- `dense_annealed`: the same, with beta raised from 0 to its target over the first
  `--kl-anneal` epochs (Bowman et al. 2016): the decoder first learns to use z, then the KL
  term pulls the posteriors towards the prior;
- `conv`: two stride-2 convolutions and a Dense(256) layer before the latent heads;
- `keras_io_reference`: the keras.io VAE example's architecture (Dense(16) before the heads),
  the bar `conv` must meet: a test negative ELBO at least as good;
- `conv_beta<B>`: `conv` with beta = `--contrast-beta` (a beta-VAE, Higgins et al. 2017). The
  stronger pull to the prior switches off dimensions the data does not need and makes the
  remaining ones vary more independently: compare its latent traversals with `conv`'s.

Every model is judged with beta = 1 on the test set: negative ELBO in nats per image, its
reconstruction and KL parts, KL per latent dimension and the number of active units (a
dimension with KL ~ 0 is ignored by the decoder: posterior collapse made visible).

Pixel intensities in [0, 1] are used as Bernoulli targets, as the course does; for grey-level
images that is not a normalised likelihood, so compare these nats between models on the same
data, not with published binarised-MNIST numbers.

Run:  python chapters/ch3_vae.py [--dataset fashion_mnist] [--latent-dim 10] [--beta 1]
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

from common import figures
from common.atomic import save_model
from common.cli import (
    make_parser,
    non_negative_float,
    non_negative_int,
    parse,
    plural,
    positive_int,
    run_main,
)
from common.data import check_square_side
from common.distribute import draw
from common.eval.classifier import FeatureClassifier, describe_fid
from common.latent import traversal_codes
from common.pipeline import batches
from common.results import write_metrics
from common.run import seed_everything, start
from common.summary import print_summary
from common.training import cosine_adam, fit
from common.vae.annealing import KLAnnealing
from common.vae.elbo import ElboMonitor, bernoulli_nll, elbo_report, kl_to_standard_normal

CHAPTER = "ch3_vae"
PACKAGE = "chapters.ch3_vae"  # saved models name their layers "chapters.ch3_vae>..."
IMAGES_PER_MODEL = 300_000  # default budget: 5 epochs of 60,000 images per model
MONITORED_TEST_IMAGES = 2_000  # held-out images scored after every epoch
REFERENCE_HIDDEN = 16  # the keras.io example's Dense layer before the latent heads
CONV_HIDDEN = 256


# ---------------------------------------------------------------------------------------------
# Encoders and decoders. Every encoder maps a 28x28x1 image (and, for the conditional VAE of
# ch3_cvae.py, a one-hot label) to the two heads `z_mean` and `z_log_var` of q(z | x); every
# decoder maps z (and the label) to Bernoulli pixel probabilities of shape 28x28x1. Two
# families: dense, the course's form with one hidden Dense layer each way (Kingma & Welling
# 2014, sec. 5); conv, two stride-2 convolutions (28 -> 14 -> 7) and a Dense layer before the
# heads, mirrored by Conv2DTranspose in the decoder. `hidden=16` is exactly the keras.io VAE
# example (fchollet, "Variational AutoEncoder").

IMAGE_SHAPE = (28, 28, 1)  # the default; colour data (32x32x3) gives its own shape


def _inputs(condition_dim: int, image_shape=IMAGE_SHAPE):
    image = keras.Input(image_shape, name="image")
    label = keras.Input((condition_dim,), name="label") if condition_dim else None
    return image, label


def _heads(h, latent_dim: int, image, label, name: str) -> keras.Model:
    mean = layers.Dense(latent_dim, name="z_mean")(h)
    log_var = layers.Dense(latent_dim, name="z_log_var")(h)
    inputs = [image, label] if label is not None else image
    return keras.Model(inputs, [mean, log_var], name=name)


def _with_label(h, label):
    """Append the one-hot label to a feature vector (the conditional VAE's encoder and decoder
    both see it: Sohn et al. 2015)."""
    return h if label is None else layers.Concatenate(name="with_label")([h, label])


def dense_encoder(latent_dim: int, *, hidden: int = 512, condition_dim: int = 0,
                  name: str = "encoder", image_shape=IMAGE_SHAPE) -> keras.Model:
    """Flatten -> Dense(hidden, relu) -> z_mean, z_log_var."""
    image, label = _inputs(condition_dim, image_shape)
    h = _with_label(layers.Flatten(name="flatten")(image), label)
    h = layers.Dense(hidden, activation="relu", name="hidden")(h)
    return _heads(h, latent_dim, image, label, name)


def conv_encoder(latent_dim: int, *, hidden: int = 256, condition_dim: int = 0,
                 name: str = "encoder", image_shape=IMAGE_SHAPE) -> keras.Model:
    """Conv2D 32, 64 (3x3, stride 2, relu) -> Flatten -> Dense(hidden, relu) -> heads."""
    image, label = _inputs(condition_dim, image_shape)
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv_1")(image)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv_2")(h)
    h = _with_label(layers.Flatten(name="flatten")(h), label)
    h = layers.Dense(hidden, activation="relu", name="hidden")(h)
    return _heads(h, latent_dim, image, label, name)


def dense_gaussian(in_dim: int, latent_dim: int, *, hidden: int = 256,
                   name: str) -> keras.Model:
    """A vector -> Dense(hidden, relu) -> mean and log variance of a Gaussian over the next
    latent: q(z2 | z1) and p(z1 | z2) of a hierarchical VAE."""
    inputs = keras.Input((in_dim,), name="input")
    h = layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, [layers.Dense(latent_dim, name="mean")(h),
                                layers.Dense(latent_dim, name="log_var")(h)], name=name)


def _decoder_inputs(latent_dim: int, condition_dim: int):
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((condition_dim,), name="label") if condition_dim else None
    return z, label, ([z, label] if label is not None else z)


def dense_decoder(latent_dim: int, *, hidden: int = 512, condition_dim: int = 0,
                  name: str = "decoder", image_shape=IMAGE_SHAPE) -> keras.Model:
    """Dense(hidden, relu) -> Dense(784, sigmoid) -> Reshape(28, 28, 1)."""
    z, label, inputs = _decoder_inputs(latent_dim, condition_dim)
    h = layers.Dense(hidden, activation="relu", name="hidden")(_with_label(z, label))
    if label is not None:  # the label again, next to the hidden features
        h = layers.Concatenate(name="hidden_with_label")([h, label])
    h = layers.Dense(int(np.prod(image_shape)), activation="sigmoid",
                     name="pixel_probabilities")(h)
    return keras.Model(inputs, layers.Reshape(image_shape, name="to_image")(h), name=name)


def conv_decoder(latent_dim: int, *, condition_dim: int = 0,
                 name: str = "decoder", image_shape=IMAGE_SHAPE) -> keras.Model:
    """Dense(7*7*64, relu) -> Reshape -> Conv2DTranspose 64, 32 (stride 2, relu) ->
    Conv2DTranspose 1 (sigmoid): 7 -> 14 -> 28 pixels a side (8 -> 16 -> 32, with 3 output
    channels, for 32x32 colour images)."""
    z, label, inputs = _decoder_inputs(latent_dim, condition_dim)
    side = image_shape[0] // 4
    h = layers.Dense(side * side * 64, activation="relu", name="expand")(_with_label(z, label))
    h = layers.Reshape((side, side, 64), name="to_feature_maps")(h)
    h = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu",
                               name="deconv_1")(h)
    h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                               name="deconv_2")(h)
    out = layers.Conv2DTranspose(image_shape[-1], 3, padding="same", activation="sigmoid",
                                 name="pixel_probabilities")(h)
    return keras.Model(inputs, out, name=name)


# ---------------------------------------------------------------------------------------------
# The two layers that make an autoencoder variational.

@keras.saving.register_keras_serializable(package=PACKAGE)
class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I): the reparameterisation trick.

    Sampling z directly from N(mean, exp(log_var)) would block the gradient; drawn this way
    the randomness sits in eps, and z is a differentiable function of mean and log_var, so
    the encoder learns through it. eps comes from `keras.random.normal` with the layer's own
    `SeedGenerator`: a seeded model draws the same sequence every run, each call afresh.
    With `return_noise=True` the layer returns [z, eps], for a loss that needs the sample's
    density (common.vae.elbo.sample_log_density).
    """

    def __init__(self, seed: int | None = None, return_noise: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.return_noise = seed, return_noise
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_var = inputs
        # this replica's rows under --distribute; the policy's compute dtype under --precision
        eps = draw(keras.random.normal, ops.shape(mean), dtype=mean.dtype,
                   seed=self.seed_generator)
        z = mean + ops.exp(0.5 * log_var) * eps
        return [z, eps] if self.return_noise else z

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "return_noise": self.return_noise}


@keras.saving.register_keras_serializable(package=PACKAGE)
class VaeLossLayer(layers.Layer):
    """The loss, added by a layer: mean over the batch of

        -log p(x | z) + beta * KL(q(z | x) || N(0, I))
          = sum over pixels of BCE(x, probabilities)
            - beta / 2 * sum_j (1 + log_var_j - mean_j^2 - exp(log_var_j))

    registered with `self.add_loss` (Keras 3 has no symbolic `model.add_loss`, but a layer
    calling it inside `call` works). Inputs: [x, decoded probabilities, mean, log_var];
    output: the probabilities, unchanged. `beta` is a non-trainable weight, so a callback can
    change it between steps (KL annealing) and the compiled training step sees the new value.
    """

    def __init__(self, beta: float = 1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # the loss in float32 under --precision
        super().__init__(**kwargs)
        self.beta = self.add_weight(shape=(), initializer=keras.initializers.Constant(beta),
                                    trainable=False, name="beta")

    def call(self, inputs):
        x, probabilities, mean, log_var = inputs
        reconstruction = bernoulli_nll(x, probabilities)
        kl = kl_to_standard_normal(mean, log_var)
        self.add_loss(ops.mean(reconstruction + self.beta * kl))
        return probabilities

    def get_config(self):
        return {**super().get_config(), "beta": float(ops.convert_to_numpy(self.beta))}


# ---------------------------------------------------------------------------------------------
# The whole VAE, and the models this chapter compares.

def assemble_vae(encoder: keras.Model, decoder: keras.Model, *, beta: float = 1.0,
                 seed: int | None = None, name: str = "vae") -> keras.Model:
    """image (and label) -> encoder -> Sampling -> decoder -> VaeLossLayer.

    The loss layer adds  mean(-log p(x | z) + beta * KL)  with `add_loss`, so the model
    compiles with no loss and trains on images alone (or on {"image", "label"} dicts).
    """
    conditional = isinstance(encoder.input, list)
    image = keras.Input((encoder.input[0] if conditional else encoder.input).shape[1:],
                        name="image")
    label = keras.Input(encoder.input[1].shape[1:], name="label") if conditional else None
    mean, log_var = encoder([image, label] if conditional else image)
    z = Sampling(seed=seed, name="sampling")([mean, log_var])
    probabilities = decoder([z, label] if conditional else z)
    output = VaeLossLayer(beta=beta, name="vae_loss")([image, probabilities, mean, log_var])
    return keras.Model({"image": image, "label": label} if conditional else image, output,
                       name=name)


@dataclass(frozen=True)
class Spec:
    """One model of the comparison: its architecture, beta and annealing epochs."""
    name: str
    family: str  # "dense" or "conv"
    hidden: int
    beta: float
    anneal_epochs: int = 0


def build(spec: Spec, latent_dim: int, seed: int | None = None, image_shape=IMAGE_SHAPE):
    """The add_loss VAE for `spec` (encoder and decoder are its layers `encoder`, `decoder`)."""
    if spec.family == "dense":
        encoder = dense_encoder(latent_dim, hidden=spec.hidden, image_shape=image_shape)
        decoder = dense_decoder(latent_dim, hidden=spec.hidden, image_shape=image_shape)
    else:
        encoder = conv_encoder(latent_dim, hidden=spec.hidden, image_shape=image_shape)
        decoder = conv_decoder(latent_dim, image_shape=image_shape)
    start_beta = 0.0 if spec.anneal_epochs else spec.beta
    return assemble_vae(encoder, decoder, beta=start_beta, seed=seed, name=spec.name)


def print_summaries(models: dict) -> None:
    """The encoders and decoders of the three architectures, then the whole conv VAE."""
    for name in ("dense", "conv", "keras_io_reference"):
        print_summary(models[name].get_layer("encoder"))
        print_summary(models[name].get_layer("decoder"))
    print_summary(models["conv"])


def dead_hidden_units(model, x: np.ndarray) -> int:
    """How many of the encoder's hidden ReLU units output 0 for every image of `x`. A dead
    unit passes no gradient and never recovers; an early phase in which the KL term pulls all
    codes onto the prior can switch many off (see docs/results.md)."""
    encoder = model.get_layer("encoder")
    hidden = keras.Model(encoder.inputs, encoder.get_layer("hidden").output)
    return int(np.sum(hidden.predict(x, batch_size=500, verbose=0).max(axis=0) <= 0))


def specs(beta: float, contrast_beta: float, anneal_epochs: int) -> list[Spec]:
    """The models one run trains (the annealed and contrast models only when asked for)."""
    chosen = [Spec("dense", "dense", 512, beta)]
    if anneal_epochs:
        chosen.append(Spec("dense_annealed", "dense", 512, beta, anneal_epochs))
    chosen += [Spec("conv", "conv", CONV_HIDDEN, beta),
               Spec("keras_io_reference", "conv", REFERENCE_HIDDEN, 1.0)]
    if contrast_beta:
        chosen.append(Spec(f"conv_beta{contrast_beta:g}", "conv", CONV_HIDDEN, contrast_beta))
    return chosen


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         learning_rate=1e-3)
    parser.add_argument("--latent-dim", type=positive_int, default=10,
                        help="size of z for every model (default 10)")
    parser.add_argument("--beta", type=non_negative_float, default=1.0,
                        help="KL weight of the dense and conv models (default 1)")
    parser.add_argument("--contrast-beta", type=non_negative_float, default=4.0,
                        help="also train conv with this beta, for the traversals; 0 skips it "
                             "(default 4)")
    parser.add_argument("--kl-anneal", type=non_negative_int, default=3,
                        help="also train the dense model with beta raised from 0 over this "
                             "many epochs; 0 skips it (default 3)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    chosen = specs(args.beta, args.contrast_beta, args.kl_anneal)
    if args.summary:
        print_summaries({s.name: build(s, args.latent_dim) for s in chosen})
        return 0
    with start(args, images=IMAGES_PER_MODEL) as run:
        # The data: a few training images of each class; pixel intensities are the Bernoulli
        # targets of the loss.
        data = run.data
        check_square_side(data, multiple=4)  # the conv models halve the image twice
        figures.data_grid(data, run.out / "data.png")

        # The models of the comparison, each an encoder, Sampling, a decoder and the loss layer.
        models = {s.name: build(s, args.latent_dim, seed=run.seed, image_shape=data.image_shape)
                  for s in chosen}
        print_summaries(models)

        # Training: each model in turn, compiled with no loss (its layer adds it) and fitted on
        # images alone; the held-out negative ELBO is logged after every epoch.
        runs, reports = train_all(models, chosen, run, args.learning_rate)

        # The comparison on the test set, all with beta = 1: -ELBO, its two parts, and how
        # many latent dimensions each model uses.
        results = compare(models, chosen, runs, reports, data)
        gap = (results["conv"]["test_nelbo_nats"]
               - results["keras_io_reference"]["test_nelbo_nats"])
        print(f"conv vs the keras.io reference: {gap:+.2f} nats per image "
              f"({'meets' if gap <= 0 else 'misses'} the bar: at least as good)")

        # New images, z ~ N(0, I) through each decoder, scored by the judge.
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        score_samples(models, results, judge, data, args.latent_dim,
                      count=200 if run.quick else 1000, seed=run.seed + 100)

        # The figures: reconstructions, samples, latent traversals, KL per dimension, the
        # annealing curves; then the models and metrics.json.
        _figures(run.out, data, chosen, models, reports, runs, args.latent_dim)
        for name, model in models.items():
            save_model(model, run.out / f"{name}.keras")
        write_metrics(run, models=results, judge=judge, extra={
            "latent_dim": args.latent_dim, "learning_rate": args.learning_rate,
            "conv_minus_reference_nelbo_nats": round(gap, 2)})
    print(run.closing(f"\nFigures, models and metrics.json are in {run.out}/ "
                      "(start with traversals_conv.png and kl_per_dimension.png)"))
    return 0


def train_all(models: dict, chosen: list[Spec], run, learning_rate: float):
    """Each model in turn, from the same shuffling order, with the held-out ELBO logged per
    epoch; returns their training records and test-set ELBO reports."""
    data = run.data
    print(f"training {len(models)} models for {plural(run.epochs, 'epoch')} each")
    steps = run.epochs * (len(data.x_train) // run.batch_size)
    monitored = data.x_test[:MONITORED_TEST_IMAGES]
    runs, reports = {}, {}
    for spec in chosen:
        model = models[spec.name]
        seed_everything(run.seed)  # every model starts from the same shuffling order
        model.compile(optimizer=cosine_adam(learning_rate, steps))
        callbacks = [ElboMonitor(monitored)]
        if spec.anneal_epochs:
            callbacks.append(KLAnnealing("vae_loss", target=spec.beta,
                                         epochs=spec.anneal_epochs))
        print(f"\n== {spec.name} (beta {spec.beta:g}"
              f"{f', annealed over {spec.anneal_epochs} epochs' if spec.anneal_epochs else ''}"
              f", {model.count_params():,} parameters) ==")
        train = batches(data.x_train, batch_size=run.batch_size, seed=run.seed)
        runs[spec.name] = fit(model, train, epochs=run.epochs, batch_size=run.batch_size,
                              out=run.out, tag=spec.name, callbacks=callbacks,
                              nan_hint="try a lower --learning-rate or --beta")
        reports[spec.name] = elbo_report(model.get_layer("encoder"),
                                         model.get_layer("decoder"), data.x_test,
                                         seed=run.seed)
    return runs, reports


def compare(models, chosen, runs, reports, data) -> dict:
    """The table of the models: -ELBO and its parts (beta = 1), active units, dead ReLUs."""
    results = {}
    print(f"\n{'model':<22}{'params':>10}{'-ELBO':>9}{'recon':>9}{'KL':>7}{'active':>8}"
          f"{'dead ReLU':>11}{'img/s':>8}   (test set, nats per image, beta = 1)")
    for spec in chosen:
        r = {**reports[spec.name].summary(), "beta": spec.beta,
             "kl_anneal_epochs": spec.anneal_epochs, "params": models[spec.name].count_params(),
             "dead_hidden_units": dead_hidden_units(models[spec.name], data.x_test),
             "hidden_units": spec.hidden,
             **runs[spec.name].speed()}
        results[spec.name] = r
        print(f"{spec.name:<22}{r['params']:>10,}{r['test_nelbo_nats']:>9.2f}"
              f"{r['test_reconstruction_nats']:>9.2f}{r['test_kl_nats']:>7.2f}"
              f"{r['active_units']:>5}/{r['latent_dim']:<2}"
              f"{r['dead_hidden_units']:>7}/{r['hidden_units']:<3}"
              f"{r['train_images_per_s']:>8,}")
    return results


def score_samples(models, results, judge, data, latent_dim: int, count: int, seed: int):
    """New images, z ~ N(0, I) through each decoder, scored by the judge (into `results`)."""
    prior = np.random.default_rng(seed).standard_normal((count, latent_dim)).astype("float32")
    for name, model in models.items():
        drawn = model.get_layer("decoder").predict(prior, verbose=0)
        results[name].update(judge.fid_report(data, drawn))
        print(f"{name} samples: {describe_fid(results[name])}")


def _figures(out, data, chosen, models, reports, runs, latent_dim) -> None:
    names = [s.name for s in chosen]
    picks = np.concatenate([np.flatnonzero(data.y_test == c)[:1]
                            for c in range(data.num_classes)])
    x = data.x_test[picks]
    rows = [x] + [models[n].get_layer("decoder").predict(reports[n].means[picks], verbose=0)
                  for n in names]
    figures.image_grid(np.concatenate(rows), out / "reconstructions.png", ncols=len(picks),
                       row_labels=["input", *names],
                       suptitle="Test images and their reconstructions (decoded posterior mean)")
    prior = np.random.default_rng(0).standard_normal((10, latent_dim)).astype("float32")
    figures.image_grid(np.concatenate([models[n].get_layer("decoder").predict(prior, verbose=0)
                                       for n in names]), out / "samples.png", ncols=10,
                       row_labels=names, suptitle="New images: the same 10 draws z ~ N(0, I) "
                                                  "decoded by each model")
    values = np.linspace(-3, 3, 11).astype("float32")
    for name in [n for n in names if n.startswith("conv")]:
        kl = reports[name].kl_per_dim.mean(axis=0)
        order = np.argsort(-kl)  # most informative dimension on top
        base = reports[name].means[picks[0]]
        codes = traversal_codes(base, values).reshape(latent_dim, len(values), latent_dim)
        images = models[name].get_layer("decoder").predict(codes[order].reshape(-1, latent_dim),
                                                           verbose=0)
        figures.image_grid(images, out / f"traversals_{name}.png", ncols=len(values),
                           row_labels=[f"z{j} KL {kl[j]:.2f}" for j in order],
                           titles=[f"{v:+.1f}" if i < len(values) else ""
                                   for i, v in enumerate(np.tile(values, latent_dim))],
                           suptitle=f"{name}: one latent dimension varied per row (-3..3), "
                                    "the rest at one image's posterior mean")
    figures.bars({n: np.sort(reports[n].kl_per_dim.mean(axis=0))[::-1].tolist() for n in names},
                 out / "kl_per_dimension.png", title="KL per latent dimension (test set); "
                                                     "~0 means the dimension is unused",
                 xlabel="latent dimensions, sorted by KL", ylabel="nats per image")
    dense = [s for s in chosen if s.family == "dense"]
    betas = {s.name: runs[s.name].history.get("beta", [s.beta] * len(runs[s.name].history["loss"]))
             for s in dense}
    figures.curve_panels(
        [("beta during training", betas, "beta"),
         ("held-out KL", {s.name: runs[s.name].history["val_kl"] for s in dense},
          "nats per image"),
         ("held-out reconstruction", {s.name: runs[s.name].history["val_reconstruction"]
                                      for s in dense}, "nats per image")],
        out / "kl_annealing.png", suptitle="KL annealing: dense VAE with and without a beta "
                                           "warm-up")
    figures.curves({n: runs[n].history["val_nelbo"] for n in names}, out / "nelbo_curves.png",
                   title="Held-out negative ELBO per epoch (beta = 1)",
                   ylabel="nats per image")


if __name__ == "__main__":
    sys.exit(run_main(main))
