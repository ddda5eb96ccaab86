"""Chapter 4: pix2pix (Isola et al. 2017): image-to-image translation with a conditional GAN.

Given paired images (input, target), a U-Net generator maps the input to an output and a
PatchGAN discriminator judges (input, output) pairs patch by patch. The generator minimises

    adversarial loss + lambda * L1(output, target),   lambda = 100   (the paper's eq. 4)

L1 alone already gets the layout right but averages over the plausible answers, which is blur;
the adversarial term penalises outputs that do not look like real images of the target kind,
and the PatchGAN does so for each 8x8 region, which is where blur shows. The run trains the
same U-Net with L1 alone as well and compares test L1, PSNR and how often the chapter's feature
classifier recognises the class of the outputs (sharper is more recognisable, even when PSNR,
which rewards averaging, is a little lower).

Three paired tasks are built from the dataset (`--task`):
- edges:  the Sobel edge magnitude of an image -> the image (drawing from an outline);
- inpaint: the image with three random grey bars across it -> the whole image (the lecture's
  branches hidden by leaves: fill in what the bars hide);
- colourise: a colour image made grey -> the colour image (black-and-white to colour; the
  default on colour data such as --dataset emoji);
- lineart: black line art of a colour image -> the colour image (the lecture's 線画 to a
  coloured picture). The lines are where the Sobel gradient of the grey image exceeds 0.5, an
  eighth of a black-to-white step. Harder: the colours and every shade must be invented.
On colour data the run also measures the colour error (CIE76 Delta E in Lab, per pixel) of
both U-Nets.

Grey images are 28x28 padded to 32x32 so the U-Net can halve them three times (32, 16, 8, 4);
the emoji are 32x32 already.

Run:  python chapters/ch4_pix2pix.py [--dataset fashion_mnist] [--task edges|inpaint]
      python chapters/ch4_pix2pix.py --dataset emoji      (line art -> colour)
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
from scipy import ndimage

from chapters.ch4_dcgan import GAN, bce, train_gan
from common import figures
from common.atomic import save_model
from common.cli import make_parser, parse, plural, run_main
from common.data import pad_images
from common.errors import DataError
from common.eval.classifier import FeatureClassifier, wilson_interval
from common.eval.metrics import colour_error
from common.gan.training import SampleGrid, equilibrium_curves, generate
from common.pipeline import batches
from common.results import write_metrics
from common.run import seed_everything, start
from common.scaling import to_tanh_range
from common.training import fit

CHAPTER = "ch4_pix2pix"
SIZE = 32
IMAGES = 120_000  # default budget per model: 2 epochs of 60,000 pairs
L1_WEIGHT = 100.0
TASKS = ("edges", "inpaint", "colourise", "lineart")
COLOUR_TASKS = ("colourise", "lineart")  # colour targets from one grey channel
LINE_THRESHOLD = 0.5  # Sobel gradient of the grey image above which a pixel is a line
LUMA = np.array([0.299, 0.587, 0.114], "float32")  # ITU-R BT.601 weights of R, G, B


# ---------------------------------------------------------------------------------------------
# Paired data.

SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], "float32")


def sobel_magnitude(x: np.ndarray, mode: str) -> np.ndarray:
    """Per image, the Sobel gradient magnitude of its grey version (colour images are made
    grey first). The 3x3 kernels act on each image's rows and columns only (a (1, 3, 3)
    kernel), never across the batch; `mode` is how the border is extended."""
    images = x @ LUMA if x.shape[-1] == 3 else x[..., 0]
    gx = ndimage.correlate(images, SOBEL_X[None], mode=mode)
    gy = ndimage.correlate(images, SOBEL_X.T[None], mode=mode)
    return np.hypot(gx, gy)


def sobel_edges(x: np.ndarray) -> np.ndarray:
    """Per image, the Sobel gradient magnitude scaled to [0, 1] (zeros beyond the border)."""
    magnitude = sobel_magnitude(x, "constant")
    peak = magnitude.max(axis=(1, 2), keepdims=True)
    return (magnitude / np.where(peak > 0, peak, 1.0))[..., None].astype("float32")


def occlude(x: np.ndarray, seed: int, bars: int = 3, width: int = 3) -> np.ndarray:
    """Copies of the images with `bars` random horizontal or vertical grey (0.5) bars."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    n, size = len(x), x.shape[1]
    for _ in range(bars):
        start = rng.integers(2, size - 2 - width, size=n)
        vertical = rng.uniform(size=n) < 0.5
        for i in range(n):
            s = slice(start[i], start[i] + width)
            if vertical[i]:
                out[i, :, s] = 0.5
            else:
                out[i, s, :] = 0.5
    return out


