"""Chapter 5: conditional diffusion with classifier-free guidance (Ho & Salimans 2022).

The DDPM of chapters/ch5_ddpm.py with a label: a learned class embedding is added to the step's
embedding in every residual block of the U-Net of chapters/ch5_ddpm.py. During training
each label is replaced by an extra "null" class with probability 0.1, so one network learns
both eps(x_t, t, y) and the unconditional eps(x_t, t). Sampling mixes the two,

    eps = eps(x_t, t, null) + w * (eps(x_t, t, y) - eps(x_t, t, null)),

and the guidance scale w moves along a trade-off: w = 0 ignores the label (unconditional
samples), w = 1 is the plain conditional model, and w > 1 pushes each sample further towards
what makes it class y, more recognisable and less varied (guidance_scales.png).

Measured with the judge (common.eval.classifier): the conditional accuracy of samples
(--sampler, DPM-Solver++(2M) at 20 steps unless told) at each guidance scale, with the bar of
every guided chapter at --guidance (common.eval.guidance), and their classifier FID and KID.
The chosen scale is scored on --fid-samples samples, the others on 30% as many to keep the
sweep affordable on a CPU; FID grows as the sample count shrinks, so compare FIDs only between
equal counts.

Run:  python chapters/ch5_conditional_diffusion.py [--dataset fashion_mnist] [--guidance 2]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` and `chapters` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

import numpy as np

from chapters.ch5_ddpm import COLOUR_IMAGES, build_diffusion
from common import figures
from common.atomic import save_model
from common.cli import (
    check_class_index,
    make_parser,
    non_negative_float,
    non_negative_int,
    parse,
    plural,
    run_main,
)
from common.data import check_square_side
from common.diffusion.samplers import describe, sample
from common.diffusion.trainer import (
    BATCH_SIZE,
    add_diffusion_flags,
    check_diffusion_flags,
    train_diffusion,
)
from common.eval.classifier import FeatureClassifier
from common.eval.guidance import by_guidance, guidance_sweep
from common.results import write_metrics
from common.run import epochs_for, start
from common.scaling import to_unit_range
from common.summary import print_summary

CHAPTER = "ch5_conditional_diffusion"
# Default budget: 3 epochs of 60,000 images; at 2 the label was learnt too weakly (see
# docs/results.md). Colour images get chapter 5's COLOUR_IMAGES (10 epochs of the emoji).
IMAGES = 180_000
SIDE_SHARE = 0.3  # the scales other than --guidance are scored on 30% as many samples
SCALES = (0.0, 1.0, 2.0, 3.0, 5.0)


def guided_samples(model, labels, guidance: float, seed: int, sampler: str = "dpmpp",
                   steps: int | None = None) -> np.ndarray:
    """Samples of the requested classes at guidance scale w, in [0, 1], drawn with `sampler`
    (DPM-Solver++(2M)-20 unless told). Guidance extrapolates past the conditional prediction, so the
    predicted x_0 is clipped to [-1, 1] at every step (higher accuracy and lower FID; see
    docs/results.md)."""
    labels = np.asarray(labels, np.int32)
    shape = tuple(model.ema_network.inputs[0].shape[1:])  # 28x28x1, or 32x32x3 in colour
    return to_unit_range(sample(model.ema_network, model.schedule, (len(labels), *shape),
                                sampler=sampler, sampling_steps=steps, labels=labels,
                                guidance=guidance, null_class=model.num_classes, seed=seed,
                                clip=True))


def flags():
    """The command line: the shared flags and the chapter's own (see --help)."""
    parser = make_parser(CHAPTER, __doc__.splitlines()[0], epochs=None,
                         batch_size=BATCH_SIZE, learning_rate=1e-3)
    # DPM-Solver++-20: the conditional accuracy of DDIM-50 in fewer passes (see
    # docs/results.md); the method was designed for guided sampling.
    add_diffusion_flags(parser, sampler="dpmpp")
    parser.add_argument("--guidance", type=non_negative_float, default=2.0,
                        help="guidance scale w of the class grid and the bar (default 2)")
    parser.add_argument("--show-class", type=non_negative_int, default=0,
                        help="the class drawn at every guidance scale (default 0)")
    return parser


