"""Chapter 3: the conditional VAE: tell the model which class to draw.

A conditional VAE (Sohn et al. 2015; Kingma et al. 2014, "M2") gives the one-hot label y to
both halves: q(z | x, y) and p(x | z, y). The loss is the ELBO of p(x | y),

    -ELBO = E_q[-log p(x | z, y)] + KL(q(z | x, y) || N(0, I)),

added by the same `VaeLossLayer` as the unconditional model. Because the decoder is told the
class, z no longer needs to encode it: z keeps what the label does not say (thickness, slant,
size, brightness: the "style"). So one z decoded with each label draws every class in one
style, and a test image encoded with its own label and decoded with another is an analogy.

Judged by the judging classifier (common.eval.classifier): the conditional accuracy is the
share of images drawn for class c that the classifier calls c.

Three things decide it, and the run measures each (numbers in docs/results.md).
- How recognisable the decoder's images are. The run reports the classifier's accuracy on the
  model's reconstructions of the test set: a sample drawn the way training codes are spread
  is about as recognisable as the model's own reconstruction of a real image. A Bernoulli VAE
  pays for the KL term with blur, and blur erases what tells Fashion-MNIST classes apart
  (sandal straps, shirt buttons), so the defaults give z room (32 dimensions) and the KL term
  little weight (beta = 0.1).
- Where z comes from. Such a sharp model puts little weight on the KL, so the codes of a
  class fill only part of N(0, I), and z ~ N(0, I) decodes to blends. With `--prior fitted`
  (the default) a Gaussian mixture per class is fitted to the training codes after training,
  by the EM of the classical chapter (common.vae.class_prior), and z is drawn from the
  requested class's mixture. `--prior normal` keeps N(0, I), for comparison.
- How far from the middle of its class z is drawn. `--temperature` tau shrinks each fitted
  Gaussian to tau^2 its covariance, the reduced-temperature sampling of Glow and NVAE: z
  near a component's mean decodes to a typical member of the class, more recognisable and
  less varied (the same trade as a GAN's truncation or a diffusion model's guidance scale).
  The run sweeps tau and metrics.json keeps the sweep.

Run:  python chapters/ch3_cvae.py [--dataset fashion_mnist] [--latent-dim 32] [--beta 0.1]
                                 [--prior fitted|normal] [--temperature 0.7]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import numpy as np

from chapters.ch3_vae import assemble_vae, conv_decoder, conv_encoder, dense_decoder, dense_encoder
from common import figures
from common.atomic import save_model
from common.cli import (
    check_class_index,
    make_parser,
    non_negative_float,
    non_negative_int,
    parse,
    positive_int,
    run_main,
)
from common.eval.classifier import FeatureClassifier, describe_scores
from common.pipeline import labelled_inputs
from common.results import write_metrics
from common.run import start
from common.summary import print_summary
from common.training import cosine_adam, fit
from common.vae.class_prior import ClassPrior
from common.vae.elbo import ElboMonitor, elbo_report

CHAPTER = "ch3_cvae"
IMAGES = 600_000  # default budget: 10 epochs of 60,000 images
SAMPLES_PER_CLASS = 500  # 5,000 generated images for the conditional accuracy and FID
QUICK_SAMPLES_PER_CLASS = 50  # --quick: 500, a smoke test of the same steps
BARS = {"mnist": 0.95, "fashion_mnist": 0.85}


LATENT_DIM, BETA = 32, 0.1  # a sharp decoder; z then comes from the fitted prior
PRIOR_COMPONENTS = 10  # Gaussians per class in the fitted prior
TEMPERATURE = 0.7  # the fitted prior's spread when sampling (ClassPrior.sample)
TEMPERATURES = (1.0, 0.85, 0.7, 0.5)  # the sweep reported in metrics.json


def build_cvae(num_classes: int = 10, latent_dim: int = LATENT_DIM, family: str = "conv",
               seed: int | None = None, beta: float = BETA):
    """The conditional VAE: encoder(image, label) -> z -> decoder(z, label)."""
    if family == "dense":
        encoder = dense_encoder(latent_dim, condition_dim=num_classes)
        decoder = dense_decoder(latent_dim, condition_dim=num_classes)
    else:
        encoder = conv_encoder(latent_dim, condition_dim=num_classes)
        decoder = conv_decoder(latent_dim, condition_dim=num_classes)
    return assemble_vae(encoder, decoder, beta=beta, seed=seed, name=f"{family}_cvae")


def one_hot(labels, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[np.asarray(labels)]


def draw(decoder, labels, num_classes: int, z: np.ndarray) -> np.ndarray:
    """Decode codes `z` with the given class labels (one image per row of z)."""
    return decoder.predict([z, one_hot(labels, num_classes)], batch_size=500, verbose=0)


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         learning_rate=1e-3)
    parser.add_argument("--latent-dim", type=positive_int, default=LATENT_DIM,
                        help=f"size of z (default {LATENT_DIM})")
    parser.add_argument("--family", choices=("conv", "dense"), default="conv",
                        help="encoder/decoder family of chapters/ch3_vae.py (default conv)")
    parser.add_argument("--beta", type=non_negative_float, default=BETA,
                        help=f"KL weight (default {BETA}; see the module docstring)")
    parser.add_argument("--prior", choices=("fitted", "normal"), default="fitted",
                        help="where sampled z come from: a Gaussian mixture per class fitted "
                             "to the training codes, or N(0, I) (default fitted)")
    parser.add_argument("--temperature", type=non_negative_float, default=TEMPERATURE,
                        help="spread of the fitted prior's Gaussians, 1 = as fitted; lower "
                             f"draws more typical images (default {TEMPERATURE})")
    parser.add_argument("--show-class", type=non_negative_int, default=0,
                        help="the class drawn with many z in one_class_many_z.png (default 0)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        print_summary(build_cvae(latent_dim=args.latent_dim, family=args.family), parts=True)
        return 0

    with start(args, images=IMAGES, image_shape=(28, 28, 1)) as run:
        # The data: images with their labels, which the model is given as one-hot vectors.
        data, k = run.data, run.data.num_classes
        check_class_index(parser, "--show-class", args.show_class, k)
        figures.data_grid(data, run.out / "data.png")

        # The conditional VAE: chapter 3's encoder and decoder, each told the label.
        cvae = build_cvae(k, args.latent_dim, args.family, run.seed, args.beta)
        print_summary(cvae, parts=True)

        # Training on (image, label) pairs; its loss layer adds -ELBO with a small beta.
        trained, report = train(cvae, run, args.learning_rate)
        encoder, decoder = cvae.get_layer("encoder"), cvae.get_layer("decoder")

        # Asking for a class: z ~ N(0, I) with every label, and the judge's verdicts.
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        rng = np.random.default_rng(run.seed)
        asked = np.repeat(np.arange(k), QUICK_SAMPLES_PER_CLASS if run.quick else SAMPLES_PER_CLASS)
        bar = BARS.get(data.name)
        normal = judge.score_conditional(
            draw(decoder, asked, k, normal_codes(rng, len(asked), args.latent_dim)), asked,
            data, bar)
        # A better prior for z: a Gaussian mixture per class, fitted by EM to the training
        # codes, sampled at several temperatures.
        scores, prior, sweep = normal, None, {}
        if args.prior == "fitted":
            prior = fit_class_prior(encoder, data, run.seed, run.out)
            sweep = temperature_sweep(judge, decoder, prior, asked, data, rng, args.temperature,
                                      bar)
            scores = sweep[args.temperature]
        # How far samples can go: the judge on this model's reconstructions of the test set.
        ceiling = reconstruction_accuracy(judge, decoder, report.means, data.y_test, k)
        print(f"test -ELBO {report.nelbo:.2f} nats per image; z ~ N(0, I): "
              f"{describe_scores(normal)}")
        if prior is not None:
            print(f"z ~ the fitted p(z | y) at temperature {args.temperature:g}: "
                  f"{describe_scores(scores)}")
        print(f"the judge scores {judge.test_accuracy:.3f} on the test set and "
              f"{ceiling['reconstruction_accuracy']:.3f} on this model's reconstructions of it "
              "(what samples at temperature 1 reach)")
        # The figures: one style drawn as every class, one class with many styles, analogies;
        # then the model and metrics.json.
        _figures(run.out, data, decoder, encoder, trained, rng, prior, args.temperature,
                 args.show_class, args.latent_dim)
        save_model(cvae, run.out / "cvae.keras")
        result = {**report.summary(), **scores, **ceiling, "prior": args.prior,
                  "normal_prior_conditional_accuracy": normal["conditional_accuracy"],
                  "normal_prior_classifier_fid": normal["classifier_fid"],
                  **({} if prior is None else {"temperature": args.temperature,
                                               "by_temperature": {
                      f"{tau:g}": {key: s[key] for key in ("conditional_accuracy",
                                                           "classifier_fid")}
                      for tau, s in sweep.items()}}),
                  "samples_scored": len(asked), "params": cvae.count_params(),
                  **trained.speed()}
        write_metrics(run, models={cvae.name: result}, judge=judge,
                      extra={"latent_dim": args.latent_dim, "beta": args.beta})
    print(run.closing(f"\nFigures, the model and metrics.json are in {run.out}/ "
                      "(start with same_z_every_class.png)"))
    return 0


def train(cvae, run, learning_rate: float):
    """Fit on (image, label) pairs with the held-out -ELBO logged per epoch; returns the
    training record and the test set's ELBO report."""
    data, k = run.data, run.data.num_classes
    steps = run.epochs * (len(data.x_train) // run.batch_size)
    cvae.compile(optimizer=cosine_adam(learning_rate, steps))
    test_labels = one_hot(data.y_test, k)
    monitor = ElboMonitor(data.x_test[:2000], test_labels[:2000])
    train_set = labelled_inputs(data.x_train, data.y_train, k, batch_size=run.batch_size,
                                seed=run.seed)
    trained = fit(cvae, train_set, epochs=run.epochs, batch_size=run.batch_size, out=run.out,
                  tag=cvae.name, callbacks=[monitor], nan_hint="try a lower --learning-rate")
    report = elbo_report(cvae.get_layer("encoder"), cvae.get_layer("decoder"), data.x_test,
                         test_labels, seed=run.seed)
    return trained, report


def fit_class_prior(encoder, data, seed: int, out: Path) -> ClassPrior:
    """p(z | y): a mixture of Gaussians per class, fitted by EM to the training codes."""
    print(f"fitting p(z | y): {PRIOR_COMPONENTS} Gaussians per class, by EM, to the "
          "posterior means of the training images")
    k = data.num_classes
    codes, _ = encoder.predict([data.x_train, one_hot(data.y_train, k)], batch_size=500,
                               verbose=0)
    prior = ClassPrior.fit(codes, data.y_train, k, components=PRIOR_COMPONENTS, seed=seed)
    prior.save(out / "class_prior.npz")
    return prior


def temperature_sweep(judge, decoder, prior, asked, data, rng, chosen: float, bar) -> dict:
    """The judge's scores of samples from the fitted prior at each temperature."""
    sweep = {}
    for tau in sorted({*TEMPERATURES, chosen}, reverse=True):
        sweep[tau] = judge.score_conditional(
            draw(decoder, asked, data.num_classes, prior.sample(asked, rng, tau)), asked,
            data, bar)
        print(f"  temperature {tau:g}: {describe_scores(sweep[tau])}")
    return sweep


def reconstruction_accuracy(judge, decoder, means, labels, k: int) -> dict:
    """The classifier's accuracy on the decoded posterior means of the test set, overall and
    per class: what samples drawn like the training codes reach. A class the classifier
    misses on reconstructions it misses on such samples too; only codes nearer the middle of
    the class (a temperature below 1) do better, by giving up variety."""
    labels = np.asarray(labels)
    hits = judge.predict(draw(decoder, labels, k, np.asarray(means, "float32"))) == labels
    return {"reconstruction_accuracy": round(float(np.mean(hits)), 4),
            "reconstruction_accuracy_per_class": [  # None: no test image of that class
                round(float(np.mean(hits[labels == c])), 3) if (labels == c).any() else None
                for c in range(k)]}


def normal_codes(rng, n: int, latent_dim: int) -> np.ndarray:
    return rng.standard_normal((n, latent_dim)).astype("float32")


def _figures(out, data, decoder, encoder, trained, rng, prior, tau: float, show: int,
             d: int) -> None:
    names, k = data.class_names, data.num_classes
    # Style codes: from N(0, I), or from the fitted prior of random classes (codes the decoder
    # has seen), then decoded with every label.
    z = normal_codes(rng, 10, d) if prior is None else prior.sample(rng.integers(k, size=10),
                                                                    rng, tau)
    source = "z ~ N(0, I)" if prior is None else f"z from the fitted prior, tau {tau:g}"
    grid = draw(decoder, np.repeat(np.arange(k), len(z)), k, np.tile(z, (k, 1)))
    figures.image_grid(grid, out / "same_z_every_class.png", ncols=len(z), row_labels=names,
                       suptitle=f"One row per class, one column per z ({source}): the style "
                                "stays, the class changes")
    asked = np.full(40, show)
    many = normal_codes(rng, 40, d) if prior is None else prior.sample(asked, rng, tau)
    where = "N(0, I)" if prior is None else f"its fitted prior, tau {tau:g}"
    figures.image_grid(draw(decoder, asked, k, many), out / "one_class_many_z.png", ncols=10,
                       suptitle=f"Class '{names[show]}' drawn with 40 different z "
                                f"({where})")
    picks = np.concatenate([np.flatnonzero(data.y_test == c)[:1] for c in range(k)])
    mean, _ = encoder.predict([data.x_test[picks], one_hot(data.y_test[picks], k)], verbose=0)
    styles = draw(decoder, np.tile(np.arange(k), len(picks)), k, np.repeat(mean, k, axis=0))
    rows = np.concatenate([np.concatenate([data.x_test[picks][i:i + 1],
                                           styles[i * k:(i + 1) * k]]) for i in range(len(picks))])
    figures.image_grid(rows, out / "analogies.png", ncols=k + 1,
                       titles=["input", *names] + [""] * (len(rows) - k - 1),
                       suptitle="Each test image encoded with its own label, decoded with "
                                "every label")
    figures.curves({"held-out -ELBO": trained.history["val_nelbo"],
                    "held-out reconstruction": trained.history["val_reconstruction"]},
                   out / "nelbo_curve.png", title="Conditional VAE: held-out nats per image",
                   ylabel="nats per image")


if __name__ == "__main__":
    sys.exit(run_main(main))
