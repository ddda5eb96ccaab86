"""chapters/ch5_latent_diffusion.py: the autoencoder's codes, prompts, image-to-image, saved
models, and the whole chapter in a --quick run (on the colour emoji; the rest on digits)."""

import json
import shutil

import keras
import numpy as np
import pytest

from chapters.ch5_latent_diffusion import (
    build_autoencoder,
    build_latent_diffusion,
    generate,
    image_to_image,
    parse_prompt,
    prompt_vocabulary,
)
from common.atomic import save_model
from common.data import FASHION_NAMES
from common.diffusion.samplers import even_steps, logsnr_steps
from common.diffusion.schedule import Schedule
from common.emoji_images import GROUPS as EMOJI_GROUPS
from common.errors import UserError
from common.training import cosine_adam
from tests.conftest import colourfulness, needs_font, run_in_process, run_notebook

DIGITS = tuple(str(d) for d in range(10))


def test_prompts_forgive_case_spacing_and_spell_digits():
    assert parse_prompt("ankle boot", FASHION_NAMES) == 9
    assert parse_prompt("  Ankle  BOOT ", FASHION_NAMES) == 9
    assert parse_prompt("T-shirt", FASHION_NAMES) == parse_prompt("top", FASHION_NAMES) == 0
    assert parse_prompt("t shirt/top", FASHION_NAMES) == 0
    assert parse_prompt("7", DIGITS) == parse_prompt("Seven", DIGITS) == 7
    assert len(set(prompt_vocabulary(FASHION_NAMES).values())) == 10
    assert parse_prompt("旗", EMOJI_GROUPS) == parse_prompt("Flags", EMOJI_GROUPS) == 8
    assert parse_prompt("food & drink", EMOJI_GROUPS) == 3
    for bad in ("sock", "", "seven"):  # 'seven' is not a Fashion-MNIST class
        with pytest.raises(UserError, match="'Ankle boot'"):
            parse_prompt(bad, FASHION_NAMES)


def test_codes_are_a_7x7_grid_and_the_scale_gives_them_unit_variance(digits):
    autoencoder = build_autoencoder(digits.image_shape, latent_channels=3, seed=0)
    mean, log_var = autoencoder.encoder(digits.x_train[:8])
    assert mean.shape == log_var.shape == (8, 7, 7, 3)
    assert autoencoder.decoder(mean).shape == (8, 28, 28, 1)
    raw = autoencoder.encode(digits.x_train)
    autoencoder.scale = float(1.0 / raw.std())
    assert autoencoder.encode(digits.x_train).std() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(UserError, match="multiples of 4"):
        build_autoencoder((30, 30, 1))


def test_the_cross_entropy_brings_a_decoder_back_from_saturation(digits):
    """A sigmoid decoder trained on the MSE once stuck at all-black on digits: no gradient
    flows through a saturated sigmoid. The cross-entropy's gradient, sigmoid(logit) - x, does."""
    keras.utils.set_random_seed(0)
    autoencoder = build_autoencoder(digits.image_shape, seed=0)
    kernel, bias = autoencoder.decoder.get_layer("logits").get_weights()
    autoencoder.decoder.get_layer("logits").set_weights([kernel, bias - 12.0])  # all black
    assert autoencoder.decode(autoencoder.encode(digits.x_test[:64])).max() < 1e-3
    autoencoder.compile(optimizer=keras.optimizers.Adam(2e-3))
    x = digits.x_train[:64]
    losses = []
    for _ in range(30):
        autoencoder.reset_metrics()  # this batch's loss, not the running mean
        losses.append(autoencoder.train_on_batch(x, return_dict=True)["reconstruction"])
    assert losses[-1] < 0.5 * losses[0]  # the MSE of the sigmoid: 91.5 -> 91.3, still black
    decoded = autoencoder.decode(autoencoder.encode(x))
    assert 0.0 <= decoded.min() and decoded.max() <= 1.0 and decoded.max() > 0.5


