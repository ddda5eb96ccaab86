"""One chapter run, set up in the open: `with start(args, images=...) as run:`.

`common.cli.parse` only reads the flags. Everything a run changes in the process or on disk
happens here, in one call whose result the chapter holds:

- the seeds (Python, NumPy, Keras);
- the dtype policy of `--precision` (with a one-line warning for float16 on a CPU);
- with `--distribute`, the `tf.distribute` strategy, whose scope the run stays in (models and
  optimizers made inside it are mirrored), and the global batch: `--batch-size` per replica
  times the replicas;
- the output folder, made and locked: a second run writing to the same `--out` stops with one
  line instead of colliding with the first;
- the data (`--dataset`), said on screen, and the epoch count from `--epochs` or the chapter's
  image budget;
- the clock: a run interrupted with Ctrl-C and started again adds the time of each part.

Leaving the `with` block undoes what `start` did (scope, policy, lock). When the run fails
(a user error, a full disk), output folders it made are removed again, so nothing
half-written stays; after Ctrl-C they stay, to resume from.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import language
from common.atomic import write_json
from common.errors import DataError, UserError

CLOCK = "clock.json"  # in out/.backup/: the seconds of earlier, interrupted parts of a run
LOCK = ".lock"
_HELD: dict[Path, Run] = {}  # output folders this process holds: a notebook may start again


def epochs_for(epochs: int | None, train_size: int, *, images: int, at_most: int = 60) -> int:
    """`epochs` if given, else enough to show the model about `images` training images (6
    epochs of 60,000 for images=360_000; more on a small set like mnist5k, capped at
    `at_most`), so a default run costs about the same on any dataset."""
    if epochs is not None:
        return epochs
    return max(1, min(at_most, round(images / max(1, train_size))))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and, in a chapter that uses Keras, the backend, so a run can be
    repeated (the classical chapters never load TensorFlow)."""
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
        return
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)


@dataclass
class Run:
    """What `start` settled for one run of a chapter."""

    chapter: str
    out: Path
    seed: int
    quick: bool
    limit: int | None  # images per split with --quick, else None
    data: object = None  # common.data.Dataset, or None for chapters without image data
    epochs: int | None = None
    batch_size: int | None = None  # the global batch: per replica x replicas
    precision: str = "float32"
    language: str = "en"  # of the closing line and the figures (common.language)
    replicas: int = 1
    strategy_name: str | None = None
    earlier_seconds: list[float] = field(default_factory=list)  # interrupted parts before
    started: float = field(default_factory=time.perf_counter)
    _made: list[Path] = field(default_factory=list, repr=False)  # folders this run created
    _before: set = field(default_factory=set, repr=False)  # files in the folder at the start
    _lock: int | None = field(default=None, repr=False)
    _undo: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def elapsed(self) -> float:
        """Seconds of this run: this part, plus the parts before an interruption."""
        return sum(self.earlier_seconds) + time.perf_counter() - self.started

    def wall_time(self) -> dict:
        """What metrics.json records of the time: the sum, and each part if there were
        several."""
        this = time.perf_counter() - self.started
        parts = [*self.earlier_seconds, this]
        return {"wall_time_s": round(sum(parts), 1),
                **({"wall_time_parts_s": [round(p, 1) for p in parts]} if len(parts) > 1
                   else {})}

    def settings(self) -> dict:
        """The run's settings as metrics.json records them."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed,
                "quick": self.quick,
                **({"strategy": self.strategy_name, "replicas": self.replicas}
                   if self.strategy_name else {}),
                "precision": self.precision}

    def __enter__(self) -> Run:
        return self

    def closing(self, english: str) -> str:
        """The run's last line, `english` or its Japanese form (common.language)."""
        return language.closing(self.language, self.chapter, self.out, english)

    def finish(self) -> None:
        """Undo what `start` did, as leaving the `with` block does (for a notebook, which
        runs the block's steps in cells of their own)."""
        self.__exit__(None, None, None)

    def __exit__(self, kind, error, traceback) -> None:
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        try:
            if kind is None:
                (self.out / ".backup" / CLOCK).unlink(missing_ok=True)
                _remove_if_empty(self.out / ".backup")
            elif interrupted or _resumable(self.out):
                self._keep_clock()
            if kind is not None and not interrupted:
                self._remove_what_was_made(whole=is_disk_full(error))
        finally:
            self._undo.close()
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None
        if _HELD.get(self.out.resolve()) is self:
            del _HELD[self.out.resolve()]

    def _keep_clock(self) -> None:
        parts = [*self.earlier_seconds, time.perf_counter() - self.started]
        with contextlib.suppress(OSError):  # a full disk: the time is lost, not the run
            write_json(self.out / ".backup" / CLOCK, {"parts": [round(p, 1) for p in parts]})

    def _remove_what_was_made(self, whole: bool) -> None:
        """After a failure: the files this run wrote (figures, models, but not .backup/, which
        a resumed run continues from), then the folders it made when they hold no file but
        the lock (with `whole`, after a full disk, whatever they hold: it is incomplete)."""
        for path in _files(self.out) - self._before:
            if path.name != LOCK and ".backup" not in path.relative_to(self.out).parts:
                path.unlink(missing_ok=True)
        for folder in self._made:
            files = [p for p in folder.rglob("*") if p.is_file() and p.name != LOCK]
            if folder.is_dir() and (whole or not files):
                shutil.rmtree(folder, ignore_errors=True)


