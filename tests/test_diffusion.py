"""The diffusion chapter's schedule, embedding, training step, guidance and samplers."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from chapters.ch5_ddpm import DiffusionModel, build_unet
from common.diffusion.samplers import coefficients, guided_eps, sample_ddim
from common.diffusion.schedule import (
    SCHEDULES,
    NoiseFromVelocity,
    Schedule,
    predicting_v,
    timestep_embedding,
)
from tests.conftest import run_in_process, run_notebook


def test_closed_form_matches_iterating_the_one_step_noising():
    schedule = Schedule(1000)
    rng = np.random.default_rng(0)
    x0 = np.full(40_000, 0.8)
    x = x0.copy()
    for t in range(1, 301):  # x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps
        x = np.sqrt(1 - schedule.betas[t - 1]) * x + np.sqrt(schedule.betas[t - 1]) * \
            rng.standard_normal(x.shape)
    closed = schedule.noisy(x0, np.full(len(x0), 300), rng.standard_normal(x0.shape))
    a = schedule.alpha_bars[299]
    for sample in (x, closed):
        assert sample.mean() == pytest.approx(np.sqrt(a) * 0.8, abs=0.01)
        assert sample.std() == pytest.approx(np.sqrt(1 - a), rel=0.01)
    assert schedule.alpha_bars[-1] < 1e-4  # at t = T almost nothing of x_0 is left


def test_the_cosine_schedule_follows_its_formula():
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar_t = f(t) / f(0); it keeps more signal than
    the linear schedule through the middle steps and still ends near pure noise."""
    cosine, linear = Schedule(kind="cosine"), Schedule()
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    for t in (1, 250, 500, 750):
        assert cosine.alpha_bars[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert np.all(np.diff(cosine.alpha_bars) < 0) and cosine.betas.max() <= 0.999
    assert cosine.alpha_bars[499] > 5 * linear.alpha_bars[499]
    assert cosine.alpha_bars[-1] < 1e-6
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule(kind="quadratic")


def test_min_snr_weighting_lightens_only_the_easy_low_noise_steps():
    model = tiny(loss_weighting="min_snr")
    weights, snr = np.asarray(model.step_weights), model.schedule.snr()
    np.testing.assert_allclose(weights, np.minimum(snr, 5.0) / snr, rtol=1e-6)
    assert weights[0] < 0.01 and np.all(weights[snr <= 5] == 1.0)
    np.testing.assert_array_equal(np.asarray(tiny().step_weights), 1.0)  # the textbook loss
    with pytest.raises(ValueError, match="unknown loss weighting"):
        tiny(loss_weighting="sqrt")


def test_time_embedding_shape_range_and_distinct_steps():
    t = np.arange(1, 1001)
    emb = np.asarray(timestep_embedding(t, 32))
    assert emb.shape == (1000, 32) and np.abs(emb).max() <= 1.0
    distances = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    assert distances[~np.eye(1000, dtype=bool)].min() > 1e-3  # every step is told apart
    assert np.linalg.norm(emb[0] - emb[1]) < np.linalg.norm(emb[0] - emb[500])


def tiny(num_classes=0, **kwargs):
    return DiffusionModel(build_unet(8, num_classes, attention=False),
                          build_unet(8, num_classes, attention=False, name="ema"),
                          num_classes=num_classes, seed=0, **kwargs)


def noised(schedule, t, seed=0):
    """x_0, eps, x_t and v = sqrt(abar) eps - sqrt(1 - abar) x_0 at the steps t."""
    rng = np.random.default_rng(seed)
    x0, eps = (rng.normal(size=(len(t), 28, 28, 1)).astype("float32") for _ in range(2))
    a = schedule.alpha_bars[np.asarray(t) - 1].reshape(-1, 1, 1, 1)
    return x0, eps, np.sqrt(a) * x0 + np.sqrt(1 - a) * eps, np.sqrt(a) * eps - np.sqrt(1 - a) * x0


@pytest.mark.parametrize("kind", SCHEDULES)
def test_v_read_back_as_noise_is_the_true_noise(kind):
    t = np.array([1, 10, 300, 500, 900, 1000])
    _, eps, x_t, v = noised(Schedule(kind=kind), t)
    got = NoiseFromVelocity(kind=kind)([v.astype("float32"), x_t.astype("float32"), t])
    np.testing.assert_allclose(np.asarray(got), eps, atol=1e-4)


def test_v_prediction_trains_on_the_squared_error_of_v_and_round_trips(tmp_path):
    schedule = Schedule()
    model = DiffusionModel(predicting_v(build_unet(8, attention=False), schedule),
                           predicting_v(build_unet(8, attention=False, name="ema"), schedule),
                           seed=0, prediction="v")
    np.testing.assert_allclose(np.asarray(model.step_weights), 1 / schedule.alpha_bars,
                               rtol=1e-5)
    # The weighted noise error the step minimises is the plain error on v, image by image.
    t = np.array([1, 200, 700, 1000])
    _, eps, x_t, v = noised(schedule, t)
    v_hat = v + np.random.default_rng(1).normal(size=v.shape)
    eps_hat = np.asarray(NoiseFromVelocity()([v_hat.astype("float32"), x_t.astype("float32"), t]))
    weighted = np.mean((eps_hat - eps) ** 2, axis=(1, 2, 3)) / schedule.alpha_bars[t - 1]
    np.testing.assert_allclose(weighted, np.mean((v_hat - v) ** 2, axis=(1, 2, 3)), rtol=1e-3)
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = np.tile(np.linspace(-1, 1, 28 * 28, dtype="float32").reshape(1, 28, 28, 1), (32, 1, 1, 1))
    losses = model.fit(x, batch_size=32, epochs=40, verbose=0).history["loss"]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    model.ema_network.save(tmp_path / "v.keras")
    loaded = keras.saving.load_model(tmp_path / "v.keras", safe_mode=True)
    inputs = [x_t[:2].astype("float32"), t[:2]]
    np.testing.assert_allclose(np.asarray(loaded(inputs)),
                               np.asarray(model.ema_network(inputs)), atol=1e-6)


def test_logit_normal_steps_favour_the_middle_of_the_chain():
    uniform, middle = (np.asarray(tiny(timesteps=kind).draw_steps(20_000))
                       for kind in ("uniform", "logit_normal"))
    for steps in (uniform, middle):
        assert steps.min() >= 1 and steps.max() <= 1000
    # P(250 < t <= 750): 0.5 uniformly; P(|N(0, 1)| < logit(0.75) = 1.099) = 0.728 logit-normal
    assert np.mean((uniform > 250) & (uniform <= 750)) == pytest.approx(0.5, abs=0.02)
    assert np.mean((middle > 250) & (middle <= 750)) == pytest.approx(0.728, abs=0.02)
    with pytest.raises(ValueError, match="unknown prediction"):
        tiny(timesteps="beta")


def test_training_lowers_the_noise_prediction_loss_and_the_ema_follows_at_its_decay():
    keras.utils.set_random_seed(0)
    model = tiny(ema_decay=0.0)  # decay 0: the EMA copy is the latest weights
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = np.tile(np.linspace(-1, 1, 28 * 28, dtype="float32").reshape(1, 28, 28, 1), (32, 1, 1, 1))
    losses = model.fit(x, batch_size=32, epochs=60, verbose=0).history["loss"]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    for a, b in zip(model.ema_network.get_weights(), model.network.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_ema_decay_warms_up_so_the_initial_weights_fade_fast():
    from common.diffusion.ema import ema_decay_now

    decays = [float(ema_decay_now(0.999, float(n))) for n in (0, 90, 1e6)]
    assert decays == pytest.approx([0.1, 0.91, 0.999])
    # after 1,900 steps the random start weighs < 1e-3, not the 0.999^1900 = 15% of a fixed decay
    weight = np.prod([float(ema_decay_now(0.999, float(n))) for n in range(1900)])
    assert weight < 1e-3 < 0.999 ** 1900


def test_guidance_zero_is_the_unconditional_prediction():
    net = build_unet(8, num_classes=10, attention=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 28, 28, 1)).astype("float32")
    t = np.array([1, 10, 500, 1000], "int32")
    labels = np.array([0, 3, 5, 9], "int32")
    null = np.full(4, 10, "int32")
    unconditional = np.asarray(net([x, t, null]))
    np.testing.assert_allclose(np.asarray(guided_eps(net, x, t, labels, 0.0, 10)),
                               unconditional, atol=1e-5)
    w1 = np.asarray(guided_eps(net, x, t, labels, 1.0, 10))
    np.testing.assert_allclose(w1, np.asarray(net([x, t, labels])), atol=1e-5)


def test_the_label_is_not_drowned_by_the_step_at_initialisation():
    """Both enter each block as one summed vector; a label vector far smaller than the step's
    is learnt slowly (the default uniform(-0.05, 0.05) start gives about 1/8 of its norm)."""
    net = build_unet(8, num_classes=10, attention=False)
    probe = keras.Model(net.inputs, [net.get_layer("t_mlp_2").output,
                                     net.get_layer("label_embedding").output])
    t = np.arange(1, 1001, 50).astype("int32")
    step, label = probe([np.zeros((20, 28, 28, 1), "float32"), t,
                         (np.arange(20) % 11).astype("int32")])
    ratio = np.linalg.norm(label, axis=1).mean() / np.linalg.norm(step, axis=1).mean()
    assert ratio > 0.5


def test_ddim_with_every_step_and_eta_one_is_the_ddpm_update():
    schedule = Schedule(1000)
    steps = list(range(1000, 0, -1))
    ddpm = coefficients(schedule, steps, eta=1.0, ancestral=True)
    ddim = coefficients(schedule, steps, eta=1.0, ancestral=False)
    np.testing.assert_allclose(ddim, ddpm, rtol=1e-6, atol=1e-10)
    assert ddpm[-1, 3] == 0.0  # no noise is added on the last step
    eta0 = coefficients(schedule, [1000, 500, 1], eta=0.0, ancestral=False)
    assert np.all(eta0[:, 3] == 0.0)  # DDIM with eta = 0 is deterministic


@pytest.mark.parametrize("num_classes", [0, 3])
def test_algorithm_2_written_out_draws_what_the_compiled_sampler_draws(num_classes):
    """chapters/ch5_ddpm.py's ancestral_sample, the paper's loop line by line, and the one
    compiled loop of common.diffusion.samplers, from the same noise: the same images (up to
    float32 rounding; the network is untrained, so x grows large along the way)."""
    from chapters.ch5_ddpm import ancestral_sample
    from common.diffusion.samplers import sample_ddpm

    keras.utils.set_random_seed(0)
    net = build_unet(8, num_classes, attention=False)
    schedule = Schedule(50, 1e-3, 0.2)
    guided = {} if not num_classes else {"labels": np.array([0, 1, 2, 0], np.int32),
                                         "guidance": 2.0, "null_class": num_classes}
    written, kept = ancestral_sample(net, schedule, (4, 28, 28, 1), seed=3, keep_every=10,
                                     **guided)
    compiled = sample_ddpm(net, schedule, (4, 28, 28, 1), seed=3, clip=False, **guided)
    scale = np.abs(compiled).max()
    np.testing.assert_allclose(written, compiled, atol=1e-5 * scale)
    assert kept.shape == (6, 4, 28, 28, 1)  # x_T and every 10th of the 50 steps
    np.testing.assert_array_equal(kept[-1], written)
    other = ancestral_sample(net, schedule, (4, 28, 28, 1), seed=4, **guided)
    assert not np.allclose(other, written)  # another seed, other noise


# The loss of three batches (running mean) and the EMA copy's first weights as the training
# step computed them before it moved from common/diffusion/trainer.py into ch5_ddpm
# (2026-12-07; mnist5k's first 96 images in [-1, 1], build_diffusion(8, seed=0), Adam(1e-3)).
ALGORITHM_1_BEFORE = {
    "v_logit": ({"prediction": "v", "timesteps": "logit_normal"},
                [1.7752445, 1.7157489, 1.6484686], [9.5453196, 0.0160756, 47.41888]),
    "eps_uniform_conditional": ({"num_classes": 10}, [1.5569105, 1.4641924, 1.4021643],
                                [47.3734016, 0.0639327, 9.6572065]),
}


@pytest.mark.parametrize("name", list(ALGORITHM_1_BEFORE))
def test_algorithm_1_in_the_chapter_trains_as_before(name, digits):
    from chapters.ch5_ddpm import build_diffusion
    from common.scaling import to_tanh_range

    settings, losses, ema_sums = ALGORITHM_1_BEFORE[name]
    x, y = to_tanh_range(digits.x_train[:96]), digits.y_train[:96]
    keras.utils.set_random_seed(0)
    model = build_diffusion(8, seed=0, **settings)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs=None: seen.append(float(logs["loss"])))
    data = (x, y) if settings.get("num_classes") else x
    model.fit(tf.data.Dataset.from_tensor_slices(data).batch(32), epochs=1, verbose=0,
              shuffle=False, callbacks=[record])
    np.testing.assert_allclose(seen, losses, rtol=2e-4)
    sums = [float(np.abs(w).sum()) for w in model.ema_network.get_weights()[:3]]
    np.testing.assert_allclose(sums, ema_sums, rtol=2e-4)


