"""The report of a set of runs: the results table (Markdown: outputs/RESULTS.md, and the table
in docs/results.md), a static gallery page (gallery.html), README's images, the latent
chapter against the pixel chapter, and the machine's matmul peak that throughput is put
against. `chapters/run_all.py` runs the chapters and calls these; they read only the runs'
metrics.json files and figures.
"""

from __future__ import annotations

import ast
import html
import json
import sys
import time
from pathlib import Path

from PIL import Image

from common.atomic import atomic_path, write_text
from common.catalog import BY_NAME, NAMES

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_DIR = ROOT / "chapters"
DOCS = ROOT / "docs"
TABLE_START = "<!-- run_all: the table below"
TABLE_END = "<!-- run_all: end of table -->"
# README's pictures, copied from real runs by --docs
DOC_IMAGES = [("ch2_vae", "latent_scatter.png"), ("ch2_vae", "vae_latent_grid.png"),
              ("ch3_vqvae", "samples.png"), ("ch4_dcgan", "samples.png"),
              ("emoji/ch4_pix2pix", "triplets.png"),  # runs of --dataset emoji
              ("emoji/ch2_vae", "vae_latent_grid.png")]

# The numbers shown per model, in this order, when a model reports them (at most SHOWN).
HEADLINES = [
    ("test_accuracy", "accuracy {:.3f}"), ("strokes_test_accuracy", "accuracy {:.3f}"),
    ("test_mse", "MSE {:.4f}"), ("abs_z_p99", "99% of codes in |z| < {:.2f}"),
    ("test_nelbo_nats", "-ELBO {:.1f} nats"), ("active_units", "{} active units"),
    ("conditional_accuracy", "conditional accuracy {:.3f}"),
    ("classifier_fid", "classifier FID {:.2f}"), ("kid", "KID {:.3f}"),
    ("dead_codes", "{} dead codes"),
    ("perplexity", "perplexity {:.1f}"),
    ("test_nll_nats_per_image", "NLL {:.1f} nats"), ("test_l1", "L1 {:.4f}"),
    ("test_psnr_db", "PSNR {:.2f} dB"), ("classifier_accuracy", "classifier accuracy {:.3f}"),
    ("mean_log_likelihood", "mean log-likelihood {:.6f}"),
    ("gmm_mean_log_likelihood", "GMM log-likelihood {:.3f}"),
    ("p_taller_than_190", "P(height > 190) {:.3f}"), ("ks_distance_n30", "KS at n=30 {:.3f}"),
]


# the 95% interval recorded beside a headline number (common.eval.classifier)
INTERVALS = {"classifier_fid": "fid_ci95"}
SHOWN = 5


def headline(numbers: dict) -> str:
    shown = []
    for key, fmt in HEADLINES:
        value = numbers.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            interval = numbers.get(INTERVALS.get(key, f"{key}_ci95"))  # where the run gave one
            shown.append(fmt.format(value) + (" [{}, {}]".format(*interval) if interval else ""))
    return "; ".join(shown[:SHOWN])


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
    tree = ast.parse((CHAPTER_DIR / f"{script}.py").read_text())
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
            copy_doc_image(source, docs / "images" / f"{script.replace('/', '_')}_{name}")
    print(f"updated {path} and the images in {docs / 'images'}")


def copy_doc_image(source: Path, target: Path) -> None:
    """A run's figure, shrunk to 480 pixels and 128 colours: small for the repository."""
    image = Image.open(source).convert("RGB")
    image.thumbnail((480, 480))
    image = image.quantize(colors=128)
    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG", optimize=True)


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
    lines += ["", *judges_note(records), "", *latent_against_pixels(dict(records)),
              f"Machines: {', '.join(sorted(machines))}",
              f"Software: {', '.join(sorted(versions))}", ""]
    return "\n".join(lines)


def latent_against_pixels(records: dict) -> list[str]:
    """Latent diffusion beside pixel-space conditional diffusion, when both ran in full on the
    same data: accuracy and FID at each chapter's chosen guidance, whole-run and sampling
    time, and the time ratio (the latent chapter's bar: at most a third)."""
    latent, pixel = records.get("ch5_latent_diffusion"), records.get("ch5_conditional_diffusion")
    if not latent or not pixel or latent.get("quick") or pixel.get("quick") \
            or data_used(latent) != data_used(pixel):
        return []
    rows = []
    for name, record, key in (("latent (ch5_latent_diffusion)", latent, "latent_diffusion"),
                              ("pixel (ch5_conditional_diffusion)", pixel, "cfg_diffusion")):
        m = record.get("models", {}).get(key, {})
        rows.append(f"| {name} | {m.get('guidance')} | {headline(m)} | "
                    f"{record.get('wall_time_s', 0) / 60:.1f} min | "
                    f"{m.get('sample_100_seconds') or '-'} s | {record.get('date', '')} |")
    ratio = latent.get("wall_time_s", 0) / max(pixel.get("wall_time_s", 1), 1e-9)
    return [f"## Latent against pixel space ({data_used(latent)})", "",
            "| chapter | w | samples | whole run | 100 samples | date |",
            "|---|---|---|---|---|---|",
            *rows, "", f"Time ratio latent / pixel: {ratio:.3f}.", ""]


def gallery_html(records: list[tuple[str, dict]], root: Path) -> str:
    figures = {name: chapter.figure for name, chapter in BY_NAME.items()}
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


