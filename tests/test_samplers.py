"""chapters/ch5_samplers.py: DDIM at several step counts against DDPM-1000, same noise."""

import argparse
import json

import pytest

from chapters.ch5_ddpm import build_unet
from chapters.ch5_samplers import main as samplers_main
from chapters.ch5_samplers import step_counts
from common.atomic import save_model
from tests.conftest import run_script


def trained_run(folder, num_classes=0, dataset="mnist5k"):
    """A stand-in for a ch5_ddpm output folder: an (untrained) EMA U-Net and the metrics.json
    that names its data. The script's job is the comparison, not the network's quality."""
    folder.mkdir(parents=True)
    save_model(build_unet(8, num_classes, False, name="unet_ema"), folder / "unet_ema.keras")
    (folder / "metrics.json").write_text(json.dumps({"dataset": {"name": dataset}}))
    return folder


def test_step_counts_are_sorted_unique_and_within_the_schedule():
    assert step_counts("50,10,20,10") == (10, 20, 50)
    for bad in ("0,10", "10,1001", "ten", "10,,20"):
        with pytest.raises(argparse.ArgumentTypeError):
            step_counts(bad)


def test_quick_run_scores_every_sampler_on_the_same_images(tmp_path):
    run = trained_run(tmp_path / "ch5_ddpm")
    out = tmp_path / "ch5_samplers"
    result = run_script("chapters/ch5_samplers.py", "--quick", "--run", run, "--out", out,
                        "--steps", "5,2,50", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "mnist5k"  # read from the run's metrics.json
    models = metrics["models"]
    assert list(models) == ["ddim_2", "ddim_5", "ddpm_1000"]  # --quick keeps two step counts
    assert [m["network_passes"] for m in models.values()] == [2, 5, 1000]
    assert {m["samples"] for m in models.values()} == {20}
    assert models["ddpm_1000"]["fid_vs_ddpm_1000"] == 1.0
    assert models["ddim_2"]["time_vs_ddpm_1000"] < 0.5  # 2 passes against 1000
    for name in ("fid_vs_steps.png", "same_noise.png"):
        assert (out / name).stat().st_size > 0
    assert "ddpm_1000" in result.stdout and metrics["epochs"] is None  # nothing trained


def test_mistakes_are_one_line_errors(tmp_path):
    missing = run_script("chapters/ch5_samplers.py", "--run", tmp_path / "nothing",
                         "--out", tmp_path / "out")
    assert missing.returncode == 2 and "no trained U-Net" in missing.stderr
    assert "Traceback" not in missing.stderr

    conditional = trained_run(tmp_path / "cond", num_classes=10)
    result = run_script("chapters/ch5_samplers.py", "--run", conditional,
                        "--out", tmp_path / "out")
    assert result.returncode == 2 and "class-conditional" in result.stderr

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "unet_ema.keras").write_bytes(b"not a zip file")
    result = run_script("chapters/ch5_samplers.py", "--run", broken, "--out", tmp_path / "out")
    assert result.returncode == 2 and "not a loadable Keras model" in result.stderr



@pytest.mark.parametrize("flags, message", [(["--steps", "0,50"], "between 1 and 1000"),
                                            (["--samples", "1"], "at least 2"),
                                            (["--epochs", "3"], "unrecognized arguments")])
def test_bad_flags_are_one_line(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        samplers_main([*flags, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and message in err[0], err
