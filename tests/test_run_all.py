"""The runner that collects every chapter's numbers into RESULTS.md and gallery.html."""

import json

from chapters import run_all
from common import report
from tests.conftest import ROOT, run_script


def fake_run(root, script, models, quick=False, **extra):
    (root / script).mkdir(parents=True)
    record = {"chapter": script, "dataset": {"name": "mnist5k"}, "quick": quick,
              "wall_time_s": 90.0, "date": "2026-11-24", "models": models,
              "machine": {"cpus": 2}, "versions": {"keras": "3"}, **extra}
    (root / script / "metrics.json").write_text(json.dumps(record))


def test_collect_builds_the_table_and_the_gallery_from_metrics(tmp_path):
    fake_run(tmp_path, "ch2_vae", {"vae": {"test_mse": 0.02361, "abs_z_p99": 2.6,
                                           "train_images_per_s": 3042,
                                           "train_gflop_per_s": 89.0}},
             matmul_peak_gflop_per_s=120.0)
    (tmp_path / "bench.json").write_text(json.dumps({"matmul_gflop_per_s": 178.0}))
    fake_run(tmp_path, "ch3_cvae", {"cvae": {"conditional_accuracy": 0.91234,
                                             "train_gflop_per_s": 44.5}}, quick=True)
    (tmp_path / "ch2_vae" / "latent_scatter.png").write_bytes(b"png")
    assert run_all.main(["--collect", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| `ch2_vae` | mnist5k | vae | MSE 0.0236; 99% of codes in \\|z\\| < 2.60 | 1.5 min" \
           " | 3,042 | 89 (74%) | 120 |" in table  # against the peak of its own run
    assert "`run_all.py --bench`'s latest, 178 GFLOP/s" in table
    assert "conditional accuracy 0.912 | 1.5 min |  | 44 (25%) |  | yes |" in table  # no own peak
    page = (tmp_path / "gallery.html").read_text()
    assert "<img src='ch2_vae/latent_scatter.png'" in page
    assert page.count("<h2>") == 2 and "conditional VAE" in page  # the chapter's docstring


def test_runs_a_chapter_and_reports_progress(tmp_path):
    result = run_script("chapters/run_all.py", "--quick", "--only", "classical_normal",
                        "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[1/1] classical_normal: done in" in result.stdout
    assert (tmp_path / "classical_normal" / "log.txt").stat().st_size > 0
    assert "`classical_normal`" in (tmp_path / "RESULTS.md").read_text()
    record = json.loads((tmp_path / "classical_normal" / "metrics.json").read_text())
    assert record["matmul_peak_gflop_per_s"] == report.saved_peak(tmp_path) > 0.1


def test_bench_measures_and_keeps_the_peak(tmp_path):
    result = run_script("chapters/run_all.py", "--bench", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert report.saved_peak(tmp_path) > 0.1
    assert "GFLOP/s" in result.stdout and not (tmp_path / "RESULTS.md").exists()


def test_bad_choices_are_one_line_errors(tmp_path):
    for args in (["--only", "ch9_nothing"], ["--dataset", "cifar11"]):
        result = run_script("chapters/run_all.py", "--collect", "--out", tmp_path, *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, args


def test_every_chapter_script_is_in_the_runner():
    scripts = {p.stem for p in (ROOT / "chapters").glob("*.py")} - {"__init__", "run_all"}
    assert scripts == set(run_all.NAMES)


def test_docs_table_replaces_the_rows_of_real_runs_and_keeps_the_rest():
    text = "\n".join(["intro", report.TABLE_START + " ... -->", *report.TABLE_HEAD,
                      "| `ch1_classifiers` | d | linear_model | old | 1.0 min |  |  |  |  | x |",
                      "|  |  | mlp | old |  |  |  |  |  |  |",
                      "| `ch2_vae` | d | vae | old | 2.0 min |  |  |  |  | x |",
                      report.TABLE_END, "outro"])
    real = {"models": {"cnn_classifier": {"test_accuracy": 0.9}}, "wall_time_s": 60,
            "dataset": {"name": "mnist5k"}, "date": "today"}
    merged = report.merge_docs_table(text, [("ch1_classifiers", real),
                                             ("ch2_vae", {**real, "quick": True})], None)
    rows = [line for line in merged.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `ch1_classifiers` | mnist5k | cnn_classifier | accuracy 0.900")
    assert "|  |  | mlp | old" not in merged  # the chapter's old rows went with it
    assert rows[1] == "| `ch2_vae` | d | vae | old | 2.0 min |  |  |  |  | x |"  # quick: kept
    assert merged.startswith("intro\n") and merged.endswith("outro")


def test_rows_scored_by_different_judges_are_flagged():
    def record(checksum):
        return {"models": {"m": {"classifier_fid": 7.0, "fid_ci95": [6.5, 7.6]}},
                "judge": {"dataset": "fashion_mnist", "checksum": checksum}}

    same = report.results_markdown([("ch4_dcgan", record("aa")), ("ch5_ddpm", record("aa"))])
    assert "Judge for fashion_mnist: `aa` (ch4_dcgan, ch5_ddpm)." in same
    assert "Different judges" not in same and "classifier FID 7.00 [6.5, 7.6]" in same
    mixed = report.results_markdown([("ch4_dcgan", record("aa")), ("ch5_ddpm", record("bb"))])
    assert "Different judges" in mixed
