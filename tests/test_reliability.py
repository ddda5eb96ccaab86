"""What a second run, a full disk, a tampered or damaged judge, a bad TF_CONFIG and an
interrupted run do: one line and exit 2 where the user must act, the same instrument or a
retrained one where the machine can mend it, and nothing half-written."""

import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from common import run as run_module
from common.atomic import atomic_path
from common.cli import run_main
from common.run import start
from tests.conftest import ROOT, run_script


def settings(out, **extra):
    """The parsed flags `start` reads, as a chapter without image data has them."""
    return argparse.Namespace(chapter="chx", out=out, seed=0, quick=True, limit=None,
                              dataset=None, epochs=None, **extra)


def test_temporary_names_are_unique_per_writer(tmp_path):
    target = tmp_path / "model.weights.h5"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert first.name.endswith(".weights.h5") and second.name.endswith(".weights.h5")
        first.write_text("1")
        second.write_text("2")
    # the writer that finished last (the outer one) wins; no temporary file is left
    assert target.read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.weights.h5"]


def test_a_second_run_on_the_same_out_is_one_line_and_leaves_the_first_alone(tmp_path):
    out = tmp_path / "fresh" / "classical_normal"
    with start(settings(out)):  # this process holds the folder, as a running chapter does
        result = run_script("chapters/classical_normal.py", "--quick", "--out", out,
                            timeout=120)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert lines == [f"classical_normal.py: error: another run (process {os.getpid()}) "
                         f"is writing to {out}; wait for it to finish or give this one "
                         "another --out"]
        assert out.is_dir()  # the second run removed nothing of the first's
    again = run_script("chapters/classical_normal.py", "--quick", "--out", out, timeout=120)
    assert again.returncode == 0, again.stderr  # free again once the first has finished


def test_a_run_that_loses_the_lock_leaves_the_folders_it_made(tmp_path, monkeypatch):
    """Two runs started together: this one made the folder, the other locked it first and is
    writing there. Losing the lock, this one must not remove the folder (it once did, and the
    other run's next write failed with a traceback)."""
    from common.errors import UserError

    def taken(handle, operation):
        raise BlockingIOError(errno.EWOULDBLOCK, "locked")

    monkeypatch.setattr(run_module.fcntl, "flock", taken)
    out = tmp_path / "new" / "out"
    args = argparse.Namespace(chapter="classical_normal", out=str(out), seed=0, quick=True,
                              limit=None)
    with pytest.raises(UserError, match="another run"):
        start(args)
    assert out.is_dir()