def main(argv=None) -> int:
    parser = flags()
    args = parse(parser, argv)
    check_diffusion_flags(parser, args)
    if args.summary:
        print_summary(build_diffusion(args.channels, 10, name="cfg", attention=args.attention,
                                      denoiser=args.denoiser).network)
        return 0

    with start(args, images=IMAGES) as run:
        # The data: images with their labels (on --dataset emoji, the emoji's nine groups).
        data, k = run.data, run.data.num_classes
        check_square_side(data, multiple=4)
        if data.image_shape[-1] == 3 and args.epochs is None and not run.quick:
            run.epochs = epochs_for(None, len(data.x_train), images=COLOUR_IMAGES)  # 20 min
        check_class_index(parser, "--show-class", args.show_class, k)
        figures.data_grid(data, run.out / "data.png")

        # Chapter 5's U-Net with a class embedding added to the step's, and its trainer.
        model = build_diffusion(args.channels, k, seed=run.seed, name="cfg_diffusion",
                                attention=args.attention, denoiser=args.denoiser,
                                shape=data.image_shape)
        print_summary(model.network)

        # Training: Algorithm 1 of chapter 5, the label replaced by "no label" 10% of the time.
        print(f"\n== training for {plural(run.epochs, 'epoch')} (labels dropped 10% of the "
              "time) ==")
        trained = train_diffusion(model, data, epochs=run.epochs, batch_size=run.batch_size,
                                  learning_rate=args.learning_rate, seed=run.seed, out=run.out)

        # Guidance: classes drawn at each scale w, the judge's accuracy and FID for each.
        judge = FeatureClassifier.for_dataset(data, run.out.parent)
        # a smoke test checks the plumbing, not the samples: few steps
        steps = min(args.sampling_steps or 10, 10) if run.quick and args.sampler != "ddpm" \
            else args.sampling_steps
        draw = {"sampler": args.sampler, "steps": steps}
        per_class = max(1, (min(args.fid_samples, 100) if run.quick else args.fid_samples) // k)
        scores = guidance_sweep(  # the sweep costs 2 network passes per step and image
            lambda labels, w: guided_samples(model, labels, w, run.seed, **draw), judge, data,
            scales=SCALES, chosen=args.guidance, per_class=per_class, side_share=SIDE_SHARE)
        # How long 100 samples take once the sampler is compiled (not in a smoke test, whose
        # time means nothing); the figures, the EMA network and metrics.json.
        timing = None if run.quick else time_hundred(model, args.guidance, draw)
        if timing is not None:
            print(f"100 samples in {timing:.2f} s once compiled "
                  f"({describe(args.sampler, steps)})")
        _figures(model, data, scores, draw, args.guidance, args.show_class, run.seed, run.out)
        save_model(model.ema_network, run.out / "unet_ema.keras")
        write_metrics(run, judge=judge, models={"cfg_diffusion": {
            "guidance": args.guidance, "sampler": describe(args.sampler, steps),
            **scores[args.guidance], "by_guidance": by_guidance(scores),
            "sample_100_seconds": timing and round(timing, 2),
            "params": model.network.count_params(),
            **trained.speed()}})
    print(run.closing(f"\nFigures, the EMA denoiser and metrics.json are in {run.out}/ "
                      "(start with class_grid.png)"))
    return 0


def time_hundred(model, guidance: float, draw) -> float:
    """Seconds to draw 100 guided images, timed on the second call (the first compiles)."""
    labels = np.arange(100) % model.num_classes
    guided_samples(model, labels, guidance, 0, **draw)
    began = time.perf_counter()
    guided_samples(model, labels, guidance, 1, **draw)
    return time.perf_counter() - began


def _figures(model, data, scores, draw, guidance: float, show: int, seed: int, out) -> None:
    k, label = data.num_classes, describe(draw["sampler"], draw["steps"])
    grid_labels = np.repeat(np.arange(k), 10)
    figures.image_grid(guided_samples(model, grid_labels, guidance, seed + 1, **draw),
                       out / "class_grid.png", ncols=10, row_labels=data.class_names,
                       suptitle=f"One row per class, guidance w = {guidance:g} ({label})")
    rows = [guided_samples(model, np.full(10, show), w, seed + 2, **draw) for w in SCALES]
    figures.image_grid(np.concatenate(rows), out / "guidance_scales.png", ncols=10,
                       row_labels=[f"w = {w:g}" for w in SCALES],
                       suptitle=f"Class '{data.class_names[show]}' at growing "
                                "guidance: the same noise in every row")
    figures.curves({"conditional accuracy": [scores[w]["conditional_accuracy"] for w in SCALES]},
                   out / "guidance_tradeoff.png", xlabel="guidance scale index "
                   f"(w = {', '.join(f'{w:g}' for w in SCALES)})",
                   title="Guidance: recognisability against the scale", ylabel="accuracy")


if __name__ == "__main__":
    sys.exit(run_main(main))
