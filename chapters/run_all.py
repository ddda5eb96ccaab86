"""Run every chapter and put their numbers in one place: outputs/RESULTS.md and gallery.html.

Each chapter runs as its own process, the way a learner runs it, with its default settings
(or `--quick`), writing into `<root>/<chapter>/`; its output goes to `<root>/<chapter>/log.txt`.
A progress line per chapter gives the elapsed time and an estimate of what is left (from the
chapter's previous run when there is one). Then every `metrics.json` under the root is
collected into a Markdown table (`RESULTS.md`, which README's results table is copied from) and
a static page with each chapter's main figure and numbers (`gallery.html`).

Throughput is put against the machine: before the chapters run (or with `--bench` alone), a
float32 matmul measures what this CPU can do at best (common.report.bench); it is kept in
`<root>/bench.json`, and each model's training GFLOP/s (images/s x its FLOPs per image) is
shown as a share of it. The chapters and what each reads of the others are common.catalog's;
the report is common.report's.

`--collect` skips the training and only rebuilds the two files from the runs already there.

Run:  python chapters/run_all.py [--quick] [--dataset fashion_mnist] [--only ch2_vae ...]
      python chapters/run_all.py --bench      (measure the peak only)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.atomic import write_text
from common.catalog import BY_NAME, CHAPTERS, NAMES
from common.cli import OUTPUT_ROOT, OneLineParser, run_main, writable_dir_problem
from common.data import check_name
from common.errors import UserError
from common.report import (
    bench,
    collect,
    gallery_html,
    results_markdown,
    saved_peak,
    stamp_peak,
    update_docs,
)

HERE = Path(__file__).resolve().parent


def command_for(name: str, root: Path, quick: bool, dataset: str | None) -> list[str]:
    """The command line that runs one chapter into `<root>/<name>`, pointed at the earlier
    runs it reads (common.catalog)."""
    chapter = BY_NAME[name]
    command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(root / name)]
    if quick:
        command.append("--quick")
    if dataset and chapter.takes_dataset:
        command += ["--dataset", dataset]
    for needs in chapter.reads:
        target = root / needs.chapter / needs.file
        if not needs.optional or target.exists():
            command += [needs.flag, str(target)]
    return command


def run_chapter(name: str, root: Path, quick: bool, dataset: str | None) -> tuple[int, float]:
    """Run one chapter as its own process, its output into `<root>/<name>/log.txt`."""
    (root / name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(root / name / "log.txt", "w") as log:
        code = subprocess.call(command_for(name, root, quick, dataset), stdout=log,
                               stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return code, time.perf_counter() - start


def previous_seconds(root: Path, script: str, quick: bool) -> float | None:
    try:
        record = json.loads((root / script / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("wall_time_s") if bool(record.get("quick")) == quick else None


def seconds_left(estimates: list[float | None], taken: list[float]) -> float:
    """Time the chapters after the len(taken) finished ones will need: each one's previous
    run, scaled by how this run's chapters compared with their own previous runs (the machine
    is faster or slower today), or without one, the mean time of this run's chapters."""
    done = len(taken)
    pairs = [(t, e) for t, e in zip(taken, estimates[:done]) if e]
    pace = sum(t for t, _ in pairs) / sum(e for _, e in pairs) if pairs else 1.0
    typical = sum(taken) / done if done else 0.0
    return sum(pace * e if e else typical for e in estimates[done:])


def run_all(chosen: list[str], root: Path, quick: bool, dataset: str | None) -> list[str]:
    """Every chosen chapter in turn, with a progress line each; the names of those that
    failed."""
    peak = bench(root)  # first, on an idle machine
    start = time.perf_counter()
    estimates = [previous_seconds(root, name, quick) for name in chosen]
    taken: list[float] = []
    failed = []
    for i, name in enumerate(chosen):
        code, seconds = run_chapter(name, root, quick, dataset)
        taken.append(seconds)
        left = seconds_left(estimates, taken)
        status = "done" if code == 0 else f"FAILED (exit {code}, see its log.txt)"
        print(f"[{i + 1}/{len(chosen)}] {name}: {status} in {seconds / 60:.1f} min; "
              f"elapsed {(time.perf_counter() - start) / 60:.1f} min, about {left / 60:.1f} min "
              "left", flush=True)
        if code == 0:
            stamp_peak(root, name, peak)
        else:
            failed.append(name)
    return failed


def main(argv=None) -> int:
    parser = OneLineParser(prog="run_all.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run every chapter with --quick")
    parser.add_argument("--dataset", help="pass --dataset to every chapter that takes it")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="CHAPTER",
                        help=f"run only these chapters (of {', '.join(NAMES)})")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing; rebuild RESULTS.md and gallery.html from the runs "
                             "already under --out")
    parser.add_argument("--docs", action="store_true",
                        help="also rewrite docs/results.md's table from these runs (real runs "
                             "only, other chapters' rows kept) and README's images")
    parser.add_argument("--bench", action="store_true",
                        help="only measure this machine's float32 matmul GFLOP/s (the peak "
                             "the results table compares training with)")
    parser.add_argument("--out", type=Path, default=OUTPUT_ROOT,
                        help="root folder of the chapters' outputs (default outputs)")
    args = parser.parse_args(argv)
    if args.dataset:
        try:
            check_name(args.dataset)
        except UserError as err:
            parser.error(f"--dataset: {err}")
    problem = writable_dir_problem(args.out)
    if problem:
        raise UserError(f"--out {args.out}: {problem}")
    if args.bench:
        bench(args.out)
        return 0
    chosen = [c.name for c in CHAPTERS if not args.only or c.name in args.only]
    failed = [] if args.collect else run_all(chosen, args.out, args.quick, args.dataset)
    records = collect(args.out)
    write_text(args.out / "RESULTS.md", results_markdown(records, saved_peak(args.out)))
    write_text(args.out / "gallery.html", gallery_html(records, args.out))
    print(f"{len(records)} chapters collected into {args.out / 'RESULTS.md'} and "
          f"{args.out / 'gallery.html'}")
    if args.docs:
        update_docs(records, args.out, saved_peak(args.out))
    if failed:
        raise UserError(f"{len(failed)} chapter(s) failed: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
