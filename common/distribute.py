"""Training past one device with TensorFlow's distribution engine (`--distribute`).

Data parallelism: every device (a "replica") holds a copy of the model and gets its share of
each global batch; the gradients are summed across replicas before the one shared update, so
the run computes what a single device would on the whole global batch, only faster.
- `MirroredStrategy`: all GPUs of this machine (with none, it still runs, on the CPU);
- `MultiWorkerMirroredStrategy`: several machines, when `TF_CONFIG` names them (each machine
  runs the same command with its own `TF_CONFIG` "task" entry). Keras 3's `fit` cannot yet
  train under it across processes, so the chapters refuse that in one line
  (`check_fit_supported`); a TF_CONFIG naming this one process runs.
Models and optimizers must be created inside `strategy.scope()` so their variables are
mirrored; the global batch is `--batch-size` per replica times the number of replicas, and a
learning rate is stated for the global batch. `common.run.start` does this for every training
chapter: with `--distribute` the whole run happens inside the strategy's scope.

Two rules keep a training step correct under a strategy, so that N replicas compute what one
device would on the global batch:
- Each replica differentiates its share of the global mean loss (`gradient_loss`: the mean
  over its rows divided by the number of replicas); the gradients are then summed across
  replicas. Keras's built-in `train_step`, `Loss` objects and `add_loss` do this themselves;
  the custom steps (the GAN step, the diffusion trainer, the latent autoencoder) call
  `gradient_loss`.
- Random numbers inside a step (noise, timesteps, the VAE's eps) come from a seeded
  `SeedGenerator` whose state every replica shares. Drawn as usual, every replica would get
  the same numbers for its rows; `draw` instead draws for the whole global batch and keeps
  this replica's rows, so the run sees exactly the numbers of a one-device run.
Batch norm in the GANs is `synchronized`, so its statistics are the global batch's too.
tests/test_distribute.py checks all of it: two logical CPU devices give the losses and
weights of one device.
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
            config = json.loads(os.environ["TF_CONFIG"])
        except ValueError as err:
            raise UserError(f"TF_CONFIG is not valid JSON ({err}); unset it to train on this "
                            "machine alone") from None
        check_cluster_shape(config)
        check_fit_supported(config)
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(devices)


def check_cluster_shape(config) -> None:
    """TF_CONFIG must be {"cluster": {job: ["host:port", ...]}, "task": {"type": job,
    "index": i}}: anything else is one line naming what is wrong, not a traceback."""
    def bad(what):
        raise UserError(f"TF_CONFIG: {what}; expected {{\"cluster\": {{\"worker\": "
                        f"[\"host:port\", ...]}}, \"task\": {{\"type\": \"worker\", "
                        f"\"index\": 0}}}}, or unset it to train on this machine alone")

    if not isinstance(config, dict):
        bad(f"the JSON is a {type(config).__name__}, not an object")
    cluster, task = config.get("cluster", {}), config.get("task", {})
    if not isinstance(cluster, dict):
        bad(f"\"cluster\" is a {type(cluster).__name__}, not an object of job names")
    for job, addresses in cluster.items():
        if not (isinstance(addresses, list)
                and all(isinstance(a, str) and ":" in a for a in addresses)):
            bad(f"cluster job {job!r} is not a list of \"host:port\" addresses")
    if not isinstance(task, dict):
        bad(f"\"task\" is a {type(task).__name__}, not an object")
    if task and (task.get("type") not in cluster or not isinstance(task.get("index"), int)
                 or not 0 <= task["index"] < len(cluster[task["type"]])):
        bad(f"task {json.dumps(task)[:80]} names no address in the cluster")


def check_fit_supported(config: dict) -> None:
    """Keras 3's `fit` cannot train under MultiWorkerMirroredStrategy across processes: its
    step reduces the scalar logs with `strategy.reduce("MEAN", value, axis=0)`, which fails on
    a scalar, and it reduces the first batch eagerly before tracing (keras-team/keras#20585).
    The chapters train with `fit`, so a TF_CONFIG that names several processes is a one-line
    error (before the strategy waits for the others), not a traceback. tests/test_distribute.py
    trains across two worker processes with a step of its own under the same strategy, using
    this module's `gradient_loss` and `draw`."""
    if sum(len(tasks) for tasks in config.get("cluster", {}).values()) > 1:
        raise UserError("TF_CONFIG names several processes, but Keras's fit cannot yet train "
                        "under MultiWorkerMirroredStrategy across them (keras-team/keras#20585);"
                        " unset TF_CONFIG to train on this machine's devices")


def describe(strategy: tf.distribute.Strategy, batch_size: int) -> str:
    replicas = strategy.num_replicas_in_sync
    return (f"distributed with {type(strategy).__name__} over {replicas} replica(s): global "
            f"batch {batch_size * replicas} ({batch_size} per replica)")


def replicas() -> int:
    """How many replicas share the global batch (1 outside any strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def this_replicas_rows(values, rows):
    """Rows [i * rows, (i + 1) * rows) of `values`, for replica i of the strategy in force (all
    of `values` with one replica)."""
    if replicas() == 1:
        return values
    start = tf.distribute.get_replica_context().replica_id_in_sync_group * rows
    return values[start:start + rows]


def draw(sample, shape, *args, **kwargs):
    """`sample(shape, *args, **kwargs)` (a `keras.random` function with a `SeedGenerator`) for this
    replica's rows of a global batch: drawn for all replicas' rows, then sliced, so that the
    numbers do not depend on how many replicas share the batch."""
    n = replicas()
    if n == 1 or tf.distribute.in_cross_replica_context():  # e.g. Keras building the model
        return sample(shape, *args, **kwargs)
    rows = shape[0]
    if isinstance(shape, (tuple, list)):
        whole = (rows * n, *shape[1:])
    else:  # a shape tensor
        whole = tf.concat([[rows * n], shape[1:]], axis=0)
    return this_replicas_rows(sample(whole, *args, **kwargs), rows)


def gradient_loss(loss, optimizer):
    """What a replica differentiates: its mean loss over its rows, divided by the number of
    replicas (the gradients are summed across them), times the loss scale when the optimizer
    is a `LossScaleOptimizer` (mixed_float16, common.precision). Call it inside the tape."""
    n = replicas()
    share = loss if n == 1 else loss / n
    return optimizer.scale_loss(share)


def split_cpu(count: int) -> list[str]:
    """Make the CPU look like `count` devices (for testing data parallelism without GPUs).
    Must run before TensorFlow touches a device; returns the logical devices' names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    return [device.name for device in tf.config.list_logical_devices("CPU")]
