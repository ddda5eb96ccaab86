"""Run every chapter and put their numbers in one place: outputs/RESULTS.md and gallery.html.

Each chapter runs as its own process, the way a learner runs it, with its default settings
(or `--quick`), writing into `<root>/<chapter>/`; its output goes to `<root>/<chapter>/log.txt`.
A progress line per chapter gives the elapsed time and an estimate of what is left (from the
chapter's previous run when there is one). Then every `metrics.json` under the root is
collected into a Markdown table (`RESULTS.md`, which README's results table is copied from) and
a static page with each chapter's main figure and numbers (`gallery.html`).

Throughput is put against the machine: before the chapters run (or with `--bench` alone), a
float32 matmul measures what this CPU can do at best (common.flops.matmul_peak_gflops); it is
kept in `<root>/bench.json`, and each model's training GFLOP/s (images/s x its FLOPs per image)
is shown as a share of it.

`--collect` skips the training and only rebuilds the two files from the runs already there.

Run:  python chapters/run_all.py [--quick] [--dataset fashion_mnist] [--only ch2_vae ...]
      python chapters/run_all.py --bench      (measure the peak only)
"""

from __future__ import annotations

import ast
import html
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from common.atomic import atomic_path, write_text
from common.cli import OUTPUT_ROOT, OneLineParser, run, writable_dir_problem
from common.data import check_name
from common.errors import UserError

HERE = Path(__file__).resolve().parent

# (script, main figure, takes --dataset) in the order the chapters build on each other:
# classical_gmm_em, ch3_vqvae and ch4_dcgan read chapter 2's outputs; ch3_vq_transformer
# models the codes of ch3_vqvae's VQ-VAE; ch5_samplers samples the U-Net that ch5_ddpm trained.
CHAPTERS = [
    ("ch1_classifiers", "predictions_cnn.png", True),
    ("ch1_edge_filters", "edges_strokes.png", True),
    ("ch2_dense_autoencoder", "reconstructions.png", True),
    ("ch2_vae", "latent_scatter.png", True),
    ("classical_normal", "central_limit.png", False),
    ("classical_gmm_em", "gmm_vae_samples.png", False),
    ("ch3_vae", "traversals_conv.png", True),
    ("ch3_cvae", "same_z_every_class.png", True),
    ("ch3_vqvae", "samples.png", True),
    ("ch3_vq_transformer", "samples.png", False),
    ("ch3_hierarchical_vae", "samples.png", True),
    ("ch4_dcgan", "samples.png", True),
    ("ch4_cgan", "class_grid.png", True),
    ("ch4_pix2pix", "triplets.png", True),
    ("ch5_ddpm", "samples.png", True),
    ("ch5_samplers", "fid_vs_steps.png", True),
    ("ch5_conditional_diffusion", "class_grid.png", True),
    ("ch5_latent_diffusion", "vs_pixel_space.png", True),
]
NAMES = [c[0] for c in CHAPTERS]
DOCS = HERE.parent / "docs"
TABLE_START = "<!-- run_all: the table below"
TABLE_END = "<!-- run_all: end of table -->"
# README's pictures, copied from real runs by --docs
DOC_IMAGES = [("ch2_vae", "latent_scatter.png"), ("ch2_vae", "vae_latent_grid.png"),
              ("ch3_vqvae", "samples.png"), ("ch4_dcgan", "samples.png")]

# The numbers shown per model, in this order, when a model reports them (at most four).
HEADLINES = [
    ("test_accuracy", "accuracy {:.3f}"), ("strokes_test_accuracy", "accuracy {:.3f}"),
    ("test_mse", "MSE {:.4f}"), ("abs_z_p99", "99% of codes in |z| < {:.2f}"),
    ("test_nelbo_nats", "-ELBO {:.1f} nats"), ("active_units", "{} active units"),
    ("conditional_accuracy", "conditional accuracy {:.3f}"),
    ("classifier_fid", "classifier FID {:.2f}"), ("dead_codes", "{} dead codes"),
    ("perplexity", "perplexity {:.1f}"),
    ("test_nll_nats_per_image", "NLL {:.1f} nats"), ("test_l1", "L1 {:.4f}"),
    ("test_psnr_db", "PSNR {:.2f} dB"), ("classifier_accuracy", "classifier accuracy {:.3f}"),
    ("mean_log_likelihood", "mean log-likelihood {:.6f}"),
    ("gmm_mean_log_likelihood", "GMM log-likelihood {:.3f}"),
    ("p_taller_than_190", "P(height > 190) {:.3f}"), ("ks_distance_n30", "KS at n=30 {:.3f}"),
]


# the 95% interval recorded beside a headline number (common.eval.classifier)
INTERVALS = {"classifier_fid": "fid_ci95"}


def headline(numbers: dict) -> str:
    shown = []
    for key, fmt in HEADLINES:
        value = numbers.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            interval = numbers.get(INTERVALS.get(key, f"{key}_ci95"))  # where the run gave one
            shown.append(fmt.format(value) + (" [{}, {}]".format(*interval) if interval else ""))
    return "; ".join(shown[:4])


