"""Chapter 2: from a convolutional autoencoder to the variational autoencoder (book form).

Both models squeeze a 32x32 image through a 2-D code, so the latent space can be drawn.

- The CNN autoencoder learns any code that reconstructs well. Nothing asks codes to be near 0
  or the space between clusters to decode to anything sensible, so the 2-D codes spread over
  a wide, uneven range and sampling from it is guesswork.
- The VAE (Kingma & Welling 2014) makes the encoder output a Gaussian q(z|x) = N(mean,
  exp(log_var)) instead of a point, samples z = mean + exp(log_var / 2) * eps with the
  reparameterisation trick (a `Lambda` layer), and adds to the reconstruction error the KL
  divergence to the prior N(0, I) (Kingma & Welling, appendix B):

      KL = -1/2 * sum_j (1 + log_var_j - mean_j^2 - exp(log_var_j))

  The KL term pulls every code towards the origin and keeps q wide, so the codes fill a compact
  disc (about -4..4) and any point of N(0, I) decodes to a plausible image.

The loss is `sum of squared pixel errors + kl_weight * KL` per image. The squared error is the
negative log-likelihood of a Gaussian decoder with variance 1/2 (up to a constant), so
kl_weight = 1 is the plain ELBO under that decoder. Raising kl_weight trades sharper
reconstructions for a tighter, smoother latent (beta-VAE, Higgins et al. 2017); lowering it
drifts back towards the plain autoencoder.

New images are decoded from z ~ N(0, I); the judge that scores every generative chapter
(common.eval.classifier) gives their classifier FID, on the data's own 28x28 (the centre of
the 32x32 output).

Run:  python chapters/ch2_vae.py [--dataset fashion_mnist] [--kl-weight 1.0]
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
from common.atomic import atomic_path, save_model
from common.cli import make_parser, non_negative_float, parse, plural, run_main
from common.data import pad_images
from common.distribute import draw
from common.eval.classifier import FeatureClassifier, describe_fid
from common.language import say
from common.latent import latent_report, normal_grid, path_between, range_grid
from common.pipeline import batches
from common.results import write_metrics
from common.run import start
from common.summary import print_summary
from common.training import cosine_adam, fit
from common.vae.elbo import kl_to_standard_normal

CHAPTER = "ch2_vae"
# Saved models name their custom objects "chapters.ch2_vae>..."; importing this module
# registers them (README: safe_mode).
PACKAGE = "chapters.ch2_vae"
IMAGE_SIZE = 32
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # colour data (e.g. tfds:cifar10) has 3 channels
PIXELS = IMAGE_SIZE * IMAGE_SIZE
LATENT_DIM = 2
IMAGES_PER_MODEL = 240_000  # default budget: 4 epochs of 60,000 images, a few minutes


# ---------------------------------------------------------------------------------------------
# Models, in the form the material shows.

def build_encoder(outputs: int = LATENT_DIM, head_name: str = "embedding_space",
                  name: str = "encoder", image_shape=IMAGE_SHAPE) -> keras.Model:
    """Input(1024) -> Reshape(32, 32, 1) -> Conv2D 32, 64, 128 (3x3, stride 2) -> Dense.

    Each stride-2 convolution halves the image (32 -> 16 -> 8 -> 4) while adding channels,
    trading where for what. 96,770 parameters with a 2-unit head, 100,868 with 4 (on
    32x32x3 colour images the input is 3,072 numbers and the first convolution 576 weights
    larger).
    """
    return keras.Sequential([
        keras.Input(shape=(int(np.prod(image_shape)),)),
        layers.Reshape(image_shape, name="to_image"),
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv_1"),
        layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv_2"),
        layers.Conv2D(128, 3, strides=2, padding="same", activation="relu", name="conv_3"),
        layers.Flatten(name="flatten"),
        layers.Dense(outputs, name=head_name),
    ], name=name)


def build_decoder(name: str = "decoder", image_shape=IMAGE_SHAPE) -> keras.Model:
    """The mirror image: Dense(4*4*128) -> Reshape -> Conv2DTranspose 64, 32, 1 (stride 2)
    -> Flatten. Sigmoid output: pixels in [0, 1]. 98,689 parameters.

    The first Dense layer is linear on purpose: with a ReLU there, an early large step can
    switch all 2,048 units off for every input, and the decoder freezes at the mean image
    (see docs/results.md)."""
    return keras.Sequential([
        keras.Input(shape=(LATENT_DIM,)),
        layers.Dense(4 * 4 * 128, name="expand"),
        layers.Reshape((4, 4, 128), name="to_feature_maps"),
        layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu",
                               name="deconv_1"),
        layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                               name="deconv_2"),
        layers.Conv2DTranspose(image_shape[-1], 3, strides=2, padding="same",
                               activation="sigmoid", name="deconv_3"),
        layers.Flatten(name="to_pixels"),
    ], name=name)


def build_cnn_autoencoder(image_shape=IMAGE_SHAPE) -> keras.Model:
    """encoder -> decoder, built functionally from the two parts (195,459 parameters)."""
    encoder = build_encoder(image_shape=image_shape)
    decoder = build_decoder(image_shape=image_shape)
    x = keras.Input(shape=(int(np.prod(image_shape)),), name="image")
    return keras.Model(x, decoder(encoder(x)), name="cnn_autoencoder")


@keras.saving.register_keras_serializable(package=PACKAGE)
def sample_latent(mean_and_log_var, seed_generator=None):
    """Reparameterisation trick: z = mean + exp(log_var / 2) * eps, eps ~ N(0, I).

    The input holds mean and log_var side by side. The randomness sits in eps, outside the
    parameters, so gradients flow through mean and log_var. A named, registered function (not
    a Python lambda) keeps the saved model loadable with safe_mode=True: Keras stores its
    registered name, "chapters.ch2_vae>sample_latent", not its bytecode.

    eps comes from `seed_generator`, which the Lambda layer owns (its `arguments`), so draws
    are repeatable and, under --distribute, each replica takes its own rows of the global
    batch's draw (common.distribute.draw). It is drawn in the policy's compute dtype.
    """
    mean, log_var = ops.split(mean_and_log_var, 2, axis=-1)
    eps = draw(keras.random.normal, ops.shape(mean), dtype=mean.dtype, seed=seed_generator)
    return mean + ops.exp(0.5 * log_var) * eps


def build_sampler(seed: int | None = None) -> keras.Model:
    """Sequential([Lambda(sample_latent)]): 4 numbers (mean, log_var) in, a 2-D z out. The
    layer owns the seed generator its draws come from."""
    return keras.Sequential([
        keras.Input(shape=(2 * LATENT_DIM,)),
        layers.Lambda(sample_latent, output_shape=(LATENT_DIM,), name="reparameterize",
                      arguments={"seed_generator": keras.random.SeedGenerator(seed)}),
    ], name="sampler")


def build_vae(image_shape=IMAGE_SHAPE, seed: int | None = None) -> keras.Model:
    """Output = Concatenate([encoder(x), decoder(sampler(encoder(x)))]): 4 + 1024 numbers.

    Keras losses see only (y_true, y_pred), so the mean and log variance ride along in the
    prediction for `VaeLoss` to read back.
    """
    encoder = build_encoder(2 * LATENT_DIM, head_name="mean_and_log_var", name="vae_encoder",
                            image_shape=image_shape)
    sampler, decoder = build_sampler(seed), build_decoder("vae_decoder", image_shape)
    x = keras.Input(shape=(int(np.prod(image_shape)),), name="image")
    stats = encoder(x)
    # float32 output under --precision: the loss and metrics read it
    output = layers.Concatenate(name="prediction_with_mean_log_var", dtype="float32")(
        [stats, decoder(sampler(stats))])
    return keras.Model(x, output, name="vae")


def split_prediction(y_pred):
    """(mean, log_var, reconstruction) from the VAE's concatenated output."""
    return (y_pred[:, :LATENT_DIM], y_pred[:, LATENT_DIM:2 * LATENT_DIM],
            y_pred[:, 2 * LATENT_DIM:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class VaeLoss(keras.losses.Loss):
    """Per image: sum of squared pixel errors + kl_weight * KL(q(z|x) || N(0, I))."""

    def __init__(self, kl_weight: float = 1.0, name: str = "vae_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kl_weight = float(kl_weight)

    def call(self, y_true, y_pred):
        mean, log_var, reconstruction = split_prediction(y_pred)
        squared_error = ops.sum(ops.square(y_true - reconstruction), axis=-1)
        return squared_error + self.kl_weight * kl_to_standard_normal(mean, log_var)

    def get_config(self):
        return {**super().get_config(), "kl_weight": self.kl_weight}


@keras.saving.register_keras_serializable(package=PACKAGE)
def reconstruction_mse(y_true, y_pred):
    """Mean squared error per pixel of the sampled reconstruction (a metric to watch)."""
    return ops.mean(ops.square(y_true - split_prediction(y_pred)[2]), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
def kl_divergence(y_true, y_pred):
    """The KL term alone, in nats per image (a metric to watch)."""
    mean, log_var, _ = split_prediction(y_pred)
    return kl_to_standard_normal(mean, log_var)


def compile_vae(vae: keras.Model, kl_weight: float, optimizer="adam") -> None:
    vae.compile(optimizer=optimizer, loss=VaeLoss(kl_weight),
                metrics=[reconstruction_mse, kl_divergence])


# ---------------------------------------------------------------------------------------------
# The main job.

def flags():
    """The command line: the shared flags and the KL term's weight."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         learning_rate=3e-3)
    parser.add_argument("--kl-weight", type=non_negative_float, default=1.0,
                        help="weight of the KL term in the VAE loss (default 1.0)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        print_summary(build_cnn_autoencoder(), parts=True)
        print_summary(build_vae(), parts=True)
        return 0
    # seeds, precision, devices, the output folder, the data (NHWC, as the judge sees it)
    with start(args, images=IMAGES_PER_MODEL) as run:
        # The data: a few training images of every class. The models see them padded to
        # 32x32 and flattened (model_input).
        data = run.data
        figures.data_grid(data, run.out / "data.png")

        # The two models, with a 2-D code each: the autoencoder, and the VAE whose encoder
        # outputs a mean and a log variance and samples z in its Lambda layer.
        shape = (IMAGE_SIZE, IMAGE_SIZE, data.image_shape[-1])  # 1 or 3 channels
        autoencoder, vae = build_cnn_autoencoder(shape), build_vae(shape, run.seed)
        for model in (autoencoder, vae):
            print_summary(model, parts=True)

        # Training: the same images, optimiser and epochs for both.
        runs = train_both(autoencoder, vae, run, args.learning_rate, args.kl_weight)

        # The codes of the test set and the reconstructions: how far the codes spread, how
        # well each model rebuilds an image from two numbers.
        results, codes = measure(autoencoder, vae, runs, data, args.kl_weight)
        for name, r in results.items():
            print(f"{name}: test MSE {r['test_mse']:.4f} per pixel value (32x32), "
                  f"{r['test_mse_28x28']:.4f} (28x28 centre); 99% of codes within "
                  f"|z| < {r['abs_z_p99']:.2f}; {r['train_images_per_s']:,} images/s")

        # New images: z ~ N(0, I) through the VAE's decoder, scored by the judge (FID and KID
        # against the test set, with their 95% intervals).
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        prior = np.random.default_rng(run.seed + 100).standard_normal(
            (200 if run.quick else 1000, LATENT_DIM)).astype("float32")
        samples = vae.get_layer("vae_decoder").predict(prior, verbose=0)
        results["vae"].update(judge.fid_report(data, as_data_images(samples, data.image_shape)))
        print(f"VAE samples: {describe_fid(results['vae'])}")

        # The figures: the latent codes of both models, reconstructions, the decoders over a
        # grid of codes, new samples; then the models and metrics.json.
        _figures(run.out, data, runs, codes, autoencoder, vae, shape)
        save_everything(run.out, autoencoder, vae, codes, data.y_test)
        write_metrics(run, models=results, judge=judge)
    print(run.closing(f"\nFigures, models, latents.npz and metrics.json are in {run.out}/ "
                      "(start with latent_scatter.png and vae_latent_grid.png)"))
    return 0


def train_both(autoencoder, vae, run, learning_rate: float, kl_weight: float) -> dict:
    """The same images, optimiser and epochs for both: MSE for the autoencoder, VaeLoss for
    the VAE."""
    x_train = model_input(run.data.x_train)
    print(f"training each model for {plural(run.epochs, 'epoch')} of {len(x_train):,} images")
    steps = run.epochs * (len(x_train) // run.batch_size)
    autoencoder.compile(optimizer=cosine_adam(learning_rate, steps), loss="mse")
    compile_vae(vae, kl_weight, cosine_adam(learning_rate, steps))
    hints = {autoencoder.name: "try a lower --learning-rate",
             vae.name: "try a lower --kl-weight or --learning-rate"}
    runs = {}
    for model in (autoencoder, vae):
        print(f"\n== training {model.name} ==")
        train = batches(x_train, batch_size=run.batch_size, seed=run.seed, reconstruct=True)
        runs[model.name] = fit(model, train, epochs=run.epochs, batch_size=run.batch_size,
                               out=run.out, tag=model.name, nan_hint=hints[model.name])
    return runs


def measure(autoencoder, vae, runs, data, kl_weight: float) -> tuple[dict, dict]:
    """Test-set codes and reconstructions of both models (the VAE decodes its mean, its best
    guess), and their numbers: reconstruction error, the codes' spread, the VAE's KL."""
    x_test = model_input(data.x_test)
    ae_encoder, ae_decoder = autoencoder.get_layer("encoder"), autoencoder.get_layer("decoder")
    vae_encoder, vae_decoder = vae.get_layer("vae_encoder"), vae.get_layer("vae_decoder")
    z_ae = ae_encoder.predict(x_test, verbose=0)
    stats = vae_encoder.predict(x_test, verbose=0)
    z_vae, log_var = stats[:, :LATENT_DIM], stats[:, LATENT_DIM:]
    codes = {"x_test": x_test, "z_ae": z_ae, "z_vae": z_vae, "log_var": log_var,
             "recon_ae": ae_decoder.predict(z_ae, verbose=0),
             "recon_vae": vae_decoder.predict(z_vae, verbose=0)}
    kl = np.mean(ops.convert_to_numpy(kl_to_standard_normal(z_vae, log_var)))
    results = {
        "cnn_autoencoder": {**_reconstruction_errors(x_test, codes["recon_ae"]),
                            **latent_report(z_ae), **runs["cnn_autoencoder"].speed(),
                            "params": autoencoder.count_params()},
        "vae": {**_reconstruction_errors(x_test, codes["recon_vae"]), **latent_report(z_vae),
                "kl_nats_per_image": round(float(kl), 3), "kl_weight": kl_weight,
                **runs["vae"].speed(), "params": vae.count_params()},
    }
    return results, codes


def save_everything(out: Path, autoencoder, vae, codes: dict, labels) -> None:
    """Both models, the VAE's decoder alone (plain layers: other chapters load it) and the
    test set's codes (latents.npz, which classical_gmm_em fits a mixture to)."""
    save_model(autoencoder, out / "cnn_autoencoder.keras")
    save_model(vae, out / "vae.keras")
    save_model(vae.get_layer("vae_decoder"), out / "vae_decoder.keras")
    with atomic_path(out / "latents.npz") as tmp:
        np.savez_compressed(tmp, z_autoencoder=codes["z_ae"], z_vae_mean=codes["z_vae"],
                            z_vae_log_var=codes["log_var"], labels=labels)


def model_input(images: np.ndarray) -> np.ndarray:
    """NHWC images -> the models' input: zero-padded to 32x32 (28 -> 32 adds a 2-pixel
    border), flattened."""
    return pad_images(images, IMAGE_SIZE).reshape(len(images), -1)


def as_data_images(flat: np.ndarray, image_shape) -> np.ndarray:
    """The models' flat 32x32 output -> NHWC images of the data's size (the centre 28x28 of
    padded data), as the judge reads them."""
    height, width, channels = image_shape
    images = flat.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, channels)
    top, left = (IMAGE_SIZE - height) // 2, (IMAGE_SIZE - width) // 2
    return images[:, top:top + height, left:left + width]


def _reconstruction_errors(x, reconstruction) -> dict:
    """MSE per pixel value on the 32x32 input and on the 28x28 centre (the 28x28 images
    without their zero border)."""
    err = np.square(x - reconstruction).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, x.shape[1] // PIXELS)
    return {"test_mse": round(float(err.mean()), 5),
            "test_mse_28x28": round(float(err[:, 2:-2, 2:-2].mean()), 5)}


def _figures(out, data, runs, codes, autoencoder, vae, shape) -> None:
    x_test, y_test = codes["x_test"], data.y_test
    z_ae, z_vae = codes["z_ae"], codes["z_vae"]
    recon_ae, recon_vae = codes["recon_ae"], codes["recon_vae"]
    ae_decoder, vae_decoder = autoencoder.get_layer("decoder"), vae.get_layer("vae_decoder")
    names = data.class_names
    figures.scatter_panels([(say("CNN autoencoder: codes spread widely",
                                 "CNN オートエンコーダ: 潜在変数は広く散らばる"), z_ae),
                            (say("VAE: means packed near N(0, I)",
                                 "VAE: 平均は N(0, I) の近くにまとまる"), z_vae)],
                           y_test, names, out / "latent_scatter.png",
                           suptitle=say(f"2-D latent codes of the {data.name} test set",
                                        f"{data.name} のテスト画像の 2 次元の潜在変数"))
    picks = np.concatenate([np.flatnonzero(y_test == c)[:1] for c in range(data.num_classes)])
    figures.image_grid(np.concatenate([x_test[picks], recon_ae[picks], recon_vae[picks]]),
                       out / "reconstructions.png", ncols=len(picks),
                       row_labels=[say("input", "入力"), "AE", "VAE"],
                       suptitle=say("Test images and their reconstructions from a 2-D code",
                                    "テスト画像と、2 次元の潜在変数からの再構成"))
    grid, extent = range_grid(z_ae, n=15)
    figures.decoded_grid(_decode_grid(ae_decoder, grid, shape), out / "ae_latent_grid.png",
                         extent=extent, title=say(
                             "Autoencoder: decoded over the codes' range (blank or odd where "
                             "no code lies)", "オートエンコーダ: 潜在変数の範囲をデコード"
                                              "（潜在変数のない所は空白か崩れた画像）"))
    grid, extent = normal_grid(n=15)
    figures.decoded_grid(_decode_grid(vae_decoder, grid, shape), out / "vae_latent_grid.png",
                         extent=extent, title=say(
                             "VAE: decoded over N(0, I) quantiles (grid mapped through the "
                             "normal CDF)", "VAE: N(0, I) の分位点をデコード"
                                            "（格子は正規分布の累積分布関数で写したもの）"))
    a, b = (z_vae[y_test == c].mean(axis=0) for c in (0, min(1, data.num_classes - 1)))
    path = path_between(a, b, steps=12)
    first, second = names[0], names[min(1, data.num_classes - 1)]
    figures.image_grid(vae_decoder.predict(path, verbose=0), out / "vae_latent_path.png",
                       ncols=len(path), titles=[f"{t:.2f}" for t in np.linspace(0, 1, len(path))],
                       suptitle=say(f"VAE: decoded along the line from the mean code of "
                                    f"'{first}' to '{second}'",
                                    f"VAE: '{first}' の平均の潜在変数から '{second}' のそれへの"
                                    "直線上をデコード"))
    prior = np.random.default_rng(0).standard_normal((40, LATENT_DIM)).astype("float32")
    figures.image_grid(vae_decoder.predict(prior, verbose=0), out / "vae_samples.png",
                       ncols=10, suptitle=say("VAE: new images from z ~ N(0, I)",
                                              "VAE: z ~ N(0, I) から作った新しい画像"))
    figures.curves({say("autoencoder MSE per pixel", "オートエンコーダの画素あたり MSE"):
                        runs["cnn_autoencoder"].history["loss"],
                    say("VAE reconstruction MSE per pixel", "VAE の再構成の画素あたり MSE"):
                        runs["vae"].history["reconstruction_mse"]},
                   out / "loss_curves.png",
                   title=say("Training reconstruction error per epoch",
                             "エポックごとの学習時の再構成誤差"),
                   ylabel=say("MSE per pixel", "画素あたりの MSE"))


def _decode_grid(decoder, grid: np.ndarray, shape) -> np.ndarray:
    """Decode an (n, n, 2) grid of codes into an (n, n, 32, 32[, 3]) block of images."""
    n = grid.shape[0]
    images = decoder.predict(grid.reshape(-1, LATENT_DIM), verbose=0)
    return images.reshape(n, n, *shape[:2], *shape[2:] if shape[2] > 1 else ())


if __name__ == "__main__":
    sys.exit(run_main(main))
