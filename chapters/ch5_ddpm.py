"""Chapter 5: a denoising diffusion model (DDPM, Ho et al. 2020) with a time-conditioned U-Net.

Generation as the reverse of destruction. The forward process adds a little Gaussian noise
T = 1000 times until nothing of the image is left (see noising_strip.png); a U-Net learns to
predict the noise in x_t given t, trained with a plain MSE on random steps of random images
(common.diffusion). Sampling starts from pure noise and removes the predicted noise step by
step: 1000 network passes per image with the ancestral sampler, or 50 with DDIM (Song et al.
2021), which skips steps deterministically. The weights used for sampling are an exponential
moving average of the trained ones (decay 0.999 after a warm-up, common.diffusion), as in the
paper, which smooths out the last steps' noise in the parameters.

Measured: classifier FID of DDIM-50 samples against the test set (common.classifier), the time
to draw 64 images with DDPM-1000 and with DDIM-50 and the FID of each, and training throughput.
64 images are too few for a fair FID; chapters/ch5_samplers.py compares the samplers on 1,000
images from the same noise, at several DDIM step counts, using the U-Net this script saves.

Run:  python chapters/ch5_ddpm.py [--dataset fashion_mnist] [--epochs 6]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: E402,F401  (first: hides TF's native start-up log)
from common import figures  # noqa: E402
from common.atomic import save_model  # noqa: E402
from common.classifier import FeatureClassifier  # noqa: E402
from common.cli import make_parser, parse, run  # noqa: E402
from common.diffusion import Schedule, sample_ddim, sample_ddpm  # noqa: E402
from common.diffusion_training import (BATCH_SIZE, add_diffusion_flags,  # noqa: E402
                                       build_diffusion, check_diffusion_flags,
                                       train_diffusion)
from common.results import write_metrics  # noqa: E402
from common.scaling import to_tanh_range, to_unit_range  # noqa: E402
from common.training import prepare  # noqa: E402

import numpy as np  # noqa: E402

CHAPTER = "ch5_ddpm"
# Default budget: 5 epochs of 60,000 images (25 min of training on a fast day here, 40-60 min on
# slower ones). Sample quality kept improving fast with training: on Fashion-MNIST, classifier
# FID 23.4 after 2 epochs, 12.0 after 4 and 7.4 after 5 (the DCGAN's: 11.8).
IMAGES = 300_000
SHAPE = (28, 28, 1)
STRIP_STEPS = (0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)


def noising_strip(x0: np.ndarray, schedule: Schedule, seed: int) -> np.ndarray:
    """One image at the steps of STRIP_STEPS, noised in closed form with one eps."""
    eps = np.random.default_rng(seed).standard_normal(x0.shape).astype("float32")
    frames = [x0] + [schedule.noisy(x0[None], np.array([t]), eps[None])[0]
                     for t in STRIP_STEPS[1:]]
    return to_unit_range(np.stack(frames))


def main(argv=None) -> int:
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None,
                         batch_size=BATCH_SIZE)
    add_diffusion_flags(parser)
    args = parse(parser, argv)
    check_diffusion_flags(parser, args)
    model = build_diffusion(args.channels, seed=args.seed, attention=args.attention)
    model.network.summary(line_length=110)
    if args.summary:
        return 0

    data, start = prepare(args, images=IMAGES)
    print(f"\n== training the noise predictor for {args.epochs} epochs ==")
    run_ = train_diffusion(model, data, args)
    figures.image_grid(noising_strip(to_tanh_range(data.x_test[0]), model.schedule, args.seed),
                       args.out / "noising_strip.png", ncols=len(STRIP_STEPS),
                       titles=[f"t={t}" for t in STRIP_STEPS],
                       suptitle="The forward process: x_t = sqrt(abar_t) x_0 + "
                                "sqrt(1 - abar_t) eps")

    judge = FeatureClassifier.for_dataset(data, args.out.parent, seed=args.seed)
    n_fid = min(args.fid_samples, 64) if args.quick else args.fid_samples
    print(f"\nsampling {n_fid} images with DDIM-50 for the FID")
    ddim = to_unit_range(sample_ddim(model.ema_network, model.schedule, (n_fid, *SHAPE),
                                     seed=args.seed))
    fid = judge.fid(data.x_test, ddim)
    print(f"classifier FID of {n_fid} DDIM-50 samples: {fid:.2f}")
    timing, strips = {}, None
    if not args.quick:  # 1000 network passes per image: minutes, so not in a smoke test
        timing, strips = compare_samplers(model, judge, data, 64, args.seed)
        print(f"64-image timing: DDPM-1000 {timing['ddpm_seconds']:.1f} s (FID "
              f"{timing['ddpm_fid']:.1f}), DDIM-50 {timing['ddim_seconds']:.1f} s (FID "
              f"{timing['ddim_fid']:.1f}); ratio {timing['time_ratio']:.3f}")
    reverse_process_figure(model, args.out / "reverse_process.png", args.seed, strips)
    figures.image_grid(ddim[:100], args.out / "samples.png", ncols=10,
                       suptitle="DDIM-50 samples from the EMA weights")
    figures.curves({"train MSE on the noise": run_.history["loss"]}, args.out / "loss_curve.png",
                   title="DDPM training loss", ylabel="MSE")
    save_model(model.ema_network, args.out / "unet_ema.keras")
    save_model(model.network, args.out / "unet.keras")  # the last trained weights, to compare
    write_metrics(args.out, chapter=CHAPTER, data=data, args=args,
                  wall_seconds=time.perf_counter() - start, models={"ddpm": {
                      "classifier_fid": round(fid, 3), "fid_samples": n_fid, **timing,
                      "params": model.network.count_params(), "channels": args.channels,
                      **run_.speed(),
                      "train_seconds": round(run_.wall_seconds, 1)}})
    print(f"\nFigures, the U-Nets (EMA and last) and metrics.json are in {args.out}/ "
          "(start with reverse_process.png); next, python chapters/ch5_samplers.py "
          f"--run {args.out} compares the samplers")
    return 0


def reverse_process_figure(model, path, seed: int, strips=None) -> None:
    """Six samples as strips of x_t, from noise to image: the ancestral DDPM run of
    compare_samplers every 100 steps, or (in a --quick run, which skips it) DDIM-50 every 5
    of its steps."""
    if strips is None:
        strips = sample_ddim(model.ema_network, model.schedule, (6, *SHAPE), seed=seed + 1,
                             keep_every=5)
        name = "DDIM-50, every 5 of its steps"
    else:
        name = "ancestral DDPM, every 100 of 1000 steps"
    frames = to_unit_range(strips[1][:, :6].transpose(1, 0, 2, 3, 4))  # x_T ... x_0 per row
    figures.image_grid(frames.reshape(-1, *SHAPE), path, ncols=frames.shape[1],
                       suptitle=f"The reverse process, noise to image ({name})")


def compare_samplers(model, judge, data, n: int, seed: int):
    """Time DDPM-1000 and DDIM-50 drawing n images each (the time includes tracing each
    sampler's loop, a few seconds); the FID of each set. Also returns the DDPM run's final
    images and its x_t every 100 steps, which the reverse-process figure shows."""
    results, strips = {}, None
    for name, sampler, keep in (("ddpm", sample_ddpm, 100), ("ddim", sample_ddim, 0)):
        start = time.perf_counter()
        drawn = sampler(model.ema_network, model.schedule, (n, *SHAPE), seed=seed + 7,
                        keep_every=keep)
        results[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
        if keep:
            strips, drawn = drawn, drawn[0]
        results[f"{name}_fid"] = round(judge.fid(data.x_test, to_unit_range(drawn)), 3)
    results["time_ratio"] = round(results["ddim_seconds"] / results["ddpm_seconds"], 4)
    results["timed_images"] = n
    return results, strips


if __name__ == "__main__":
    sys.exit(run(main))
