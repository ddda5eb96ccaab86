"""Chapter 3 scripts, run the way a learner runs them (--quick on mnist5k)."""

import json

import keras
import numpy as np
import pytest

from chapters import ch3_cvae, ch3_vae, ch3_vqvae
from chapters import ch3_hierarchical_vae as hier
from tests.conftest import run_in_process, run_notebook


def quick(script, out, **parameters):
    """The chapter's notebook run quick into `out` (with `parameters`, its flags' variables),
    and the metrics.json it wrote."""
    ran = run_notebook(script, out, **parameters)
    assert "Total params" in ran.text and ran.images >= 2  # summaries and figures, inline
    return ran, json.loads((out / "metrics.json").read_text())


def test_ch3_vae_quick_trains_every_model_and_scores_it(tmp_path):
    result, metrics = quick("ch3_vae", tmp_path, LATENT_DIM=4)
    models = metrics["models"]
    assert list(models) == ["dense", "dense_annealed", "conv", "keras_io_reference",
                            "conv_beta4"]
    for r in models.values():
        assert r["test_nelbo_nats"] == pytest.approx(r["test_reconstruction_nats"]
                                                     + r["test_kl_nats"], abs=0.02)
        assert len(r["kl_per_dim_nats"]) == 4 and 0 <= r["active_units"] <= 4
        assert 0 <= r["dead_hidden_units"] <= r["hidden_units"]
        assert r["fid_samples"] == 200 and r["judge"] == metrics["judge"]["checksum"]
    assert models["dense_annealed"]["kl_anneal_epochs"] == 3
    history = json.loads((tmp_path / "history_dense_annealed.json").read_text())
    assert history["beta"] == [0.0]  # the first epoch of a warm-up trains with beta = 0
    for name in ("reconstructions", "samples", "traversals_conv", "traversals_conv_beta4",
                 "kl_per_dimension", "kl_annealing", "nelbo_curves"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert "keras.io reference" in result.text
    loaded = keras.saving.load_model(tmp_path / "conv.keras", safe_mode=True)
    assert loaded.get_layer("vae_loss").beta.numpy() == 1.0


def test_ch3_vae_optional_models_can_be_skipped():
    from chapters.ch3_vae import flags, specs
    args = flags().parse_args(["--contrast-beta", "0", "--kl-anneal", "0"])
    chosen = specs(args.beta, args.contrast_beta, args.kl_anneal)
    assert [spec.name for spec in chosen] == ["dense", "conv", "keras_io_reference"]
    assert len(specs(1.0, 4.0, 10)) == 5  # the defaults add the annealed and beta-4 models


def test_ch3_cvae_quick_scores_conditional_samples(tmp_path):
    out = tmp_path / "cvae"
    result, metrics = quick("ch3_cvae", out)
    r = metrics["models"]["conv_cvae"]
    assert 0.0 <= r["conditional_accuracy"] <= 1.0 and r["samples_scored"] == 500
    assert len(r["conditional_accuracy_per_class"]) == 10
    assert 0.0 <= r["reconstruction_accuracy"] <= 1.0
    assert len(r["reconstruction_accuracy_per_class"]) == 10
    assert "reconstructions of it" in result.text
    assert r["prior"] == "fitted" and 0.0 <= r["normal_prior_conditional_accuracy"] <= 1.0
    # the fitted prior is scored at every temperature of the sweep; the headline is the default
    assert list(r["by_temperature"]) == ["1", "0.85", "0.7", "0.5"] and r["temperature"] == 0.7
    assert r["conditional_accuracy"] == r["by_temperature"]["0.7"]["conditional_accuracy"]
    saved = np.load(out / "class_prior.npz")  # 10 classes x 10 Gaussians over z
    assert saved["means"].shape == (10, 10, r["latent_dim"])
    assert (tmp_path / "_classifiers").is_dir()  # the judge is cached beside the outputs
    for name in ("same_z_every_class", "one_class_many_z", "analogies", "nelbo_curve"):
        assert (out / f"{name}.png").exists()


def test_cvae_reconstruction_accuracy_judges_decoded_means():
    class Decoder:  # "decodes" z into an image whose first pixel is round(z[0])
        def predict(self, inputs, **_):
            z, one_hot = inputs
            assert one_hot.shape == (len(z), 3)
            images = np.zeros((len(z), 2, 2, 1), "float32")
            images[:, 0, 0, 0] = np.round(z[:, 0])
            return images

    class Judge:  # calls an image the class written in its first pixel
        def predict(self, images):
            return images[:, 0, 0, 0].astype(int)

    labels = np.array([0, 1, 2, 2, 1])
    means = np.array([[0.1], [1.2], [2.0], [0.9], [0.8]])  # the 4th decodes as class 1
    result = ch3_cvae.reconstruction_accuracy(Judge(), Decoder(), means, labels, 3)
    assert result["reconstruction_accuracy"] == pytest.approx(0.8)
    assert result["reconstruction_accuracy_per_class"] == [1.0, 1.0, 0.5]


def test_ch3_vqvae_quick_trains_both_stages(tmp_path):
    out = tmp_path / "vq"
    _, metrics = quick("ch3_vqvae", out, CODES=16)
    vq, prior = metrics["models"]["vqvae"], metrics["models"]["pixelcnn"]
    assert vq["codes"] == 16 and 0 <= vq["dead_codes"] <= 16
    assert 1.0 <= vq["perplexity"] <= 16.0
    assert prior["uniform_nll"] == pytest.approx(49 * np.log(16), abs=0.01)
    for name in ("reconstructions", "code_grid", "codebook_usage", "samples", "loss_curves"):
        assert (out / f"{name}.png").exists()
    for name in ("vqvae", "pixelcnn"):
        keras.saving.load_model(out / f"{name}.keras", safe_mode=True)


def test_ch3_hierarchical_quick_reports_both_kl_terms(tmp_path):
    _, metrics = quick("ch3_hierarchical_vae", tmp_path)
    two = metrics["models"]["two_level"]
    assert two["test_kl_nats"] == pytest.approx(two["test_kl_z1_nats"] + two["test_kl_z2_nats"],
                                                abs=0.02)
    assert metrics["models"]["one_level"]["latent_dim"] == hier.Z1
    for model in metrics["models"].values():  # both judged by the one judge
        assert model["fid_samples"] == 200 and model["judge"] == metrics["judge"]["checksum"]
        assert model["classifier_fid"] > model["fid_floor"] > 0
    assert (tmp_path / "fixed_z2.png").exists()
    loaded = keras.saving.load_model(tmp_path / "two_level.keras", safe_mode=True)
    images = hier.sample_two_level(loaded, np.zeros((3, hier.Z2), "float32"))
    assert images.shape == (3, 28, 28, 1) and 0 <= images.min() and images.max() <= 1


def test_models_are_the_sizes_the_docstrings_say():
    one, two = hier.build_one_level(), hier.build_two_level()
    assert two.count_params() / one.count_params() < 1.03
    reference = ch3_vae.build(ch3_vae.Spec("r", "conv", ch3_vae.REFERENCE_HIDDEN, 1.0), 2)
    assert reference.count_params() == 69_076 + 65_089 + 1  # + the loss layer's beta
    vq = ch3_vqvae.build_vqvae(64, 16)
    assert vq.get_layer("quantizer").count_params() == 64 * 16
    assert vq.get_layer("encoder").output_shape == (None, 7, 7, 16)


@pytest.mark.parametrize("script,args,message", [
    ("ch3_vae", ["--latent-dim", "0"], "--latent-dim"),
    ("ch3_vae", ["--beta", "-1"], "--beta"),
    ("ch3_cvae", ["--show-class", "10"], "--show-class"),
    ("ch3_vqvae", ["--codes", "1"], "--codes"),
    ("ch3_hierarchical_vae", ["--kl-anneal", "x"], "--kl-anneal"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, script, args, message):
    result = run_in_process(capsys, script, "--quick", "--dataset", "mnist5k",
                            "--out", tmp_path / "o", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "o" / "metrics.json").exists()