def test_samplers_return_images_of_the_requested_shape_and_are_seeded():
    net = build_unet(8, attention=False)
    schedule = Schedule(1000)
    a = sample_ddim(net, schedule, (2, 28, 28, 1), sampling_steps=5, seed=3)
    b = sample_ddim(net, schedule, (2, 28, 28, 1), sampling_steps=5, seed=3)
    assert a.shape == (2, 28, 28, 1)
    np.testing.assert_allclose(a, b)


def test_kept_steps_run_from_the_starting_noise_to_the_final_image():
    net = build_unet(8, attention=False)
    final, kept = sample_ddim(net, Schedule(1000), (2, 28, 28, 1), sampling_steps=6, seed=3,
                              keep_every=2)
    assert kept.shape == (4, 2, 28, 28, 1)  # x_T, then after steps 2, 4 and 6
    start = tf.random.Generator.from_seed(3).normal((2, 28, 28, 1)).numpy()
    np.testing.assert_allclose(kept[0], start)
    np.testing.assert_allclose(kept[-1], final)
    assert not np.allclose(kept[1], kept[0])

def test_clipping_keeps_the_predicted_image_in_range_only_when_asked():
    """One DDIM step from t = 1 lands on the predicted x_0 itself, x_t / sqrt(alpha_bar_1)
    minus a small eps term, so from N(0, I) noise many pixels lie outside [-1, 1]."""
    net = build_unet(8, attention=False)
    schedule = Schedule(1000)
    clipped = sample_ddim(net, schedule, (2, 28, 28, 1), sampling_steps=1, seed=3, clip=True)
    free = sample_ddim(net, schedule, (2, 28, 28, 1), sampling_steps=1, seed=3)
    assert np.abs(clipped).max() <= 1.0
    assert np.abs(free).max() > 1.5
    inside = np.abs(free) < 1.0
    np.testing.assert_allclose(clipped[inside], free[inside])


