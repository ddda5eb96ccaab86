"""The command line every chapter shares.

    --epochs --batch-size --dataset --seed --out --quick --summary
    --distribute --precision     (chapters that train with mini-batches)

A user mistake (a bad flag value, an unknown dataset, an unwritable --out, missing data, a NaN
loss) ends in one `<script>.py: error: ...` line on stderr and exit status 2, never a
traceback, and leaves no empty output folder behind: --out is created when there is something
to write.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from common.data import check_name
from common.errors import UserError

_NEW_OUTPUTS: list[Path] = []  # --out folders that did not exist when the flags were read
_RUN_SCOPE = contextlib.ExitStack()  # the strategy scope a --distribute run trains in
QUICK_LIMIT = 512  # images per split in --quick runs: enough for a few real batches
OUTPUT_ROOT = Path("outputs")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage dump) with exit status 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def make_parser(chapter: str, description: str, *, epochs: int | None,
                batch_size: int | None, dataset: str | None = "auto",
                learning_rate: float | None = None,
                learning_rate_help: str = "Adam's initial step size, cosine-decayed to 0",
                epochs_help: str = "training epochs", quick_help: str | None = None,
                trains: bool = True) -> argparse.ArgumentParser:
    """The shared parser; chapters add their own flags to what this returns.

    `epochs=None` means "decided by the data size" (see `epochs_for`). Chapters without
    mini-batches or image datasets (the classical chapter) pass `batch_size=None` or
    `dataset=None` and get no such flag, rather than one that does nothing; a script that
    only evaluates a trained model passes `trains=False` and gets no --epochs. A chapter that
    trains with one optimizer step size passes its default as `learning_rate`."""
    parser = OneLineParser(prog=f"{chapter}.py", description=description)
    parser.set_defaults(batch_size=None, dataset=None, epochs=None)
    if trains:
        parser.add_argument("--epochs", type=positive_int, default=epochs,
                            help=f"{epochs_help} (default "
                                 f"{epochs or 'scaled to the data size'})")
    if batch_size is not None:
        parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                            help=f"images per training step (default {batch_size})")
    if learning_rate is not None:
        parser.add_argument("--learning-rate", type=positive_float, default=learning_rate,
                            help=f"{learning_rate_help} (default {learning_rate:g})")
    if dataset is not None:
        parser.add_argument("--dataset", default=dataset,
                            help="auto, mnist, fashion_mnist, mnist5k or tfds:NAME "
                                 f"(default {dataset})")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=OUTPUT_ROOT / chapter,
                        help=f"output folder (default outputs/{chapter})")
    parser.add_argument("--quick", action="store_true",
                        help=quick_help or f"smoke test: {'1 epoch on ' if trains else ''}"
                                           f"{QUICK_LIMIT} images per split")
    parser.add_argument("--summary", action="store_true",
                        help="print every model.summary() of the chapter and exit")
    if trains and batch_size is not None:
        from common.distribute import add_flag as add_distribute_flag
        from common.precision import add_flag as add_precision_flag
        add_distribute_flag(parser)
        add_precision_flag(parser)
    parser.trains = trains
    return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse and validate the flags into the run's settings: with --quick, one epoch on
    QUICK_LIMIT images per split (`limit`, else None)."""
    parsed = parser.parse_args(argv)
    if parsed.dataset is not None:
        try:
            check_name(parsed.dataset)
        except UserError as err:
            parser.error(f"--dataset: {err}")
    settled = {"limit": None}
    if parsed.quick:  # --quick overrides the sizes given with it
        settled.update(epochs=1 if parser.trains else None, limit=QUICK_LIMIT)
        if parsed.batch_size is not None:
            settled["batch_size"] = min(parsed.batch_size, QUICK_LIMIT // 4)
    args = argparse.Namespace(**{**vars(parsed), **settled})
    _set_up_devices(args)
    if not args.summary:
        problem = writable_dir_problem(args.out)
        if problem:
            parser.error(f"--out {args.out}: {problem}")
        if not args.out.exists():
            _NEW_OUTPUTS.append(args.out)
    return args


def _set_up_devices(args: argparse.Namespace) -> None:
    """--precision sets Keras's dtype policy. --distribute makes the strategy
    (common.distribute), enters its scope for the rest of the run (`run` leaves it), and turns
    --batch-size into the global batch: per replica times replicas."""
    args.replicas, args.strategy_name = 1, None
    if getattr(args, "precision", "float32") != "float32":
        from common.precision import set_policy
        set_policy(args.precision)
    if not getattr(args, "distribute", False):
        return
    from common.distribute import describe, make_strategy
    strategy = make_strategy(True)
    _RUN_SCOPE.enter_context(strategy.scope())
    args.replicas, args.strategy_name = strategy.num_replicas_in_sync, type(strategy).__name__
    print(describe(strategy, args.batch_size))
    args.batch_size *= args.replicas


def check_class_index(parser, flag: str, value: int, num_classes: int) -> None:
    """A class index given on the command line must exist in the data (known only after
    loading it): a one-line error otherwise."""
    if value >= num_classes:
        parser.error(f"{flag} must be below {num_classes}, the number of classes")


def epochs_for(args: argparse.Namespace, train_size: int, *, images: int,
               at_most: int = 60) -> int:
    """The epoch count: `--epochs` if given, else enough to show the model about `images`
    training images (6 epochs of 60,000 for images=360_000; more on a small set like
    mnist5k, capped at `at_most`), so a default run costs about the same on any dataset."""
    if args.epochs is not None:
        return args.epochs
    return max(1, min(at_most, round(images / max(1, train_size))))


def plural(count: int, noun: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def writable_dir_problem(path: Path) -> str | None:
    """Whether a folder could be made at `path` and written to: the problem, or None. Folders
    made to find out are removed again."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    made = []
    try:
        for folder in reversed([path, *path.parents]):
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        return err.strerror or str(err)
    finally:
        for folder in reversed(made):
            folder.rmdir()
    return None


def _remove_empty_outputs() -> None:
    """After an error: remove output folders this run was to create and left empty."""
    for out in _NEW_OUTPUTS:
        if out.is_dir() and not any(p.is_file() for p in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)


def run(main, argv=None, prog: str | None = None) -> int:
    """Call `main(argv)`; turn UserError and Ctrl-C into one line and an exit status. The line
    names the script (`prog`, by default the one Python runs), as argparse's flag errors do."""
    try:
        return main(argv) or 0
    except UserError as err:
        _remove_empty_outputs()
        print(f"{prog or Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last finished "
              "epoch", file=sys.stderr)
        return 130
    finally:  # a second run in this process starts on one device, in float32
        _RUN_SCOPE.close()
        if "keras" in sys.modules:
            sys.modules["keras"].mixed_precision.set_global_policy("float32")
