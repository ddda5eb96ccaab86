"""Data-parallel training (common.distribute): the CPU split into two logical devices trains
under MirroredStrategy to the same losses and weights as one device on the same global batch,
for a plain Keras model, the GAN step, the diffusion trainer and the book-form VAE (whose
Lambda sampler draws from a seed generator it owns); two worker processes train one model
under MultiWorkerMirroredStrategy."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_in_process, run_script

# Runs in its own process: the CPU can only be split before TensorFlow first uses it. Each
# model starts from the same weights and seeds, takes 3 steps on 3 global batches of 32
# (16 per replica), under OneDeviceStrategy and under MirroredStrategy over two devices.
MIRRORED_VS_SINGLE = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from common.distribute import split_cpu
devices = split_cpu(2)
import keras, numpy as np, tensorflow as tf
# one strategy for every model: a second one in this process would reuse the keys of the
# collective ops (the all-reduce, the DCGAN's synchronized batch norm) that the first used
MIRRORED = tf.distribute.MirroredStrategy(devices)

def compare(build, data, compile_model):
    keras.utils.set_random_seed(0)
    start = build().get_weights()
    # the same start moved by one part in a million: how far rounding-sized differences
    # carry in 3 steps on one device, the yardstick for the two-device run
    nudged = [w * (1 + 1e-6 * np.random.default_rng(1).standard_normal(w.shape)).astype(w.dtype)
              for w in start]
    found = {{}}
    for name, strategy, weights in (
            ("single", tf.distribute.OneDeviceStrategy(devices[0]), start),
            ("nudged", tf.distribute.OneDeviceStrategy(devices[0]), nudged),
            ("mirrored", MIRRORED, start)):
        with strategy.scope():
            model = build()
            model.set_weights(weights)
            compile_model(model)
        history = model.fit(data.repeat(), epochs=3, steps_per_epoch=1, verbose=0,
                            shuffle=False).history
        found[name] = ({{k: [float(v) for v in vs] for k, vs in history.items()}},
                       model.get_weights())
    (single, w1), (nudged, w0), (mirrored, w2) = (found[k] for k in ("single", "nudged",
                                                                     "mirrored"))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(start, w1))
    apart = max(float(np.abs(a - b).max()) for a, b in zip(w1, w2))
    nudged_apart = max(float(np.abs(a - b).max()) for a, b in zip(w1, w0))
    return {{"replicas": strategy.num_replicas_in_sync, "single": single, "nudged": nudged,
             "mirrored": mirrored, "weights_moved": moved, "weights_apart": apart,
             "nudged_apart": nudged_apart}}

def run(which):
    rng = np.random.default_rng(0)
    if which == "dense_autoencoder":
        from chapters.ch2_vae import build_cnn_autoencoder
        x = rng.uniform(size=(96, 1024)).astype("float32")
        data = tf.data.Dataset.from_tensor_slices((x, x)).batch(32, drop_remainder=True)
        found = compare(build_cnn_autoencoder, data,
                        lambda m: m.compile(keras.optimizers.SGD(0.5), "mse"))
    elif which == "dcgan":  # SGD: Adam's first steps are sign-like, so rounding-level
        from chapters.ch4_dcgan import build_dcgan  # gradients could flip a weight's step
        x = rng.uniform(-1, 1, (96, 28, 28, 1)).astype("float32")
        data = tf.data.Dataset.from_tensor_slices(x).batch(32, drop_remainder=True)
        found = compare(lambda: build_dcgan(seed=1), data, lambda m: m.compile(
            d_optimizer=keras.optimizers.SGD(0.01), g_optimizer=keras.optimizers.SGD(0.01)))
    elif which == "diffusion":
        from chapters.ch5_ddpm import build_diffusion
        x = rng.uniform(-1, 1, (96, 28, 28, 1)).astype("float32")
        y = rng.integers(0, 10, 96)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32, drop_remainder=True)
        found = compare(lambda: build_diffusion(8, num_classes=10, seed=1), data,
                        lambda m: m.compile(optimizer=keras.optimizers.SGD(0.05)))
    elif which == "book_vae":
        from chapters.ch2_vae import build_vae, compile_vae
        x = rng.uniform(size=(96, 1024)).astype("float32")
        data = tf.data.Dataset.from_tensor_slices((x, x)).batch(32, drop_remainder=True)
        found = compare(lambda: build_vae(seed=1), data,
                        lambda m: compile_vae(m, 1.0, keras.optimizers.SGD(1e-3)))
    return found


print(json.dumps({{which: run(which) for which in sys.argv[1:]}}))
"""