def start(args, *, images: int = 0, dataset: str | None = None, pad_to: int | None = None,
          flatten: bool = False, image_shape: tuple | None = None) -> Run:
    """Set up one run from the parsed flags (see the module's docstring): seeds, precision,
    devices, the locked output folder, the data (`dataset`, else --dataset, shaped by
    `pad_to` and `flatten`; a chapter built for one `image_shape` refuses other data in one
    line) and the epochs (--epochs, else enough for the chapter's budget of `images`)."""
    run = Run(chapter=args.chapter, out=Path(args.out), seed=args.seed, quick=bool(args.quick),
              limit=args.limit, batch_size=getattr(args, "batch_size", None),
              precision=getattr(args, "precision", "float32"))
    try:
        seed_everything(run.seed)
        run.language = language.use(language.chosen(flag=getattr(args, "lang", None)))
        _set_precision(run)
        if getattr(args, "distribute", False):
            _distribute(run)
        _claim_output(run)
        run.earlier_seconds = _earlier_parts(run.out)
        name = dataset or getattr(args, "dataset", None)
        run.epochs = getattr(args, "epochs", None)
        if name is not None:
            run.data = _load(name, run.limit, pad_to, flatten, image_shape)
            print(run.data.describe())
            if images:  # a budget of images, unless --epochs says otherwise
                run.epochs = epochs_for(run.epochs, len(run.data.x_train), images=images)
    except BaseException as err:
        run.__exit__(type(err), err, err.__traceback__)
        raise
    return run


def _set_precision(run: Run) -> None:
    if run.precision == "float32":
        return
    import keras
    import tensorflow as tf

    if run.precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        print("warning: mixed_float16 needs a GPU; on this CPU it runs many times slower than "
              "float32 (use --precision mixed_bfloat16 on a CPU)", file=sys.stderr)
    keras.mixed_precision.set_global_policy(run.precision)
    run._undo.callback(keras.mixed_precision.set_global_policy, "float32")


def _distribute(run: Run) -> None:
    from common.distribute import describe, make_strategy

    strategy = make_strategy(True)
    run._undo.enter_context(strategy.scope())
    run.replicas, run.strategy_name = strategy.num_replicas_in_sync, type(strategy).__name__
    if run.batch_size is not None:
        print(describe(strategy, run.batch_size))
        run.batch_size *= run.replicas


def _claim_output(run: Run) -> None:
    """Make the output folder (remembering which folders this run made) and lock it."""
    made = []
    for folder in reversed([run.out, *run.out.parents]):
        try:
            folder.mkdir()
            made.append(folder)
        except FileExistsError:
            pass
        except OSError as err:
            raise UserError(f"--out {run.out}: {err.strerror or err}") from None
    earlier = _HELD.get(run.out.resolve())
    if earlier is not None:  # this process started a run here before (a notebook, re-run)
        earlier._release()
    try:
        handle = os.open(run.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"--out {run.out}: {err.strerror or err}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(handle, 32).decode(errors="replace").strip() or "?"
        os.close(handle)
        raise UserError(f"another run (process {holder}) is writing to {run.out}; wait for "
                        "it to finish or give this one another --out") from None
    # Ours to remove on failure only now that we hold the lock: a run started at the same
    # moment may have made a folder that the one holding the lock is writing into.
    run._made = made[:1]  # the topmost new folder holds every other one
    os.ftruncate(handle, 0)
    os.write(handle, str(os.getpid()).encode())
    run._lock = handle
    _HELD[run.out.resolve()] = run
    run._before = _files(run.out)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def _earlier_parts(out: Path) -> list[float]:
    """The seconds of the interrupted parts of this run, if it resumes one."""
    try:
        parts = json.loads((out / ".backup" / CLOCK).read_text())["parts"]
        return [float(p) for p in parts]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _resumable(out: Path) -> bool:
    """Whether a failed run left training state that the next run resumes from."""
    backup = out / ".backup"
    return backup.is_dir() and any(p.name != CLOCK for p in backup.iterdir())


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _load(name, limit, pad_to, flatten, image_shape):
    from common.data import load

    data = load(name, pad_to=pad_to, flatten=flatten, limit=limit)
    if image_shape is not None and data.image_shape != tuple(image_shape):
        shape = "x".join(map(str, data.image_shape))
        raise DataError(f"{data.name} has images of {shape}, and this chapter's models are "
                        f"built for {'x'.join(map(str, image_shape))} grey images; ch2_vae, "
                        "ch3_vae, ch4_dcgan, ch4_pix2pix, ch5_ddpm, "
                        "ch5_conditional_diffusion and ch5_latent_diffusion take 32x32 "
                        "colour data")
    return data


def is_disk_full(error) -> bool:
    """Whether `error` (or what caused it) is the file system running out of space."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False
