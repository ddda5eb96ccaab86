"""The Transformer prior over VQ-VAE codes (chapters/ch3_vq_transformer.py) and its sampler."""

import json

import keras
import numpy as np
import pytest

from chapters.ch3_vq_transformer import attention_probe, build_transformer_prior
from chapters.ch3_vq_transformer import main as transformer_main
from common.cli import run_main
from common.flops import forward_flops
from common.vq.autoregressive import sample_codes, sequence_nll, shift_right
from tests.conftest import run_in_process, run_notebook

K = 16  # codes in the small priors below


def small_prior(start_tokens=1, seed=0):
    keras.utils.set_random_seed(seed)
    return build_transformer_prior(K, 49, start_tokens=start_tokens, width=32, depth=2,
                                   heads=2)


def test_default_prior_has_the_parameters_its_layers_add_up_to():
    width, mlp, positions, codes = 96, 192, 49, 64
    block = (2 * 2 * width                                # two LayerNorms
             + 4 * (width * width + width)                # q, k, v and output projections
             + width * mlp + mlp + mlp * width + width)   # the MLP
    expected = ((codes + 1) * width + positions * width   # code and position embeddings
                + 3 * block + 2 * width                   # three blocks, final LayerNorm
                + width * codes + codes)                  # logits
    assert build_transformer_prior(codes).count_params() == expected == 241_696
    # one start token per class and one for "no class" add ten embedding rows
    conditional = build_transformer_prior(codes, start_tokens=11)
    assert conditional.count_params() == expected + 10 * width
    # the attention layer that also returns its scores is still counted
    assert forward_flops(build_transformer_prior(codes)) > 3 * 2 * 4 * width * width * 49


def test_a_later_code_never_changes_an_earlier_prediction():
    prior = small_prior()
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, K, size=(4, 49)).astype("int32")
    inputs[:, 0] = K
    changed = inputs.copy()
    changed[:, 30] = (changed[:, 30] + 1) % K  # the code at cell 29, seen from position 30 on
    before, after = np.asarray(prior(inputs)), np.asarray(prior(changed))
    np.testing.assert_allclose(before[:, :30], after[:, :30], atol=1e-5)
    assert np.abs(before[:, 30:] - after[:, 30:]).max() > 1e-4


def test_attention_rows_are_causal_distributions():
    prior = small_prior()
    tokens = np.full((2, 49), K, "int32")
    weights = np.asarray(attention_probe(prior)(tokens))  # (batch, heads, 49, 49)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.abs(np.triu(weights, k=1)).max() == 0.0


def test_the_prior_learns_a_small_batch():
    prior = small_prior()
    rng = np.random.default_rng(1)
    codes = np.tile(rng.integers(0, K, size=(4, 49)), (8, 1)).astype("int32")
    inputs = shift_right(codes, np.full(len(codes), K))
    prior.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = prior.evaluate(inputs, codes, verbose=0)
    prior.fit(inputs, codes, batch_size=32, epochs=40, verbose=0)
    assert before > 0.9 * np.log(K)  # a fresh prior knows nothing
    assert prior.evaluate(inputs, codes, verbose=0) < 0.5 * before


def test_sequence_nll_is_the_summed_cross_entropy():
    prior = small_prior()
    rng = np.random.default_rng(2)
    codes = rng.integers(0, K, size=(6, 49))
    starts = np.full(6, K)
    prior.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    mean_loss = prior.evaluate(shift_right(codes, starts), codes, verbose=0)
    assert np.mean(sequence_nll(prior, codes, starts, batch=4)) == pytest.approx(
        49 * mean_loss, rel=1e-4)


