"""chapters/ch5_samplers.py: every sampler at several step counts, same noises, two noise sets."""

import argparse
import json

import pytest

from chapters.ch5_ddpm import build_unet
from chapters.ch5_samplers import against_ddpm, step_counts
from chapters.ch5_samplers import main as samplers_main
from common.atomic import save_model
from common.cli import run_main
from tests.conftest import run_notebook


def trained_run(folder, num_classes=0, dataset="mnist5k", quick=True, **models):
    """A stand-in for a ch5_ddpm output folder: an (untrained) EMA U-Net and the metrics.json
    that names its chapter and data. The script's job is the comparison, not the network's
    quality."""
    folder.mkdir(parents=True)
    save_model(build_unet(8, num_classes, False, name="unet_ema"), folder / "unet_ema.keras")
    (folder / "metrics.json").write_text(json.dumps(
        {"chapter": "ch5_ddpm", "dataset": {"name": dataset}, "quick": quick,
         "models": {"ddpm": models}}))
    return folder


def test_step_counts_are_sorted_unique_and_within_the_schedule():
    assert step_counts("50,10,20,10") == (10, 20, 50)
    for bad in ("0,10", "10,1001", "ten", "10,,20"):
        with pytest.raises(argparse.ArgumentTypeError):
            step_counts(bad)


def test_quick_run_scores_every_sampler_on_two_noise_sets(tmp_path):
    run = trained_run(tmp_path / "ch5_ddpm")
    out = tmp_path / "ch5_samplers"
    ran = run_notebook("ch5_samplers", out, RUN=str(run), STEPS="5,2,50",
                       SAMPLERS="dpmpp_sde,ddim")  # the chapter's notebook, cell by cell
    assert ran.images >= 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "mnist5k"  # read from the run's metrics.json
    models = metrics["models"]
    # --quick keeps the two smallest step counts (DDPM-1000, left out here, takes minutes)
    assert list(models) == ["ddim_2", "ddim_5", "dpmpp_sde_2", "dpmpp_sde_5"]
    assert [m["network_passes"] for m in models.values()] == [2, 5, 2, 5]
    assert {m["samples"] for m in models.values()} == {20}
    for m in models.values():
        first, second = m["fid_by_noise_set"]
        assert first != second  # two independent sets of noises
        assert m["classifier_fid"] == pytest.approx((first + second) / 2, abs=1e-3)
    for name in ("fid_vs_steps.png", "same_noise.png"):
        assert (out / name).stat().st_size > 0
    assert "SDE-DPM-Solver++(2M)-5" in ran.text and metrics["epochs"] is None


def test_each_noise_set_is_compared_with_ddpm_on_the_same_set():
    results = {"ddim_50": {"fid_by_noise_set": [7.0, 9.0], "seconds": 10.0},
               "ddpm_1000": {"fid_by_noise_set": [5.0, 6.0], "seconds": 200.0}}
    against_ddpm(results)
    assert results["ddim_50"]["fid_vs_ddpm_1000_by_noise_set"] == [1.4, 1.5]
    assert results["ddim_50"]["time_vs_ddpm_1000"] == 0.05
    assert results["ddpm_1000"]["fid_vs_ddpm_1000_by_noise_set"] == [1.0, 1.0]
    alone = {"ddim_50": {"fid_by_noise_set": [7.0], "seconds": 1.0}}
    assert "time_vs_ddpm_1000" not in against_ddpm(alone)["ddim_50"]


def one_line_error(capsys, argv) -> str:
    """Run the script's main as the command line does; its exit status must be 2 and its
    stderr one line, which is returned."""
    assert run_main(samplers_main, argv, prog="ch5_samplers.py") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_mistakes_are_one_line_errors(tmp_path, capsys):
    out = ["--quick", "--out", str(tmp_path / "out")]
    assert "holds no finished run of ch5_ddpm" in one_line_error(
        capsys, ["--run", str(tmp_path / "nothing"), *out])
    conditional = trained_run(tmp_path / "cond", num_classes=10)
    assert "class-conditional" in one_line_error(capsys, ["--run", str(conditional), *out])
    broken = trained_run(tmp_path / "broken")
    (broken / "unet_ema.keras").write_bytes(b"not a zip file")
    assert "is not a loadable Keras model" in one_line_error(capsys,
                                                             ["--run", str(broken), *out])
    smoke = trained_run(tmp_path / "smoke")  # a --quick run serves only a --quick run
    assert "holds a --quick run of ch5_ddpm" in one_line_error(
        capsys, ["--run", str(smoke), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [(["--steps", "0,50"], "between 1 and 1000"),
                                            (["--samples", "1"], "at least 2"),
                                            (["--epochs", "3"], "unrecognized arguments")])
def test_bad_flags_are_one_line(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        samplers_main([*flags, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and message in err[0], err


def test_the_samplers_use_the_schedule_the_run_trained_with(tmp_path):
    from chapters.ch5_samplers import load_run

    _, dataset, schedule = load_run(trained_run(tmp_path / "cosine", schedule="cosine"))
    assert (dataset, schedule.kind) == ("mnist5k", "cosine")
    _, _, schedule = load_run(trained_run(tmp_path / "old"))
    assert schedule.kind == "linear"  # runs from before --schedule existed
