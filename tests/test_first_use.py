"""What a new user runs into: resuming, failing early and cleanly, error lines, wording, and
loading saved models."""

import gzip
import importlib
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from chapters import ch2_dense_autoencoder as dense
from chapters import ch2_vae
from chapters.run_all import seconds_left
from common import cli, figures
from common import data as data_module
from common.atomic import save_model
from common.pipeline import batches
from common.training import fit
from tests.conftest import ROOT, run_in_process


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C in the middle of epoch `epoch` (0-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch, self.current = epoch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 1:
            raise KeyboardInterrupt


def small_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="dense")],
                             name="small")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def test_a_resumed_run_keeps_its_whole_history(tmp_path):
    x = np.random.default_rng(0).random((256, 8)).astype("float32")
    train = batches(x, batch_size=32, seed=0, reconstruct=True)
    for stop in (2, 4):  # interrupted in epoch 3, and again in epoch 5
        with pytest.raises(KeyboardInterrupt):
            fit(small_model(), train, epochs=6, batch_size=32, out=tmp_path, tag="small",
                callbacks=[Interrupt(stop)], verbose=0)
    result = fit(small_model(), train, epochs=6, batch_size=32, out=tmp_path, tag="small",
                 verbose=0)
    assert len(result.history["loss"]) == 6  # epochs 1-6, not only the last part
    losses = result.history["loss"]
    assert losses[-1] < losses[0]  # one training, continued
    saved = json.loads((tmp_path / "history_small.json").read_text())
    assert saved["loss"] == losses
    parts = result.speed()["resumed_parts"]
    assert [(p["first_epoch"], p["last_epoch"]) for p in parts] == [(1, 2), (3, 4), (5, 6)]
    assert result.wall_seconds == pytest.approx(sum(p["wall_seconds"] for p in parts))
    assert not (tmp_path / ".backup").exists()


def test_an_uninterrupted_run_says_nothing_of_parts(tmp_path):
    x = np.random.default_rng(0).random((64, 8)).astype("float32")
    result = fit(small_model(), batches(x, batch_size=32, seed=0, reconstruct=True), epochs=2,
                 batch_size=32, out=tmp_path, tag="small", verbose=0)
    assert "resumed_parts" not in result.speed() and result.speed()["train_seconds"] > 0


