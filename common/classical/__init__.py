"""Before neural networks: the normal distribution's formulas and EM for Gaussian mixtures."""
