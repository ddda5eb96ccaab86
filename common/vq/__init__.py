"""Discrete-code machinery: the vector quantiser of a VQ-VAE, the masked convolution and
sampling loop of a PixelCNN prior over its codes, and next-token training and sampling for a
Transformer prior."""
