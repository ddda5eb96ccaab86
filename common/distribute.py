"""Training past one device with TensorFlow's distribution engine (`--distribute`).

Data parallelism: every device (a "replica") holds a copy of the model and gets its share of
each global batch; the gradients are summed across replicas before the one shared update, so
the run computes what a single device would on the whole global batch, only faster.
- `MirroredStrategy`: all GPUs of this machine (with none, it still runs, on the CPU);
- `MultiWorkerMirroredStrategy`: several machines, when `TF_CONFIG` names them (each machine
  runs the same command with its own `TF_CONFIG` "task" entry).
Models and optimizers must be created inside `strategy.scope()` so their variables are
mirrored; the global batch is `--batch-size` per replica times the number of replicas.

Replicas run in threads of their own. Keras keeps its global random state per thread, so a
model that draws unseeded random numbers inside its step (the book-form VAE's Lambda sampler)
cannot run under a strategy; the chapter-2 dense autoencoder, which draws none, shows it.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from common.errors import UserError


def add_flag(parser) -> None:
    parser.add_argument("--distribute", action="store_true",
                        help="train under tf.distribute: MirroredStrategy over this machine's "
                             "GPUs (the CPU when there is none), or MultiWorkerMirroredStrategy "
                             "when TF_CONFIG is set; --batch-size is then per replica")


def make_strategy(enabled: bool, devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy a run trains under: TF's default (one device) unless `enabled`."""
    if not enabled:
        return tf.distribute.get_strategy()
    if os.environ.get("TF_CONFIG"):
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as err:
            raise UserError(f"TF_CONFIG is not valid JSON ({err}); unset it to train on this "
                            "machine alone") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(devices)


def describe(strategy: tf.distribute.Strategy, batch_size: int) -> str:
    replicas = strategy.num_replicas_in_sync
    return (f"distributed with {type(strategy).__name__} over {replicas} replica(s): global "
            f"batch {batch_size * replicas} ({batch_size} per replica)")


def split_cpu(count: int) -> list[str]:
    """Make the CPU look like `count` devices (for testing data parallelism without GPUs).
    Must run before TensorFlow touches a device; returns the logical devices' names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    return [device.name for device in tf.config.list_logical_devices("CPU")]
