"""Data-parallel training (common.distribute): the CPU split into two logical devices trains
the chapter-2 autoencoder under MirroredStrategy to the same losses as one device."""

import json

from tests.conftest import ROOT, run_script

# Runs in its own process: the CPU can only be split before TensorFlow first uses it.
MIRRORED_VS_SINGLE = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from common.distribute import make_strategy, split_cpu
devices = split_cpu(2)
import keras, numpy as np, tensorflow as tf
from chapters.ch2_vae import build_cnn_autoencoder

x = np.random.default_rng(0).uniform(size=(256, 1024)).astype("float32")
keras.utils.set_random_seed(0)
start = build_cnn_autoencoder().get_weights()

def losses(strategy):
    with strategy.scope():
        model = build_cnn_autoencoder()
        model.set_weights(start)
        model.compile(keras.optimizers.SGD(0.5), "mse")
    data = tf.data.Dataset.from_tensor_slices((x, x)).batch(64)  # global batch 64
    return model.fit(data, epochs=3, verbose=0, shuffle=False).history["loss"]

mirrored = make_strategy(True, devices)
print(json.dumps({{"replicas": mirrored.num_replicas_in_sync,
                  "single": losses(tf.distribute.OneDeviceStrategy(devices[0])),
                  "mirrored": losses(mirrored)}}))
"""


def test_mirrored_training_on_two_cpu_devices_matches_one_device():
    result = run_script("-c", MIRRORED_VS_SINGLE)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["replicas"] == 2
    single, mirrored = found["single"], found["mirrored"]
    assert single[-1] < single[0]  # it trained
    for a, b in zip(single, mirrored):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (single, mirrored)


def test_chapter_trains_with_distribute(tmp_path):
    result = run_script("chapters/ch2_dense_autoencoder.py", "--quick", "--distribute",
                        "--dataset", "mnist5k", "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "distributed with MirroredStrategy over 1 replica(s)" in result.stdout
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert (record["strategy"], record["replicas"]) == ("MirroredStrategy", 1)
    assert 0 < record["models"]["dense_autoencoder"]["test_mse"] < 1



def test_a_malformed_tf_config_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    result = run_script("chapters/ch2_dense_autoencoder.py", "--quick", "--distribute",
                        "--dataset", "mnist5k", "--out", tmp_path / "o")
    assert result.returncode == 2 and "TF_CONFIG" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "o").rglob("*"))  # nothing written
