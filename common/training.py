"""Training helpers every chapter uses around `model.fit`.

`fit()` adds what a careful run needs and plain `fit` lacks: a seed, a clear error when the
loss turns NaN, resume after an interruption (`BackupAndRestore`) with the history of every
part kept, a throughput in images/s (median over the steps after the first, so
compilation is not counted) with the FLOPs behind it (common.flops), the wall time, and the
history saved as JSON.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from common import notebooks
from common.atomic import write_json
from common.errors import TrainingDiverged
from common.flops import training_flops_per_image


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
        self._start = self._began = 0.0
        self.total_seconds = 0.0  # the whole of this fit() call, evaluation included

    def on_train_begin(self, logs=None):
        self._began = time.perf_counter()

    def on_train_end(self, logs=None):
        self.total_seconds = time.perf_counter() - self._began

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


class RunLog(keras.callbacks.Callback):
    """Keeps every finished epoch's logs, and the wall time of each part of a run, in a JSON
    file, so a run resumed after an interruption (BackupAndRestore) still knows its whole
    history. Put it after BackupAndRestore, which sets the epoch a resumed run starts at."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.record = {"logs": {}, "parts": []}
        if self.path.exists():
            try:
                self.record = json.loads(self.path.read_text())
            except ValueError:  # a damaged log: start it afresh, the weights still resume
                pass
        self._start = 0.0

    def on_train_begin(self, logs=None):
        first = int(getattr(self.model, "_initial_epoch", 0) or 0)
        # keep only the epochs the restored weights have seen
        self.record["logs"] = {k: v[:first] for k, v in self.record["logs"].items()}
        self.record["parts"] = [p for p in self.record["parts"] if p["first_epoch"] <= first]
        self.record["parts"].append({"first_epoch": first + 1, "last_epoch": first,
                                     "wall_seconds": 0.0})
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.record["logs"].setdefault(key, []).append(float(value))
        part = self.record["parts"][-1]
        part["last_epoch"] = epoch + 1
        part["wall_seconds"] = round(time.perf_counter() - self._start, 1)
        write_json(self.path, self.record)

    @property
    def history(self) -> dict[str, list[float]]:
        return self.record["logs"]

    @property
    def parts(self) -> list[dict]:
        return self.record["parts"]


@dataclass
class FitResult:
    history: dict[str, list[float]]
    wall_seconds: float  # training time, every part of a resumed run added up
    images_per_second: float | None
    flops_per_image: int = 0  # training FLOPs per image (common.flops)
    parts: list[dict] = field(default_factory=list)  # epochs and wall time of each part

    def speed(self) -> dict:
        """The training numbers every chapter records: images/s, the model's training
        MFLOP per image and the GFLOP/s they add up to (run_all.py divides that by the
        machine's matmul peak), and the training's wall time."""
        images = self.images_per_second or 0.0
        return {"train_images_per_s": round(images),
                "train_mflop_per_image": round(self.flops_per_image / 1e6, 2),
                "train_gflop_per_s": round(images * self.flops_per_image / 1e9, 1),
                "train_seconds": round(self.wall_seconds, 1),
                **({"resumed_parts": self.parts} if len(self.parts) > 1 else {})}


def fit(model: keras.Model, train, *, epochs: int, batch_size: int, out: Path, tag: str,
        validation=None, resume: bool = True, nan_hint: str = "try a lower learning rate",
        callbacks=(), verbose=None, steps_per_epoch: int | None = None) -> FitResult:
    """`model.fit` with NaN guard, resume, throughput and a JSON history `history_<tag>.json`.

    With `resume`, an interrupted run continues from its last finished epoch when the same
    command is run again, and the history holds every epoch of every part (the backup folder
    `out/.backup/` is removed on success, and for a model whose loss became NaN). An endless
    `train` dataset needs `steps_per_epoch`: then an "epoch" is that many steps.
    """
    if verbose is None:  # a live progress bar on a terminal or in a notebook, else a line per epoch
        verbose = 1 if sys.stdout.isatty() or notebooks.active() else 2
    meter = Throughput(batch_size)
    backups = Path(out) / ".backup"
    backup, log = backups / tag, RunLog(backups / f"{tag}.log.json")
    cbs = [NaNGuard(nan_hint), meter, *callbacks]
    if resume:
        cbs += [keras.callbacks.BackupAndRestore(str(backup)), log]
    try:
        # shuffle=False: the tf.data pipeline shuffles
        history = model.fit(train, validation_data=validation, epochs=epochs, callbacks=cbs,
                            verbose=verbose, shuffle=False, steps_per_epoch=steps_per_epoch)
    except TrainingDiverged:
        shutil.rmtree(backup, ignore_errors=True)  # nothing worth resuming from
        log.path.unlink(missing_ok=True)
        _remove_if_empty(backups)
        raise
    if resume:
        logs, parts = log.history, log.parts
        log.path.unlink(missing_ok=True)
    else:
        logs, parts = {k: [float(v) for v in vals] for k, vals in history.history.items()}, []
    _remove_if_empty(backups)
    write_json(Path(out) / f"history_{tag}.json", logs)
    wall = sum(p["wall_seconds"] for p in parts) if parts else float(meter.total_seconds)
    return FitResult(logs, wall, meter.images_per_second, training_flops_per_image(model),
                     parts)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def cosine_adam(learning_rate: float, total_steps: int) -> keras.optimizers.Adam:
    """Adam whose step size follows a half cosine from `learning_rate` down to 0 over the run
    (Loshchilov & Hutter 2017, SGDR, without restarts): large steps early, fine ones at the
    end (a lower test MSE than a constant rate; see docs/results.md)."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps))
    return keras.optimizers.Adam(schedule)
