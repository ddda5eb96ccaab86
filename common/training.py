"""Training helpers every chapter uses around `model.fit`.

`fit()` adds what a careful run needs and plain `fit` lacks: a seed, a clear error when the
loss turns NaN, resume after an interruption (`BackupAndRestore`), a measured throughput in
images/s (median over the steps after the first, so compilation is not counted) with the FLOPs
behind it (common.flops), the wall time, and the history saved as JSON.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from common.atomic import write_json
from common.cli import epochs_for
from common.data import load
from common.flops import training_flops_per_image
from common.errors import TrainingDiverged


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend so a run can be repeated."""
    keras.utils.set_random_seed(seed)


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss with an error the user can act on."""

    def __init__(self, hint: str = "try a lower learning rate"):
        super().__init__()
        self.hint = hint
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"{self.model.name}: the loss became {float(loss)} at epoch "
                                   f"{self.epoch + 1}, step {batch + 1}; {self.hint}")


class Throughput(keras.callbacks.Callback):
    """Time every training step; report images/s as the median after the first step."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.step_seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step_seconds.append(time.perf_counter() - self._start)

    @property
    def images_per_second(self) -> float | None:
        steps = self.step_seconds[1:]  # the first step includes tracing and compilation
        if not steps:
            return None
        return self.batch_size / float(np.median(steps))


@dataclass
class FitResult:
    history: dict[str, list[float]]
    wall_seconds: float
    images_per_second: float | None
    flops_per_image: int = 0  # training FLOPs per image (common.flops)

    def speed(self) -> dict:
        """The throughput numbers every chapter records: images/s, the model's training
        MFLOP per image and the GFLOP/s they add up to (run_all.py divides that by the
        machine's measured matmul peak)."""
        images = self.images_per_second or 0.0
        return {"train_images_per_s": round(images),
                "train_mflop_per_image": round(self.flops_per_image / 1e6, 2),
                "train_gflop_per_s": round(images * self.flops_per_image / 1e9, 1)}


def fit(model: keras.Model, train, *, epochs: int, batch_size: int, out: Path, tag: str,
        validation=None, resume: bool = True, nan_hint: str = "try a lower learning rate",
        callbacks=(), verbose=None) -> FitResult:
    """`model.fit` with NaN guard, resume, throughput and a JSON history `history_<tag>.json`.

    With `resume`, an interrupted run continues from its last finished epoch when the same
    command is run again (the backup folder under `out/.backup/` is removed on success).
    """
    if verbose is None:  # a live progress bar on a terminal, one line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    meter = Throughput(batch_size)
    cbs = [NaNGuard(nan_hint), meter, *callbacks]
    backup = Path(out) / ".backup" / tag
    if resume:
        cbs.append(keras.callbacks.BackupAndRestore(str(backup)))
    start = time.perf_counter()
    history = model.fit(train, validation_data=validation, epochs=epochs, callbacks=cbs,
                        verbose=verbose, shuffle=False)  # the tf.data pipeline shuffles
    wall = time.perf_counter() - start
    if backup.parent.exists() and not any(backup.parent.iterdir()):
        shutil.rmtree(backup.parent, ignore_errors=True)
    logs = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    write_json(Path(out) / f"history_{tag}.json", logs)
    return FitResult(logs, wall, meter.images_per_second, training_flops_per_image(model))


def cosine_adam(learning_rate: float, total_steps: int) -> keras.optimizers.Adam:
    """Adam whose step size follows a half cosine from `learning_rate` down to 0 over the run
    (Loshchilov & Hutter 2017, SGDR, without restarts): large steps early, fine ones at the
    end. On the chapter-2 autoencoder (Fashion-MNIST, 6 epochs, measured before its decoder's
    first layer was made linear) it lowered the test MSE from 0.0236 (constant 1e-3) to
    0.0221."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps))
    return keras.optimizers.Adam(schedule)


def prepare(args, *, images: int, pad_to: int | None = None, flatten: bool = False):
    """How every training chapter starts: seed everything, load the data (printing which data
    it is), and settle `args.epochs` from the chapter's image budget (common.cli.epochs_for).
    Returns the dataset and the start time for the wall-clock total."""
    start = time.perf_counter()
    seed_everything(args.seed)
    data = load(args.dataset, pad_to=pad_to, flatten=flatten, limit=args.limit)
    print(data.describe())
    args.epochs = epochs_for(args, len(data.x_train), images=images)
    return data, start
