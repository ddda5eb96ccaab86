import json

import keras
import numpy as np
import pytest

from chapters import ch2_dense_autoencoder as dense
from chapters import ch2_vae as ch2
from common.latent import latent_report, normal_grid
from tests.conftest import colourfulness, needs_font, run_in_process, run_notebook, run_script


def test_parameter_counts_match_the_material():
    assert dense.build_dense_autoencoder().count_params() == 472_608
    assert ch2.build_encoder().count_params() == 96_770
    assert ch2.build_encoder().layers[-1].name == "embedding_space"
    assert ch2.build_decoder().count_params() == 98_689
    vae = ch2.build_vae()
    assert vae.get_layer("vae_encoder").count_params() == 100_868
    assert vae.get_layer("sampler").count_params() == 0
    assert vae.output_shape == (None, 4 + 1024)
    assert vae.layers[-1].name == "prediction_with_mean_log_var"
    assert ch2.build_cnn_autoencoder().count_params() == 96_770 + 98_689


def test_decoder_upsamples_4_to_32():
    shapes = [layer.output.shape[1:3] for layer in ch2.build_decoder().layers
              if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [tuple(s) for s in shapes] == [(8, 8), (16, 16), (32, 32)]


def test_vae_loss_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    y_true = rng.uniform(size=(3, 1024)).astype("float32")
    mean = np.array([[0.0, 0.0], [1.0, -2.0], [0.5, 0.5]], dtype="float32")
    log_var = np.array([[0.0, 0.0], [0.0, 1.0], [-1.0, 2.0]], dtype="float32")
    recon = rng.uniform(size=(3, 1024)).astype("float32")
    y_pred = np.concatenate([mean, log_var, recon], axis=1)
    squared_error = ((y_true - recon) ** 2).sum(axis=1)
    kl = np.array([0.0,
                   -0.5 * ((1 + 0 - 1 - 1) + (1 + 1 - 4 - np.e)),
                   -0.5 * ((1 - 1 - 0.25 - np.exp(-1)) + (1 + 2 - 0.25 - np.exp(2)))])
    for weight in (0.0, 1.0, 2.5):
        expected = np.mean(squared_error + weight * kl)  # Keras averages over the batch
        got = float(ch2.VaeLoss(weight)(y_true, y_pred))
        assert got == pytest.approx(expected, rel=1e-5)
    assert float(np.mean(ch2.kl_divergence(y_true, y_pred))) == pytest.approx(kl.mean(), rel=1e-5)


def test_sampler_draws_follow_mean_and_log_var():
    sampler = ch2.build_sampler()
    stats = np.tile(np.array([[1.5, -2.0, np.log(0.25), np.log(4.0)]], "float32"), (20000, 1))
    first = sampler.predict(stats, batch_size=5000, verbose=0)
    second = sampler.predict(stats, batch_size=5000, verbose=0)
    assert not np.allclose(first, second)  # fresh noise every call
    np.testing.assert_allclose(first.mean(axis=0), [1.5, -2.0], atol=0.05)
    np.testing.assert_allclose(first.std(axis=0), [0.5, 2.0], rtol=0.03)
    assert abs(np.corrcoef(first.T)[0, 1]) < 0.03  # independent coordinates


def test_vae_trains_a_few_steps():
    from common.data import load
    from common.pipeline import batches
    keras.utils.set_random_seed(0)
    data = load("mnist5k", pad_to=32, flatten=True, limit=512)
    vae = ch2.build_vae()
    ch2.compile_vae(vae, kl_weight=1.0)
    history = vae.fit(batches(data.x_train, batch_size=64, reconstruct=True), epochs=4,
                      verbose=0).history
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert np.isfinite(history["kl_divergence"]).all()


SAVE_AND_RELOAD = """
import sys, numpy as np, keras
sys.path.insert(0, '.')
import chapters.ch2_vae  # registers sample_latent and VaeLoss
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
x = np.load(sys.argv[2])
encoder = model.get_layer('vae_encoder')
np.save(sys.argv[3], encoder.predict(x, verbose=0))
print(sorted(m for m in sys.modules if m.startswith("chapters.")))  # only its chapter
print(model.loss.kl_weight)
"""


def test_vae_round_trips_through_a_keras_file_in_a_new_process(tmp_path):
    """Loaded in safe mode by a fresh Python that imports only its chapter (the other
    chapters' saved models: tests/test_first_use.py)."""
    from common.atomic import save_model
    vae = ch2.build_vae()
    ch2.compile_vae(vae, kl_weight=0.7)
    x = np.random.default_rng(0).uniform(size=(5, 1024)).astype("float32")
    save_model(vae, tmp_path / "vae.keras")
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "reload.py"
    script.write_text(SAVE_AND_RELOAD)
    result = run_script(script, tmp_path / "vae.keras", tmp_path / "x.npy",
                        tmp_path / "stats.npy")
    assert result.returncode == 0, result.stderr[-2000:]
    *_, imported, kl_weight = result.stdout.strip().splitlines()
    assert kl_weight == "0.7" and imported == "['chapters.ch2_vae']"
    np.testing.assert_allclose(np.load(tmp_path / "stats.npy"),
                               vae.get_layer("vae_encoder").predict(x, verbose=0), atol=1e-6)


def test_a_python_lambda_is_refused_in_safe_mode(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda t: t * 2)])
    model.save(tmp_path / "risky.keras")
    with pytest.raises(ValueError, match="arbitrary code execution"):
        keras.saving.load_model(tmp_path / "risky.keras", safe_mode=True)


