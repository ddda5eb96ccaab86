"""Chapter 4: the DCGAN (Radford et al. 2015): a generator and a discriminator in a two-player game.

The generator G turns 100-d noise z ~ N(0, I) into an image; the discriminator D outputs the
probability that an image is real. They train in turns on every batch (common.gan): D learns
to tell real from G(z), then G learns to make D call its images real. Neither network ever
sees a pixel-wise target, so unlike the chapter-2 VAE there is no blur from averaging: the
samples are sharp when the game goes well, and can collapse onto a few kinds of image when it
goes badly (mode collapse), which is why the run counts the classes among its samples.

Measured, with the chapter's feature classifier (common.classifier):
- classifier FID of 5,000 samples against the test set, next to the chapter-2 VAE's samples
  (when outputs/ch2_vae holds a full run on the same data) and next to 5,000 real training
  images (the floor any generator can reach);
- the classes of 1,000 samples (every class should appear).

Run:  python chapters/ch4_dcgan.py [--dataset fashion_mnist] [--epochs 3]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: E402,F401  (first: hides TF's native start-up log)
from common import figures  # noqa: E402
from common.classifier import FeatureClassifier  # noqa: E402
from common.cli import make_parser, parse, positive_float, run  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.gan import (GAN, SampleGrid, equilibrium_curves, fit_gan, generate,  # noqa: E402
                        save_and_summarise)
from common.pipeline import batches  # noqa: E402
from common.gan_models import build_discriminator, build_generator  # noqa: E402
from common.results import write_metrics  # noqa: E402
from common.scaling import to_tanh_range  # noqa: E402
from common.training import prepare  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

CHAPTER = "ch4_dcgan"
LATENT_DIM = 100
IMAGES = 180_000  # default budget: 3 epochs of 60,000 images (about 11 minutes here)
SCORED = 5_000
COUNTED = 1_000


def build_dcgan(seed: int | None = None) -> GAN:
    return GAN(build_generator(LATENT_DIM), build_discriminator(), LATENT_DIM, seed=seed,
               name="dcgan")


def main(argv=None) -> int:
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None, batch_size=128)
    parser.add_argument("--learning-rate", type=positive_float, default=2e-4,
                        help="Adam's step size for both networks (default 2e-4)")
    args = parse(parser, argv)
    gan = build_dcgan(args.seed)
    gan.generator.summary()
    gan.discriminator.summary()
    if args.summary:
        return 0

    data, start = prepare(args, images=IMAGES)
    rng = np.random.default_rng(args.seed)
    grid = SampleGrid(args.out, rng.standard_normal((50, LATENT_DIM)).astype("float32"),
                      title="DCGAN")
    print(f"\n== training for {args.epochs} epochs: one D and one G update per batch ==")
    train = batches(to_tanh_range(data.x_train), batch_size=args.batch_size, seed=args.seed)
    run_ = fit_gan(gan, train, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                   samples=grid, learning_rate=args.learning_rate)

    print("\nscoring samples with the feature classifier (trained once per dataset, cached)")
    judge = FeatureClassifier.for_dataset(data, args.out.parent, seed=args.seed)
    samples = generate(gan.generator, rng.standard_normal((SCORED, LATENT_DIM))
                       .astype("float32"))
    fid = judge.fid(data.x_test, samples)
    floor = judge.fid(data.x_test, data.x_train[:SCORED])
    counts = np.bincount(judge.predict(samples[:COUNTED]), minlength=data.num_classes)
    vae_fid = vae_sample_fid(judge, args.out.parent / "ch2_vae", data, rng)
    vae_text = ("not available (run chapters/ch2_vae.py on the same data)" if vae_fid is None
                else f"{vae_fid:.2f}")
    print(f"classifier FID of {SCORED:,} samples: DCGAN {fid:.2f}; chapter-2 VAE {vae_text}; "
          f"real training images {floor:.2f}")
    print(f"classes among {COUNTED:,} samples: {dict(zip(data.class_names, counts.tolist()))}"
          f" ({'every class appears' if counts.min() > 0 else 'MISSING CLASSES: mode collapse'})")

    figures.image_grid(samples[:100], args.out / "samples.png", ncols=10,
                       suptitle=f"DCGAN: 100 samples after {args.epochs} epochs")
    equilibrium_curves(run_.history, args.out / "loss_curves.png",
                       title="DCGAN training: the game drifts towards its equilibrium")
    figures.bars({"share of samples": (counts / counts.sum()).tolist()},
                 args.out / "sample_classes.png", labels=data.class_names,
                 title=f"Classes of {COUNTED:,} samples (the feature classifier's verdict)",
                 xlabel="class", ylabel="share")
    trained = save_and_summarise(gan, run_, args.out)
    write_metrics(args.out, chapter=CHAPTER, data=data, args=args,
                  wall_seconds=time.perf_counter() - start, models={"dcgan": {
                      "classifier_fid": round(fid, 3), "ch2_vae_classifier_fid":
                          None if vae_fid is None else round(vae_fid, 3),
                      "real_images_classifier_fid": round(floor, 3),
                      "sample_class_counts": counts.tolist(),
                      "every_class_appears": bool(counts.min() > 0),
                      **trained}})
    print(f"\nFigures (progress.gif shows the training), models and metrics.json are in "
          f"{args.out}/")
    return 0


def vae_sample_fid(judge, ch2_out: Path, data, rng) -> float | None:
    """Classifier FID of the chapter-2 VAE's samples z ~ N(0, I), when that chapter ran in
    full on the same dataset. Its decoder makes 32x32 images; the 28x28 centre is scored."""
    try:
        record = json.loads((ch2_out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("dataset", {}).get("name") != data.name or record.get("quick"):
        return None
    from chapters import ch2_vae  # noqa: F401  (registers the VAE's Lambda function and loss)

    try:
        vae = keras.saving.load_model(ch2_out / "vae.keras", safe_mode=True)
    except (OSError, ValueError) as err:
        raise UserError(f"{ch2_out / 'vae.keras'} could not be loaded ({err}); "
                        "run chapters/ch2_vae.py again") from None
    z = rng.standard_normal((SCORED, ch2_vae.LATENT_DIM)).astype("float32")
    images = vae.get_layer("vae_decoder").predict(z, batch_size=500, verbose=0)
    side = ch2_vae.IMAGE_SIZE
    centre = images.reshape(-1, side, side)[:, 2:-2, 2:-2, None]
    return judge.fid(data.x_test, centre)


if __name__ == "__main__":
    sys.exit(run(main))
