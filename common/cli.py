"""The command line every chapter shares.

    --epochs --batch-size --dataset --seed --out --quick --summary
    --distribute --precision     (chapters that train with mini-batches)

`parse` only reads and checks the flags; `common.run.start` sets up the run they describe.
A user mistake (a bad flag value, an unknown dataset, an unwritable --out, missing data, a NaN
loss, a full disk) ends in one `<script>.py: error: ...` line on stderr and exit status 2,
never a traceback (`run_main`), and leaves no half-written output behind (common.run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import language
from common.catalog import BY_NAME
from common.data import check_name
from common.errors import UserError

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

    `epochs=None` means "decided by the data size" (see common.run.epochs_for). Chapters without
    mini-batches or image datasets (the classical chapter) pass `batch_size=None` or
    `dataset=None` and get no such flag, rather than one that does nothing; a script that
    only evaluates a trained model passes `trains=False` and gets no --epochs. A chapter that
    trains with one optimizer step size passes its default as `learning_rate`."""
    parser = OneLineParser(prog=f"{chapter}.py", description=description)
    parser.set_defaults(batch_size=None, dataset=None, epochs=None, chapter=chapter)
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
                            help="auto, mnist, fashion_mnist, mnist5k, emoji or tfds:NAME "
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
    language.add_flag(parser)
    if trains and batch_size is not None:
        from common.distribute import add_flag as add_distribute_flag
        from common.precision import add_flag as add_precision_flag
        add_distribute_flag(parser)
        add_precision_flag(parser)
    parser.trains, parser.chapter = trains, chapter
    return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse and check the flags: with --quick, one epoch on QUICK_LIMIT images per split
    (`limit`, else None) and a batch that fits them. Nothing is set up or written here."""
    title = getattr(BY_NAME.get(getattr(parser, "chapter", "")), "title_ja", "")
    if title and language.chosen(argv) == "ja":  # --help's first line in Japanese
        parser.description = title
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
    if not args.summary:
        problem = writable_dir_problem(args.out)
        if problem:
            parser.error(f"--out {args.out}: {problem}")
    return args


def check_class_index(parser, flag: str, value: int, num_classes: int) -> None:
    """A class index given on the command line must exist in the data (known only after
    loading it): a one-line error otherwise."""
    if value >= num_classes:
        parser.error(f"{flag} must be below {num_classes}, the number of classes")


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


def run_main(main, argv=None, prog: str | None = None) -> int:
    """Call `main(argv)`; turn a user error, a full disk and Ctrl-C into one line and an exit
    status. The line names the script (`prog`, by default the one Python runs), as argparse's
    flag errors do."""
    prog = prog or Path(sys.argv[0]).name
    try:
        return main(argv) or 0
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a full disk shows up as OSError, or wrapped by TF or h5py
        from common.run import is_disk_full

        if not is_disk_full(err):
            raise
        where = f" writing {err.filename}" if getattr(err, "filename", None) else ""
        print(f"{prog}: error: no space left on the device{where}; free some space or give "
              "another --out (what this run wrote was removed)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last finished "
              "epoch", file=sys.stderr)
        return 130
