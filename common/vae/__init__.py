"""VAE machinery: sampling and add_loss layers, the ELBO and its reports, a fitted class prior."""
