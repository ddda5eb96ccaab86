"""Chapter 3: the VQ-VAE (van den Oord et al. 2017) and a PixelCNN prior over its codes.

Instead of a Gaussian z, the encoder's 7x7 grid of vectors is snapped to the nearest of K
learned codebook vectors, so every image becomes a 7x7 grid of integers in 0..K-1 (49 * log2 K
bits), and the decoder rebuilds the image from those codes (common.vq.quantizer: nearest
neighbour, straight-through gradient, codebook and commitment losses, random restarts of dead
codes). Training minimises

    mean squared pixel error + codebook loss + 0.25 * commitment loss.

A VQ-VAE trained this way has no prior to sample from: its "prior" is uniform and fixed during
training. The second stage fits one: a PixelCNN (common.vq.masked_conv) learns p(code grid) over the
training images' codes, autoregressively, and new images are its samples, decoded. The run
compares it with the simplest alternative, drawing every position independently from that
position's code frequencies, to show what modelling the dependencies buys.

Bars: at most 10% of the codebook dead after training; test MSE better than chapter 2's
2-D CNN autoencoder's on the same data.

Run:  python chapters/ch3_vqvae.py [--dataset fashion_mnist] [--codes 64]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
from keras import layers, ops

from common import figures
from common.atomic import save_model
from common.cli import make_parser, parse, plural, positive_int, run_main
from common.eval.classifier import FeatureClassifier, describe_fid
from common.pipeline import batches, one_hot_sequences
from common.results import find_run, write_metrics
from common.run import epochs_for, start
from common.summary import print_summary
from common.training import cosine_adam, fit
from common.vq.masked_conv import MaskedConv2D, sample
from common.vq.quantizer import CodebookRestart, VectorQuantizer, usage

CHAPTER = "ch3_vqvae"
GRID = (7, 7)
IMAGES = 300_000  # VQ-VAE budget: 5 epochs of 60,000 images
PRIOR_IMAGES = 300_000  # PixelCNN budget: 5 epochs of 60,000 code grids
DEAD_BAR = 0.10
SCORED_SAMPLES = 1_000


def build_encoder(code_dim: int) -> keras.Model:
    """28x28x1 -> Conv2D 32, 64 (stride 2) -> 1x1 Conv2D to a 7x7 grid of code_dim vectors."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv_1"),
        layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv_2"),
        layers.Conv2D(code_dim, 1, name="to_code_space"),
    ], name="encoder")


def build_decoder(code_dim: int) -> keras.Model:
    """7x7 grid of code vectors -> Conv2D 64 -> Conv2DTranspose 32, 32 (stride 2) -> sigmoid."""
    return keras.Sequential([
        keras.Input((*GRID, code_dim)),
        layers.Conv2D(64, 3, padding="same", activation="relu", name="conv"),
        layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                               name="deconv_1"),
        layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                               name="deconv_2"),
        layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="pixels"),
    ], name="decoder")


def build_vqvae(num_codes: int = 64, code_dim: int = 16) -> keras.Model:
    """image -> encoder -> nearest codebook vectors (straight-through) -> decoder -> image."""
    image = keras.Input((28, 28, 1), name="image")
    quantized = VectorQuantizer(num_codes, code_dim, name="quantizer")(
        build_encoder(code_dim)(image))
    return keras.Model(image, build_decoder(code_dim)(quantized), name="vqvae")