def test_a_data_error_is_one_named_line_and_leaves_no_folder(tmp_path):
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in data_module.FASHION_FILES:  # present but damaged
        (cache / name).write_bytes(gzip.compress(b"\x00\x00\x08\x03short"))
    out = tmp_path / "new" / "out"
    result = subprocess.run(
        [sys.executable, "chapters/ch2_dense_autoencoder.py", "--dataset", "fashion_mnist",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "KERAS_HOME": str(tmp_path / "keras"),
             "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ch2_dense_autoencoder.py: error: ")
    assert "Total params" not in result.stdout  # the data is checked before the summary
    assert not out.exists() and not out.parent.exists()


def test_a_file_as_out_is_named_as_such(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    result = run_in_process(capsys, "ch2_vae", "--out", target)
    assert result.returncode == 2
    assert result.stderr.strip() == f"ch2_vae.py: error: --out {target}: {target} is a file, " \
                                    "not a folder"


def test_checking_out_creates_nothing(tmp_path):
    assert cli.writable_dir_problem(tmp_path / "a" / "b") is None
    assert not (tmp_path / "a").exists()


def test_unfamiliar_inputs_never_download(tmp_path, monkeypatch, digits):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_DIR", tmp_path / "no_package")

    def no_network():
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", no_network)
    flat = data_module.load("mnist5k", flatten=True, limit=16)
    images, name = dense.other_images(flat, 10)
    assert name == "strokes" and images.shape == (10, 784)
    assert not (tmp_path / "datasets" / "fashion-mnist").exists()


def test_the_nan_hint_names_the_flags_of_the_model_that_diverged(tmp_path, capsys):
    from common.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged) as caught:
        ch2_vae.main(["--quick", "--learning-rate", "1e30", "--out", str(tmp_path / "o")])
    message = str(caught.value)
    assert message.startswith("cnn_autoencoder:") and "--learning-rate" in message
    assert "kl" not in message.lower()  # the autoencoder has no KL term
    assert not (tmp_path / "o" / ".backup").exists()


def test_wording():
    assert cli.plural(1, "epoch") == "1 epoch" and cli.plural(3, "epoch") == "3 epochs"
    # run_all's estimate: the chapters left, at the pace this run has kept against the last
    assert seconds_left([60, 120, 240], [90]) == pytest.approx(1.5 * 360)
    assert seconds_left([None, None, 100], [30, 50]) == pytest.approx(100)
    assert seconds_left([None, None, None], [30, 50]) == pytest.approx(40)


def test_the_latent_scatter_labels_its_colour_bar(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(figures, "save", lambda fig, path: saved.setdefault("fig", fig))
    z = np.random.default_rng(0).standard_normal((50, 2))
    figures.scatter_panels([("z", z)], np.arange(50) % 3, ["a", "b", "c"], tmp_path / "s.png",
                           suptitle="t")
    labels = [ax.get_ylabel() for ax in saved["fig"].axes]
    assert "class of the test image" in labels


def test_the_classifier_cache_explains_itself(tmp_path, digits):
    from common.eval.classifier import FeatureClassifier

    FeatureClassifier.for_dataset(digits, tmp_path, epochs=1)
    assert "judging classifiers" in (tmp_path / "_classifiers" / "README.txt").read_text()


LOADERS = {  # chapter -> what builds and saves its models (those with custom objects; ch2_vae's
    # VAE: tests/test_ch2.py, test_vae_round_trips_through_a_keras_file_in_a_new_process)
    "ch3_hierarchical_vae": lambda m, out: (
        save_model(m.build_two_level(0), out / "two_level.keras"),
        save_model(m.build_one_level(0), out / "one_level.keras")),
    "ch3_vqvae": lambda m, out: (save_model(m.build_vqvae(8, 4), out / "vqvae.keras"),
                                 save_model(m.build_pixelcnn(8, (7, 7)), out / "pixelcnn.keras")),
    "ch5_ddpm": lambda m, out: save_model(m.build_unet(8, attention=False),
                                          out / "unet_ema.keras"),
}


def test_saved_models_load_in_safe_mode_with_only_their_chapter_imported(tmp_path):
    """Saved here; each loaded in a fresh Python that imports just its chapter."""
    for chapter, save in LOADERS.items():
        save(importlib.import_module(f"chapters.{chapter}"), tmp_path / chapter)
    for chapter in LOADERS:
        load = (f"import sys; sys.path.insert(0, '.'); import chapters.{chapter}; "
                "import keras, pathlib; "
                f"[keras.saving.load_model(p, safe_mode=True) for p in "
                f"pathlib.Path({str(tmp_path / chapter)!r}).glob('*.keras')]; "
                "print(sorted(m for m in sys.modules if m.startswith('chapters.')))")
        loaded = subprocess.run([sys.executable, "-c", load], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        assert loaded.returncode == 0, (chapter, loaded.stderr[-2000:])
        imported = eval(loaded.stdout.strip().splitlines()[-1])
        assert all(name in (f"chapters.{chapter}", "chapters.ch3_vae")
                   for name in imported), imported  # itself and the chapter it builds on


def test_a_vae_loaded_without_its_chapter_says_which_module_to_import(tmp_path):
    from common.atomic import save_model

    save_model(ch2_vae.build_vae(), tmp_path / "vae.keras")
    result = subprocess.run([sys.executable, "-c", "import keras; keras.saving.load_model("
                             f"{str(tmp_path / 'vae.keras')!r})"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "chapters.ch2_vae>sample_latent" in result.stderr