def line_art(x: np.ndarray) -> np.ndarray:
    """Black lines on white, one channel: where the grey image's Sobel gradient is steep. The
    border repeats the edge pixels, so a white ground draws no frame."""
    return (sobel_magnitude(x, "nearest") <= LINE_THRESHOLD)[..., None].astype("float32")


def make_inputs(task: str, x: np.ndarray, seed: int) -> np.ndarray:
    if task == "colourise":
        return x @ LUMA[:, None]
    if task == "lineart":
        return line_art(x)
    return sobel_edges(x) if task == "edges" else occlude(x, seed)


# ---------------------------------------------------------------------------------------------
# Networks.

def batch_norm(name: str) -> layers.BatchNormalization:
    """Batch norm whose statistics, under --distribute, are those of the global batch."""
    return layers.BatchNormalization(synchronized=True, name=name)


def build_unet(name: str = "unet", channels: tuple[int, int] = (1, 1)) -> keras.Model:
    """U-Net (Ronneberger et al. 2015) as pix2pix uses it: an encoder halving the image three
    times, a decoder doubling it back, and skips that concatenate each encoder output to the
    decoder layer of the same resolution, so fine detail need not pass the 4x4 bottleneck.
    `channels`: of the input and of the output (1, 3 to colourise)."""
    x = keras.Input((SIZE, SIZE, channels[0]), name="input_image")
    e16 = layers.LeakyReLU(0.2, name="enc_16_lrelu")(
        layers.Conv2D(32, 4, strides=2, padding="same", name="enc_16")(x))
    e8 = layers.LeakyReLU(0.2, name="enc_8_lrelu")(batch_norm("enc_8_bn")(
        layers.Conv2D(64, 4, strides=2, padding="same", use_bias=False, name="enc_8")(e16)))
    e4 = layers.LeakyReLU(0.2, name="enc_4_lrelu")(batch_norm("enc_4_bn")(
        layers.Conv2D(128, 4, strides=2, padding="same", use_bias=False, name="enc_4")(e8)))
    d8 = layers.ReLU(name="dec_8_relu")(batch_norm("dec_8_bn")(
        layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False,
                               name="dec_8")(e4)))
    d8 = layers.Concatenate(name="skip_8")([d8, e8])
    d16 = layers.ReLU(name="dec_16_relu")(batch_norm("dec_16_bn")(
        layers.Conv2DTranspose(32, 4, strides=2, padding="same", use_bias=False,
                               name="dec_16")(d8)))
    d16 = layers.Concatenate(name="skip_16")([d16, e16])
    out = layers.Conv2DTranspose(channels[1], 4, strides=2, padding="same", activation="tanh",
                                 name="dec_32")(d16)
    return keras.Model(x, out, name=name)


def build_patch_discriminator(channels: tuple[int, int] = (1, 1)) -> keras.Model:
    """PatchGAN: (candidate, input) stacked as channels -> an 8x8 grid of logits, each
    judging one overlapping patch (receptive field 18x18 pixels) as real or generated."""
    candidate = keras.Input((SIZE, SIZE, channels[1]), name="candidate")
    condition = keras.Input((SIZE, SIZE, channels[0]), name="input_image")
    h = layers.Concatenate(name="pair")([candidate, condition])
    h = layers.LeakyReLU(0.2, name="down_16_lrelu")(
        layers.Conv2D(32, 4, strides=2, padding="same", name="down_16")(h))
    h = layers.LeakyReLU(0.2, name="down_8_lrelu")(batch_norm("down_8_bn")(
        layers.Conv2D(64, 4, strides=2, padding="same", use_bias=False, name="down_8")(h)))
    logits = layers.Conv2D(1, 3, padding="same", name="patch_logits")(h)
    return keras.Model([candidate, condition], logits, name="patch_discriminator")


