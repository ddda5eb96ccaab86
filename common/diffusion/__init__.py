"""Diffusion machinery: the noise schedule, the training wrapper with its EMA copy, the samplers."""
