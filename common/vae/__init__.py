"""VAE machinery: the ELBO's arithmetic and reports, KL annealing, a fitted class prior.

The layers that teach the VAE (sampling, the add_loss layer) live in chapters/ch3_vae.py.
"""