@pytest.mark.parametrize("script,model,expected", [
    ("ch5_ddpm", "ddpm", ["noising_strip.png", "reverse_process.png", "samples.png"]),
    ("ch5_conditional_diffusion", "cfg_diffusion",
     ["class_grid.png", "guidance_scales.png", "guidance_tradeoff.png"]),
])  # the DiT end to end: test_latent_diffusion's quick run with --denoiser dit
def test_quick_runs(tmp_path, script, model, expected):
    out = tmp_path / script
    if script == "ch5_ddpm":  # the chapter's notebook, cell by cell
        ran = run_notebook(script, out, CHANNELS=16)
    else:  # in colour: the emoji, their nine groups as the classes
        ran = run_notebook(script, out, dataset="emoji", CHANNELS=16, FID_SAMPLES=40)
    assert "Total params" in ran.text and ran.images >= len(expected)
    metrics = json.loads((out / "metrics.json").read_text())
    if script == "ch5_conditional_diffusion":
        assert metrics["dataset"]["name"] == "emoji"
        assert len(metrics["dataset"]["provenance"]["checksum"]) == 16
    assert metrics["models"][model]["train_images_per_s"] > 0
    for name in expected:
        assert (out / name).exists(), name
    network = keras.saving.load_model(out / "unet_ema.keras", safe_mode=True)
    assert network.name == "unet_ema"
    assert network.output_shape[-1] == (1 if script == "ch5_ddpm" else 3)
    if script == "ch5_ddpm":  # its recipe's changes to the lecture's loss are recorded and saved
        assert metrics["models"][model]["prediction"] == "v"
        assert metrics["models"][model]["timesteps"] == "logit_normal"
        assert network.layers[-1].name == "noise_from_v"


def test_channels_must_suit_group_norm(tmp_path, capsys):
    result = run_in_process(capsys, "ch5_ddpm", "--quick", "--channels", "12", "--out", tmp_path)
    assert result.returncode == 2 and "multiple of 8" in result.stderr