@keras.saving.register_keras_serializable(package="chapters.ch4_pix2pix")
class Pix2Pix(GAN):
    """The game of chapters/ch4_dcgan.py with the input image as the condition of both players
    and no noise (pix2pix found the generator ignored it), and L1 to the target added to the
    generator's loss (eq. 4)."""

    extra_terms = ("l1",)

    def __init__(self, generator, discriminator, l1_weight: float = L1_WEIGHT, **kwargs):
        super().__init__(generator, discriminator, latent_dim=0, **kwargs)
        self.l1_weight = l1_weight

    def unpack(self, data):
        inputs, targets = data
        return targets, inputs

    def fake(self, n, condition=None):
        return self.generator(condition, training=True)

    def generator_loss(self, fake_logits, fake, real):
        adversarial = bce(1.0, fake_logits)
        l1 = ops.mean(ops.abs(real - ops.cast(fake, "float32")))
        return adversarial + self.l1_weight * l1, {"g_loss": adversarial, "l1": l1}


def build_pix2pix(seed: int | None = None, channels: tuple[int, int] = (1, 1)) -> Pix2Pix:
    return Pix2Pix(build_unet(channels=channels), build_patch_discriminator(channels),
                   seed=seed, name="pix2pix")


# ---------------------------------------------------------------------------------------------
# The run.

