"""Discrete-code machinery: the vector quantiser of a VQ-VAE, and the masked convolution and
autoregressive sampling loop of a prior over its codes."""