def test_two_chapters_started_together_on_one_out_do_not_collide(tmp_path):
    out = tmp_path / "root" / "same"
    command = [sys.executable, "chapters/classical_normal.py", "--quick", "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    both = [subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    codes, errors = zip(*[(p.wait(timeout=120), p.stderr.read()) for p in both])
    assert 0 in codes and set(codes) <= {0, 2}, errors  # never a traceback
    for code, err in zip(codes, errors):
        assert code == 0 or "another run" in err, err
    assert json.loads((out / "metrics.json").read_text())["chapter"] == "classical_normal"
    assert not list(out.glob(".*partial*"))


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from chapters import classical_normal

    real_replace = os.replace

    def disk_full(source, target):
        if str(target).endswith(".png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full)
    out = tmp_path / "new" / "classical_normal"
    code = run_main(classical_normal.main, ["--quick", "--out", str(out)],
                    prog="classical_normal.py")
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "classical_normal.py: error: no space left on the device writing ")
    assert not (tmp_path / "new").exists()  # the folders this run made are gone


@pytest.mark.skipif(shutil.which("mount") is None or os.geteuid() != 0, reason="needs root")
def test_a_real_full_disk_when_a_small_file_system_can_be_made(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = run_script("chapters/classical_normal.py", "--quick", "--out",
                            disk / "classical_normal", timeout=120)
        assert result.returncode == 2, result.stderr[-1500:]
        assert len(result.stderr.strip().splitlines()) == 1
        assert "no space left on the device" in result.stderr
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_an_interrupted_run_adds_up_the_time_of_its_parts(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with start(settings(out)):
            time.sleep(0.2)
            raise KeyboardInterrupt
    assert (out / ".backup" / run_module.CLOCK).exists()
    with start(settings(out)) as run:
        time.sleep(0.1)
        record = run.wall_time()
    first, second = record["wall_time_parts_s"]
    assert first >= 0.2 and second >= 0.1
    assert record["wall_time_s"] == pytest.approx(first + second, abs=0.11)
    assert not (out / ".backup").exists()  # finished: the clock is gone
    with start(settings(out)) as run:  # a new run starts its own clock
        assert "wall_time_parts_s" not in run.wall_time()


def test_a_failed_run_without_training_to_resume_forgets_its_time(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with start(settings(out)):
            raise RuntimeError("a bug")
    assert not out.exists()  # it made the folder and wrote nothing in it


@pytest.mark.parametrize("config, words", [
    ({"cluster": ["localhost:1", "localhost:2"]}, '"cluster" is a list'),
    ([1, 2], "the JSON is a list"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}},
     "names no address"),
    ({"cluster": {"worker": "a:1"}}, "not a list of"),
])
def test_a_tf_config_of_the_wrong_shape_is_one_line(tmp_path, monkeypatch, config, words):
    from common.distribute import make_strategy
    from common.errors import UserError

    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    with pytest.raises(UserError, match=words) as caught:
        make_strategy(True)
    assert "\n" not in str(caught.value)


def test_float16_on_a_cpu_warns_in_one_line(tmp_path, capsys):
    import keras

    with start(settings(tmp_path / "o", precision="mixed_float16")):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"  # undone on leaving
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mixed_bfloat16" in err[0]


# ---------------------------------------------------------------------------------------------
# The judge: verified on every load; damage means training one here, never a traceback.

@pytest.fixture(scope="module")
def small_digits(digits):
    from dataclasses import replace

    return replace(digits, x_train=digits.x_train[:256], y_train=digits.y_train[:256],
                   x_test=digits.x_test[:128], y_test=digits.y_test[:128])


@pytest.fixture(scope="module")
def trained_once(small_digits, tmp_path_factory):
    """A folder holding the small judge's cache, trained once for this module's tests."""
    from common.eval.classifier import FeatureClassifier

    root = tmp_path_factory.mktemp("judge_cache")
    FeatureClassifier.for_dataset(small_digits, root, epochs=1)
    return root


@pytest.fixture
def cached_here(trained_once, tmp_path):
    """tmp_path with a copy of that cache in it: for_dataset(small_digits, tmp_path) loads it."""
    shutil.copytree(trained_once / "_classifiers", tmp_path / "_classifiers")
    return tmp_path


def test_a_tampered_cached_judge_is_retrained_and_says_so(small_digits, cached_here, capsys):
    tmp_path = cached_here
    from common.eval.classifier import FeatureClassifier, checksum

    first = FeatureClassifier.for_dataset(small_digits, tmp_path, epochs=1)
    model = first.model
    kernel, bias = model.get_layer("class_probabilities").get_weights()
    model.get_layer("class_probabilities").set_weights([kernel[:, ::-1], bias[::-1]])
    model.save(first.path)  # the record still names the old checksum
    assert checksum(model) != first.checksum
    capsys.readouterr()
    again = FeatureClassifier.for_dataset(small_digits, tmp_path, epochs=1)
    assert "does not hash to its checksum" in capsys.readouterr().out
    assert again.checksum == first.checksum == checksum(again.model)  # retrained, the same


@pytest.mark.parametrize("damage", ["truncate_keras", "corrupt_json", "keys_json"])
def test_a_damaged_cached_judge_is_retrained(small_digits, cached_here, capsys, damage):
    tmp_path = cached_here
    from common.eval.classifier import FeatureClassifier

    first = FeatureClassifier.for_dataset(small_digits, tmp_path, epochs=1)
    record = first.path.with_suffix(".json")
    if damage == "truncate_keras":
        first.path.write_bytes(first.path.read_bytes()[:5000])
    elif damage == "corrupt_json":
        record.write_text(record.read_text()[:40])
    else:
        record.write_text(json.dumps({"architecture": first.info["architecture"],
                                      "augmented": True}))
    capsys.readouterr()
    again = FeatureClassifier.for_dataset(small_digits, tmp_path, epochs=1)
    printed = capsys.readouterr().out
    assert "training the judge" in printed and again.checksum == first.checksum
    if damage != "corrupt_json":  # an unreadable record is simply no record
        assert "cannot be read" in printed


@pytest.mark.parametrize("damage", ["truncate_weights", "header", "corrupt_json"])
def test_a_damaged_shipped_judge_is_not_used(small_digits, trained_once, tmp_path, monkeypatch,
                                             capsys, damage):
    import common.eval.classifier as classifier

    trained = classifier.FeatureClassifier.for_dataset(small_digits, trained_once, epochs=1)
    weights = trained.ship(small_digits, tmp_path / "shipped")
    monkeypatch.setattr(classifier, "SHIPPED", tmp_path / "shipped")
    assert classifier.FeatureClassifier.shipped(small_digits) is not None  # intact: used
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:3000])
    elif damage == "header":
        data = bytearray(weights.read_bytes())
        data[:64] = b"\x00" * 64
        weights.write_bytes(bytes(data))
    else:
        record = weights.parent / f"{classifier.judge_stem(small_digits)}.json"
        record.write_text("{ broken")
    capsys.readouterr()
    assert classifier.FeatureClassifier.shipped(small_digits) is None
    assert "training a judge here" in capsys.readouterr().out
    judge = classifier.FeatureClassifier.for_dataset(small_digits, tmp_path / "elsewhere",
                                                     epochs=1)
    assert judge.checksum == trained.checksum  # trained here, to the same weights
