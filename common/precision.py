"""Mixed precision (`--precision`): compute in 16 bits, keep the weights in 32.

Keras's dtype policy decides the dtype each layer computes in. Under `mixed_float16` or
`mixed_bfloat16` layers compute in the 16-bit type (half the memory traffic, and the tensor
cores or AMX units of an accelerator) while their weights stay float32, so small updates are
not rounded away (Micikevicius et al. 2018, "Mixed Precision Training").
- float16 has few exponent bits: small gradients underflow to 0. A `LossScaleOptimizer`
  multiplies the loss by a large factor before the backward pass and divides the gradients
  by it before the update, skipping steps whose gradients overflowed. Keras's `compile` wraps
  a model's optimizer itself; the GAN's two optimizers are wrapped with `loss_scaled`.
- bfloat16 keeps float32's exponent range and needs no loss scale.
Losses are computed in float32 (the custom steps cast the network's output), and so are the
samplers' updates.
"""

from __future__ import annotations

import contextlib

import keras

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def add_flag(parser) -> None:
    parser.add_argument("--precision", choices=POLICIES, default="float32",
                        help="Keras dtype policy: mixed_* compute in 16 bits with float32 "
                             "weights, for GPUs and TPUs (default float32)")


def set_policy(name: str) -> None:
    keras.mixed_precision.set_global_policy(name)


@contextlib.contextmanager
def float32_policy():
    """Build (and train) what is made inside in float32, whatever the run's policy: the judge
    must be the same instrument for every run."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def loss_scaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """`optimizer` wrapped in a dynamic LossScaleOptimizer under mixed_float16, else as is."""
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