def judges_note(records: list[tuple[str, dict]]) -> list[str]:
    """Which judge (checksum) scored which chapters, per dataset, and a warning where rows
    of one dataset were measured with different judges."""
    by_data: dict[str, dict[str, list[str]]] = {}
    for script, r in records:
        judge = r.get("judge")
        if isinstance(judge, dict) and judge.get("checksum"):
            by_data.setdefault(judge.get("dataset") or data_used(r), {}).setdefault(
                judge["checksum"], []).append(script)
    lines = []
    for name, checksums in sorted(by_data.items()):
        listed = "; ".join(f"`{c}` ({', '.join(s)})" for c, s in checksums.items())
        warning = (" **Different judges: these rows are not comparable with each other.**"
                   if len(checksums) > 1 else "")
        lines.append(f"Judge for {name}: {listed}.{warning}")
    return lines


def data_used(record: dict) -> str:
    data = record.get("dataset")
    if isinstance(data, dict) and "name" in data:
        return data["name"]
    if isinstance(data, dict):  # several sources (the classical chapters)
        return ", ".join(sorted(data))
    return str(data)


def describe(script: str) -> str:
    """The chapter's one-line summary: its module docstring's first line, read without
    importing it (importing would load TensorFlow)."""
    tree = ast.parse((HERE / f"{script}.py").read_text())
    return (ast.get_docstring(tree) or script).splitlines()[0]


def collect(root: Path) -> list[tuple[str, dict]]:
    found = []
    for script in NAMES:
        path = root / script / "metrics.json"
        if path.exists():
            try:
                found.append((script, json.loads(path.read_text())))
            except ValueError:
                print(f"warning: {path} is not valid JSON; left out", file=sys.stderr)
    return found


def stamp_peak(root: Path, script: str, peak: float) -> None:
    """Keep, in a chapter's metrics.json, the matmul peak timed at the start of the same
    run_all call: this VM's speed changes from day to day, so a share of peak is only honest
    against the peak of the run it describes."""
    path = root / script / "metrics.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    record["matmul_peak_gflop_per_s"] = peak
    write_text(path, json.dumps(record, indent=1) + "\n")


def share_of_peak(numbers: dict, peak: float | None) -> str:
    """'GFLOP/s (share of the machine's matmul peak)' of one model's training, when known."""
    achieved = numbers.get("train_gflop_per_s")
    if not achieved:
        return ""
    return f"{achieved:.0f} ({achieved / peak:.0%})" if peak else f"{achieved:.0f}"


TABLE_HEAD = ["| chapter | data | model | metrics (test set) | wall time | train img/s | "
              "GFLOP/s (of peak) | peak | quick | date |",
              "|---|---|---|---|---|---|---|---|---|---|"]


