"""Every chapter's --summary prints whole tables, whatever the console; the parameter counts of
the course's models are the ones the material gives."""

import importlib
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_in_process

CHAPTERS = ["ch1_classifiers", "ch1_edge_filters", "ch2_dense_autoencoder", "ch2_vae",
            "ch3_vae", "ch3_cvae", "ch3_vqvae", "ch3_vq_transformer", "ch3_hierarchical_vae",
            "ch4_dcgan",
            "ch4_cgan", "ch4_pix2pix", "ch5_ddpm", "ch5_samplers",
            "ch5_conditional_diffusion", "ch5_text_to_image"]
SEQUENTIAL = ["Layer (type)", "Output Shape", "Param #"]
FUNCTIONAL = [*SEQUENTIAL, "Connected to"]


def tables(text: str) -> list[dict]:
    """Each summary table in `text`: its model name, header cells, row count, total."""
    found = []
    for block in re.split(r'^Model: "', text, flags=re.M)[1:]:
        name = block.split('"', 1)[0]
        header = next(line for line in block.splitlines() if line.startswith("┃"))
        rows = [line for line in block.splitlines() if line.startswith("│")]
        total = re.search(r"Total params: ([\d,]+)", block)
        found.append({"name": name, "header": [c.strip() for c in header.strip("┃").split("┃")],
                      "rows": rows, "total": total and int(total.group(1).replace(",", "")),
                      "lines": block.splitlines()})
    return found


def check_whole(text: str) -> list[dict]:
    assert "…" not in text  # rich's mark for cropped text
    found = tables(text)
    assert found
    for table in found:
        assert table["header"] in (SEQUENTIAL, FUNCTIONAL), table["header"]
        assert table["total"] is not None
        for row in table["rows"]:  # every row closes its last column
            assert row.rstrip().endswith("│") and row.count("│") == len(table["header"]) + 1
    return found


def summary_of(chapter: str, capsys, tmp_path) -> str:
    module = importlib.import_module(f"chapters.{chapter}")
    argv = ["--summary"]
    if chapter == "ch5_samplers":
        argv += ["--run", str(tmp_path / "no_run_yet")]
    assert module.main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", [None, "80", "200"])
def test_every_chapter_prints_whole_tables(columns, monkeypatch, capsys, tmp_path):
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    totals = {}
    for chapter in CHAPTERS:
        totals[chapter] = {t["name"]: t["total"]
                           for t in check_whole(summary_of(chapter, capsys, tmp_path))}
    # the counts the material gives
    assert totals["ch1_classifiers"]["linear_model"] == 7_850
    assert totals["ch1_edge_filters"]["edge_filters"] == 52
    assert totals["ch2_dense_autoencoder"]["dense_autoencoder"] == 472_608
    assert totals["ch2_vae"]["encoder"] == 96_770 and totals["ch2_vae"]["decoder"] == 98_689
    assert totals["ch2_vae"]["vae_encoder"] == 100_868
    assert totals["ch4_dcgan"] == {"generator": 784_641, "discriminator": 138_945}
    assert totals["ch3_vq_transformer"] == {"transformer_prior": 241_696}
    assert totals["ch5_text_to_image"] == {"text_denoiser": 895_304}  # the emoji run's


def test_the_diffusion_transformer_summary(capsys):
    from chapters.ch5_ddpm import main as ddpm_main
    assert ddpm_main(["--summary", "--denoiser", "dit"]) == 0
    (dit,) = check_whole(capsys.readouterr().out)
    # unconditional; the class-conditional one adds 11 label vectors of 128: 1,265,296
    assert dit["name"] == "dit" and dit["total"] == 1_263_888
    assert any(row.startswith("│ block0_gate_1") for row in dit["rows"])


def test_a_redirected_summary_keeps_every_column(tmp_path):
    out = tmp_path / "summary.txt"
    with open(out, "w") as handle:  # a file, not a terminal: rich used to crop to 80 columns
        code = subprocess.call([sys.executable, "chapters/ch5_ddpm.py", "--summary"],
                               cwd=ROOT, stdout=handle, env={"PATH": "/usr/bin:/bin",
                                                             "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert code == 0
    text = out.read_text()
    (unet,) = check_whole(text)
    assert unet["header"] == FUNCTIONAL
    skip = next(row for row in unet["rows"] if row.startswith("│ skip14"))
    assert "up14[0][0]" in skip and "down14_out[0][0]" in skip


def test_samplers_summary_without_a_run_shows_a_fresh_unet(tmp_path, capsys):
    result = run_in_process(capsys, "ch5_samplers", "--summary", "--run", tmp_path / "none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "does not exist yet" in result.stdout
    (unet,) = check_whole(result.stdout)
    assert unet["name"] == "unet_ema"