MODELS = ("dense_autoencoder", "dcgan", "diffusion", "book_vae")


def test_mirrored_training_on_two_cpu_devices_matches_one_device():
    """Equal to rounding, for each of MODELS (one process: the CPU is split once): each
    replica differentiates its share of the global loss, draws its rows of the global batch's
    noise (common.distribute.draw), and the DCGAN's batch norm is synchronized. Without
    these, the losses differ at the first step."""
    result = run_script("-c", MIRRORED_VS_SINGLE, *MODELS, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    by_model = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(by_model) == sorted(MODELS)
    for model, found in by_model.items():
        assert found["replicas"] == 2, model
        single, nudged, mirrored = found["single"], found["nudged"], found["mirrored"]
        assert found["weights_moved"] > 1e-4, model  # it trained
        # apart by far less than they moved (1e-4, or 1% of the largest move if that is
        # smaller), or at most 10 times as far as a start nudged by one part in a million
        # drifts: the DCGAN's first steps amplify rounding that much (2e-5 after one step)
        assert found["weights_apart"] <= max(min(1e-4, found["weights_moved"] / 100),
                                             10 * found["nudged_apart"]), (model, found)
        assert single.keys() == mirrored.keys(), model
        for name in single:
            for a, b, c in zip(single[name], mirrored[name], nudged[name]):
                assert abs(a - b) <= max(1e-4 * max(1.0, abs(a)), 10 * abs(a - c)), (
                    model, name, single, mirrored, nudged)


def test_chapter_trains_with_distribute(tmp_path, capsys):
    result = run_in_process(capsys, "ch2_dense_autoencoder", "--quick", "--distribute",
                            "--dataset", "mnist5k", "--batch-size", "32", "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "distributed with MirroredStrategy over 1 replica(s)" in result.stdout
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert (record["strategy"], record["replicas"], record["batch_size"]) == (
        "MirroredStrategy", 1, 32)
    assert 0 < record["models"]["dense_autoencoder"]["test_mse"] < 1


def test_a_malformed_tf_config_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    result = run_in_process(capsys, "ch2_dense_autoencoder", "--quick", "--distribute",
                            "--dataset", "mnist5k", "--out", tmp_path / "o")
    assert result.returncode == 2 and "TF_CONFIG" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "o").rglob("*"))  # nothing written


# One worker of a two-process MultiWorkerMirroredStrategy cluster on 127.0.0.1 (TF_CONFIG
# says which). Keras's fit cannot run under this strategy across processes
# (common.distribute.check_fit_supported), so the step is written with strategy.run, using
# the same gradient_loss and draw as the chapters' custom steps.
WORKER = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras, numpy as np
from common.distribute import draw, gradient_loss

keras.utils.set_random_seed(0)
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    noise = keras.random.SeedGenerator(1)
x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(32, drop_remainder=True)
batches = iter(strategy.experimental_distribute_dataset(data))

def replica_step(inputs, targets):
    inputs = inputs + 0.01 * draw(keras.random.normal, tf.shape(inputs), seed=noise)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(inputs, training=True) - targets))
        scaled = gradient_loss(loss, optimizer)
    optimizer.apply(tape.gradient(scaled, model.trainable_variables), model.trainable_variables)
    return loss

@tf.function
def step(batch):
    return strategy.reduce("MEAN", strategy.run(replica_step, args=batch), axis=None)

losses = [float(step(next(batches))) for _ in range(40)]
print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "first": losses[0],
                   "last": losses[-1], "kernel": model.get_weights()[0].ravel().tolist()}}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_train_under_multi_worker_mirrored_strategy():
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))
    results = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=180)
            assert worker.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            worker.kill()
    assert [r["replicas"] for r in results] == [2, 2]  # one replica per worker
    assert results[0]["last"] < 0.01 * results[0]["first"]  # it learned the linear map
    assert results[0]["kernel"] == pytest.approx(results[1]["kernel"], abs=1e-6)  # in sync


def test_several_machines_in_tf_config_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    """Keras's fit cannot train across processes (keras-team/keras#20585): say so."""
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    result = run_in_process(capsys, "ch2_dense_autoencoder", "--quick", "--distribute",
                            "--dataset", "mnist5k", "--out", tmp_path / "o")
    assert result.returncode == 2 and "keras-team/keras#20585" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