def build_pixelcnn(num_codes: int, grid: tuple[int, int], *, filters: int = 64,
                   blocks: int = 4, name: str = "pixelcnn") -> keras.Model:
    """The prior p(code grid): one-hot code grid (H, W, K) -> logits (H, W, K) of each
    position's code given the positions before it in raster order.

    7x7 mask-A convolution, then `blocks` residual blocks (1x1 -> masked 3x3 "B" -> 1x1,
    as in the paper's fig. 5), then two 1x1 layers to the logits.
    """
    codes = keras.Input((*grid, num_codes), name="one_hot_codes")
    h = MaskedConv2D(filters, 7, "A", name="masked_a")(codes)
    for i in range(blocks):
        r = layers.Activation("relu")(h)
        r = layers.Conv2D(filters // 2, 1, activation="relu", name=f"block{i}_in")(r)
        r = MaskedConv2D(filters // 2, 3, "B", activation="relu", name=f"block{i}_masked_b")(r)
        r = layers.Conv2D(filters, 1, name=f"block{i}_out")(r)
        h = layers.Add(name=f"block{i}_add")([h, r])
    h = layers.Conv2D(filters, 1, activation="relu", name="head")(layers.Activation("relu")(h))
    return keras.Model(codes, layers.Conv2D(num_codes, 1, name="logits")(h), name=name)


def encode(vqvae: keras.Model, x: np.ndarray) -> np.ndarray:
    """Images -> (N, 7, 7) integer code grids."""
    z_e = vqvae.get_layer("encoder").predict(x, batch_size=512, verbose=0)
    return ops.convert_to_numpy(vqvae.get_layer("quantizer").codes(z_e)).astype("int64")


def decode(vqvae: keras.Model, codes: np.ndarray) -> np.ndarray:
    """(N, 7, 7) code grids -> images."""
    vectors = ops.convert_to_numpy(vqvae.get_layer("quantizer").lookup(codes))
    return vqvae.get_layer("decoder").predict(vectors, batch_size=512, verbose=0)


def independent_positions(train_codes: np.ndarray, num_codes: int) -> np.ndarray:
    """The baseline prior: per position, the codes' frequencies in the training set
    (add-one smoothed). Returns (7, 7, K) probabilities."""
    one_hot = np.eye(num_codes)[train_codes]
    counts = one_hot.sum(axis=0) + 1.0
    return counts / counts.sum(axis=-1, keepdims=True)


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         epochs_help="VQ-VAE training epochs", learning_rate=2e-3,
                         learning_rate_help="Adam's initial step size for both stages, "
                                            "cosine-decayed")
    parser.add_argument("--codes", type=positive_int, default=64,
                        help="codebook size K (default 64)")
    parser.add_argument("--code-dim", type=positive_int, default=16,
                        help="length of each codebook vector (default 16)")
    parser.add_argument("--prior-epochs", type=positive_int, default=None,
                        help="PixelCNN training epochs (default: scaled to the data size)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.codes < 2:
        parser.error("--codes must be at least 2")
    if args.summary:
        print_summary(build_vqvae(args.codes, args.code_dim), parts=True)
        print_summary(build_pixelcnn(args.codes, GRID))
        return 0

    with start(args, images=IMAGES, image_shape=(28, 28, 1)) as run:
        # The data: a few training images of each class.
        data = run.data
        figures.data_grid(data, run.out / "data.png")

        # The two models: the VQ-VAE (encoder, codebook, decoder) and the PixelCNN prior over
        # its 7x7 grid of codes, built in the strategy's scope (--distribute) from the seed.
        vqvae, prior = build_vqvae(args.codes, args.code_dim), build_pixelcnn(args.codes, GRID)
        print_summary(vqvae, parts=True)
        print_summary(prior)

        # Stage 1: the VQ-VAE learns to rebuild images from 49 integers each.
        vq = train_vqvae(vqvae, run, args.learning_rate, args.codes)

        # Stage 2: the PixelCNN learns p(code grid) from the training images' codes.
        prior_epochs = 1 if run.quick else epochs_for(args.prior_epochs, len(data.x_train),
                                                       images=PRIOR_IMAGES)
        pixelcnn = train_prior(prior, vq["train_codes"], vq["test_codes"], run, prior_epochs,
                               args.learning_rate / 2, args.codes)

        # New images: codes from the PixelCNN (and, to compare, drawn position by position
        # independently), decoded, and scored by the judge.
        images, judge = score_priors(vqvae, prior, pixelcnn, data, run.seed, args.codes,
                                     judges=run.out.parent)

        # Against chapter 2's 2-D autoencoder (when its run is there); the figures, models
        # and metrics.json.
        ch2 = find_run(run.out.parent / "ch2_vae", "ch2_vae", dataset=data.name)
        ch2_mse = None if ch2 is None else ch2.number("models", "cnn_autoencoder",
                                                      "test_mse_28x28")
        if ch2_mse is not None:
            print(f"chapter 2's 2-D CNN autoencoder on {data.name}: MSE {ch2_mse:.4f} on the "
                  f"28x28 centre; VQ-VAE {vq['test_mse']:.4f} "
                  f"({'better' if vq['test_mse'] < ch2_mse else 'not better'})")
        _figures(run.out, data, vq, images, pixelcnn["run"], args.codes)
        save_model(vqvae, run.out / "vqvae.keras")
        save_model(prior, run.out / "pixelcnn.keras")
        write_metrics(run, judge=judge, models={
            "vqvae": {"test_mse": round(vq["test_mse"], 5), "dead_codes": vq["used"]["dead"],
                      "dead_share": round(vq["dead_share"], 4), "dead_bar": DEAD_BAR,
                      "perplexity": round(vq["used"]["perplexity"], 2),
                      "codes": args.codes, "code_dim": args.code_dim,
                      "ch2_cnn_autoencoder_test_mse_28x28": ch2_mse,
                      "params": vqvae.count_params(), **vq["run"].speed()},
            "pixelcnn": {**pixelcnn["numbers"], **images["scores"], "epochs": prior_epochs,
                         "params": prior.count_params(), **pixelcnn["run"].speed()}})
    print(run.closing(f"\nFigures, models and metrics.json are in {run.out}/ "
                      "(start with samples.png and code_grid.png)"))
    return 0


def train_vqvae(vqvae, run, learning_rate: float, num_codes: int) -> dict:
    """Stage 1: the VQ-VAE on MSE + VQ losses, dead codes restarted after each epoch; then
    every image's 7x7 codes, the test reconstructions and the codebook's usage."""
    data = run.data
    print(f"\n== stage 1: VQ-VAE, {plural(run.epochs, 'epoch')} ==")
    steps = len(data.x_train) // run.batch_size
    vqvae.compile(optimizer=cosine_adam(learning_rate, run.epochs * steps), loss="mse")
    restart = CodebookRestart(data.x_train[:4096], seed=run.seed)
    trained = fit(vqvae, batches(data.x_train, batch_size=run.batch_size, seed=run.seed,
                                 reconstruct=True),
                  epochs=run.epochs, batch_size=run.batch_size, out=run.out, tag="vqvae",
                  callbacks=[restart], nan_hint="try a lower --learning-rate")
    test_codes, train_codes = encode(vqvae, data.x_test), encode(vqvae, data.x_train)
    recon = decode(vqvae, test_codes)
    mse = float(np.mean(np.square(recon - data.x_test)))
    used = usage(test_codes, num_codes)
    dead_share = used["dead"] / num_codes
    print(f"VQ-VAE test MSE {mse:.4f} per pixel; {used['dead']} of {num_codes} codes dead on "
          f"the test set ({dead_share:.0%}, bar <= {DEAD_BAR:.0%}); perplexity "
          f"{used['perplexity']:.1f}")
    return {"run": trained, "test_codes": test_codes, "train_codes": train_codes,
            "recon": recon, "test_mse": mse, "used": used, "dead_share": dead_share}


def train_prior(prior, train_codes, test_codes, run, epochs: int, learning_rate: float,
                num_codes: int) -> dict:
    """Stage 2: the PixelCNN on the training images' codes; its test NLL against positions
    drawn independently and against the uniform prior."""
    print(f"\n== stage 2: PixelCNN prior over the 7x7 codes, {plural(epochs, 'epoch')} ==")
    steps = len(train_codes) // run.batch_size
    prior.compile(optimizer=cosine_adam(learning_rate, epochs * steps),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trained = fit(prior, one_hot_sequences(train_codes, num_codes, batch_size=run.batch_size,
                                           seed=run.seed),
                  epochs=epochs, batch_size=run.batch_size, out=run.out, tag="pixelcnn",
                  nan_hint="try a lower --learning-rate")
    positions = GRID[0] * GRID[1]
    nll = positions * float(prior.evaluate(np.eye(num_codes, dtype="float32")[test_codes],
                                           test_codes, batch_size=512, verbose=0))
    marginals = independent_positions(train_codes, num_codes)
    grid_index = np.indices(GRID)
    baseline = float(-np.mean(np.log(marginals[grid_index[0], grid_index[1], test_codes])
                              .sum(axis=(1, 2))))
    uniform = positions * float(np.log(num_codes))
    print(f"test NLL of the codes: PixelCNN {nll:.1f} nats per image, independent positions "
          f"{baseline:.1f}, uniform {uniform:.1f}")
    return {"run": trained, "marginals": marginals,
            "numbers": {"test_nll_nats_per_image": round(nll, 2),
                        "independent_positions_nll": round(baseline, 2),
                        "uniform_nll": round(uniform, 2)}}


def score_priors(vqvae, prior, pixelcnn, data, seed: int, num_codes: int, judges: Path):
    """New images from the PixelCNN's codes and from independently drawn positions, both
    decoded and judged (the judge from `judges`, the output root). Returns the images with
    their scores, and the judge."""
    sampled = sample(prior, SCORED_SAMPLES, seed=seed)
    rng = np.random.default_rng(seed)
    cumulative = pixelcnn["marginals"].cumsum(axis=-1)
    draws = rng.uniform(size=(SCORED_SAMPLES, *GRID, 1))
    independent = np.minimum((draws > cumulative).sum(axis=-1), num_codes - 1)
    images = {"pixelcnn": decode(vqvae, sampled), "independent": decode(vqvae, independent)}
    judge = FeatureClassifier.for_dataset(data, judges)
    scored = judge.fid_report(data, images["pixelcnn"])
    fid_independent = judge.fid(data.x_test, images["independent"])
    print(f"PixelCNN prior: {describe_fid(scored)}; independent positions: classifier FID "
          f"{fid_independent:.2f}")
    images["scores"] = {**scored, "independent_positions_fid": round(fid_independent, 3)}
    return images, judge


def _figures(out, data, vq, images, prior_run, num_codes) -> None:
    recon, codes, used, vq_run = vq["recon"], vq["test_codes"], vq["used"], vq["run"]
    pixelcnn_images, independent_images = images["pixelcnn"], images["independent"]
    picks = np.concatenate([np.flatnonzero(data.y_test == c)[:1]
                            for c in range(data.num_classes)])
    figures.image_grid(np.concatenate([data.x_test[picks], recon[picks]]),
                       out / "reconstructions.png", ncols=len(picks),
                       row_labels=["input", "VQ-VAE"],
                       suptitle="Test images rebuilt from 49 discrete codes each")
    figures.code_map(data.x_test[picks[0]], codes[picks[0]], out / "code_grid.png",
                     title="One test image and the 7x7 code indices the decoder rebuilds it from")
    share = np.sort(used["counts"])[::-1] / used["counts"].sum()
    figures.bars({"test set": share.tolist()}, out / "codebook_usage.png",
                 title=f"Codebook usage: perplexity {used['perplexity']:.1f} of {num_codes}, "
                       f"{used['dead']} dead", xlabel="codes, most used first",
                 ylabel="share of positions", labels=[""] * num_codes)
    figures.image_grid(np.concatenate([pixelcnn_images[:40], independent_images[:20]]),
                       out / "samples.png", ncols=10,
                       row_labels=["PixelCNN"] * 4 + ["independent"] * 2,
                       suptitle="New images: codes from the PixelCNN prior (top four rows) "
                                "and drawn position by position independently (bottom two)")
    figures.curve_panels(
        [("VQ-VAE", {"train MSE + VQ losses": vq_run.history["loss"]}, "loss"),
         ("dead codes before each restart", {"dead codes": vq_run.history["dead_codes"]},
          "codes"),
         ("PixelCNN", {"train cross-entropy": prior_run.history["loss"]},
          "nats per position")],
        out / "loss_curves.png", suptitle="Training curves")


if __name__ == "__main__":
    sys.exit(run_main(main))