def table_rows(script: str, r: dict, peak: float | None = None) -> list[str]:
    """The results-table rows of one chapter's metrics.json, one per model."""
    rows, first, own = [], True, r.get("matmul_peak_gflop_per_s")
    for model, numbers in r.get("models", {}).items():
        numbers = numbers if isinstance(numbers, dict) else {}
        speed = numbers.get("train_images_per_s")
        cells = [f"`{script}`" if first else "", data_used(r) if first else "", model,
                 headline(numbers),
                 f"{r.get('wall_time_s', 0) / 60:.1f} min" if first else "",
                 f"{speed:,}" if speed else "", share_of_peak(numbers, own or peak),
                 f"{own:.0f}" if own and first else "",
                 "yes" if r.get("quick") else "",
                 r.get("date", "") if first else ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        first = False
    return rows


def merge_docs_table(text: str, records: list[tuple[str, dict]], peak: float | None) -> str:
    """docs/results.md with the table rows of the chapters in `records` replaced (or added,
    in chapter order) and every other chapter's rows kept."""
    start = text.index(TABLE_START)
    end = text.index(TABLE_END)
    old = [line for line in text[start:end].splitlines() if line.startswith("| ")]
    groups: dict[str, list[str]] = {}
    for line in old[1:]:  # the first is the header
        first_cell = line.split("|")[1].strip().strip("`")
        if first_cell:
            key = first_cell
        groups.setdefault(key, []).append(line)
    for script, record in records:
        if not record.get("quick"):  # a smoke test does not replace a real run's numbers
            groups[script] = table_rows(script, record, peak)
    rows = [line for name in NAMES for line in groups.get(name, [])]
    marker_line_end = text.index("\n", text.index("-->", start)) + 1
    head = text[start:marker_line_end]
    return text[:start] + head + "\n".join([*TABLE_HEAD, *rows]) + "\n" + text[end:]


def update_docs(records: list[tuple[str, dict]], root: Path, peak: float | None,
                docs: Path = DOCS) -> None:
    """Rewrite docs/results.md's table from the runs under `root`, and copy README's
    figures, shrunk, into docs/images/."""
    path = docs / "results.md"
    write_text(path, merge_docs_table(path.read_text(), records, peak))
    for script, name in DOC_IMAGES:
        source = root / script / name
        if source.exists():
            image = Image.open(source).convert("RGB")
            image.thumbnail((480, 480))
            image = image.quantize(colors=128)  # a small file for the repository
            target = docs / "images" / f"{script}_{name}"
            with atomic_path(target) as tmp:
                image.save(tmp, format="PNG", optimize=True)
    print(f"updated {path} and the images in {docs / 'images'}")


def results_markdown(records: list[tuple[str, dict]], peak: float | None = None) -> str:
    fallback = (f"`run_all.py --bench`'s latest, {peak:.0f} GFLOP/s, for runs that did not "
                f"record one" if peak else "none for runs that did not record one")
    lines = ["# Results", "",
             "Collected by `python chapters/run_all.py` from each chapter's `metrics.json`. "
             "Wall time is the whole command; images/s is the median training step after the "
             "first; GFLOP/s is images/s x the model's training FLOPs per image, with its share "
             "of this machine's float32 matmul peak timed at the start of the same run_all "
             f"call (the peak column; {fallback}).", "",
             *TABLE_HEAD]
    for script, r in records:
        lines += table_rows(script, r, peak)
    machines = {json.dumps(r.get("machine", {}), sort_keys=True) for _, r in records}
    versions = {json.dumps(r.get("versions", {}), sort_keys=True) for _, r in records}
    lines += ["", *judges_note(records), "", f"Machines: {', '.join(sorted(machines))}",
              f"Software: {', '.join(sorted(versions))}", ""]
    return "\n".join(lines)


def gallery_html(records: list[tuple[str, dict]], root: Path) -> str:
    figures = dict((c[0], c[1]) for c in CHAPTERS)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Gallery</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
             "img{max-width:100%;border:1px solid #ccc}td,th{padding:2px 8px;"
             "text-align:left;vertical-align:top}</style></head><body>",
             "<h1>Every chapter: main figure and numbers</h1>"]
    for script, r in records:
        parts.append(f"<h2>{html.escape(script)}</h2><p>{html.escape(describe(script))}</p>")
        figure = root / script / figures[script]
        if figure.exists():
            parts.append(f"<img src='{html.escape(f'{script}/{figures[script]}')}' "
                         f"alt='{html.escape(figures[script])}'>")
        parts.append(f"<p>data: {html.escape(data_used(r))}; wall time "
                     f"{r.get('wall_time_s', 0) / 60:.1f} min{' (quick)' if r.get('quick') else ''}"
                     f"; {html.escape(str(r.get('date', '')))}</p><table>")
        for model, numbers in r.get("models", {}).items():
            text = headline(numbers) if isinstance(numbers, dict) else ""
            parts.append(f"<tr><th>{html.escape(model)}</th><td>{html.escape(text)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def run_chapter(script: str, takes_dataset: bool, args, root: Path) -> tuple[int, float]:
    command = [sys.executable, str(HERE / f"{script}.py"), "--out", str(root / script)]
    if args.quick:
        command.append("--quick")
    if args.dataset and takes_dataset:
        command += ["--dataset", args.dataset]
    if script == "classical_gmm_em" and (root / "ch2_vae" / "latents.npz").exists():
        command += ["--latents", str(root / "ch2_vae" / "latents.npz")]
    if script == "ch5_samplers":
        command += ["--run", str(root / "ch5_ddpm")]
    if script == "ch3_vq_transformer":
        command += ["--run", str(root / "ch3_vqvae")]
    (root / script).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(root / script / "log.txt", "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return code, time.perf_counter() - start


def bench(root: Path) -> float:
    """Measure the matmul peak now and keep it in `<root>/bench.json`. TensorFlow is
    imported here only: run_all itself runs the chapters as separate processes."""
    import common.quiet_tensorflow  # noqa: F401  (first: hides TF's native start-up log)

    from common.flops import matmul_peak_gflops

    peak = round(matmul_peak_gflops(), 1)
    write_text(root / "bench.json", json.dumps(
        {"matmul_gflop_per_s": peak, "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    print(f"float32 matmul peak of this machine: {peak:.0f} GFLOP/s (kept in "
          f"{root / 'bench.json'})", flush=True)
    return peak


def saved_peak(root: Path) -> float | None:
    try:
        return float(json.loads((root / "bench.json").read_text())["matmul_gflop_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    chosen = [c for c in CHAPTERS if not args.only or c[0] in args.only]
    failed = []
    if not args.collect:
        peak = bench(args.out)  # first, on an idle machine
        start = time.perf_counter()
        estimates = [previous_seconds(args.out, c[0], args.quick) for c in chosen]
        taken: list[float] = []
        for i, (script, _, takes_dataset) in enumerate(chosen):
            code, seconds = run_chapter(script, takes_dataset, args, args.out)
            taken.append(seconds)
            elapsed = time.perf_counter() - start
            left = seconds_left(estimates, taken)
            status = "done" if code == 0 else f"FAILED (exit {code}, see its log.txt)"
            print(f"[{i + 1}/{len(chosen)}] {script}: {status} in {seconds / 60:.1f} min; "
                  f"elapsed {elapsed / 60:.1f} min, about {left / 60:.1f} min left", flush=True)
            if code == 0:
                stamp_peak(args.out, script, peak)
            else:
                failed.append(script)
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
    sys.exit(run(main))
