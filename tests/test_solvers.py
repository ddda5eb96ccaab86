"""The diffusion solvers: DPM-Solver++(2M) and its stochastic form against hand computations,
against the exact answer on Gaussian data, with guidance, and the flags that choose them."""

import numpy as np
import pytest
import tensorflow as tf

from chapters import ch5_conditional_diffusion, ch5_ddpm, ch5_samplers
from chapters.ch5_ddpm import build_unet
from common.diffusion.samplers import (
    coefficients,
    dpmpp_coefficients,
    even_steps,
    network_passes,
    sample,
    sample_dpmpp,
)
from common.diffusion.schedule import Schedule


class LinearNoise:
    """A stand-in network whose predicted noise is 0.5 x_t, for updates done by hand."""

    def __call__(self, inputs, training=False):
        return 0.5 * inputs[0]


class GaussianOracle:
    """The exact noise predictor for data x_0 ~ N(mean, std^2) per pixel: x_t is Gaussian too,
    and E[eps | x_t] = sigma_t (x_t - alpha_t mean) / (alpha_t^2 std^2 + sigma_t^2)."""

    def __init__(self, schedule, mean, std):
        self.alpha_bars = tf.constant(schedule.alpha_bars, tf.float32)
        self.mean, self.std = mean, std

    def __call__(self, inputs, training=False):
        x, t = inputs
        ab = tf.reshape(tf.gather(self.alpha_bars, t - 1), (-1, 1, 1, 1))
        return tf.sqrt(1 - ab) * (x - tf.sqrt(ab) * self.mean) / (ab * self.std ** 2 + 1 - ab)


def test_the_first_steps_are_ddim_and_the_ddpm_posterior():
    schedule = Schedule(1000)
    steps = even_steps(schedule, 20)
    ode = dpmpp_coefficients(schedule, steps, stochastic=False)
    sde = dpmpp_coefficients(schedule, steps, stochastic=True)
    np.testing.assert_allclose(ode[0], coefficients(schedule, steps, eta=0.0,
                                                    ancestral=False)[0], rtol=1e-9)
    np.testing.assert_allclose(sde[0], coefficients(schedule, steps, eta=1.0,
                                                    ancestral=False)[0], rtol=1e-9)
    assert np.all(ode[1:-1, 3] != 0) and np.all(ode[:, 4] == 0)  # second order, no noise
    np.testing.assert_allclose(ode[-1], [1, 1, 0, 0, 0])  # the last step lands on x0_hat


def by_hand(schedule, x, noises, stochastic):
    """Steps 4 -> 2 -> 1 -> 0 of DPM-Solver++(2M), written out from the paper's update with
    the stand-in network eps = 0.5 x."""
    ab = schedule.alpha_bars
    alpha = {t: np.sqrt(ab[t - 1]) for t in (4, 2, 1)}
    sigma = {t: np.sqrt(1 - ab[t - 1]) for t in (4, 2, 1)}
    lam = {t: np.log(alpha[t] / sigma[t]) for t in (4, 2, 1)}

    def x0_hat(x, t):
        return (x - sigma[t] * 0.5 * x) / alpha[t]

    def step(x, s, t, d, z):
        h = lam[t] - lam[s]
        if not stochastic:
            return sigma[t] / sigma[s] * x + alpha[t] * (1 - np.exp(-h)) * d
        return (sigma[t] / sigma[s] * np.exp(-h) * x + alpha[t] * (1 - np.exp(-2 * h)) * d
                + sigma[t] * np.sqrt(1 - np.exp(-2 * h)) * z)

    first = x0_hat(x, 4)
    x = step(x, 4, 2, first, noises[0])  # first order: DDIM's step
    second = x0_hat(x, 2)
    r = (lam[2] - lam[4]) / (lam[1] - lam[2])
    x = step(x, 2, 1, (1 + 1 / (2 * r)) * second - 1 / (2 * r) * first, noises[1])
    return x0_hat(x, 1)


@pytest.mark.parametrize("stochastic", [False, True])
def test_two_steps_match_a_hand_computation(stochastic):
    schedule = Schedule(4, beta_start=0.1, beta_end=0.4)
    assert even_steps(schedule, 3) == [4, 2, 1]
    generator = tf.random.Generator.from_seed(5)  # the sampler's draws, in its order
    start, *noises = [generator.normal((3, 2, 2, 1)).numpy().astype(np.float64)
                      for _ in range(3)]
    expected = by_hand(schedule, start, noises, stochastic)
    got = sample_dpmpp(LinearNoise(), schedule, (3, 2, 2, 1), sampling_steps=3, seed=5,
                       stochastic=stochastic, spacing="uniform")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_each_solver_recovers_a_gaussian_and_dpm_solver_beats_ddim_at_20_steps():
    schedule = Schedule(1000)
    mean, std = 0.3, 0.3
    oracle = GaussianOracle(schedule, mean, std)
    errors = {}
    for sampler in ("ddim", "dpmpp", "dpmpp_sde"):
        x = sample(oracle, schedule, (4000, 4, 4, 1), sampler=sampler, sampling_steps=20)
        assert x.mean() == pytest.approx(mean, abs=0.01), sampler
        errors[sampler] = abs(x.std() / std - 1)
    # DDIM's first-order steps lose a fifth of the spread at 20 steps; DPM-Solver++ keeps it
    assert errors["ddim"] < 0.3 and errors["dpmpp"] < 0.03 and errors["dpmpp_sde"] < 0.07
    assert errors["dpmpp"] < errors["ddim"] / 3


def test_guidance_reaches_the_network_through_dpm_solver():
    net = build_unet(8, num_classes=10, attention=False)
    schedule = Schedule(1000)

    def draw(labels, w):
        return sample(net, schedule, (2, 28, 28, 1), sampler="dpmpp", sampling_steps=4,
                      labels=np.array(labels, "int32"), guidance=w, null_class=10, seed=1)

    np.testing.assert_allclose(draw([0, 1], 0.0), draw([5, 7], 0.0), atol=1e-5)  # null only
    assert not np.allclose(draw([0, 1], 3.0), draw([5, 7], 3.0), atol=1e-3)


def test_sampler_names_steps_and_passes():
    schedule = Schedule(1000)
    assert network_passes(schedule, "ddpm") == 1000
    assert network_passes(schedule, "ddim", 50) == 50
    assert network_passes(schedule, "dpmpp", 20) == 20
    assert network_passes(schedule, "dpmpp_sde", 50) == 49  # two of 50 log-SNR steps coincide
    with pytest.raises(ValueError, match="all 1000 steps"):
        sample(LinearNoise(), schedule, (1, 2, 2, 1), sampler="ddpm", sampling_steps=20)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(LinearNoise(), schedule, (1, 2, 2, 1), sampler="euler")


@pytest.mark.parametrize("main", [ch5_ddpm.main, ch5_conditional_diffusion.main])
@pytest.mark.parametrize("flags, message", [
    (["--sampler", "euler"], "invalid choice: 'euler'"),
    (["--sampler", "ddpm", "--sampling-steps", "20"], "takes all 1000 steps"),
    (["--sampling-steps", "0"], "at least 1"),
    (["--sampling-steps", "1001"], "at most 1000"),
])
def test_bad_sampler_flags_are_one_line(tmp_path, capsys, main, flags, message):
    with pytest.raises(SystemExit) as exit_:
        main([*flags, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_the_samplers_flag_names_the_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        ch5_samplers.main(["--samplers", "ddim,heun", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert "unknown sampler 'heun'; choose from ddpm, ddim, dpmpp, dpmpp_sde" in err[0]
