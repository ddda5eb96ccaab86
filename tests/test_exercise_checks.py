"""The 演習's checks themselves (tests/exercises/catalog.py): their commands parse, and no
check passes on the unchanged chapter (its run checked against itself) while each passes on
a run that shows the effect. The exercises' own runs are checked by tests/exercises, which
the test command leaves out."""

import importlib
import shlex
from pathlib import Path

import pytest

from common.cli import parse
from tests.exercises import catalog
from tests.exercises.catalog import BY_KEY, EXERCISES, main, reference_command


def exercise_verdict(monkeypatch, exercise, run: dict, reference: dict):
    """catalog.verdict on two metrics dicts instead of two folders."""
    folders = {"run": run, "reference": reference}
    monkeypatch.setattr(catalog, "read_metrics", lambda folder: folders[str(folder)])
    return catalog.verdict(exercise, "run", "reference")

FID = {"classifier_fid": 30.0, "fid_ci95": [28.0, 32.0]}

UNCHANGED = {  # what a short unchanged run of each chapter records (shape and size)
    "ch2_vae": {"models": {"vae": {"abs_z_p99": 2.6, "test_mse": 0.025},
                           "cnn_autoencoder": {"test_mse": 0.024}}},
    "ch3_vqvae": {"models": {"vqvae": {"test_mse": 0.008, "codes": 64}}},
    "ch3_cvae": {"models": {"conv_cvae": {"conditional_accuracy": 0.9, "samples_scored": 5000}}},
    "ch4_dcgan": {"models": {"dcgan": FID}},
    "ch5_samplers": {"models": {"ddim_50": {"fid_by_noise_set": [30.0],
                                            "fid_ci95_by_noise_set": [[28.0, 32.0]]}}},
}

CHANGED = {  # a run that shows each exercise's effect
    "ch2_vae_kl0": {"models": {"vae": {"abs_z_p99": 30.0, "test_mse": 0.024},
                               "cnn_autoencoder": {"test_mse": 0.024}}},
    "ch2_vae_beta10": {"models": {"vae": {"abs_z_p99": 1.5, "test_mse": 0.04},
                                  "cnn_autoencoder": {"test_mse": 0.024}}},
    "ch3_vqvae_codes4": {"models": {"vqvae": {"test_mse": 0.03, "codes": 4}}},
    "ch3_cvae_normal_prior": {"models": {"conv_cvae": {"conditional_accuracy": 0.3,
                                                       "samples_scored": 5000}}},
    "ch4_dcgan_no_bn": {"models": {"dcgan": {"classifier_fid": 60.0, "fid_ci95": [56, 64]}}},
    "ch4_dcgan_lr10x": {"models": {"dcgan": {"classifier_fid": 15.0, "fid_ci95": [14, 16]}}},
    "ch5_samplers_ddim5": {"models": {"ddim_5": {"fid_by_noise_set": [60.0],
                                                 "fid_ci95_by_noise_set": [[56.0, 64.0]]}}},
    "ch5_samplers_eta1": {"models": {"ddim_5": {"fid_by_noise_set": [60.0],
                                                "fid_ci95_by_noise_set": [[56.0, 64.0]]}}},
}


@pytest.mark.parametrize("key", BY_KEY)
def test_a_check_fails_on_the_unchanged_run_and_passes_on_the_effect(key):
    exercise = BY_KEY[key]
    unchanged = UNCHANGED[exercise.chapter]
    verdict = exercise.check(unchanged, unchanged)
    assert not verdict.passed and verdict.ja and verdict.en
    shown = exercise.check(CHANGED[key], unchanged)
    assert shown.passed, str(shown)


@pytest.mark.parametrize("key", BY_KEY)
def test_a_folder_of_another_run_is_not_yet_not_a_crash(key, monkeypatch):
    exercise = BY_KEY[key]
    other = {"models": {"something_else": {"classifier_fid": 1.0}, "more": {}}}
    verdict = exercise_verdict(monkeypatch, exercise, other, UNCHANGED[exercise.chapter])
    assert not verdict.passed and "metrics.json" in verdict.en and "metrics.json" in verdict.ja


@pytest.mark.parametrize("key", BY_KEY)
def test_both_commands_parse_with_the_chapters_flags(key):
    exercise = BY_KEY[key]
    chapter = importlib.import_module(f"chapters.{exercise.chapter}")
    for command in (exercise.command(), reference_command(exercise)):
        words = shlex.split(command)
        assert words[:2] == ["python", f"chapters/{exercise.chapter}.py"], command
        args = parse(chapter.flags(), words[2:])
        assert Path(args.out).parts[:2] == ("outputs", "exercises")


def test_the_japanese_guide_lists_every_exercise_and_at_least_eight():
    guide = (Path(__file__).resolve().parents[1] / "docs" / "ja" / "README.md").read_text()
    assert len(EXERCISES) >= 8
    assert {e.chapter[:3] for e in EXERCISES} == {"ch2", "ch3", "ch4", "ch5"}
    for exercise in EXERCISES:
        assert f"`{exercise.key}`" in guide, exercise.key


def test_an_unknown_exercise_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["ch9_nothing"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: no exercise 'ch9_nothing'; there are " + ", ".join(BY_KEY))


def test_a_damaged_metrics_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{ broken")
    with pytest.raises(SystemExit) as exited:
        main(["ch2_vae_kl0", "--run", str(tmp_path), "--reference", str(tmp_path)])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "error: ch2_vae_kl0: cannot read a metrics.json" in lines[-1]