def test_latent_helpers():
    report = latent_report(np.array([[0.0, 1.0], [-6.0, 2.0], [3.0, -4.0]]))
    assert report["share_abs_z_below_5"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["z_min"] == [-6.0, -4.0] and report["z_max"] == [3.0, 2.0]
    grid, extent = normal_grid(n=5)
    assert grid.shape == (5, 5, 2)
    assert grid[0, 0, 1] > grid[-1, 0, 1]  # row 0 holds the largest z[1]
    np.testing.assert_allclose(grid[2, 2], [0.0, 0.0], atol=1e-6)  # the median is 0


@pytest.mark.parametrize("script, figures", [
    pytest.param("ch2_vae", ["latent_scatter.png", "ae_latent_grid.png", "vae_latent_grid.png",
                             "vae_latent_path.png", "reconstructions.png", "loss_curves.png",
                             "vae_samples.png", "vae.keras", "cnn_autoencoder.keras",
                             "latents.npz"], marks=needs_font),
    ("ch2_dense_autoencoder", ["reconstructions.png", "unfamiliar_inputs.png",
                               "decoder_from_codes.png", "dense_autoencoder.keras"]),
])
def test_quick_notebook_writes_figures_and_metrics(script, figures, tmp_path):
    """ch2_vae runs as a learner scales it first: colour emoji (32x32x3) under mixed
    bfloat16 (common.precision); the dense autoencoder on grey digits."""
    if script == "ch2_vae":
        dataset = "emoji"
        ran = run_notebook(script, tmp_path, dataset=dataset, BATCH_SIZE=32,
                           PRECISION="mixed_bfloat16")
    else:
        dataset = "mnist5k"
        ran = run_notebook(script, tmp_path)  # the chapter's notebook, cell by cell
    assert f"are in {tmp_path}" in ran.text and "Total params" in ran.text
    assert ran.images >= 4  # the data, the figures, under the cells that made them
    for name in figures:
        assert (tmp_path / name).stat().st_size > 1000, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == dataset and metrics["epochs"] == 1
    for model in metrics["models"].values():
        assert np.isfinite(model["test_mse"]) and model["params"] > 0
    if script == "ch2_vae":  # the VAE's samples are judged, and the judge is named
        assert metrics["models"]["vae"]["classifier_fid"] > metrics["models"]["vae"]["fid_floor"]
        assert len(metrics["judge"]["checksum"]) == 16
        assert metrics["precision"] == "mixed_bfloat16"
        assert colourfulness(tmp_path / "reconstructions.png") > 0.01  # colour, not a grey map
        decoder = keras.saving.load_model(tmp_path / "vae_decoder.keras", safe_mode=True)
        assert tuple(decoder.output_shape[1:]) == (3072,)  # built for 3 channels


def test_bad_kl_weight_is_one_line(capsys):
    result = run_in_process(capsys, "ch2_vae", "--kl-weight", "-1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ch2_vae.py: error: argument --kl-weight: must be a finite number >= 0, got -1"]


def test_a_diverging_run_ends_in_one_line_and_writes_nothing(tmp_path, capsys):
    result = run_in_process(capsys, "ch2_vae", "--quick", "--dataset", "mnist5k",
                            "--learning-rate", "1e12", "--out", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("ch2_vae.py: error: cnn_autoencoder: the loss became nan at epoch 1")
    assert not (tmp_path / "metrics.json").exists() and not list(tmp_path.glob("*.png"))


def test_summary_shows_the_books_models_and_writes_nothing(tmp_path, capsys):
    result = run_in_process(capsys, "ch2_vae", "--summary", "--out", tmp_path / "never")
    assert result.returncode == 0
    for text in ("embedding_space", "mean_and_log_var", "reparameterize",
                 "prediction_with_mean_log_var", "100,868", "98,689", "96,770"):
        assert text in result.stdout, text
    assert not (tmp_path / "never").exists()


def test_the_lambda_sampler_follows_a_mixed_precision_policy():
    from chapters.ch2_vae import build_sampler
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        z = build_sampler()(np.zeros((3, 4), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert z.shape == (3, 2) and str(z.dtype) in ("bfloat16", "<dtype: 'bfloat16'>")


def test_the_lambda_sampler_owns_a_seed_generator_and_survives_saving(tmp_path):
    """Two builds with one seed draw the same eps; each call draws afresh; the generator
    comes back with a safe_mode load."""
    from chapters.ch2_vae import build_sampler
    stats = np.zeros((4, 4), "float32")
    first, again = build_sampler(seed=3), build_sampler(seed=3)
    a, b = np.asarray(first(stats)), np.asarray(again(stats))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, np.asarray(first(stats)))  # a fresh draw each call
    first.save(tmp_path / "sampler.keras")
    loaded = keras.saving.load_model(tmp_path / "sampler.keras", safe_mode=True)
    assert loaded.get_layer("reparameterize").arguments["seed_generator"] is not None
    np.testing.assert_array_equal(np.asarray(loaded(stats)), a)  # restarts from its seed
