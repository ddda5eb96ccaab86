"""Building blocks for VAEs in the Keras 3 idiom: a seeded sampling layer, a loss layer that
adds the negative ELBO with `add_loss`, and KL annealing.

The negative evidence lower bound for one image x (Kingma & Welling 2014, eq. 10):

    -ELBO(x) = E_q[-log p(x | z)] + KL(q(z | x) || N(0, I))
             = sum over pixels of binary cross-entropy(x, decoder(z))    (Bernoulli decoder)
               - 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)

It bounds -log p(x) from above, in nats. `beta` weighs the KL term: beta > 1 is the beta-VAE
(Higgins et al. 2017), which trades reconstruction for more independent latent factors; raising
beta from 0 over the first epochs is KL annealing (Bowman et al. 2016), which lets the decoder
learn to use z before the KL term pulls the posteriors onto the prior.

Keras 3 removed symbolic `model.add_loss`; a layer calling `self.add_loss` inside `call`
works, and the model then compiles with no loss and trains with `fit(x)`.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from common.distribute import draw

PACKAGE = __name__  # saved models name this module, which a loader must import
EPSILON = 1e-7  # keeps log() finite where the decoder outputs exactly 0 or 1
LOG_2PI = 1.8378770664093453  # log(2 pi)


def kl_to_standard_normal(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) per example, summed over latent dimensions (in
    float32, whatever the encoder computed in)."""
    mean, log_var = ops.cast(mean, "float32"), ops.cast(log_var, "float32")
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


def bernoulli_nll(x, probabilities):
    """-log p(x | probabilities) per example: binary cross-entropy summed over all pixels (in
    float32)."""
    x = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))
    p = ops.clip(ops.reshape(ops.cast(probabilities, "float32"), (ops.shape(probabilities)[0], -1)),
                 EPSILON, 1.0 - EPSILON)
    return -ops.sum(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p), axis=-1)


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, exp(log_var)) per example, summed over dimensions (in float32)."""
    z, mean, log_var = (ops.cast(v, "float32") for v in (z, mean, log_var))
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(z - mean) / ops.exp(log_var), axis=-1)


def sample_log_density(noise, log_var):
    """log N(z; mean, exp(log_var)) of a sample drawn as z = mean + exp(log_var / 2) * noise.

    The same number as `gaussian_log_density(z, mean, log_var)`, written with the noise so that
    nothing is divided: (z - mean)^2 / exp(log_var) is noise^2. The division form turns into
    0 / 0 once a variance underflows, which a posterior trained without its KL term (the
    beta = 0 epoch of KL annealing) can reach within a few dozen steps.
    """
    noise, log_var = ops.cast(noise, "float32"), ops.cast(log_var, "float32")
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(noise), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I) (the reparameterisation trick).

    The noise comes from `keras.random.normal` with the layer's own `SeedGenerator`, so a
    seeded model draws the same sequence every run, and each call draws afresh. With
    `return_noise=True` the layer returns [z, eps], for a loss that needs the sample's density
    (`sample_log_density`).
    """

    def __init__(self, seed: int | None = None, return_noise: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.return_noise = seed, return_noise
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_var = inputs
        # this replica's rows under --distribute; the policy's compute dtype under --precision
        eps = draw(keras.random.normal, ops.shape(mean), dtype=mean.dtype,
                   seed=self.seed_generator)
        z = mean + ops.exp(0.5 * log_var) * eps
        return [z, eps] if self.return_noise else z

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "return_noise": self.return_noise}


@keras.saving.register_keras_serializable(package=PACKAGE)
class VaeLossLayer(layers.Layer):
    """Adds mean over the batch of  bernoulli_nll + beta * KL  with `self.add_loss`.

    Inputs: [x, decoded probabilities, mean, log_var]; output: the probabilities, unchanged.
    `beta` is a non-trainable weight, so a callback can change it between steps and the
    compiled training step sees the new value.
    """

    def __init__(self, beta: float = 1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # the loss in float32 under --precision
        super().__init__(**kwargs)
        self.beta = self.add_weight(shape=(), initializer=keras.initializers.Constant(beta),
                                    trainable=False, name="beta")

    def call(self, inputs):
        x, probabilities, mean, log_var = inputs
        reconstruction = bernoulli_nll(x, probabilities)
        kl = kl_to_standard_normal(mean, log_var)
        self.add_loss(ops.mean(reconstruction + self.beta * kl))
        return probabilities

    def get_config(self):
        return {**super().get_config(), "beta": float(ops.convert_to_numpy(self.beta))}


@keras.saving.register_keras_serializable(package=PACKAGE)
class HierarchicalVaeLossLayer(layers.Layer):
    """The negative ELBO of a two-level VAE  x <- z1 <- z2  with bottom-up inference
    q(z1 | x) q(z2 | z1) (Tomczak 2022, "Deep Generative Modeling", sec. 4.5):

        -ELBO = -log p(x | z1)                              reconstruction
                + log q(z1 | x) - log p(z1 | z2)             KL of the first level
                + KL(q(z2 | z1) || N(0, I))                  KL of the second level

    z1 and z2 are the sampled values. The first KL is a one-sample Monte Carlo estimate: z2 is
    drawn given z1, so KL(q(z1 | x) || p(z1 | z2)) in closed form would not be the ELBO's term.
    log q(z1 | x) is computed from the noise that drew z1 (`sample_log_density`), which stays
    finite however small the posterior variance gets. The second KL is exact given z1. Both
    KL terms are weighted by `beta` (for annealing).

    Inputs: [x, probabilities, z1, noise1, q1_log_var, p1_mean, p1_log_var, q2_mean,
    q2_log_var], where z1 = q1_mean + exp(q1_log_var / 2) * noise1; output: the
    probabilities, unchanged.
    """

    def __init__(self, beta: float = 1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # the loss in float32 under --precision
        super().__init__(**kwargs)
        self.beta = self.add_weight(shape=(), initializer=keras.initializers.Constant(beta),
                                    trainable=False, name="beta")

    def call(self, inputs):
        x, probabilities, z1, noise1, q1_log_var, p1_mean, p1_log_var, q2_mean, q2_log_var = inputs
        kl1 = (sample_log_density(noise1, q1_log_var)
               - gaussian_log_density(z1, p1_mean, p1_log_var))
        kl2 = kl_to_standard_normal(q2_mean, q2_log_var)
        self.add_loss(ops.mean(bernoulli_nll(x, probabilities) + self.beta * (kl1 + kl2)))
        return probabilities

    def get_config(self):
        return {**super().get_config(), "beta": float(ops.convert_to_numpy(self.beta))}


class KLAnnealing(keras.callbacks.Callback):
    """Raise the loss layer's beta linearly from 0 to `target` over the first `epochs` epochs
    (epoch 0 trains with beta = 0), and log it as `beta` in the history."""

    def __init__(self, layer_name: str, target: float = 1.0, epochs: int = 5):
        super().__init__()
        self.layer_name, self.target, self.epochs = layer_name, float(target), max(1, epochs)
        self.value = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.value = self.target * min(1.0, epoch / self.epochs)
        self.model.get_layer(self.layer_name).beta.assign(self.value)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = self.value