def evaluate(outputs: np.ndarray, targets: np.ndarray, labels: np.ndarray, judge,
             border: int) -> dict:
    """Test L1 and PSNR on [0, 1] pixels, and the classifier's accuracy on the outputs (with
    its 95% interval; the judge sees them without the `border` of padding). On colour images,
    also the mean colour error, CIE76 Delta E (per pixel, per image, then mean and 95%
    interval over the test images)."""
    crop = (slice(None), slice(border, SIZE - border), slice(border, SIZE - border))
    hits = judge.predict(outputs[crop]) == np.asarray(labels)
    err = outputs - targets
    mse = np.mean(np.square(err), axis=(1, 2, 3))
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-10))
    report = {"test_l1": round(float(np.mean(np.abs(err))), 5),
              "test_psnr_db": round(float(np.mean(psnr)), 2),
              "classifier_accuracy": round(float(hits.mean()), 4),
              "classifier_accuracy_ci95": [round(v, 4) for v in wilson_interval(
                  int(hits.sum()), len(hits))]}
    if outputs.shape[-1] == 3:
        report.update(colour_error(outputs, targets))
    return report


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=64,
                         learning_rate=2e-4,
                         learning_rate_help="Adam's step size for every network")
    parser.add_argument("--task", choices=TASKS, default=None,
                        help="edges -> image, inpaint occluding bars, colourise grey images or "
                             "lineart -> colour (default: colourise on colour data, else edges)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    if args.summary:
        colour = args.task in COLOUR_TASKS or (args.task is None and args.dataset == "emoji")
        return build_pix2pix(args.seed, (1, 3) if colour else (1, 1)).print_summaries()
    with start(args, images=IMAGES) as run:
        # The data: images padded to 32x32, and the inputs made from them (--task): edge maps,
        # images with bars across them or line art; the pairs are (input, image).
        data, task = run.data, choose_task(args.task, run.data)
        border = (SIZE - data.image_shape[0]) // 2  # 2 for 28x28 images, 0 for the emoji
        x_train, x_test = pad_images(data.x_train, SIZE), pad_images(data.x_test, SIZE)
        print(f"task {task}: building the input images")
        x_in = make_inputs(task, x_train, run.seed)
        t_in = make_inputs(task, x_test, run.seed + 1)
        shown = np.arange(8)
        figures.image_grid(np.concatenate([np.broadcast_to(t_in[:10], x_test[:10].shape),
                                           x_test[:10]]), run.out / "pairs.png",
                           ncols=10, row_labels=["input", "target"],
                           suptitle=f"The task ({task}): from the input, the target")

        # The players: a U-Net that maps an input to an image, and a PatchGAN that judges
        # (input, image) pairs patch by patch.
        channels = (x_in.shape[-1], x_train.shape[-1])
        gan = build_pix2pix(run.seed, channels)  # in the strategy's scope, under --distribute
        gan.print_summaries()

        # The game with L1 added to the generator's loss; then the same U-Net on L1 alone,
        # from the same seed and batches.
        train = batches(to_tanh_range(x_in), to_tanh_range(x_train),
                        batch_size=run.batch_size, seed=run.seed)
        grid = SampleGrid(run.out, to_tanh_range(t_in[shown]), ncols=8, title="pix2pix outputs")
        gan_run = train_gan(gan, train, run, args.learning_rate, samples=grid)
        l1_only, l1_run = train_l1_only(train, run, args.learning_rate, channels)

        # Both on the test inputs: L1, PSNR, whether the judge recognises what they drew and,
        # in colour, how far their colours are from the truth's.
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        outputs = {"pix2pix": generate(gan.generator, to_tanh_range(t_in)),
                   "l1_only": generate(l1_only, to_tanh_range(t_in))}
        results = {name: evaluate(o, x_test, data.y_test, judge, border)
                   for name, o in outputs.items()}
        results["pix2pix"].update(**gan_run.speed(),
                                  final={k: round(v[-1], 4) for k, v in gan_run.history.items()})
        results["l1_only"].update(**l1_run.speed())
        truth = evaluate(x_test, x_test, data.y_test, judge, border)
        for name, r in results.items():
            colour = (f", colour error {r['colour_error_delta_e']:.2f} Delta E"
                      if "colour_error_delta_e" in r else "")
            print(f"{name:<8} test L1 {r['test_l1']:.4f}, PSNR {r['test_psnr_db']:.2f} dB, "
                  f"the judge's accuracy on outputs {r['classifier_accuracy']:.3f} "
                  f"{_interval(r['classifier_accuracy_ci95'])}{colour}")
        print(f"(the judge on the true test images: {truth['classifier_accuracy']:.3f})")
        _figures(run.out, x_test, t_in, outputs, shown, gan_run, l1_run, task)
        save_model(gan.generator, run.out / "generator.keras")
        save_model(l1_only, run.out / "unet_l1_only.keras")
        write_metrics(run, judge=judge, models=results,
                      extra={"task": task, "l1_weight": L1_WEIGHT,
                             "classifier_accuracy_on_targets": truth["classifier_accuracy"]})
    print(run.closing(f"\nFigures, models and metrics.json are in {run.out}/ "
                      "(start with triplets.png)"))
    return 0


def choose_task(task: str | None, data) -> str:
    """--task, or its default for the data: colourise colour images, edges of grey ones. The
    U-Net halves the image three times: 28x28 images are padded to 32, larger are refused."""
    side = data.image_shape[0]
    if len(data.image_shape) != 3 or data.image_shape[1] != side or side > SIZE:
        raise DataError(f"{data.name} has images of {'x'.join(map(str, data.image_shape))}; "
                        f"pix2pix here takes square images of up to {SIZE}x{SIZE} (28x28 "
                        "grey or 32x32 colour)")
    colour = data.image_shape[-1] == 3
    if task in COLOUR_TASKS and not colour:
        raise DataError(f"--task {task} needs colour images, and {data.name} is grey; "
                        "try --dataset emoji")
    return task or ("colourise" if colour else "edges")


def _interval(bounds) -> str:
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def train_l1_only(train, run, learning_rate: float, channels: tuple[int, int]):
    """The same U-Net on L1 alone, from the same seed and batches: what the adversary adds."""
    print(f"\n== the same U-Net with L1 alone, {plural(run.epochs, 'epoch')} ==")
    seed_everything(run.seed)
    l1_only = build_unet("unet_l1_only", channels)
    l1_only.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5), loss="mae")
    trained = fit(l1_only, train, epochs=run.epochs, batch_size=run.batch_size, out=run.out,
                  tag="unet_l1_only", nan_hint="try a lower --learning-rate")
    return l1_only, trained


def _figures(out, x_test, t_in, outputs, shown, gan_run, l1_run, task: str) -> None:
    rows = [np.broadcast_to(t_in[shown], x_test[shown].shape), outputs["pix2pix"][shown],
            outputs["l1_only"][shown], x_test[shown]]
    figures.image_grid(np.concatenate(rows), out / "triplets.png", ncols=len(shown),
                       row_labels=["input", "pix2pix", "L1 only", "target"],
                       suptitle=f"pix2pix ({task}): input | output | L1-only | target")
    equilibrium_curves(gan_run.history, out / "loss_curves.png",
                       title="pix2pix: adversarial part of the training")
    figures.curves({"pix2pix (train)": gan_run.history["l1"],
                    "L1 only (train)": l1_run.history["loss"]}, out / "l1_curves.png",
                   title="L1 distance to the target per epoch",
                   ylabel="mean |output - target| on [-1, 1]")


if __name__ == "__main__":
    sys.exit(run_main(main))
