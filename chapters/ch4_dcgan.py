"""Chapter 4: the DCGAN (Radford et al. 2015): a generator and a discriminator in a two-player game.

The generator G turns 100-d noise z ~ N(0, I) into an image; the discriminator D outputs the
probability that an image is real. They train in turns on every batch
(common.gan.training): D learns to tell real from G(z), then G learns to make D call its
images real. Neither network ever
sees a pixel-wise target, so unlike the chapter-2 VAE there is no blur from averaging: the
samples are sharp when the game goes well, and can collapse onto a few kinds of image when it
goes badly (mode collapse), which is why the run counts the classes among its samples.

Measured, with the chapter's feature classifier (common.eval.classifier):
- classifier FID of 5,000 samples against the test set, next to the chapter-2 VAE's samples
  (when outputs/ch2_vae holds a full run on the same data) and next to 5,000 real training
  images (the floor any generator can reach);
- the classes of 1,000 samples (every class should appear).

Run:  python chapters/ch4_dcgan.py [--dataset fashion_mnist] [--epochs 3]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import keras
import numpy as np
from keras import layers

from common import figures
from common.cli import make_parser, parse, plural, run
from common.data import check_square_side
from common.errors import UserError
from common.eval.classifier import FeatureClassifier, describe_fid
from common.gan.training import GAN, SampleGrid, equilibrium_curves, fit_gan, generate
from common.pipeline import batches
from common.results import write_metrics
from common.scaling import to_tanh_range
from common.training import prepare

CHAPTER = "ch4_dcgan"
IMAGE_SHAPE = (28, 28, 1)  # the default; 32x32x3 colour data (tfds:cifar10) gives its own
LATENT_DIM = 100
IMAGES = 180_000  # default budget: 3 epochs of 60,000 images
SCORED = 5_000
COUNTED = 1_000
# What chapters/ch2_vae.py saves for other chapters: its decoder alone, plain Keras layers.
CH2_DECODER, CH2_IMAGE_SIZE, CH2_LATENT_DIM = "vae_decoder.keras", 32, 2


# ---------------------------------------------------------------------------------------------
# The two players (Radford et al. 2015, sec. 3): no pooling, since strided convolutions learn
# their own down- and upsampling; batch norm in both networks, but not on the generator's
# output or the discriminator's input; ReLU in the generator with tanh at the output,
# LeakyReLU(0.2) in the discriminator, which ends in one logit. The batch norm is
# `synchronized`: under --distribute its statistics are those of the global batch.

def generator_layers(image_shape=IMAGE_SHAPE) -> list[layers.Layer]:
    """Dense 7*7*128 -> Reshape -> Conv2DTranspose 64 (14x14) -> Conv2DTranspose 1 (28x28,
    tanh): from a noise vector to an image in [-1, 1]. ch4_cgan puts the same stack after
    noise and label. For 32x32 colour images the stack starts at 8x8 and ends in 3
    channels."""
    side = image_shape[0] // 4
    return [
        layers.Dense(side * side * 128, use_bias=False, name="project"),
        layers.BatchNormalization(synchronized=True, name="project_bn"),
        layers.ReLU(name="project_relu"),
        layers.Reshape((side, side, 128), name="to_feature_maps"),
        layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False, name="up_14"),
        layers.BatchNormalization(synchronized=True, name="up_14_bn"),
        layers.ReLU(name="up_14_relu"),
        layers.Conv2DTranspose(image_shape[-1], 4, strides=2, padding="same",
                               activation="tanh", name="up_28"),
    ]


def discriminator_layers() -> list[layers.Layer]:
    """Conv2D 64 (stride 2, 14x14) -> Conv2D 128 (stride 2, 7x7) + batch norm -> Dense 1:
    from an image to one logit, "real" when positive."""
    return [
        layers.Conv2D(64, 4, strides=2, padding="same", name="down_14"),
        layers.LeakyReLU(0.2, name="down_14_lrelu"),
        layers.Conv2D(128, 4, strides=2, padding="same", use_bias=False, name="down_7"),
        layers.BatchNormalization(synchronized=True, name="down_7_bn"),
        layers.LeakyReLU(0.2, name="down_7_lrelu"),
        layers.Flatten(name="flatten"),
        layers.Dense(1, name="logit"),
    ]


def build_generator(latent_dim: int = LATENT_DIM, name: str = "generator",
                    image_shape=IMAGE_SHAPE) -> keras.Model:
    """G: z (100) -> image (28, 28, 1); 784,641 parameters."""
    return keras.Sequential([keras.Input((latent_dim,), name="z"),
                             *generator_layers(image_shape)], name=name)


def build_discriminator(name: str = "discriminator", image_shape=IMAGE_SHAPE) -> keras.Model:
    """D: image (28, 28, 1) -> one logit; 138,945 parameters."""
    return keras.Sequential([keras.Input(image_shape, name="image"), *discriminator_layers()],
                            name=name)


def build_dcgan(seed: int | None = None, image_shape=IMAGE_SHAPE) -> GAN:
    """G and D in the shared adversarial step (common.gan.training): one D and one G update
    per batch."""
    return GAN(build_generator(image_shape=image_shape),
               build_discriminator(image_shape=image_shape), LATENT_DIM, seed=seed,
               name="dcgan")


def main(argv=None) -> int:
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128,
                         learning_rate=2e-4,
                         learning_rate_help="Adam's step size for both networks")
    args = parse(parser, argv)
    if args.summary:
        return build_dcgan(args.seed).print_summaries()

    run_info = prepare(args, images=IMAGES)
    data, epochs = run_info.data, run_info.epochs
    check_square_side(data, multiple=4)
    gan = build_dcgan(args.seed, data.image_shape)  # 28x28x1, or 32x32x3 colour
    gan.print_summaries()
    rng = np.random.default_rng(args.seed)
    grid = SampleGrid(args.out, rng.standard_normal((50, LATENT_DIM)).astype("float32"),
                      title="DCGAN")
    print(f"\n== training for {plural(epochs, 'epoch')}: one D and one G update per batch ==")
    train = batches(to_tanh_range(data.x_train), batch_size=args.batch_size, seed=args.seed)
    run_ = fit_gan(gan, train, epochs=epochs, batch_size=args.batch_size, out=args.out,
                   samples=grid, learning_rate=args.learning_rate)

    print("\nscoring samples with the feature classifier (trained once per dataset, cached)")
    judge = FeatureClassifier.for_dataset(data, args.out.parent)
    samples = generate(gan.generator, rng.standard_normal((SCORED, LATENT_DIM))
                       .astype("float32"))
    scored = judge.fid_report(data, samples)
    counts = np.bincount(judge.predict(samples[:COUNTED]), minlength=data.num_classes)
    vae_fid = vae_sample_fid(judge, args.out.parent / "ch2_vae", data, rng)
    vae_text = ("not available (run chapters/ch2_vae.py on the same data)" if vae_fid is None
                else f"{vae_fid:.2f}")
    print(f"DCGAN: {describe_fid(scored)}; chapter-2 VAE: classifier FID {vae_text}")
    print(f"classes among {COUNTED:,} samples: {dict(zip(data.class_names, counts.tolist()))}"
          f" ({'every class appears' if counts.min() > 0 else 'MISSING CLASSES: mode collapse'})")

    figures.image_grid(samples[:100], args.out / "samples.png", ncols=10,
                       suptitle=f"DCGAN: 100 samples after {plural(epochs, 'epoch')}")
    equilibrium_curves(run_.history, args.out / "loss_curves.png",
                       title="DCGAN training: the game drifts towards its equilibrium")
    figures.bars({"share of samples": (counts / counts.sum()).tolist()},
                 args.out / "sample_classes.png", labels=data.class_names,
                 title=f"Classes of {COUNTED:,} samples (the feature classifier's verdict)",
                 xlabel="class", ylabel="share")
    trained = gan.save_and_summarise(run_, args.out)
    write_metrics(args.out, chapter=CHAPTER, data=data, args=args, epochs=epochs,
                  judge=judge, wall_seconds=run_info.elapsed(), models={"dcgan": {
                      **scored, "ch2_vae_classifier_fid":
                          None if vae_fid is None else round(vae_fid, 3),
                      "sample_class_counts": counts.tolist(),
                      "every_class_appears": bool(counts.min() > 0),
                      **trained}})
    print(f"\nFigures (progress.gif shows the training), models and metrics.json are in "
          f"{args.out}/")
    return 0


def vae_sample_fid(judge, ch2_out: Path, data, rng) -> float | None:
    """Classifier FID of the chapter-2 VAE's samples z ~ N(0, I), when that chapter ran in
    full on the same dataset. Its decoder makes 32x32 images; the 28x28 centre is scored."""
    if data.image_shape != IMAGE_SHAPE:  # the decoder's 28x28 centre is grey MNIST-sized
        return None
    try:
        record = json.loads((ch2_out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("dataset", {}).get("name") != data.name or record.get("quick"):
        return None
    path = ch2_out / CH2_DECODER
    try:
        decoder = keras.saving.load_model(path, safe_mode=True)
    except (OSError, ValueError) as err:
        raise UserError(f"{path} could not be loaded ({err}); "
                        "run chapters/ch2_vae.py again") from None
    z = rng.standard_normal((SCORED, CH2_LATENT_DIM)).astype("float32")
    images = decoder.predict(z, batch_size=500, verbose=0)
    side = CH2_IMAGE_SIZE
    centre = images.reshape(-1, side, side)[:, 2:-2, 2:-2, None]
    return judge.fid(data.x_test, centre)


if __name__ == "__main__":
    sys.exit(run(main))
