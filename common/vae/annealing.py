"""KL annealing (Bowman et al. 2016): raise beta from 0 over the first epochs, so the decoder
learns to use z before the KL term pulls the posteriors onto the prior."""

from __future__ import annotations

import keras


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
