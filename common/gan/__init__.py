"""GAN machinery: the adversarial training step, sample grids and their animation, loss curves."""
