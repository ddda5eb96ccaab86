import json

import keras
import numpy as np
import pytest

from common.errors import TrainingDiverged
from common.pipeline import batches
from common.run import seed_everything
from common.training import Throughput, fit


def tiny_regressor():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="tiny")


def test_fit_lowers_loss_and_writes_history(tmp_path):
    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32")
    model = tiny_regressor()
    model.compile(keras.optimizers.Adam(0.05), loss="mse")
    result = fit(model, batches(x, y, batch_size=32), epochs=5, batch_size=32, out=tmp_path,
                 tag="tiny", verbose=0)
    loss = result.history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    assert json.loads((tmp_path / "history_tiny.json").read_text())["loss"] == loss
    assert result.images_per_second > 0 and result.wall_seconds > 0
    assert not (tmp_path / ".backup").exists()  # removed after a finished run


def test_nan_loss_raises_a_clear_error(tmp_path):
    x = np.full((64, 4), np.nan, dtype="float32")
    model = tiny_regressor()
    model.compile("sgd", loss="mse")
    with pytest.raises(TrainingDiverged, match="tiny: the loss became nan at epoch 1, step 1"):
        fit(model, batches(x, np.zeros(64, "float32"), batch_size=16), epochs=2,
            batch_size=16, out=tmp_path, tag="nan", verbose=0)
    assert not (tmp_path / "history_nan.json").exists()


def test_throughput_uses_median_after_first_step():
    meter = Throughput(batch_size=100)
    meter.step_seconds = [5.0, 0.1, 0.1, 0.2, 0.1]  # the first step compiles
    assert meter.images_per_second == pytest.approx(1000.0)
    assert Throughput(10).images_per_second is None


def test_seed_makes_runs_repeatable():
    seed_everything(3)
    a = tiny_regressor().get_weights()[0]
    seed_everything(3)
    np.testing.assert_array_equal(a, tiny_regressor().get_weights()[0])


class InterruptAt(keras.callbacks.Callback):
    """Simulate Ctrl-C at the start of a given epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_from_its_last_finished_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = x.sum(axis=1)
    model = tiny_regressor()
    model.compile("sgd", loss="mse")
    with pytest.raises(KeyboardInterrupt):
        fit(model, batches(x, y, batch_size=32), epochs=5, batch_size=32, out=tmp_path,
            tag="resume", verbose=0, callbacks=[InterruptAt(3)])
    assert (tmp_path / ".backup" / "resume").exists()
    fresh = tiny_regressor()  # a new process would build the model anew
    fresh.compile("sgd", loss="mse")
    first_epoch = RecordFirstEpochWeights()
    result = fit(fresh, batches(x, y, batch_size=32), epochs=5, batch_size=32, out=tmp_path,
                 tag="resume", verbose=0, callbacks=[first_epoch])
    assert len(result.history["loss"]) == 5  # epochs 1-3 kept from the first part, then 4, 5
    assert [(p["first_epoch"], p["last_epoch"]) for p in result.parts] == [(1, 3), (4, 5)]
    assert first_epoch.epoch == 3
    np.testing.assert_allclose(first_epoch.weights[0], model.get_weights()[0])
    assert not (tmp_path / ".backup").exists()


class RecordFirstEpochWeights(keras.callbacks.Callback):
    """The weights the model starts its first (possibly resumed) epoch with."""

    def __init__(self):
        super().__init__()
        self.epoch, self.weights = None, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.weights is None:
            self.epoch, self.weights = epoch, self.model.get_weights()
