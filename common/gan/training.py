"""What the GAN chapters share that is not the game itself: optimisers made ready for a
distributed or mixed-precision run, the cost of a training step, the sample grid drawn after
every epoch, saving both networks, and the loss curves against the game's equilibrium.

The game (one discriminator update, then one generator update, per batch) is written out in
chapters/ch4_dcgan.py, the chapter that teaches it; ch4_cgan and ch4_pix2pix reuse it.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from PIL import Image

from common import figures, notebooks
from common.atomic import atomic_path, save_model
from common.flops import BACKWARD_FACTOR, forward_flops
from common.precision import loss_scaled
from common.scaling import to_unit_range


def ready_optimizer(optimizer: keras.optimizers.Optimizer,
                    network: keras.Model) -> keras.optimizers.Optimizer:
    """`optimizer` for `network`'s weights, ready for any run: wrapped in a loss scale under
    mixed_float16 (common.precision), and with its slots made now, in the strategy's scope
    under --distribute, rather than inside the first step's replicas (where they cannot be)."""
    optimizer = loss_scaled(optimizer)
    optimizer.build(network.trainable_variables)
    return optimizer


def gan_training_flops(generator: keras.Model, discriminator: keras.Model) -> int:
    """Per real image: D's update runs G forward (g) and D forward and backward on a real
    and a fake image (2 x 3d); G's update runs G and D forward and backward (3g + 3d).
    Together 4g + 9d; see common.flops."""
    g, d = forward_flops(generator), forward_flops(discriminator)
    return g + 2 * BACKWARD_FACTOR * d + BACKWARD_FACTOR * (g + d)


def save_gan(gan, trained, out: Path) -> dict:
    """Save both networks as `.keras` files (plain functional models; the training wrapper is
    not saved) and return the numbers a GAN chapter records: the last epoch's trackers, the
    parameter counts, throughput and time (`trained`, common.training.FitResult)."""
    save_model(gan.generator, Path(out) / "generator.keras")
    save_model(gan.discriminator, Path(out) / "discriminator.keras")
    return {"final": {k: round(v[-1], 4) for k, v in trained.history.items()},
            "generator_params": gan.generator.count_params(),
            "discriminator_params": gan.discriminator.count_params(),
            **trained.speed()}


def generate(generator: keras.Model, z: np.ndarray, labels=None, num_classes: int = 0,
             batch_size: int = 500) -> np.ndarray:
    """Images in [0, 1] from noise `z` (and integer `labels` for a conditional generator)."""
    inputs = z if labels is None else [z, np.eye(num_classes, dtype="float32")[labels]]
    return to_unit_range(generator.predict(inputs, batch_size=batch_size, verbose=0))


class SampleGrid(keras.callbacks.Callback):
    """After every epoch, draw the same input `z` (noise, or images for an image-to-image
    generator; with labels for a conditional one) through the generator and save the grid as
    `progress/epoch_NNN.png`; at the end, `progress.gif` animates the grids."""

    def __init__(self, out: Path, z: np.ndarray, labels=None, num_classes: int = 0,
                 ncols: int = 10, title: str = "samples"):
        super().__init__()
        self.folder = Path(out) / "progress"
        self.z, self.labels, self.num_classes = z, labels, num_classes
        self.ncols, self.title = ncols, title
        self.frames: list[Path] = []

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        images = generate(self.model.generator, self.z, self.labels, self.num_classes)
        path = figures.image_grid(images, self.folder / f"epoch_{epoch + 1:03d}.png",
                                  ncols=self.ncols, inline=False,
                                  suptitle=f"{self.title}: epoch {epoch + 1} (same noise)")
        self.frames.append(path)

    def on_train_end(self, logs=None):
        frames = sorted(self.folder.glob("epoch_*.png"))  # includes frames of a resumed run
        if frames:
            write_gif(frames, self.folder.parent / "progress.gif")
            notebooks.show(frames[-1])  # the last epoch's grid, in a notebook


def write_gif(frames, path: Path, seconds_per_frame: float = 0.6) -> Path:
    """Animate PNG frames into a looping GIF, written atomically."""
    images = [Image.open(f).convert("RGB") for f in frames]
    size = images[0].size
    images = [im.resize(size) for im in images]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(seconds_per_frame * 1000), loop=0)
    return Path(path)


def equilibrium_curves(history: dict, path: Path, *, title: str) -> Path:
    """Losses and D's mean outputs per epoch, with the values of the game's equilibrium."""
    return figures.curve_panels(
        [("losses", {"d_loss": history["d_loss"], "g_loss": history["g_loss"]}, "BCE",
          {"d_loss at equilibrium (2 log 2)": 2 * np.log(2.0),
           "g_loss at equilibrium (log 2)": np.log(2.0)}),
         ("discriminator outputs", {"D(x), real": history["d_real"],
                                    "D(G(z)), fake": history["d_fake"]}, "mean probability",
          {"equilibrium D = 1/2": 0.5})],
        path, suptitle=title)
