import pytest

from common.cli import make_parser, parse, run_main
from common.errors import DataError, TrainingDiverged
from tests.conftest import run_in_process, run_script


def parse_args(*argv, **defaults):
    parser = make_parser("chx", "test", epochs=defaults.get("epochs", 3), batch_size=32)
    return parse(parser, list(argv))


def one_line_exit(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no usage dump
    return err[0]


def test_defaults_and_quick(tmp_path):
    args = parse_args("--out", str(tmp_path / "o"))
    assert (args.epochs, args.batch_size, args.dataset, args.limit) == (3, 32, "auto", None)
    assert not (tmp_path / "o").exists()  # made when there is something to write
    quick = parse_args("--quick", "--out", str(tmp_path), "--epochs", "9", "--batch-size", "999")
    assert quick.epochs == 1 and quick.limit == 512 and quick.batch_size == 128


@pytest.mark.parametrize("argv, words", [
    (("--epochs", "-1"), "at least 1"),
    (("--epochs", "two"), "not a whole number"),
    (("--batch-size", "0"), "at least 1"),
    (("--dataset", "cifar"), "unknown dataset"),
    (("--seed", "-4"), "must be 0 or more"),
])
def test_bad_values_end_in_one_line(capsys, tmp_path, argv, words):
    assert words in one_line_exit(capsys, *argv, "--out", str(tmp_path))


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_line_exit(capsys, "--out", str(blocker / "sub"))
    assert line.endswith(f"--out {blocker / 'sub'}: {blocker} is a file, not a folder")


def test_epochs_for_scales_with_data():
    from common.run import epochs_for

    assert epochs_for(None, 60_000, images=360_000) == 6
    assert epochs_for(None, 4_000, images=360_000) == 60  # capped
    assert epochs_for(2, 4_000, images=360_000) == 2


def test_run_turns_user_errors_into_exit_2(capsys):
    def fails(argv):
        raise DataError("no such data")

    assert run_main(fails, [], prog="chx.py") == 2
    assert capsys.readouterr().err.strip() == "chx.py: error: no such data"

    def diverges(argv):
        raise TrainingDiverged("loss became nan")

    assert run_main(diverges, []) == 2


def test_script_reports_bad_flag_without_traceback():
    result = run_script("chapters/ch1_classifiers.py", "--epochs", "-3")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "ch1_classifiers.py: error: argument --epochs: must be at least 1, got -3"]


def test_script_reports_missing_dataset_in_one_line(tmp_path, capsys):
    result = run_in_process(capsys, "ch1_edge_filters", "--dataset", "tfds:no_such_set_xyz",
                            "--out", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "ch1_edge_filters.py: error: tensorflow-datasets has no")
    assert not (tmp_path / "metrics.json").exists()


def test_a_batch_larger_than_the_data_is_one_line(tmp_path, capsys):
    result = run_in_process(capsys, "ch2_dense_autoencoder", "--dataset", "mnist5k",
                            "--batch-size", "5000", "--epochs", "1", "--out", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "ch2_dense_autoencoder.py: error: --batch-size 5000 is larger than the 4,000 training "
        "examples; choose a smaller batch")
