"""What the diffusion chapters share around their training step: the fit call (Adam with a
cosine decay over the run), the batch size, and the flags every diffusion chapter takes.

The training step itself, DDPM's Algorithm 1, is written out in chapters/ch5_ddpm.py
(`DiffusionModel`), which the conditional and latent chapters reuse.
"""

from __future__ import annotations

from common.cli import positive_int
from common.diffusion.samplers import DEFAULT_STEPS, SAMPLERS
from common.diffusion.schedule import Schedule
from common.pipeline import batches
from common.scaling import to_tanh_range
from common.training import cosine_adam, fit

# Batch 32: a short diffusion run is limited by optimizer steps, and batch 32 takes twice as
# many as 64 at equal images, for a lower FID (see docs/results.md).
BATCH_SIZE = 32


def train_diffusion(model, data, *, epochs: int, batch_size: int,
                    learning_rate: float, seed: int, out, x_train=None, labels=None):
    """Adam with a cosine decay over the run, on [-1, 1] images (with labels when the model
    is conditional), through common.training.fit. `x_train` replaces the images (a latent
    diffusion model trains on their codes), in the order of `data.y_train`; `labels` replace
    the classes (a text model's token ids, one row per image)."""
    x_train = to_tanh_range(data.x_train) if x_train is None else x_train
    steps = epochs * (len(x_train) // batch_size)
    model.compile(optimizer=cosine_adam(learning_rate, steps))
    if labels is None and model.num_classes:
        labels = data.y_train
    train_set = batches(x_train, labels, batch_size=batch_size, seed=seed)
    return fit(model, train_set, epochs=epochs, batch_size=batch_size, out=out,
               tag=model.name, nan_hint="try a lower --learning-rate")


def add_diffusion_flags(parser, sampler: str = "ddim") -> None:
    """The flags both diffusion chapters take besides the shared ones; `sampler` is the
    chapter's default --sampler."""
    parser.add_argument("--channels", type=positive_int, default=32,
                        help="U-Net width at 28x28, a multiple of 8; 14x14 and 7x7 use twice "
                             "this (default 32)")
    parser.add_argument("--attention", action="store_true",
                        help="add self-attention at 7x7 (slower for little gain, so off by "
                             "default; see docs/results.md)")
    add_denoiser_flag(parser)
    add_sampler_flags(parser, sampler)


def add_denoiser_flag(parser) -> None:
    """--denoiser: the chapter's convolutional network (default) or a diffusion Transformer."""
    parser.add_argument("--denoiser", choices=("unet", "dit"), default="unet",
                        help="the noise predictor: the convolutional U-Net (default) or a "
                             "diffusion Transformer (DiT, adaLN-Zero; chapters/ch5_ddpm.py)")


def add_sampler_flags(parser, sampler: str) -> None:
    """--fid-samples, --sampler and --sampling-steps: what every chapter that samples a
    diffusion model takes."""
    parser.add_argument("--fid-samples", type=positive_int, default=1000,
                        help="samples scored by classifier FID (default 1000)")
    parser.add_argument("--sampler", choices=SAMPLERS, default=sampler,
                        help=f"how samples are drawn (default {sampler}; "
                             "chapters/ch5_samplers.py compares them)")
    parser.add_argument("--sampling-steps", type=positive_int, default=None,
                        help="network passes per sample (default: " + ", ".join(
                            f"{n} {name}" for name, n in DEFAULT_STEPS.items()) + ")")


def check_diffusion_flags(parser, args) -> None:
    """One-line errors for the flags add_diffusion_flags adds."""
    if args.channels % 8:
        parser.error("--channels must be a multiple of 8 (group normalisation uses 8 groups)")
    if getattr(args, "attention", False) and getattr(args, "denoiser", "unet") == "dit":
        parser.error("--attention adds self-attention to the U-Net; the DiT (--denoiser dit) "
                     "is attention throughout")
    steps = args.sampling_steps
    if steps is not None and args.sampler == "ddpm" and steps != Schedule().steps:
        parser.error(f"--sampler ddpm takes all {Schedule().steps} steps; --sampling-steps "
                     "applies to ddim, dpmpp and dpmpp_sde")
    if steps is not None and steps > Schedule().steps:
        parser.error(f"--sampling-steps must be at most {Schedule().steps}, the steps the "
                     "model is trained with")