def test_the_autoencoder_and_the_diffusion_losses_fall_on_a_small_set(digits):
    keras.utils.set_random_seed(0)  # the same initial weights whatever ran before in the worker
    autoencoder = build_autoencoder(digits.image_shape, seed=0)
    autoencoder.compile(optimizer=keras.optimizers.Adam(2e-3))

    def step(model, *data):  # the loss of this batch alone, not the running mean
        model.reset_metrics()
        return model.train_on_batch(*data, return_dict=True)

    batch = [digits.x_train[i * 64:(i + 1) * 64] for i in range(8)]
    losses = [step(autoencoder, batch[i % 8])["reconstruction"] for i in range(96)]
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:8])

    model = build_latent_diffusion((7, 7, 2), 10, channels=16, seed=0)
    model.compile(optimizer=cosine_adam(2e-3, 400))
    codes = np.random.default_rng(0).normal(size=(32, 7, 7, 2)).astype("float32") * 0.3 + 0.5
    labels = digits.y_train[:32].astype("int32")
    losses = [step(model, codes, labels)["loss"] for _ in range(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_image_to_image_keeps_the_input_at_0_and_ignores_it_at_1(digits):
    autoencoder = build_autoencoder(digits.image_shape, seed=0)
    model = build_latent_diffusion((7, 7, 2), 10, channels=16, seed=0)
    images, other = digits.x_test[:4], digits.x_test[4:8]
    labels = np.full(4, 3)
    run = {"guidance": 2.0, "seed": 1, "steps": 4}
    np.testing.assert_allclose(image_to_image(model, autoencoder, images, labels, 0.0, **run),
                               autoencoder.decode(autoencoder.encode(images)), atol=1e-6)
    np.testing.assert_allclose(image_to_image(model, autoencoder, images, labels, 1.0, **run),
                               image_to_image(model, autoencoder, other, labels, 1.0, **run),
                               atol=1e-6)
    half = image_to_image(model, autoencoder, images, labels, 0.5, **run)
    assert not np.allclose(half, image_to_image(model, autoencoder, other, labels, 0.5, **run))


def test_the_grey_figures_draw_code_channels_beside_the_images(digits, tmp_path):
    """The quick run draws them in colour (emoji); here the grey path, untrained."""
    from chapters.ch5_latent_diffusion import autoencoder_figures, denoising_path_figure

    autoencoder = build_autoencoder(digits.image_shape, seed=0)
    model = build_latent_diffusion((7, 7, 2), 10, channels=16, seed=0)
    autoencoder_figures(autoencoder, digits, tmp_path)
    denoising_path_figure(model, autoencoder, 2.0, 0, {"sampler": "dpmpp", "steps": 4},
                          tmp_path / "path.png")
    for name in ("reconstructions.png", "latent_channels.png", "path.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_a_walk_can_start_part_way_down_the_schedule():
    schedule = Schedule(1000)
    assert even_steps(schedule, 3, start=500) == [500, 250, 1]
    steps = logsnr_steps(schedule, 10, start=300)
    assert steps[0] == 300 and steps[-1] == 1 and steps == sorted(steps, reverse=True)


@needs_font
def test_quick_run_saves_loadable_models_and_answers_prompts(tmp_path, capsys):
    """In colour: 32x32 emoji through 8x8x8 codes, their nine groups as the prompts."""
    out = tmp_path / "ch5_latent_diffusion"
    ran = run_notebook("ch5_latent_diffusion", out, dataset="emoji", FID_SAMPLES=40)
    assert "emoji" in ran.text and "Total params" in ran.text  # says which data it used
    assert ran.images >= 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "emoji"
    ae, ld = metrics["models"]["autoencoder"], metrics["models"]["latent_diffusion"]
    assert ae["latent_shape"] == [8, 8, 8] and ae["scale_factor"] > 0
    assert ld["conditional_accuracy_bar"] is None  # bars are set for the full datasets only
    assert set(ld["by_guidance"]) == {"0", "1", "2", "2.5", "3", "5"}
    for name in ("reconstructions.png", "latent_channels.png", "class_grid.png",
                 "guidance_scales.png", "denoising_path.png", "image_to_image.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("encoder.keras", "decoder.keras", "denoiser_ema.keras"):
        keras.saving.load_model(out / name, safe_mode=True)  # a plain Keras load, no code run
    assert colourfulness(out / "class_grid.png") > 0.01  # decoded in colour

    again = run_in_process(capsys, "ch5_latent_diffusion", "--quick", "--dataset", "emoji",
                           "--out", out, "--prompt", "flags", "--prompt", " 食べ物と飲み物 ")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "using the models trained earlier" in again.stdout
    assert (out / "prompt_flags.png").exists() and (out / "prompt_食べ物と飲み物.png").exists()

    bad = run_in_process(capsys, "ch5_latent_diffusion", "--quick", "--dataset", "emoji",
                         "--out", out, "--prompt", "ankle boot", "--prompt", "x" * 100_000)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown prompt 'ankle boot'" in lines[0]
    assert "'Flags'" in lines[0]
    check_damaged_folders(out, tmp_path, capsys)
    check_the_other_denoiser_is_refused(out, capsys)


def check_the_other_denoiser_is_refused(out, capsys):
    """--prompt reuses saved models only when they are of the denoiser asked for; asked for
    the other, it says what is there and overwrites nothing."""
    from chapters.ch5_latent_diffusion import load_run
    from common.data import load

    emoji = load("emoji", limit=512)
    assert load_run(out, emoji, "unet") is not None
    with pytest.raises(UserError, match="holds a latent-diffusion run with the unet denoiser"):
        load_run(out, emoji, "dit")
    before = (out / "metrics.json").read_bytes()
    other = run_in_process(capsys, "ch5_latent_diffusion", "--quick", "--dataset", "emoji",
                           "--out", out, "--prompt", "flags", "--denoiser", "dit")
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "pass --denoiser unet to draw with it" in other.stderr
    assert (out / "metrics.json").read_bytes() == before


def check_damaged_folders(out, tmp_path, capsys):
    """Every way a saved run can be damaged is one line that names the file, from the
    in-process reader, and from the command line once."""
    from chapters.ch5_latent_diffusion import load_run
    from common.data import load

    emoji = load("emoji", limit=512)
    damages = {
        "decoder.keras": lambda p: p.write_bytes(p.read_bytes()[:100_000]),
        "denoiser_ema.keras": lambda p: p.write_text("not a model"),
        "latent_diffusion.json": lambda p: p.write_text(p.read_text()[:50]),
        "metrics.json": lambda p: p.write_text(json.dumps({"chapter": "ch5_latent_diffusion",
                                                            "wrong": "keys"})),
    }
    for name, damage in damages.items():
        copy = tmp_path / f"damaged_{name}"
        shutil.copytree(out, copy)
        damage(copy / name)
        with pytest.raises(UserError) as caught:
            load_run(copy, emoji)
        assert "\n" not in str(caught.value) and str(copy) in str(caught.value), name
    keys = tmp_path / "wrong_keys"
    shutil.copytree(out, keys)
    (keys / "latent_diffusion.json").write_text(json.dumps({"dataset": "emoji"}))
    with pytest.raises(UserError, match="lacks 'image_shape'"):
        load_run(keys, emoji)
    result = run_in_process(capsys, "ch5_latent_diffusion", "--quick", "--dataset", "emoji",
                            "--out", tmp_path / "damaged_decoder.keras", "--prompt", "flags")
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "decoder.keras is not a loadable Keras model" in lines[0]


def test_the_diffusion_transformer_denoises_latents_and_round_trips(digits, tmp_path):
    """--denoiser dit, in process: 1x1 patches of the 7x7 codes, a loss that falls, a
    safe-mode load that predicts the same, and samples that decode to images."""
    keras.utils.set_random_seed(0)
    model = build_latent_diffusion((7, 7, 2), 10, seed=0, denoiser="dit")
    assert model.network.get_layer("patchify").kernel.shape[:2] == (1, 1)
    model.compile(optimizer=cosine_adam(2e-3, 400))
    codes = np.random.default_rng(0).normal(size=(32, 7, 7, 2)).astype("float32") * 0.3 + 0.5
    labels = digits.y_train[:32].astype("int32")
    losses = []
    for _ in range(40):
        model.reset_metrics()
        losses.append(model.train_on_batch(codes, labels, return_dict=True)["loss"])
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:4])
    save_model(model.network, tmp_path / "denoiser.keras")
    loaded = keras.saving.load_model(tmp_path / "denoiser.keras", safe_mode=True)
    inputs = [codes[:4], np.array([1, 200, 700, 1000]), labels[:4]]
    np.testing.assert_allclose(np.asarray(loaded(inputs)), np.asarray(model.network(inputs)),
                               atol=1e-5)
    autoencoder = build_autoencoder(digits.image_shape, seed=0)
    images = generate(model, autoencoder, labels[:4], 2.0, 0, steps=3)
    assert images.shape == (4, 28, 28, 1) and np.isfinite(images).all()


def test_an_interrupted_run_keeps_its_trained_autoencoder(digits, tmp_path, capsys):
    from types import SimpleNamespace

    from chapters.ch5_latent_diffusion import train_autoencoder

    run = SimpleNamespace(out=tmp_path, seed=0, quick=True)
    first, speed = train_autoencoder(digits, run, 2)
    assert (tmp_path / ".backup" / "autoencoder" / "autoencoder.json").exists()
    capsys.readouterr()
    again, speed_again = train_autoencoder(digits, run, 2)  # the run resumed
    assert "trained earlier in this run" in capsys.readouterr().out
    assert again.scale == first.scale and speed_again == speed
    for a, b in zip(first.decoder.get_weights(), again.decoder.get_weights()):
        np.testing.assert_array_equal(a, b)