def test_sampling_is_seeded_and_top_1_is_greedy():
    prior = small_prior(start_tokens=3)
    starts = K + np.array([0, 1, 2, 0])
    a = sample_codes(prior, starts, seed=5, batch=3)
    np.testing.assert_array_equal(a, sample_codes(prior, starts, seed=5, batch=3))
    assert a.shape == (4, 49) and a.min() >= 0 and a.max() < K
    assert not np.array_equal(a, sample_codes(prior, starts, seed=6, batch=3))
    # top-1 takes the most likely code at every step: the same for any seed, and the
    # argmax of the prior's own logits given the codes drawn before
    greedy = sample_codes(prior, starts, top_k=1, seed=0)
    np.testing.assert_array_equal(greedy, sample_codes(prior, starts, top_k=1, seed=9))
    logits = np.asarray(prior(shift_right(greedy, starts)))
    np.testing.assert_array_equal(greedy, logits.argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        sample_codes(prior, starts, temperature=0.0)


def test_guidance_at_scale_one_is_plain_conditional_sampling():
    prior = small_prior(start_tokens=3)  # two classes and a "no class" token, K + 2
    starts = K + np.array([0, 1, 0, 1])
    plain = sample_codes(prior, starts, seed=4)
    guided = sample_codes(prior, starts, guidance=1.0, null_token=K + 2, seed=4)
    np.testing.assert_array_equal(plain, guided)
    # greedy at w = 3 follows the guided logits: l(null) + 3 (l(class) - l(null))
    greedy = sample_codes(prior, starts, top_k=1, guidance=3.0, null_token=K + 2)
    cond = np.asarray(prior(shift_right(greedy, starts)))
    free = np.asarray(prior(shift_right(greedy, np.full(4, K + 2))))
    np.testing.assert_array_equal(greedy, (free + 3.0 * (cond - free)).argmax(-1))


def test_label_dropout_swaps_a_tenth_of_the_start_tokens():
    from common.vq.autoregressive import next_code_batches
    codes = np.random.default_rng(0).integers(0, K, size=(2000, 49))
    starts = K + np.arange(2000) % 2
    ds = next_code_batches(codes, starts, batch_size=500, seed=0, null_token=K + 2)
    firsts = np.concatenate([inputs.numpy()[:, 0] for inputs, _ in ds])
    assert 0.07 < np.mean(firsts == K + 2) < 0.13
    assert set(np.unique(firsts)) == {K, K + 1, K + 2}


def test_prior_round_trips_through_a_safe_keras_file(tmp_path):
    prior = small_prior()
    prior.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras", safe_mode=True)
    tokens = np.random.default_rng(3).integers(0, K + 1, size=(2, 49)).astype("int32")
    np.testing.assert_allclose(np.asarray(loaded(tokens)), np.asarray(prior(tokens)),
                               atol=1e-6)


def vqvae_run(folder):
    """A stand-in for a quick ch3_vqvae run (its test runs the real one): an untrained VQ-VAE
    and PixelCNN of K codes, and the metrics.json that names them."""
    from chapters.ch3_vqvae import GRID, build_pixelcnn, build_vqvae
    from common.atomic import save_model

    keras.utils.set_random_seed(0)
    save_model(build_vqvae(K, 4), folder / "vqvae.keras")
    save_model(build_pixelcnn(K, GRID, filters=16, blocks=1), folder / "pixelcnn.keras")
    (folder / "metrics.json").write_text(json.dumps(
        {"chapter": "ch3_vqvae", "dataset": {"name": "mnist5k"}, "quick": True,
         "models": {"pixelcnn": {"epochs": 1}}}))
    return folder


def test_quick_run_compares_both_priors_on_the_vqvae_codes(tmp_path):
    vq = vqvae_run(tmp_path / "ch3_vqvae")
    out = tmp_path / "ch3_vq_transformer"
    ran = run_notebook("ch3_vq_transformer", out, RUN=str(vq), WIDTH=32, DEPTH=1, TOP_K=4)
    assert "Total params" in ran.text and ran.images >= 5  # summaries and figures, inline
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "mnist5k"
    models = metrics["models"]
    for name in ("transformer", "transformer_conditional"):
        record = models[name]
        assert 0 < record["test_nll_nats_per_image"] < 49 * np.log(K) * 1.5
        assert len(record["nll_curve"]) == 8 and record["train_images_per_s"] > 0
    assert models["pixelcnn"]["fid_samples"] == models["transformer"]["fid_samples"] == 100
    assert 0.0 <= models["transformer_conditional"]["conditional_accuracy"] <= 1.0
    # mnist5k has no guided bar (common.eval.guidance), so no verdict on the accuracy
    assert set(models["transformer"]["bars"]) == {"nll_no_worse", "fid_no_worse",
                                                  "time_no_more"}
    for name in ("samples", "class_rows", "samples_custom", "attention", "nll_curve"):
        assert (out / f"{name}.png").exists()
    for name in ("transformer_prior", "transformer_prior_conditional"):
        keras.saving.load_model(out / f"{name}.keras", safe_mode=True)


def one_line_error(capsys, argv) -> str:
    assert run_main(transformer_main, argv, prog="ch3_vq_transformer.py") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_mistakes_are_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "nothing_here"
    line = one_line_error(capsys, ["--run", str(missing), "--out", str(tmp_path / "o")])
    assert "holds no finished run of ch3_vqvae" in line and "ch3_vqvae.py" in line
    # another chapter's models behind a plausible metrics.json
    from chapters.ch4_dcgan import build_discriminator, build_generator
    from common.atomic import save_model

    foreign = tmp_path / "foreign"
    save_model(build_generator(), foreign / "vqvae.keras")
    save_model(build_discriminator(), foreign / "pixelcnn.keras")
    (foreign / "metrics.json").write_text(json.dumps(
        {"chapter": "ch3_vqvae", "dataset": {"name": "mnist5k"}, "quick": False,
         "models": {"pixelcnn": {"epochs": 5}}}))
    line = one_line_error(capsys, ["--run", str(foreign), "--out", str(tmp_path / "o")])
    assert "vqvae.keras is not the model ch3_vqvae saves (no layer 'encoder')" in line
    with pytest.raises(SystemExit) as exit_:
        transformer_main(["--width", "30", "--heads", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "multiple of --heads" in err[0]
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# The diffusion Transformer (common.diffusion.dit)

def test_dit_blocks_start_as_the_identity_and_the_output_at_zero():
    from common.diffusion.dit import build_dit
    keras.utils.set_random_seed(0)
    dit = build_dit((28, 28, 1), num_classes=3, width=32, depth=2, heads=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 28, 28, 1)).astype("float32")
    t, label = np.array([10, 900], "int32"), np.array([0, 3], "int32")
    tokens = keras.Model(dit.inputs, dit.get_layer("position_embedding").output)
    after_blocks = keras.Model(dit.inputs, dit.get_layer("block1_gated_2").output)
    np.testing.assert_allclose(np.asarray(after_blocks([x, t, label])),
                               np.asarray(tokens([x, t, label])), atol=1e-6)
    # the zero-initialised output layer predicts no noise until it has learned
    assert np.abs(np.asarray(dit([x, t, label]))).max() == 0.0
    assert dit.output_shape == (None, 28, 28, 1)


def test_dit_unpatchify_puts_each_patch_back_where_it_came_from():
    from common.diffusion.dit import build_dit
    dit = build_dit((8, 8, 2), patch=4, width=32, depth=1, heads=2)
    head = dit.get_layer("to_patches")
    kernel = np.zeros(head.kernel.shape, "float32")
    head.kernel.assign(kernel)
    # a bias that writes (row in patch, column in patch, channel) into each patch's values
    values = np.arange(4 * 4 * 2, dtype="float32")
    head.bias.assign(values)
    out = np.asarray(dit([np.zeros((1, 8, 8, 2), "float32"), np.array([5], "int32")]))
    np.testing.assert_array_equal(out[0, :4, :4], values.reshape(4, 4, 2))
    np.testing.assert_array_equal(out[0, 4:, 4:], values.reshape(4, 4, 2))
    with pytest.raises(ValueError, match="patches"):
        build_dit((28, 28, 1), patch=5)


def test_attention_flag_is_for_the_unet_only(tmp_path, capsys):
    result = run_in_process(capsys, "ch5_ddpm", "--quick", "--denoiser", "dit", "--attention",
                            "--out", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--attention" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_vqvae_run_without_its_record_is_a_one_line_error(tmp_path, capsys):
    vq = tmp_path / "vq"
    vq.mkdir()
    for name in ("vqvae", "pixelcnn"):  # two small loadable models, but no metrics.json
        small_prior().save(vq / f"{name}.keras")
    line = one_line_error(capsys, ["--run", str(vq), "--out", str(tmp_path / "o")])
    assert "metrics.json" in line and "ch3_vqvae.py" in line
    assert not (tmp_path / "o").exists()
